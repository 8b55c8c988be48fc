//! Farms: Monte Carlo pi and Mandelbrot with 1, 2 and 4 workers on each backend (an iteration is
//! one whole run of the network), the library's `Farm` with 2 workers on each backend, against
//! rayon alone on the same kernel.

mod scenarios;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use scenarios::{Image, Kernel, backends};
use std::time::Duration;

const WORKERS: [u32; 3] = [1, 2, 4];
const SAMPLES: u64 = 4_000_000;
const BATCH: u64 = 100_000;
const IMAGE: Image = Image {
    width: 400,
    height: 300,
    max_iter: 256,
};

fn repeat(iters: u64, mut once: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| once()).sum()
}

fn pi(c: &mut Criterion) {
    let mut g = c.benchmark_group("monte_carlo_pi");
    for backend in backends() {
        for w in WORKERS {
            g.bench_with_input(
                BenchmarkId::new(format!("cspnet-{backend}"), w),
                &w,
                |b, &w| {
                    b.iter_custom(|iters| {
                        repeat(iters, || {
                            scenarios::pi_farm(backend, w, SAMPLES, BATCH)
                                .unwrap()
                                .unwrap()
                        })
                    })
                },
            );
        }
    }
    for backend in backends() {
        g.bench_with_input(
            BenchmarkId::new(format!("Farm-{backend}"), 2),
            &2,
            |b, &w| {
                b.iter_custom(|iters| {
                    repeat(iters, || {
                        scenarios::pi_farm_layer(backend, w, SAMPLES, BATCH)
                            .unwrap()
                            .unwrap()
                    })
                })
            },
        );
    }
    g.bench_function("rayon-par_iter", |b| {
        b.iter_custom(|iters| {
            repeat(iters, || {
                scenarios::pi_rayon(SAMPLES, BATCH, scenarios::cores())
            })
        })
    });
    g.finish();
}

fn mandelbrot(c: &mut Criterion) {
    let mut g = c.benchmark_group("mandelbrot");
    for backend in backends() {
        for (kernel, name) in [(Kernel::Plain, "loop"), (Kernel::Rayon, "rayon")] {
            for w in WORKERS {
                let id = BenchmarkId::new(format!("cspnet-{backend}-{name}"), w);
                g.bench_with_input(id, &w, |b, &w| {
                    b.iter_custom(|iters| {
                        repeat(iters, || {
                            scenarios::mandelbrot_farm(backend, w, IMAGE, kernel)
                                .unwrap()
                                .unwrap()
                        })
                    })
                });
            }
        }
    }
    for backend in backends() {
        g.bench_with_input(
            BenchmarkId::new(format!("Farm-{backend}"), 2),
            &2,
            |b, &w| {
                b.iter_custom(|iters| {
                    repeat(iters, || {
                        scenarios::mandelbrot_farm_layer(backend, w, IMAGE)
                            .unwrap()
                            .unwrap()
                    })
                })
            },
        );
    }
    g.bench_function("rayon-into_par_iter", |b| {
        b.iter_custom(|iters| {
            repeat(iters, || {
                scenarios::mandelbrot_rayon(IMAGE, scenarios::cores())
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = scenarios::quick();
    targets = pi, mandelbrot
}
criterion_main!(benches);
