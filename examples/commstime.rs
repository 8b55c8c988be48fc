//! Commstime, the classic CSP benchmark: Prefix -> Delta -> Successor -> Prefix, with Delta also
//! feeding a Consumer that times the loop. Four communications per cycle.
//!
//! `cargo run --release --example commstime -- --backend threads --cycles 100000`

mod common;

use clap::Parser;
use cspnet::{Backend, BackendError, ProcessError, with_backend};
use std::time::Instant;

/// Measures the cost of one channel communication in a four-process cycle.
#[derive(Parser)]
struct Args {
    /// threads, processes or coroutines
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// How many cycles to time (each is four communications)
    #[arg(long, default_value_t = 100_000)]
    cycles: u64,
}

fn main() {
    let args = Args::parse();
    if args.cycles == 0 {
        common::usage_error("--cycles must be at least 1");
    }
    let cycles = args.cycles;
    let nanos = common::finish(commstime(args.backend, cycles));
    let per_cycle = nanos as f64 / cycles as f64;
    println!("backend: {}, cycles: {cycles}", args.backend);
    println!("{per_cycle:.0} ns per cycle");
    println!("commstime: {:.0} ns per communication", per_cycle / 4.0);
}

/// Runs commstime and returns the nanoseconds `cycles` cycles took (start-up and warm-up excluded).
pub(crate) fn commstime(
    backend: Backend,
    cycles: u64,
) -> Result<Result<u64, ProcessError>, BackendError> {
    let out = with_backend!(backend, csp => {
        let (a, b, c, d) = (
            csp::Channel::<u64>::named("a"),
            csp::Channel::<u64>::named("b"),
            csp::Channel::<u64>::named("c"),
            csp::Channel::<u64>::named("d"),
        );
        let (aw, ar, bw, br) = (a.writer(), a.reader(), b.writer(), b.reader());
        let (cw, cr, dw, dr) = (c.writer(), c.reader(), d.writer(), d.reader());
        csp::parallel([
            csp::process(move || {
                aw.write(0)?;
                loop {
                    aw.write(cr.read()?)?;
                }
            })
            .named("prefix"),
            csp::process(move || loop {
                let v = ar.read()?;
                bw.write(v)?;
                dw.write(v)?;
            })
            .named("delta"),
            csp::process(move || loop {
                cw.write(br.read()? + 1)?;
            })
            .named("successor"),
            csp::process(move || {
                for _ in 0..cycles.min(1_000) {
                    dr.read()?; // warm up
                }
                let start = Instant::now();
                for _ in 0..cycles {
                    dr.read()?;
                }
                let nanos = start.elapsed().as_nanos() as u64;
                dr.poison(); // shut the network down
                Ok(nanos)
            })
            .named("consumer"),
        ])
    })?;
    Ok(out.map(|o| o[3].expect("the consumer ends normally")))
}
