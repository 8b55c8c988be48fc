//! Alternation fan-in: one process selecting over 2…64 input channels, each fed by its own writer;
//! ns per message received (an iteration is one message), on each backend and crossbeam's `Select`.

mod scenarios;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use scenarios::{backends, baselines, per_iter};

const INPUTS: [usize; 4] = [2, 8, 32, 64];
/// Messages per timed run at least, whatever criterion asks for.
const MIN: u64 = 5_000;

fn fan_in(c: &mut Criterion) {
    let mut g = c.benchmark_group("fan_in");
    for k in INPUTS {
        for backend in backends() {
            let id = BenchmarkId::new(format!("cspnet-{backend}"), k);
            g.bench_with_input(id, &k, |b, &k| {
                b.iter_custom(|iters| {
                    per_iter(iters, MIN, |n| {
                        scenarios::fan_in(backend, k, n).unwrap().unwrap()
                    })
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("crossbeam-select", k), &k, |b, &k| {
            b.iter_custom(|iters| per_iter(iters, MIN, |n| baselines::crossbeam::fan_in(k, n)))
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
