//! A farm written once over the backend trait (`examples/common/farm.rs`) gives the same answer on
//! every backend: the proof that code above the channels can be generic.

#[path = "../examples/common/kernels.rs"]
#[allow(dead_code)] // the Mandelbrot kernel is the examples'
mod kernels;

#[path = "../examples/common/farm.rs"]
mod farm;

use cspnet::generic::Carries;

/// What the farm must find: the kernel run serially over the same jobs.
fn expected(samples: u64, batch: u64) -> u64 {
    let (mut seed, mut left, mut total) = (0, samples, 0);
    while left > 0 {
        let n = left.min(batch);
        total += kernels::pi_hits(seed, n);
        (seed, left) = (seed + 1, left - n);
    }
    total
}

fn check<B: Carries<(u64, u64)> + Carries<u64>>() {
    // 37 jobs over 3 workers: more jobs than the queue holds, a short last job.
    let (samples, batch) = (36_100, 1_000);
    assert_eq!(
        farm::pi_farm::<B>(3, samples, batch).unwrap(),
        expected(samples, batch),
        "{}",
        B::NAME
    );
}

#[test]
fn the_farm_runs_on_threads() {
    check::<cspnet::threads::Engine>();
}

#[test]
fn the_farm_runs_on_coroutines() {
    check::<cspnet::coroutines::Engine>();
}

#[cfg(target_os = "linux")]
#[test]
fn the_farm_runs_on_processes() {
    check::<cspnet::processes::Engine>();
}
