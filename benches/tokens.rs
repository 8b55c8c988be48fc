//! Concurrent tokens: 1…63 tokens at once in a ring of 64 processes, hops per second (an iteration
//! is one hop), on each backend and the raw crossbeam and may rings.

mod scenarios;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scenarios::{backends, baselines, per_iter};
use std::time::Duration;

const RING: usize = 64;
const TOKENS: [u64; 4] = [1, 4, 16, 63];
/// Hops per timed run at least, whatever criterion asks for.
const MIN: u64 = 20_000;

/// `hops` hops shared by `tokens` tokens: runs `hops / tokens` (rounded up) each and scales the
/// time to exactly `hops`.
fn share(hops: u64, tokens: u64, run: impl FnOnce(u64) -> Duration) -> Duration {
    let each = hops.div_ceil(tokens).max(1);
    run(each).mul_f64(hops as f64 / (each * tokens) as f64)
}

fn tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("concurrent_tokens");
    g.throughput(Throughput::Elements(1));
    for t in TOKENS {
        for backend in backends() {
            let id = BenchmarkId::new(format!("cspnet-{backend}"), t);
            g.bench_with_input(id, &t, |b, &t| {
                b.iter_custom(|iters| {
                    per_iter(iters, MIN, |h| {
                        share(h, t, |e| {
                            scenarios::tokens(backend, RING, t, e).unwrap().unwrap()
                        })
                    })
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("crossbeam-bounded0", t), &t, |b, &t| {
            b.iter_custom(|iters| {
                per_iter(iters, MIN, |h| {
                    share(h, t, |e| baselines::crossbeam::ring(RING, t, e))
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("may-mpsc", t), &t, |b, &t| {
            b.iter_custom(|iters| {
                per_iter(iters, MIN, |h| {
                    share(h, t, |e| baselines::may::ring(RING, t, e))
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = scenarios::quick();
    targets = tokens
}
criterion_main!(benches);
