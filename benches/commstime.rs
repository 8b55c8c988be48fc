//! Commstime (Prefix → Delta → Successor → Consumer): ns per cycle on each backend and raw baselines.

mod scenarios;

use criterion::{Criterion, criterion_group, criterion_main};
use scenarios::{backends, baselines, per_iter};

/// Cycles per timed run at least, whatever criterion asks for.
const MIN: u64 = 5_000;

fn cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("commstime");
    for backend in backends() {
        g.bench_function(format!("cspnet-{backend}"), |b| {
            b.iter_custom(|iters| {
                per_iter(iters, MIN, |c| {
                    scenarios::commstime(backend, c).unwrap().unwrap()
                })
            })
        });
    }
    g.bench_function("crossbeam-bounded0", |b| {
        b.iter_custom(|iters| per_iter(iters, MIN, baselines::crossbeam::commstime))
    });
    g.bench_function("may-mpsc", |b| {
        b.iter_custom(|iters| per_iter(iters, MIN, baselines::may::commstime))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = scenarios::quick();
    targets = cycle
}
criterion_main!(benches);
