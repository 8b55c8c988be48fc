//! Estimates pi with a farm: a farmer hands out batches of samples, workers count hits inside the
//! quarter circle, a collector adds them up.
//!
//! `cargo run --release --example monte_carlo_pi -- --backend threads --workers 2 --samples 20000000`

mod common;

use clap::Parser;
use common::kernels::pi_hits;
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
    let out = common::finish(with_backend!(args.backend, csp => {
        // The farmer posts every job at once and leaves, and results queue a slot per worker: a
        // worker never waits for the farmer or the collector, and the farmer is never woken to
        // refill the queue (each wake-up takes a core from a worker).
        let jobs = csp::Channel::<(u64, u64)>::with_buffer(samples.div_ceil(batch) as usize);
        let hits = csp::Channel::<u64>::with_buffer(workers as usize);
        let mut procs = Vec::new();
        let jw = jobs.writer();
        procs.push(
            csp::process(move || {
                let (mut seed, mut left) = (0, samples);
                while left > 0 {
                    let n = left.min(batch);
                    jw.write((seed, n))?;
                    seed += 1;
                    left -= n;
                }
                Ok(0)
            })
            .named("farmer"),
        );
        for w in 0..workers {
            let (jr, hw) = (jobs.reader(), hits.writer());
            procs.push(
                csp::process(move || {
                    for job in jr {
                        let (seed, n) = job?;
                        hw.write(pi_hits(seed, n))?;
                    }
                    Ok(0)
                })
                .named(&format!("worker-{w}")),
            );
        }
        let hr = hits.reader();
        procs.push(
            csp::process(move || {
                let mut total = 0;
                for h in hr {
                    total += h?;
                }
                Ok(total)
            })
            .named("collector"),
        );
        drop((jobs, hits));
        csp::parallel(procs)
    }));
    let total = out
        .last()
        .and_then(|o| o.ok())
        .unwrap_or_else(|| common::usage_error("the collector ended early"));
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
