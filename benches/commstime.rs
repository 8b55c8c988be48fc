//! Commstime (Prefix → Delta → Successor → Consumer): ns per cycle on each backend and raw baselines.

mod scenarios;

use criterion::{Criterion, criterion_group, criterion_main};
use scenarios::{backends, baselines};

fn cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("commstime");
    for backend in backends() {
        g.bench_function(format!("cspnet-{backend}"), |b| {
            b.iter_custom(|cycles| {
                scenarios::commstime(backend, cycles.max(1))
                    .unwrap()
                    .unwrap()
            })
        });
    }
    g.bench_function("crossbeam-bounded0", |b| {
        b.iter_custom(|cycles| baselines::crossbeam::commstime(cycles.max(1)))
    });
    g.bench_function("may-mpsc", |b| {
        b.iter_custom(|cycles| baselines::may::commstime(cycles.max(1)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = scenarios::quick();
    targets = cycle
}
criterion_main!(benches);
