//! Token ring: one token around a ring of processes, ns per hop, on each backend and raw baselines.

mod baselines;
#[path = "../examples/token_ring.rs"]
#[allow(dead_code)]
mod token_ring;

use criterion::{Criterion, criterion_group, criterion_main};
use cspnet::Backend;
use std::time::Duration;

fn ring_256(c: &mut Criterion) {
    let mut g = c.benchmark_group("token_ring_256");
    for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
        g.bench_function(format!("cspnet-{backend}"), |b| {
            b.iter_custom(|hops| {
                let nanos = token_ring::ring(backend, 256, 1, hops.max(1))
                    .unwrap()
                    .unwrap();
                Duration::from_nanos(nanos)
            })
        });
    }
    g.bench_function("crossbeam-bounded0", |b| {
        b.iter_custom(|hops| baselines::crossbeam::ring(256, 1, hops.max(1)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = ring_256
}
criterion_main!(benches);
