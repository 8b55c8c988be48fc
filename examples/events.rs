//! Fork after initialise (AthenaMP's pattern): a large read-only table is built once in the
//! parent, then W forked workers share it copy-on-write while they process events from a queue.
//! Each worker writes its own output file; the parent merges them, checks that every event is
//! there exactly once with the right result, and prints the memory every process really uses:
//! the sum of RSS counts the table once per process, the sum of PSS about once in all.
//!
//! OS processes only (on threads and coroutines every worker shares the parent's memory anyway).
//!
//! `cargo run --release --example events -- --workers 4 --table-mib 1024 --events 10000`

#[cfg(all(feature = "processes", target_os = "linux"))]
fn main() {
    run::main();
}

#[cfg(not(all(feature = "processes", target_os = "linux")))]
fn main() {
    eprintln!("error: the events example needs the processes backend (Linux, feature `processes`)");
    std::process::exit(2);
}

#[cfg(all(feature = "processes", target_os = "linux"))]
mod run {
    use clap::{Parser, ValueEnum};
    use cspnet::processes::forked::{Bytes, Dispatch, ForkWorkers};
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Instant;

    /// Builds a large read-only table once, forks workers that share it copy-on-write, processes
    /// events from a queue, merges the workers' outputs and prints their memory (RSS, PSS).
    #[derive(Parser)]
    struct Args {
        /// Worker processes, forked after the table is built
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Size of the table in MiB
        #[arg(long, default_value_t = 1024)]
        table_mib: u64,
        /// Events to process
        #[arg(long, default_value_t = 10_000)]
        events: u64,
        /// How events are handed out
        #[arg(long, value_enum, default_value = "queue")]
        dispatch: How,
        /// Events per hand-out with `--dispatch chunks`
        #[arg(long, default_value_t = 64)]
        chunk: usize,
        /// Directory for the workers' directories and the merged output (default: a temporary
        /// directory, removed at the end)
        #[arg(long)]
        out: Option<PathBuf>,
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum How {
        Queue,
        RoundRobin,
        Chunks,
    }

    /// Reads per event: each event sums a strided slice of the table.
    const READS: u64 = 2048;

    /// splitmix64: a cheap generator to fill the table.
    fn mix(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The event's result: the sum of `READS` entries spread over the whole table, starting at an
    /// offset the event picks.
    fn process(table: &[u64], event: u64) -> u64 {
        let len = table.len() as u64;
        let stride = (len / READS).max(1);
        let start = mix(event) % stride;
        (0..READS.min(len))
            .map(|k| table[((start + k * stride) % len) as usize])
            .fold(0, u64::wrapping_add)
    }

    fn fail(message: &str) -> ! {
        eprintln!("error: {message}");
        std::process::exit(1);
    }

    pub(super) fn main() {
        let args = Args::parse();
        if args.workers == 0 || args.table_mib == 0 || args.events == 0 || args.chunk == 0 {
            eprintln!("error: --workers, --table-mib, --events and --chunk must be at least 1");
            std::process::exit(2);
        }
        let temp;
        let root = match &args.out {
            Some(dir) => dir.clone(),
            None => {
                temp = tempfile::tempdir()
                    .unwrap_or_else(|e| fail(&format!("no temporary directory: {e}")));
                temp.path().to_path_buf()
            }
        };

        // Initialise once: the expensive, read-only state every event needs.
        let start = Instant::now();
        let entries = args.table_mib * (1 << 20) / 8;
        let mut table = Vec::new();
        if let Err(e) = table.try_reserve_exact(entries as usize) {
            fail(&format!(
                "no memory for a {} MiB table: {e}",
                args.table_mib
            ));
        }
        table.extend((0..entries).map(mix));
        let table = Arc::new(table);
        let table_bytes = entries * 8;
        println!(
            "table: {} built in {:.2} s",
            Bytes(table_bytes),
            start.elapsed().as_secs_f64()
        );

        let bar = ProgressBar::new(args.events).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events {elapsed}")
                .expect("a valid template"),
        );
        let dispatch = match args.dispatch {
            How::Queue => Dispatch::Queue,
            How::RoundRobin => Dispatch::RoundRobin,
            How::Chunks => Dispatch::Chunks(args.chunk),
        };
        let (pass_table, work_table) = (Arc::clone(&table), Arc::clone(&table));
        let progress = bar.clone();
        let start = Instant::now();
        let run = ForkWorkers::new(args.workers, &root)
            // Nothing buffered may be written twice, once by the parent and once by a child.
            .before_fork(|| std::io::stdout().flush())
            .after_fork(move |ctx| {
                // One full pass over the table: every worker maps all of it, as a real job
                // touches all its geometry and conditions. Its checksum goes to the worker's
                // directory (the working directory), beside its output.
                let sum = pass_table.iter().fold(0, |a: u64, &v| a.wrapping_add(v));
                std::fs::write("pass.txt", format!("rank {} checksum {sum}\n", ctx.rank()))
            })
            .dispatch(dispatch)
            .progress(move |done| progress.set_position(done))
            .run(0..args.events, move |ctx, event| {
                writeln!(ctx, "{event} {}", process(&work_table, event))
            })
            .unwrap_or_else(|e| fail(&e.to_string()));
        bar.finish_and_clear();
        let elapsed = start.elapsed();
        for failure in run.failures() {
            eprintln!("{failure}");
        }
        if !run.is_complete() {
            fail(&format!(
                "{} worker(s) failed and {} event(s) were lost",
                run.failures().len(),
                run.lost().len()
            ));
        }

        // Merge in the parent and check: every event exactly once, with the right result.
        let merged = root.join("merged.txt");
        let lines = run
            .merge_sorted_by_key(&merged, |l| {
                l.split(' ').next().and_then(|id| id.parse::<u64>().ok())
            })
            .unwrap_or_else(|e| fail(&format!("cannot merge into {}: {e}", merged.display())));
        let text = std::fs::read_to_string(&merged)
            .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", merged.display())));
        for (want, line) in (0..args.events).zip(text.lines()) {
            let (id, result) = line
                .split_once(' ')
                .unwrap_or_else(|| fail(&format!("bad line {line:?}")));
            if id != want.to_string() || result != process(&table, want).to_string() {
                fail(&format!(
                    "merged line {line:?}: expected event {want} with its result"
                ));
            }
        }
        if lines != args.events {
            fail(&format!("merged {lines} lines for {} events", args.events));
        }
        println!(
            "{} events on {} workers in {:.2} s ({}), merged into {}",
            args.events,
            args.workers,
            elapsed.as_secs_f64(),
            run.events_done()
                .iter()
                .enumerate()
                .map(|(rank, n)| format!("worker {rank}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            if args.out.is_some() {
                merged.display().to_string()
            } else {
                "a temporary file".into()
            }
        );
        let mem = run.memory().unwrap_or_else(|e| fail(&e.to_string()));
        println!("{mem}");
        println!(
            "events: {} workers, {} events, summed RSS {}, summed PSS {} ({} table shared by the parent and {} workers)",
            args.workers,
            args.events,
            Bytes(mem.total_rss()),
            Bytes(mem.total_pss()),
            Bytes(table_bytes),
            mem.workers.len(),
        );
    }
}
