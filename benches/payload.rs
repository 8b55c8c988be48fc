//! Payload size: `Vec<u8>` messages of 8 B … 16 MiB through one channel, time per message on each
//! backend, against cloning a buffer of the same size (the copy every message needs at least).

mod scenarios;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scenarios::{backends, per_iter};

const SIZES: [usize; 5] = [8, 1 << 10, 64 << 10, 1 << 20, 16 << 20];

/// Messages per timed run at least: about 4 MiB, between 2 and 1000 messages.
fn min(size: usize) -> u64 {
    ((4u64 << 20) / size as u64).clamp(2, 1_000)
}

fn payload(c: &mut Criterion) {
    let mut g = c.benchmark_group("payload");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        for backend in backends() {
            let id = BenchmarkId::new(format!("cspnet-{backend}"), size);
            g.bench_with_input(id, &size, |b, &size| {
                b.iter_custom(|iters| {
                    per_iter(iters, min(size), |n| {
                        scenarios::payload(backend, size, n).unwrap().unwrap()
                    })
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("clone", size), &size, |b, &size| {
            b.iter_custom(|iters| per_iter(iters, min(size), |n| scenarios::clone_floor(size, n)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = scenarios::quick();
    targets = payload
}
criterion_main!(benches);
