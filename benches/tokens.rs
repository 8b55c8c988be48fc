//! Concurrent tokens: 1…63 tokens at once in a ring of 64 processes, hops per second (an iteration
//! is one hop), on each backend and the raw crossbeam and may rings.

mod scenarios;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scenarios::{backends, baselines};

const RING: usize = 64;
const TOKENS: [u64; 4] = [1, 4, 16, 63];

fn tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("concurrent_tokens");
    g.throughput(Throughput::Elements(1));
    for t in TOKENS {
        // Each token makes hops / t hops, so an iteration stays one hop whatever t is.
        let per_token = move |hops: u64| hops.div_ceil(t).max(1);
        let scale = move |hops: u64, d: std::time::Duration| {
            d.mul_f64(hops.max(1) as f64 / (per_token(hops) * t) as f64)
        };
        for backend in backends() {
            g.bench_with_input(
                BenchmarkId::new(format!("cspnet-{backend}"), t),
                &t,
                |b, &t| {
                    b.iter_custom(|hops| {
                        scale(
                            hops,
                            scenarios::tokens(backend, RING, t, per_token(hops))
                                .unwrap()
                                .unwrap(),
                        )
                    })
                },
            );
        }
        g.bench_with_input(BenchmarkId::new("crossbeam-bounded0", t), &t, |b, &t| {
            b.iter_custom(|hops| scale(hops, baselines::crossbeam::ring(RING, t, per_token(hops))))
        });
        g.bench_with_input(BenchmarkId::new("may-mpsc", t), &t, |b, &t| {
            b.iter_custom(|hops| scale(hops, baselines::may::ring(RING, t, per_token(hops))))
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
