//! Alternation fan-in: one process selecting over 2…64 input channels, each fed by its own writer;
//! ns per message received (an iteration is one message), on each backend and crossbeam's `Select`.

mod scenarios;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use scenarios::{backends, baselines};

const INPUTS: [usize; 4] = [2, 8, 32, 64];

fn fan_in(c: &mut Criterion) {
    let mut g = c.benchmark_group("fan_in");
    for k in INPUTS {
        for backend in backends() {
            g.bench_with_input(
                BenchmarkId::new(format!("cspnet-{backend}"), k),
                &k,
                |b, &k| {
                    b.iter_custom(|n| scenarios::fan_in(backend, k, n.max(1)).unwrap().unwrap())
                },
            );
        }
        g.bench_with_input(BenchmarkId::new("crossbeam-select", k), &k, |b, &k| {
            b.iter_custom(|n| baselines::crossbeam::fan_in(k, n.max(1)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = scenarios::quick();
    targets = fan_in
}
criterion_main!(benches);
