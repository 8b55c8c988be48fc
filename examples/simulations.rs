//! A gem5-style suite of simulations: 12 CPU-bound stand-in simulations (4 workloads on 3 CPU
//! models), each in a fresh process (`max_tasks_per_child = 1`: a simulator with process-global
//! state runs one simulation per process), at most K at a time, each writing its files into its own
//! directory with its own stdout and stderr, results back by job ID. OS processes only: every job
//! is a fresh copy of this program (re-executed, not forked).
//!
//! ```text
//! simulations --list                  # the 12 job IDs
//! simulations --job fft-o3            # one simulation, here, in this process
//! simulations -j 2 --out sims-out     # all 12, two at a time, each in sims-out/<id>/
//! ```
//!
//! `SIM_TICKS` (default 3000000) sets how long each simulation runs; the jobs inherit it.

#[cfg(target_os = "linux")]
use cspnet::processes::{JobContext, JobOutput, JobSet};
#[cfg(target_os = "linux")]
use std::io::Write;

#[cfg(target_os = "linux")]
const WORKLOADS: [(&str, u64); 4] = [("fft", 3), ("sort", 5), ("matmul", 7), ("stream", 11)];
#[cfg(target_os = "linux")]
const CPUS: [(&str, u64); 3] = [("atomic", 1), ("timing", 2), ("o3", 4)];

/// One stand-in simulation: a deterministic pseudo-random instruction stream through a toy
/// pipeline model, `ticks` cycles long. Writes `config.ini` and `stats.txt` into its directory.
#[cfg(target_os = "linux")]
fn simulate(ctx: &JobContext, workload: u64, width: u64) -> JobOutput {
    let ticks: u64 = std::env::var("SIM_TICKS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(3_000_000);
    println!(
        "{}: pid {} simulating {ticks} ticks",
        ctx.id(),
        std::process::id()
    );
    let io = |e: std::io::Error| e.to_string();
    writeln!(
        ctx.file("config.ini").map_err(io)?,
        "[cpu]\nwidth={width}\nworkload={workload}"
    )
    .map_err(io)?;
    let (mut state, mut committed, mut stalls) = (workload, 0u64, 0u64);
    for _ in 0..ticks {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let ready = (state >> 59) % (width + 1); // instructions ready this cycle
        if ready == 0 || (state >> 40) % workload == 0 {
            stalls += 1; // a miss stalls the pipeline
        } else {
            committed += ready.min(width);
        }
    }
    let ipc = committed as f64 / ticks.max(1) as f64;
    let mut stats = ctx.file("stats.txt").map_err(io)?;
    writeln!(
        stats,
        "sim_ticks {ticks}\ncommitted {committed}\nstalls {stalls}\nipc {ipc:.4}"
    )
    .map_err(io)?;
    println!("{}: done, IPC {ipc:.3}", ctx.id());
    Ok(format!("IPC {ipc:.3} ({stalls} stall cycles)"))
}

/// The suite: one job per workload and CPU model, named `<workload>-<cpu>`.
#[cfg(target_os = "linux")]
pub(crate) fn suite() -> JobSet {
    let mut set = JobSet::new("simulations");
    for (workload, seed) in WORKLOADS {
        for (cpu, width) in CPUS {
            set = set.job(&format!("{workload}-{cpu}"), move |ctx| {
                simulate(ctx, seed, width)
            });
        }
    }
    set
}

fn main() {
    // First thing: in a re-executed job this runs the job and exits. Then --list, --job ID,
    // -j K, --out DIR and --help.
    #[cfg(target_os = "linux")]
    suite().main();
    #[cfg(not(target_os = "linux"))]
    eprintln!(
        "simulations runs every job in a fresh OS process: the processes backend is Linux-only"
    );
}
