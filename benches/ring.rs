//! Token ring: one token around rings of 2…1024 processes, ns per hop (an iteration is one hop), on
//! each backend and the raw baselines (crossbeam threads, may coroutines, futex processes).

mod scenarios;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use scenarios::{backends, baselines};

const SIZES: [usize; 5] = [2, 8, 64, 256, 1024];

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("token_ring");
    for n in SIZES {
        for backend in backends() {
            g.bench_with_input(
                BenchmarkId::new(format!("cspnet-{backend}"), n),
                &n,
                |b, &n| {
                    b.iter_custom(|hops| scenarios::ring(backend, n, hops.max(1)).unwrap().unwrap())
                },
            );
        }
        g.bench_with_input(BenchmarkId::new("crossbeam-bounded0", n), &n, |b, &n| {
            b.iter_custom(|hops| baselines::crossbeam::ring(n, 1, hops.max(1)))
        });
        g.bench_with_input(BenchmarkId::new("may-mpsc", n), &n, |b, &n| {
            b.iter_custom(|hops| baselines::may::ring(n, 1, hops.max(1)))
        });
        g.bench_with_input(BenchmarkId::new("futex-processes", n), &n, |b, &n| {
            b.iter_custom(|hops| baselines::futex::ring(n, hops.max(1)))
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
