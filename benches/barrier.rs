//! Barrier: N processes enrolled on one barrier, each syncing in a loop; ns per sync (an iteration
//! is one sync that every member passes), on each backend. Compare a sync of 64 with 64 hops of
//! the `token_ring` bench's ring of 64.

mod scenarios;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use scenarios::{backends, per_iter};

const MEMBERS: [usize; 3] = [2, 8, 64];
/// Syncs per timed run at least, whatever criterion asks for.
const MIN: u64 = 1_000;

fn barrier(c: &mut Criterion) {
    let mut g = c.benchmark_group("barrier");
    for n in MEMBERS {
        for backend in backends() {
            let id = BenchmarkId::new(format!("cspnet-{backend}"), n);
            g.bench_with_input(id, &n, |b, &n| {
                b.iter_custom(|iters| {
                    per_iter(iters, MIN, |syncs| {
                        scenarios::barrier(backend, n, syncs).unwrap().unwrap()
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = scenarios::quick();
    targets = barrier
}
criterion_main!(benches);
