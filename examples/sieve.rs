//! The prime sieve as a growing pipeline: each prime found starts a new filter process.
//!
//! `cargo run --release --example sieve -- --backend threads --limit 2000`
//!
//! PyCSP's version hit a recursion limit and hung at about 90 processes; here every stage is its
//! own process, started by the stage before it, and the pipeline grows to one process per prime.

mod common;

use clap::Parser;
use cspnet::{Backend, with_backend};

/// Finds the primes up to a limit with one filter process per prime.
#[derive(Parser)]
struct Args {
    /// threads, processes or coroutines
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// Find primes up to this number
    #[arg(long, default_value_t = 2_000)]
    limit: u64,
}

fn main() {
    let args = Args::parse();
    if args.limit < 2 {
        common::usage_error("--limit must be at least 2");
    }
    let limit = args.limit;
    let out = common::finish(with_backend!(args.backend, csp => {
        /// One stage: the first number to reach it is a prime; it filters out that prime's multiples
        /// and hands the rest to a stage it starts itself. Returns how many stages follow it.
        fn stage(input: csp::Reader<u64>, primes: csp::Writer<u64>) -> csp::Process<u64> {
            csp::process(move || {
                let p = match input.read() {
                    Ok(p) => p,
                    Err(e) if e.is_retired() => return Ok(0), // the end of the pipeline
                    Err(e) => return Err(e),
                };
                primes.write(p)?;
                let next = csp::Channel::<u64>::new();
                let rest = csp::spawn([stage(next.reader(), primes.clone())]);
                drop(primes);
                let out = next.writer();
                for v in &input {
                    let v = v?;
                    if v % p != 0 {
                        out.write(v)?;
                    }
                }
                drop(out); // retires `next`, so the following stage ends too
                match rest.join() {
                    Ok(depth) => Ok(1 + depth[0]?),
                    Err(e) => panic!("a later stage failed: {e}"),
                }
            })
        }

        let numbers = csp::Channel::<u64>::named("numbers");
        let primes = csp::Channel::<u64>::named("primes");
        let (nw, pr) = (numbers.writer(), primes.reader());
        csp::parallel([
            csp::process(move || {
                for n in 2..=limit {
                    nw.write(n)?;
                }
                Ok(0)
            })
            .named("generate"),
            stage(numbers.reader(), primes.writer()).named("stage-1"),
            csp::process(move || {
                let (mut count, mut largest) = (0, 0);
                for p in pr {
                    largest = p?;
                    count += 1;
                }
                Ok(count * 1_000_000_000 + largest)
            })
            .named("collect"),
        ])
    }));
    let (stages, packed) = match (&out[1], &out[2]) {
        (Ok(s), Ok(p)) => (*s, *p),
        (a, b) => common::usage_error(&format!("the sieve ended early: {a:?} {b:?}")),
    };
    let (count, largest) = (packed / 1_000_000_000, packed % 1_000_000_000);
    println!("backend: {}, limit: {limit}", args.backend);
    println!("{stages} filter processes were started, one per prime");
    println!("sieve: {count} primes up to {limit}, the largest {largest}");
}
