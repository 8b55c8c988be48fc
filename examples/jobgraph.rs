//! A small regression, DVSim style: build, then 20 tests (one fails a log check, one exits non-zero,
//! one hangs and is killed by its timeout), then a coverage merge that needs any passing test.
//!
//! `cargo run --release --example jobgraph -- -j 4 --backend threads`
//!
//! The jobs come from a JSON description (a list of `cspnet::jobs::Job`, default
//! `examples/jobgraph/regression.json`). Ctrl-C once stops scheduling and lets running jobs
//! finish; twice kills them. The exit code is 1 when any job did not pass.

mod common;

use clap::Parser;
use cspnet::jobs::{Job, JobGraph, Scheduler};
use cspnet::{Backend, with_backend};
use std::path::PathBuf;

/// Runs a job graph from a description file with live status and a summary table.
#[derive(Parser)]
struct Args {
    /// threads, processes or coroutines
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// How many jobs may run at once
    #[arg(short = 'j', long, default_value_t = 4)]
    jobs: usize,
    /// The jobs: a JSON list of jobs
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/jobgraph/regression.json"))]
    file: PathBuf,
    /// Where the jobs run and write their logs (default: a new directory under the temp dir)
    #[arg(long)]
    out: Option<PathBuf>,
    /// How many jobs using "license-x" may run at once
    #[arg(long, default_value_t = 2)]
    licenses: usize,
    /// Exit 0 even when jobs fail (the description fails some on purpose)
    #[arg(long)]
    exit_zero: bool,
}

fn main() {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.file)
        .unwrap_or_else(|e| common::usage_error(&format!("{}: {e}", args.file.display())));
    let jobs: Vec<Job> = serde_json::from_str(&text)
        .unwrap_or_else(|e| common::usage_error(&format!("{}: {e}", args.file.display())));
    let graph = JobGraph::new()
        .jobs(jobs)
        .build()
        .unwrap_or_else(|e| common::usage_error(&e.to_string()));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("jobgraph-{}", std::process::id())));
    std::fs::create_dir_all(&out)
        .and_then(|()| std::env::set_current_dir(&out))
        .unwrap_or_else(|e| common::usage_error(&format!("{}: {e}", out.display())));
    let report = with_backend!(args.backend, csp => {
        Scheduler::<csp::Engine>::new(graph)
            .jobs(args.jobs)
            .resource_cap("license-x", args.licenses)
            .display()
            .handle_signals()
            .run()
    });
    let report = match report {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => common::usage_error(&e.to_string()),
        Err(e) => common::usage_error(&e.to_string()),
    };
    println!("{report}\nlogs in {}", out.display());
    println!("jobgraph: {}", report.tally());
    if !args.exit_zero {
        std::process::exit(report.exit_code());
    }
}
