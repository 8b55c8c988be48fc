//! A ring of N processes passing T tokens; each token makes H hops. Prints the cost of one hop.
//!
//! `cargo run --release --example token_ring -- --backend threads --processes 256 --tokens 1 --hops 100000`

mod common;

use clap::Parser;
use cspnet::{Backend, BackendError, ProcessError, with_backend};
use std::time::Instant;

/// Measures process-to-process hand-off around a ring.
#[derive(Parser)]
struct Args {
    /// threads, processes or coroutines
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// Processes in the ring
    #[arg(long, default_value_t = 256)]
    processes: u64,
    /// Tokens circulating at once (fewer than --processes)
    #[arg(long, default_value_t = 1)]
    tokens: u64,
    /// Hops each token makes
    #[arg(long, default_value_t = 100_000)]
    hops: u64,
}

fn main() {
    let args = Args::parse();
    if args.processes < 2 {
        common::usage_error("--processes must be at least 2");
    }
    if args.tokens == 0 || args.tokens >= args.processes {
        common::usage_error(
            "--tokens must be at least 1 and fewer than --processes (a full ring of rendezvous channels deadlocks)",
        );
    }
    if args.hops == 0 {
        common::usage_error("--hops must be at least 1");
    }
    let (n, tokens, hops) = (args.processes as usize, args.tokens, args.hops);
    let nanos = common::finish(ring(args.backend, n, tokens, hops));
    let total = tokens * hops;
    println!(
        "backend: {}, processes: {n}, tokens: {tokens}, hops per token: {hops}",
        args.backend
    );
    println!("{total} hops in {:.1} ms", nanos as f64 / 1e6);
    println!("token_ring: {:.0} ns per hop", nanos as f64 / total as f64);
}

/// Runs the ring and returns the nanoseconds the `tokens × hops` hops took (start-up excluded).
pub(crate) fn ring(
    backend: Backend,
    n: usize,
    tokens: u64,
    hops: u64,
) -> Result<Result<u64, ProcessError>, BackendError> {
    let out = with_backend!(backend, csp => {
        let ring: Vec<csp::Channel<u64>> = (0..n).map(|_| csp::Channel::new()).collect();
        let go = csp::Channel::<()>::named("go");
        let done = csp::Channel::<()>::named("done");
        let mut procs = Vec::with_capacity(n + 1);
        for i in 0..n {
            let (inp, out) = (ring[i].reader(), ring[(i + 1) % n].writer());
            let done = done.writer();
            let go = (i == 0).then(|| go.reader());
            procs.push(csp::process(move || {
                if let Some(go) = go {
                    go.read()?;
                    for _ in 0..tokens {
                        out.write(hops)?; // each token carries the hops it has left
                    }
                }
                loop {
                    let left = inp.read()?;
                    if left <= 1 {
                        done.write(())?;
                    } else {
                        out.write(left - 1)?;
                    }
                }
            }));
        }
        let (go, done, first) = (go.writer(), done.reader(), ring[0].clone());
        procs.push(
            csp::process(move || {
                let start = Instant::now();
                go.write(())?;
                for _ in 0..tokens {
                    done.read()?;
                }
                let nanos = start.elapsed().as_nanos() as u64;
                first.poison(); // the poison travels round the ring and ends every node
                Ok(nanos)
            })
            .named("timer"),
        );
        drop(ring);
        csp::parallel(procs)
    })?;
    Ok(out.map(|o| o[n].expect("the timer ends normally")))
}
