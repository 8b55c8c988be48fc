//! Estimates pi with a farm: a farmer alternates between handing out batches of samples and taking
//! the workers' counts of hits inside the quarter circle. The farm is one generic function
//! (`common/farm.rs`), written once over the backend trait; `--backend` picks its engine.
//!
//! `cargo run --release --example monte_carlo_pi -- --backend threads --workers 2 --samples 20000000`

mod common;

use clap::Parser;
use cspnet::{Backend, with_backend};
use std::time::Instant;

/// A farm of workers estimating pi.
#[derive(Parser)]
struct Args {
    /// threads, processes or coroutines
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// Worker processes
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Points to sample in all
    #[arg(long, default_value_t = 20_000_000)]
    samples: u64,
    /// Points per job handed to a worker
    #[arg(long, default_value_t = 250_000)]
    batch: u64,
}

fn main() {
    let args = Args::parse();
    if args.workers == 0 || args.samples == 0 || args.batch == 0 {
        common::usage_error("--workers, --samples and --batch must be at least 1");
    }
    let (workers, samples, batch) = (args.workers, args.samples, args.batch);
    let start = Instant::now();
    let total = common::finish(with_backend!(args.backend, csp => {
        common::farm::pi_farm::<csp::Engine>(workers, samples, batch)
    }));
    let pi = 4.0 * total as f64 / samples as f64;
    println!(
        "backend: {}, workers: {workers}, samples: {samples}",
        args.backend
    );
    println!(
        "{:.1} ms, error {:.2e}",
        start.elapsed().as_secs_f64() * 1e3,
        (pi - std::f64::consts::PI).abs()
    );
    println!("monte_carlo_pi: pi is about {pi:.6}");
}
