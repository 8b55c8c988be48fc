//! Token ring: one token around rings of 2…1024 processes, ns per hop (an iteration is one hop), on
//! each backend and the raw baselines (crossbeam threads, may coroutines, futex processes).

mod scenarios;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use scenarios::{backends, baselines, per_iter};

const SIZES: [usize; 5] = [2, 8, 64, 256, 1024];
/// Hops per timed run at least, whatever criterion asks for.
const MIN: u64 = 10_000;

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("token_ring");
    for n in SIZES {
        for backend in backends() {
            let id = BenchmarkId::new(format!("cspnet-{backend}"), n);
            g.bench_with_input(id, &n, |b, &n| {
                b.iter_custom(|iters| {
                    per_iter(iters, MIN, |h| {
                        scenarios::ring(backend, n, h).unwrap().unwrap()
                    })
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("crossbeam-bounded0", n), &n, |b, &n| {
            b.iter_custom(|iters| per_iter(iters, MIN, |h| baselines::crossbeam::ring(n, 1, h)))
        });
        g.bench_with_input(BenchmarkId::new("may-mpsc", n), &n, |b, &n| {
            b.iter_custom(|iters| per_iter(iters, MIN, |h| baselines::may::ring(n, 1, h)))
        });
        g.bench_with_input(BenchmarkId::new("futex-processes", n), &n, |b, &n| {
            b.iter_custom(|iters| per_iter(iters, MIN, |h| baselines::futex::ring(n, h)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = scenarios::quick();
    targets = ring
}
criterion_main!(benches);
