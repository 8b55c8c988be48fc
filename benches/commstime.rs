//! Commstime (Prefix → Delta → Successor → Consumer): ns per cycle on each backend and raw baselines.

mod baselines;
#[path = "../examples/commstime.rs"]
#[allow(dead_code)]
mod commstime;

use criterion::{Criterion, criterion_group, criterion_main};
use cspnet::Backend;
use std::time::Duration;

fn cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("commstime");
    for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
        g.bench_function(format!("cspnet-{backend}"), |b| {
            b.iter_custom(|cycles| {
                let nanos = commstime::commstime(backend, cycles.max(1))
                    .unwrap()
                    .unwrap();
                Duration::from_nanos(nanos)
            })
        });
    }
    g.bench_function("crossbeam-bounded0", |b| {
        b.iter_custom(|cycles| baselines::crossbeam::commstime(cycles.max(1)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = cycle
}
criterion_main!(benches);
