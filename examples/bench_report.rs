//! Runs a quick version of every benchmark scenario on every backend and raw baseline, and writes
//! the table to docs/benchmarks.md and the plots to docs/*.svg.
//!
//! `cargo run --release --example bench_report` (a few minutes on two cores; `--out DIR` writes
//! elsewhere). The scenarios are the criterion benches' own (benches/scenarios/mod.rs). Every
//! figure is the median of five runs, each sized to take about 40 ms; a backend that is not built
//! in, or a run that fails, panics or hangs, shows as "n/a" with the reason.

#[path = "../benches/scenarios/mod.rs"]
mod scenarios;

use cspnet::{Backend, BackendError};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use scenarios::{Image, Kernel, Run, baselines};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one timed run should take, roughly.
const TARGET: Duration = Duration::from_millis(40);
/// Timed runs per figure; the median is kept.
const REPS: usize = 5;
/// A measurement that has not finished by then is reported as hung (and left behind).
const LIMIT: Duration = Duration::from_secs(60);

const RING_SIZES: [usize; 6] = [2, 4, 16, 64, 256, 1024];
const TOKEN_RING: usize = 64;
const TOKENS: [u64; 7] = [1, 2, 4, 8, 16, 32, 63];
const FAN_IN: [usize; 6] = [2, 4, 8, 16, 32, 64];
const BARRIER: [usize; 4] = [2, 8, 64, 256];
const WORKERS: [u32; 3] = [1, 2, 4];
const PI_SAMPLES: u64 = 16_000_000;
const PI_BATCH: u64 = 200_000;
const IMAGE: Image = Image {
    width: 800,
    height: 600,
    max_iter: 256,
};
const PAYLOADS: [usize; 8] = [8, 64, 512, 4 << 10, 32 << 10, 256 << 10, 2 << 20, 16 << 20];
const SPAWN: u64 = 1_000;
/// Ring sizes tried for the scale limit, in order, until one fails.
const SCALE: [usize; 10] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
];
/// Memory budget of one scale attempt (the whole process tree, proportional set size).
const BUDGET: u64 = 4 << 30;
/// Time cap of one scale attempt, start-up included.
const CAP: Duration = Duration::from_secs(45);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--scale-child") {
        scale_child(&args[1..]);
    }
    let out = match args.as_slice() {
        [] => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docs")),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => {
            eprintln!("usage: bench_report [--out DIR]");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let load_before = load();
    // Each table adds its own steps (sizing, then each round); scale has one per backend.
    let progress = ProgressBar::new(Backend::ALL.len() as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let p = &progress;
    // First, while this process is small: a child's peak RSS from wait4 starts from its parent's.
    let scale = scale_table(p);
    let ring = ring_table(p);
    let tokens = tokens_table(p);
    let commstime = commstime_table(p);
    let fan_in = fan_in_table(p);
    let barrier = barrier_table(p);
    let pi = farm_table(p, Farm::Pi);
    let mandelbrot = farm_table(p, Farm::Mandelbrot);
    let by_turns = [Farm::Pi, Farm::Mandelbrot].map(|f| farm_by_turns(p, f));
    let payload = payload_table(p);
    let spawn = spawn_table(p);
    progress.finish_with_message("done");

    fs::create_dir_all(&out).unwrap_or_else(|e| panic!("cannot create {}: {e}", out.display()));
    let plots = [
        ("ring.svg", plot_ring(&out.join("ring.svg"), &ring)),
        ("tokens.svg", plot_tokens(&out.join("tokens.svg"), &tokens)),
        ("fan_in.svg", plot_fan_in(&out.join("fan_in.svg"), &fan_in)),
        (
            "speedup.svg",
            plot_speedup(&out.join("speedup.svg"), &pi, &mandelbrot),
        ),
        (
            "payload.svg",
            plot_payload(&out.join("payload.svg"), &payload),
        ),
    ];
    let mut md = String::new();
    header(&mut md, started.elapsed(), &load_before);
    goals(&mut md, &ring, &barrier, &pi, &mandelbrot, &by_turns);
    for (name, result) in &plots {
        if let Err(e) = result {
            let _ = writeln!(md, "> plot {name} could not be drawn: {e}\n");
        }
    }
    let _ = writeln!(
        md,
        "## Token ring\n\nOne token around a ring of N processes; ns per hop (start-up not timed). \
         Baselines: crossbeam `bounded(0)` on threads, may `mpsc` on coroutines, and a futex \
         hand-off between OS processes over shared memory (N = 2 is the two-process ping-pong).\n\n\
         ![ns per hop against ring size](ring.svg)\n"
    );
    ring.markdown(&mut md, num);
    let _ = writeln!(
        md,
        "## Concurrent tokens\n\nT tokens at once in a ring of {TOKEN_RING}; million hops per second (higher is better).\n\n\
         ![hops per second against tokens](tokens.svg)\n"
    );
    tokens.markdown(&mut md, |v| num(1e3 / v));
    let _ = writeln!(
        md,
        "## Commstime\n\nPrefix → Delta → Successor → Consumer; ns per cycle (four communications).\n"
    );
    commstime.markdown(&mut md, num);
    let _ = writeln!(
        md,
        "## Alternation fan-in\n\nOne process selecting over K input channels, each fed by its own \
         writer; ns per message received.\n\n![ns per message against inputs](fan_in.svg)\n"
    );
    fan_in.markdown(&mut md, num);
    let _ = writeln!(
        md,
        "## Barrier\n\nN processes enrolled on one barrier, each syncing in a loop; ns per sync \
         (every member passing it once). The goal below compares a sync of 64 with 64 hops of \
         the ring of 64.\n"
    );
    barrier.markdown(&mut md, num);
    let _ = writeln!(
        md,
        "## Monte Carlo pi\n\nA farm (farmer, W workers, collector) over {PI_SAMPLES} samples in jobs \
         of {PI_BATCH}; ms from every worker being ready to the collector having the last result \
         (process start-up is not timed: see *Starting a process*). rayon runs the same jobs with \
         `par_iter` on a pool of W threads. `Farm`: the library's `cspnet::generic::Farm` on the \
         same jobs, each under its own ID; its whole run is timed, worker start-up included. The goals \
         compare the Farm with 2 workers with rayon on every core run by turns ({TURNS} turns of \
         rayon, the Farm on threads, the Farm on processes, rayon), as the median of the turns' \
         ratios.\n\n\
         ![speedup against workers](speedup.svg)\n"
    );
    pi.markdown(&mut md, |v| num(v / 1e6));
    speedups(&mut md, &pi);
    let _ = writeln!(
        md,
        "## Mandelbrot\n\n{}×{} pixels, {} iterations; ms from every worker being ready to the last rows (start-up not timed). `loop`: one row per \
         job, the kernel a plain Rust loop (PyCSP's C-module variant); `rayon`: a band of rows per \
         job, which the worker hands to `into_par_iter` on a pool of {} threads (PyCSP's numpy \
         variant). rayon alone: `into_par_iter` over rows on a pool of W threads. `Farm`: the \
         library's `cspnet::generic::Farm`, a band of a few rows per job (about 64 bands per worker), its \
         whole run timed, worker start-up included.\n",
        IMAGE.width,
        IMAGE.height,
        IMAGE.max_iter,
        scenarios::cores()
    );
    mandelbrot.markdown(&mut md, |v| num(v / 1e6));
    speedups(&mut md, &mandelbrot);
    let _ = writeln!(
        md,
        "## Payload size\n\n`Vec<u8>` messages through one channel (the writer clones its buffer for \
         each); µs per message. `clone` is the floor: allocating and copying the same bytes.\n\n\
         ![time per message against payload size](payload.svg)\n"
    );
    payload.markdown(&mut md, |v| num(v / 1e3));
    let _ = writeln!(
        md,
        "## Starting a process\n\n`parallel` of {SPAWN} processes that return at once; µs per process.\n"
    );
    spawn.markdown(&mut md, |v| num(v / 1e3));
    md.push_str(&scale);
    let path = out.join("benchmarks.md");
    fs::write(&path, md).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    for (name, result) in &plots {
        match result {
            Ok(()) => println!("wrote {}", out.join(name).display()),
            Err(e) => println!("could not draw {name}: {e}"),
        }
    }
    println!(
        "wrote {} in {:.0} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// One figure (nanoseconds per unit of the scenario), or why there is none.
type Cell = Result<f64, String>;

/// What a member of a scenario measures: the time `units` units of work took.
type Timed = Arc<dyn Fn(u64) -> Result<Duration, String> + Send + Sync>;

/// A cspnet network's result, with the backend's absence or the network's failure as the reason.
fn flat(run: Run<Duration>) -> Result<Duration, String> {
    match run {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(format!("the network failed: {e}")),
        Err(BackendError::NotBuilt(b)) => Err(format!("not built in (cargo feature `{b}` is off)")),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `f` on its own thread under [`LIMIT`], catching a panic: a crashed or hung network
/// becomes a reason in the table instead of ending the run.
fn guarded<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("measure".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(format!("panicked: {msg}"))
            });
            let _ = tx.send(r);
        })
        .map_err(|e| format!("could not start a thread: {e}"))?;
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| Err(format!("no result within {} s", LIMIT.as_secs())))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How many units of work one timed run of a member does.
#[derive(Clone, Copy)]
enum Size {
    /// Enough for about [`TARGET`]: a first run of `first` units sizes the rest (at most `max`).
    Units { first: u64, max: u64 },
    /// One whole run of the scenario (after a warm-up run).
    Whole,
}

/// A backend or baseline in a scenario, and what to time for a given column value.
type Member = (String, Box<dyn Fn(f64) -> Timed>);

fn member(name: impl Into<String>, timed: impl Fn(f64) -> Timed + 'static) -> Member {
    (name.into(), Box::new(timed))
}

fn timed(f: impl Fn(u64) -> Result<Duration, String> + Send + Sync + 'static) -> Timed {
    Arc::new(f)
}

/// The units each timed run will do, from one untimed run.
fn calibrate(t: &Timed, size: Size) -> Result<u64, String> {
    let t = t.clone();
    match size {
        Size::Whole => guarded(move || t(1)).map(|_| 1),
        Size::Units { first, max } => {
            let d = guarded(move || t(first))?;
            let scaled = first as f64 * TARGET.as_secs_f64() / d.as_secs_f64().max(1e-6);
            Ok((scaled as u64).clamp(first, max.max(first)))
        }
    }
}

/// One scenario's figures: a row per backend or baseline, a column per parameter value.
struct Table {
    /// What the columns vary, e.g. "ring size".
    param: String,
    /// The parameter values.
    columns: Vec<f64>,
    /// How the columns are headed.
    headings: Vec<String>,
    rows: Vec<Row>,
}

/// A backend or baseline and its figure in each column.
struct Row {
    name: String,
    cells: Vec<Cell>,
}

impl Table {
    fn new(param: &str, columns: impl IntoIterator<Item = f64>) -> Self {
        let columns: Vec<f64> = columns.into_iter().collect();
        Table {
            param: param.to_owned(),
            headings: columns.iter().map(|&c| label(c)).collect(),
            columns,
            rows: Vec::new(),
        }
    }

    /// Measures every member in every column. After one untimed run of each cell (which sizes
    /// it), every cell gets one timed run per round for [`REPS`] rounds, so that a change in the
    /// machine's load hits all members and columns alike (ratios across a row, like a speedup, are
    /// as fair as ratios down a column); a cell is the median of its runs, in nanoseconds per unit.
    fn measure(&mut self, p: &ProgressBar, size: impl Fn(f64) -> Size, members: Vec<Member>) {
        p.inc_length(REPS as u64 + 1);
        p.set_message(format!("{}: sizing the runs", self.param));
        // timed[m][c], units[m][c], runs[m][c]
        let timed: Vec<Vec<Timed>> = members
            .iter()
            .map(|(_, f)| self.columns.iter().map(|&c| f(c)).collect())
            .collect();
        let mut units: Vec<Vec<Result<u64, String>>> = timed
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&self.columns)
                    .map(|(t, &c)| calibrate(t, size(c)))
                    .collect()
            })
            .collect();
        p.inc(1);
        let mut runs: Vec<Vec<Vec<f64>>> =
            vec![vec![Vec::new(); self.columns.len()]; members.len()];
        for round in 1..=REPS {
            p.set_message(format!("{}: round {round} of {REPS}", self.param));
            for (m, row) in timed.iter().enumerate() {
                for (c, t) in row.iter().enumerate() {
                    let Ok(u) = units[m][c] else { continue };
                    let t = t.clone();
                    match guarded(move || t(u)) {
                        Ok(d) => runs[m][c].push(d.as_nanos() as f64 / u as f64),
                        Err(e) => units[m][c] = Err(e),
                    }
                }
            }
            p.inc(1);
        }
        let cells: Vec<Vec<Cell>> = units
            .into_iter()
            .zip(runs)
            .map(|(u, r)| {
                u.into_iter()
                    .zip(r)
                    .map(|(u, r)| u.map(|_| median(r)))
                    .collect()
            })
            .collect();
        for ((name, _), cells) in members.into_iter().zip(cells) {
            if p.is_hidden() {
                // No terminal for the bar (CI, a pipe): a plain line per row instead.
                let shown: Vec<String> = cells
                    .iter()
                    .map(|c| c.as_ref().map_or_else(|_| "n/a".into(), |v| num(*v)))
                    .collect();
                let mut why: Vec<&str> = cells
                    .iter()
                    .filter_map(|c| c.as_ref().err())
                    .map(String::as_str)
                    .collect();
                why.dedup();
                eprintln!(
                    "{}: {name}: {} {}",
                    self.param,
                    shown.join(", "),
                    why.join("; ")
                );
            }
            self.rows.push(Row { name, cells });
        }
    }

    fn get(&self, row: &str, column: f64) -> Cell {
        let r = self
            .rows
            .iter()
            .find(|r| r.name == row)
            .ok_or_else(|| format!("no row {row}"))?;
        let c = self
            .columns
            .iter()
            .position(|&c| c == column)
            .ok_or_else(|| format!("no column {column}"))?;
        r.cells[c].clone()
    }

    /// The points of a row that were measured, shown through `show`.
    fn points(&self, row: &Row, show: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        self.columns
            .iter()
            .zip(&row.cells)
            .filter_map(|(&x, c)| c.as_ref().ok().map(|&y| (x, show(y))))
            .collect()
    }

    /// A Markdown table; cells shown through `show`, a missing one as "n/a" with its reason in the
    /// row's notes.
    fn markdown(&self, md: &mut String, show: impl Fn(f64) -> String) {
        let _ = write!(md, "| {} |", self.param);
        for h in &self.headings {
            let _ = write!(md, " {h} |");
        }
        md.push_str(" notes |\n|---|");
        for _ in &self.columns {
            md.push_str("---:|");
        }
        md.push_str("---|\n");
        for row in &self.rows {
            let _ = write!(md, "| {} |", row.name);
            let mut notes: Vec<&str> = Vec::new();
            for cell in &row.cells {
                match cell {
                    Ok(v) => {
                        let _ = write!(md, " {} |", show(*v));
                    }
                    Err(why) => {
                        md.push_str(" n/a |");
                        if !notes.contains(&why.as_str()) {
                            notes.push(why);
                        }
                    }
                }
            }
            let _ = writeln!(md, " {} |", notes.join("; ").replace('|', "/"));
        }
        md.push('\n');
    }
}

/// A column heading: sizes in bytes as B/KiB/MiB, other numbers as they are.
fn label(v: f64) -> String {
    let v = v as u64;
    match v {
        v if v >= 1 << 20 && v % (1 << 20) == 0 => format!("{} MiB", v >> 20),
        v if v >= 1 << 10 && v % (1 << 10) == 0 && v >= 4096 => format!("{} KiB", v >> 10),
        v => v.to_string(),
    }
}

/// A figure with about three significant digits.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

fn cspnet_row(backend: Backend) -> String {
    format!("cspnet {backend}")
}

/// The row of the library's `Farm` on `backend`.
fn farm_layer_row(backend: Backend) -> String {
    format!("cspnet {backend}, Farm")
}

// ---------------------------------------------------------------------------------------------
// The scenarios

fn ring_table(p: &ProgressBar) -> Table {
    let mut t = Table::new("ring size", RING_SIZES.map(|n| n as f64));
    let mut m: Vec<Member> = Backend::ALL
        .into_iter()
        .map(|b| {
            member(cspnet_row(b), move |n| {
                timed(move |h| flat(scenarios::ring(b, n as usize, h)))
            })
        })
        .collect();
    m.push(member("crossbeam bounded(0), threads", |n| {
        timed(move |h| Ok(baselines::crossbeam::ring(n as usize, 1, h)))
    }));
    m.push(member("may mpsc, coroutines", |n| {
        timed(move |h| Ok(baselines::may::ring(n as usize, 1, h)))
    }));
    m.push(member("futex, OS processes", |n| {
        timed(move |h| Ok(baselines::futex::ring(n as usize, h)))
    }));
    t.measure(
        p,
        |_| Size::Units {
            first: 1_000,
            max: 5_000_000,
        },
        m,
    );
    t
}

/// `tokens` tokens sharing `hops` hops between them: the time, scaled to exactly `hops` hops.
fn share(
    hops: u64,
    tokens: u64,
    run: impl FnOnce(u64) -> Result<Duration, String>,
) -> Result<Duration, String> {
    let each = hops.div_ceil(tokens).max(1);
    Ok(run(each)?.mul_f64(hops as f64 / (each * tokens) as f64))
}

fn tokens_table(p: &ProgressBar) -> Table {
    let mut t = Table::new("tokens", TOKENS.map(|n| n as f64));
    let n = TOKEN_RING;
    let mut m: Vec<Member> = Backend::ALL
        .into_iter()
        .map(|b| {
            member(cspnet_row(b), move |k| {
                let k = k as u64;
                timed(move |h| share(h, k, |e| flat(scenarios::tokens(b, n, k, e))))
            })
        })
        .collect();
    m.push(member("crossbeam bounded(0), threads", move |k| {
        let k = k as u64;
        timed(move |h| share(h, k, |e| Ok(baselines::crossbeam::ring(n, k, e))))
    }));
    m.push(member("may mpsc, coroutines", move |k| {
        let k = k as u64;
        timed(move |h| share(h, k, |e| Ok(baselines::may::ring(n, k, e))))
    }));
    t.measure(
        p,
        |_| Size::Units {
            first: 2_000,
            max: 5_000_000,
        },
        m,
    );
    t
}

fn commstime_table(p: &ProgressBar) -> Table {
    let mut t = Table::new("commstime", [1.0]);
    t.headings = vec!["ns per cycle".into()];
    let mut m: Vec<Member> = Backend::ALL
        .into_iter()
        .map(|b| {
            member(cspnet_row(b), move |_| {
                timed(move |c| flat(scenarios::commstime(b, c)))
            })
        })
        .collect();
    m.push(member("crossbeam bounded(0), threads", |_| {
        timed(|c| Ok(baselines::crossbeam::commstime(c)))
    }));
    m.push(member("may mpsc, coroutines", |_| {
        timed(|c| Ok(baselines::may::commstime(c)))
    }));
    t.measure(
        p,
        |_| Size::Units {
            first: 1_000,
            max: 2_000_000,
        },
        m,
    );
    t
}

fn barrier_table(p: &ProgressBar) -> Table {
    let mut t = Table::new("members", BARRIER.map(|n| n as f64));
    let m: Vec<Member> = Backend::ALL
        .into_iter()
        .map(|b| {
            member(cspnet_row(b), move |n| {
                timed(move |syncs| flat(scenarios::barrier(b, n as usize, syncs)))
            })
        })
        .collect();
    t.measure(
        p,
        |_| Size::Units {
            first: 100,
            max: 1_000_000,
        },
        m,
    );
    t
}

fn fan_in_table(p: &ProgressBar) -> Table {
    let mut t = Table::new("inputs", FAN_IN.map(|n| n as f64));
    let mut m: Vec<Member> = Backend::ALL
        .into_iter()
        .map(|b| {
            member(cspnet_row(b), move |k| {
                timed(move |n| flat(scenarios::fan_in(b, k as usize, n)))
            })
        })
        .collect();
    m.push(member("crossbeam Select, threads", |k| {
        timed(move |n| Ok(baselines::crossbeam::fan_in(k as usize, n)))
    }));
    t.measure(
        p,
        |_| Size::Units {
            first: 1_000,
            max: 2_000_000,
        },
        m,
    );
    t
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Farm {
    Pi,
    Mandelbrot,
}

/// The farm's rows: per backend (and, for Mandelbrot, per kernel) and rayon alone; ns per run.
fn farm_table(p: &ProgressBar, farm: Farm) -> Table {
    let mut t = Table::new("workers", WORKERS.map(f64::from));
    let kernels: &[(Kernel, &str)] = match farm {
        Farm::Pi => &[(Kernel::Plain, "")],
        Farm::Mandelbrot => &[(Kernel::Plain, ", loop"), (Kernel::Rayon, ", rayon")],
    };
    let mut m: Vec<Member> = Vec::new();
    for b in Backend::ALL {
        for &(kernel, suffix) in kernels {
            m.push(member(format!("{}{suffix}", cspnet_row(b)), move |w| {
                let w = w as u32;
                timed(move |_| match farm {
                    Farm::Pi => flat(scenarios::pi_farm(b, w, PI_SAMPLES, PI_BATCH)),
                    Farm::Mandelbrot => flat(scenarios::mandelbrot_farm(b, w, IMAGE, kernel)),
                })
            }));
        }
    }
    // The library's Farm (cspnet::generic::Farm), whole runs with worker start-up timed.
    for b in Backend::ALL {
        m.push(member(farm_layer_row(b), move |w| {
            let w = w as u32;
            timed(move |_| match farm {
                Farm::Pi => flat(scenarios::pi_farm_layer(b, w, PI_SAMPLES, PI_BATCH)),
                Farm::Mandelbrot => flat(scenarios::mandelbrot_farm_layer(b, w, IMAGE)),
            })
        }));
    }
    m.push(member("rayon alone", move |w| {
        let w = w as usize;
        timed(move |_| {
            Ok(match farm {
                Farm::Pi => scenarios::pi_rayon(PI_SAMPLES, PI_BATCH, w),
                Farm::Mandelbrot => scenarios::mandelbrot_rayon(IMAGE, w),
            })
        })
    }));
    t.measure(p, |_| Size::Whole, m);
    t
}

/// Side-by-side runs of the farm goals.
const TURNS: usize = 9;

/// The library's Farm with 2 workers against rayon on every core, run by turns (rayon, the Farm
/// on threads, the Farm on processes, rayon again), [`TURNS`] times: per backend, the median of
/// the turns' ratios of rayon's time (the mean of its two runs) to the Farm's, which is the
/// Farm's throughput relative to rayon's. Runs seconds apart share the machine's load from
/// elsewhere, so their ratio is steadier than a ratio of two medians taken minutes apart.
fn farm_by_turns(p: &ProgressBar, farm: Farm) -> Vec<(Backend, Cell)> {
    let backends = [Backend::Threads, Backend::Processes];
    let cores = scenarios::cores();
    let rayon = || match farm {
        Farm::Pi => scenarios::pi_rayon(PI_SAMPLES, PI_BATCH, cores),
        Farm::Mandelbrot => scenarios::mandelbrot_rayon(IMAGE, cores),
    };
    let run = |b| {
        flat(match farm {
            Farm::Pi => scenarios::pi_farm_layer(b, 2, PI_SAMPLES, PI_BATCH),
            Farm::Mandelbrot => scenarios::mandelbrot_farm_layer(b, 2, IMAGE),
        })
    };
    let mut ratios = vec![Vec::new(); backends.len()];
    let mut failed: Vec<Option<String>> = vec![None; backends.len()];
    p.inc_length(TURNS as u64);
    for turn in 1..=TURNS {
        p.set_message(format!("Farm by turns with rayon: turn {turn} of {TURNS}"));
        let before = rayon();
        let farms: Vec<_> = backends.iter().map(|&b| run(b)).collect();
        let base = (before + rayon()).as_secs_f64() / 2.0;
        for (i, f) in farms.into_iter().enumerate() {
            match f {
                Ok(d) => ratios[i].push(base / d.as_secs_f64()),
                Err(e) => failed[i] = Some(e),
            }
        }
        p.inc(1);
    }
    backends
        .into_iter()
        .zip(ratios.into_iter().zip(failed))
        .map(|(b, (mut r, failed))| {
            let cell = match failed {
                Some(e) => Err(e),
                None => {
                    r.sort_by(f64::total_cmp);
                    Ok(r[r.len() / 2])
                }
            };
            (b, cell)
        })
        .collect()
}

/// Each farm row's speedup over its own one-worker run.
fn speedups(md: &mut String, t: &Table) {
    let mut s = Table::new(
        "speedup over 1 worker (higher is better)",
        t.columns.iter().copied(),
    );
    for row in &t.rows {
        let one = t.get(&row.name, 1.0);
        let cells = row
            .cells
            .iter()
            .map(|c| match (&one, c) {
                (Ok(one), Ok(v)) => Ok(one / v),
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            })
            .collect();
        s.rows.push(Row {
            name: row.name.clone(),
            cells,
        });
    }
    s.markdown(md, |v| format!("{v:.2}×"));
}

fn payload_table(p: &ProgressBar) -> Table {
    let mut t = Table::new("payload", PAYLOADS.map(|n| n as f64));
    let mut m: Vec<Member> = Backend::ALL
        .into_iter()
        .map(|b| {
            member(cspnet_row(b), move |s| {
                timed(move |n| flat(scenarios::payload(b, s as usize, n)))
            })
        })
        .collect();
    m.push(member("clone", |s| {
        timed(move |n| Ok(scenarios::clone_floor(s as usize, n)))
    }));
    let first = |size: f64| ((4u64 << 20) / size as u64).clamp(2, 1_000);
    t.measure(
        p,
        |s| Size::Units {
            first: first(s),
            max: 200_000,
        },
        m,
    );
    t
}

fn spawn_table(p: &ProgressBar) -> Table {
    let mut t = Table::new("spawn", [SPAWN as f64]);
    t.headings = vec!["µs per process".into()];
    let m: Vec<Member> = Backend::ALL
        .into_iter()
        .map(|b| {
            member(cspnet_row(b), move |n| {
                timed(move |_| flat(scenarios::spawn(b, n as u64)).map(|d| d / n as u32))
            })
        })
        .collect();
    t.measure(p, |_| Size::Whole, m);
    t
}

// ---------------------------------------------------------------------------------------------
// Scale: the largest ring within the memory budget, each attempt in a child process

/// In the child: run a ring of N processes once round (N hops), exit 0 on success.
fn scale_child(args: &[String]) -> ! {
    let (Some(backend), Some(n)) = (
        args.first().and_then(|b| b.parse::<Backend>().ok()),
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: bench_report --scale-child BACKEND N");
        std::process::exit(2);
    };
    match flat(scenarios::ring(backend, n, n as u64)) {
        Ok(d) => {
            println!("{n} processes, one lap in {d:?}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// One attempt at a ring size.
struct Attempt {
    n: usize,
    /// The wall time of the whole attempt, or why it did not complete.
    outcome: Result<Duration, String>,
    /// Peak of the sampled proportional set size of the attempt's whole process tree, bytes.
    peak_tree: u64,
    /// The child's own peak RSS from `wait4`, bytes.
    max_rss: u64,
}

/// Kernel tasks (threads and processes) in use, and the most the kernel allows (`pid_max`).
fn tasks() -> (u64, u64) {
    let in_use = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0);
    let max = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    (in_use, max)
}

/// The summed proportional set size (bytes) of every process in process group `pgid`.
fn tree_pss(pgid: i32) -> u64 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pgrp is the third field after the parenthesised command name.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<i32>().ok());
        if pgrp != Some(pgid) {
            continue;
        }
        let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let pss_kib: u64 = rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        total += pss_kib * 1024;
    }
    total
}

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created for the attempt.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Runs one ring of `n` on `backend` in a child process (its own process group), sampling the
/// tree's memory; kills it over [`BUDGET`] or [`CAP`].
fn attempt(backend: Backend, n: usize) -> Attempt {
    let mut a = Attempt {
        n,
        outcome: Err(String::new()),
        peak_tree: 0,
        max_rss: 0,
    };
    if matches!(backend, Backend::Threads | Backend::Processes) {
        let (in_use, max) = tasks();
        if n as u64 + in_use + 2_048 > max {
            a.outcome = Err(format!(
                "not attempted: needs {n} kernel tasks, and pid_max is {max} with {in_use} in use"
            ));
            return a;
        }
    }
    let err_path = std::env::temp_dir().join(format!(
        "bench_report-{}-{backend}-{n}.stderr",
        std::process::id()
    ));
    let spawned = fs::File::create(&err_path).and_then(|err| {
        Command::new(std::env::current_exe()?)
            .args(["--scale-child", backend.name(), &n.to_string()])
            .stdout(Stdio::null())
            .stderr(err)
            .process_group(0)
            .spawn()
    });
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            a.outcome = Err(format!("could not start the attempt: {e}"));
            return a;
        }
    };
    let pid = child.id() as i32;
    drop(child); // wait4 below reaps it, and gives its rusage
    let start = Instant::now();
    let mut stopped: Option<String> = None;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if stopped.is_some() { 0 } else { libc::WNOHANG };
        // SAFETY: waits for our own child; both out-pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if r == pid {
            break (Some(status), usage);
        }
        if r < 0 {
            break (None, usage);
        }
        a.peak_tree = a.peak_tree.max(tree_pss(pid));
        if a.peak_tree > BUDGET {
            stopped = Some(format!("over the {} GiB budget", BUDGET >> 30));
        } else if start.elapsed() > CAP {
            stopped = Some(format!("over the {} s time cap", CAP.as_secs()));
        } else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        kill_group(pid);
    };
    let wall = start.elapsed();
    kill_group(pid); // anything the attempt left behind
    a.max_rss = usage.ru_maxrss as u64 * 1024;
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&err_path);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect::<String>();
    a.outcome = match (stopped, status) {
        (Some(why), _) => Err(why),
        (None, None) => Err("lost track of the attempt".into()),
        (None, Some(s)) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => Ok(wall),
        (None, Some(s)) if libc::WIFSIGNALED(s) => {
            Err(format!("killed by signal {}: {last}", libc::WTERMSIG(s)))
        }
        (None, Some(s)) => Err(format!("failed (exit {}): {last}", libc::WEXITSTATUS(s))),
    };
    a
}

/// A linear extrapolation of a completed attempt's wall time to `n` processes.
fn predicted(prev: &Attempt, n: usize) -> Duration {
    let took = prev.outcome.as_ref().map_or(Duration::ZERO, |d| *d);
    took.mul_f64(n as f64 / prev.n as f64)
}

fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

fn scale_table(p: &ProgressBar) -> String {
    let mut md = format!(
        "## Scale: the largest ring\n\nEach attempt runs a ring of N processes for one lap (N hops) \
         in a child process of its own (this program re-executed with a hidden flag), grown \
         {} until one fails, needs more than {} GiB (the whole process tree's proportional set \
         size, sampled every 100 ms) or more than {} s, start-up included. A size is not \
         attempted when the last one's time, scaled linearly, already passes the cap, nor, on the \
         backends where a process is a kernel task (threads, processes), when it would not leave \
         2048 of the kernel's `pid_max` task ids for the rest of the machine. Own peak RSS is the child's, from `wait4` \
         (Linux carries a parent's peak over `fork` and `exec`, so it starts from this runner's few \
         MiB). The per-process figure divides the larger of the two by N.\n\n\
         | backend | largest ring completed | stopped at | why | peak memory of the largest (tree PSS / own RSS) | per process | wall time |\n\
         |---|---:|---:|---|---:|---:|---:|\n",
        SCALE.map(|n| n.to_string()).join(", "),
        BUDGET >> 30,
        CAP.as_secs()
    );
    let mut details = String::from(
        "\n| backend | ring | outcome | tree PSS peak (sampled) | own peak RSS |\n|---|---:|---|---:|---:|\n",
    );
    for b in Backend::ALL {
        p.set_message(format!("scale: {b}"));
        if !b.is_available() {
            let _ = writeln!(
                md,
                "| {b} | n/a | | not built in (cargo feature `{b}` is off) | | | |"
            );
            p.inc(1);
            continue;
        }
        let mut best: Option<Attempt> = None;
        let mut stop: Option<Attempt> = None;
        for n in SCALE {
            p.set_message(format!("scale: {b}, {n} processes"));
            let a = match &best {
                // Start-up grows at least linearly with N: skip what cannot finish in time.
                Some(prev) if predicted(prev, n) > CAP => Attempt {
                    n,
                    outcome: Err(format!(
                        "not attempted: {} took {:.0} s, so {n} would take at least {:.0} s, past the {} s cap",
                        prev.n,
                        prev.outcome.as_ref().map_or(0.0, |d| d.as_secs_f64()),
                        predicted(prev, n).as_secs_f64(),
                        CAP.as_secs()
                    )),
                    peak_tree: 0,
                    max_rss: 0,
                },
                _ => attempt(b, n),
            };
            if p.is_hidden() {
                eprintln!(
                    "scale: {b}: {n}: {:?}, tree {}",
                    a.outcome,
                    gib(a.peak_tree)
                );
            }
            let _ = writeln!(
                details,
                "| {b} | {n} | {} | {} | {} |",
                match &a.outcome {
                    Ok(d) => format!("completed in {:.1} s", d.as_secs_f64()),
                    Err(e) => e.replace('|', "/"),
                },
                gib(a.peak_tree),
                gib(a.max_rss)
            );
            if a.outcome.is_ok() {
                best = Some(a);
            } else {
                stop = Some(a);
                break;
            }
        }
        let (largest, mem, per, wall) = match &best {
            Some(a) => (
                a.n.to_string(),
                format!("{} / {}", gib(a.peak_tree), gib(a.max_rss)),
                format!(
                    "{:.0} KiB",
                    a.peak_tree.max(a.max_rss) as f64 / 1024.0 / a.n as f64
                ),
                format!(
                    "{:.1} s",
                    a.outcome.as_ref().map_or(0.0, |d| d.as_secs_f64())
                ),
            ),
            None => ("none".into(), String::new(), String::new(), String::new()),
        };
        let (at, why) = match &stop {
            Some(a) => (
                a.n.to_string(),
                a.outcome
                    .as_ref()
                    .err()
                    .cloned()
                    .unwrap_or_default()
                    .replace('|', "/"),
            ),
            None => (
                "—".into(),
                format!("every size up to {} completed", SCALE[SCALE.len() - 1]),
            ),
        };
        let _ = writeln!(
            md,
            "| {b} | {largest} | {at} | {why} | {mem} | {per} | {wall} |"
        );
        p.inc(1);
    }
    md.push_str(&details);
    md.push('\n');
    md
}

// ---------------------------------------------------------------------------------------------
// The report

fn run(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR")) // git describes this repository
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The 1-, 5- and 15-minute load averages, as the kernel prints them.
fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn header(md: &mut String, took: Duration, load_before: &str) {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: u64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(gib(kib * 1024))
        })
        .unwrap_or_else(|| "unknown".into());
    let dirty = !run("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let built: Vec<&str> = Backend::ALL
        .into_iter()
        .filter(|b| b.is_available())
        .map(Backend::name)
        .collect();
    let _ = writeln!(
        md,
        "# Benchmarks\n\n\
         Generated by `cargo run --release --example bench_report`; the same scenarios as the \
         criterion benches in `benches/` (`cargo bench`), quick versions: each figure is the median \
         of {REPS} runs of about {} ms. Lower is better except where a table says otherwise.\n\n\
         | | |\n|---|---|\n\
         | machine | {model}, {cores} cores, {mem} RAM, {} |\n\
         | toolchain | {} |\n\
         | commit | {}{} |\n\
         | date | {} |\n\
         | backends built in | {} |\n\
         | this run took | {:.0} s |\n\
         | load average (1, 5, 15 min) | {load_before} before, {} after |\n\n\
         On a virtual machine a hand-off that wakes a thread or process on an idle virtual CPU \
         costs far more than on a busy one, so the threads, processes and futex figures move with \
         whatever else runs; within a table the backends and baselines take turns run by run, so \
         their ratios hold better than the figures themselves.\n",
        TARGET.as_millis(),
        run("uname", &["-sr"]),
        run("rustc", &["-V"]),
        run("git", &["rev-parse", "--short", "HEAD"]),
        if dirty {
            " (with uncommitted changes in the work tree)"
        } else {
            ""
        },
        run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        built.join(", "),
        took.as_secs_f64(),
        load()
    );
}

fn ratio(a: &Cell, b: &Cell) -> Cell {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(a / b),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    }
}

/// The closing note's ratios, each from this run's tables.
fn goals(
    md: &mut String,
    ring: &Table,
    barrier: &Table,
    pi: &Table,
    mandelbrot: &Table,
    by_turns: &[Vec<(Backend, Cell)>; 2],
) {
    md.push_str(
        "## Goals\n\nEach ratio comes from the tables below, measured in this run.\n\n\
         | goal | measured | target | met |\n|---|---:|---:|---|\n",
    );
    let mut line = |goal: String, value: Cell, target: &str, ok: fn(f64) -> bool| {
        let (v, met) = match &value {
            Ok(v) => (
                format!("{v:.2}×"),
                if ok(*v) { "yes" } else { "no" }.to_owned(),
            ),
            Err(e) => ("n/a".to_owned(), format!("n/a: {}", e.replace('|', "/"))),
        };
        let _ = writeln!(md, "| {goal} | {v} | {target} | {met} |");
    };
    let hop =
        |b: Backend, base: &str, n: f64| ratio(&ring.get(&cspnet_row(b), n), &ring.get(base, n));
    for n in [2.0, 256.0] {
        line(
            format!("coroutines ring hop ÷ raw may hop, ring of {n}"),
            hop(Backend::Coroutines, "may mpsc, coroutines", n),
            "≤ 1.5×",
            |v| v <= 1.5,
        );
        line(
            format!("threads ring hop ÷ raw crossbeam hop, ring of {n}"),
            hop(Backend::Threads, "crossbeam bounded(0), threads", n),
            "≤ 1.2×",
            |v| v <= 1.2,
        );
    }
    line(
        "processes ring hop (ring of 2) ÷ two-process futex ping-pong".into(),
        hop(Backend::Processes, "futex, OS processes", 2.0),
        "≤ 2×",
        |v| v <= 2.0,
    );
    for b in Backend::ALL {
        let row = cspnet_row(b);
        let lap = ring.get(&row, 64.0).map(|hop| hop * 64.0);
        line(
            format!("barrier sync of 64 ÷ 64 ring hops (ring of 64), {b}"),
            ratio(&barrier.get(&row, 64.0), &lap),
            "< 1×",
            |v| v < 1.0,
        );
    }
    line(
        "processes ring hop ÷ futex ring, ring of 256".into(),
        hop(Backend::Processes, "futex, OS processes", 256.0),
        "≤ 2×",
        |v| v <= 2.0,
    );
    for ((name, t, suffix), turns) in [
        ("Monte Carlo pi", pi, ""),
        ("Mandelbrot", mandelbrot, ", loop"),
    ]
    .into_iter()
    .zip(by_turns)
    {
        for b in Backend::ALL {
            let row = format!("{}{suffix}", cspnet_row(b));
            let target = if b == Backend::Coroutines {
                "(none)"
            } else {
                "≥ 1.8×"
            };
            let ok: fn(f64) -> bool = if b == Backend::Coroutines {
                |_| true
            } else {
                |v| v >= 1.8
            };
            line(
                format!("{name}: speedup with 2 workers, {b}"),
                ratio(&t.get(&row, 1.0), &t.get(&row, 2.0)),
                target,
                ok,
            );
        }
        let cores = scenarios::cores() as f64;
        for b in Backend::ALL {
            let row = format!("{}{suffix}", cspnet_row(b));
            let target = if b == Backend::Coroutines {
                "(none)"
            } else {
                "≥ 0.9×"
            };
            let ok: fn(f64) -> bool = if b == Backend::Coroutines {
                |_| true
            } else {
                |v| v >= 0.9
            };
            line(
                format!("{name}: throughput of 2 workers ÷ rayon on {cores} threads, {b}"),
                ratio(&t.get("rayon alone", cores.min(4.0)), &t.get(&row, 2.0)),
                target,
                ok,
            );
        }
        for (b, cell) in turns {
            line(
                format!(
                    "{name}: throughput of the library's Farm, 2 workers ÷ rayon on {cores} threads, \
                     {b} (median of {TURNS} runs by turns)"
                ),
                cell.clone(),
                "≥ 0.95×",
                |v| v >= 0.95,
            );
        }
    }
    md.push('\n');
}

// ---------------------------------------------------------------------------------------------
// Plots (SVG only)

type Series = Vec<(String, Vec<(f64, f64)>)>;

/// The axis range for `values`: on a log axis with room above for the legend, on a linear x axis
/// a margin either side, on a linear y axis from zero.
fn bounds(values: impl Iterator<Item = f64>, log: bool, y: bool) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    match (log, y) {
        (true, true) => (lo / 1.5, hi * 8.0),
        (true, false) => (lo / 1.3, hi * 1.3),
        (false, true) => (0.0, hi * 1.15),
        (false, false) => (lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05),
    }
}

/// A tick label: whole numbers without decimals, small ones with two.
fn tick(v: &f64) -> String {
    if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws `series` as lines with points, on log-log axes or linear ones.
fn plot(
    path: &Path,
    title: &str,
    axes: (&str, &str),
    log: bool,
    series: &Series,
) -> Result<(), String> {
    let points = || series.iter().flat_map(|s| s.1.iter().copied());
    if points().next().is_none() {
        return Err("nothing was measured".into());
    }
    let (x0, x1) = bounds(points().map(|p| p.0), log, false);
    let (y0, y1) = bounds(points().map(|p| p.1), log, true);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc(axes.0)
                .y_desc(axes.1)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, (name, pts)) in series.iter().enumerate() {
                let color = if name.starts_with("ideal") {
                    BLACK.to_rgba()
                } else {
                    Palette99::pick(i).to_rgba()
                };
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .position(if log {
                    SeriesLabelPosition::UpperLeft
                } else {
                    SeriesLabelPosition::LowerRight
                })
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }};
    }
    if log {
        draw!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()));
    } else {
        draw!(builder.build_cartesian_2d(x0..x1, y0..y1));
    }
    root.present().map_err(|e| e.to_string())
}

fn all_rows(t: &Table, show: impl Fn(f64) -> f64 + Copy) -> Series {
    t.rows
        .iter()
        .map(|r| (r.name.clone(), t.points(r, show)))
        .filter(|s| !s.1.is_empty())
        .collect()
}

fn plot_ring(path: &Path, t: &Table) -> Result<(), String> {
    let s = all_rows(t, |v| v);
    plot(
        path,
        "Token ring: ns per hop",
        ("processes in the ring", "ns per hop"),
        true,
        &s,
    )
}

fn plot_tokens(path: &Path, t: &Table) -> Result<(), String> {
    let s = all_rows(t, |v| 1e3 / v);
    let title = format!("Concurrent tokens in a ring of {TOKEN_RING}");
    plot(
        path,
        &title,
        ("tokens", "million hops per second"),
        true,
        &s,
    )
}

fn plot_fan_in(path: &Path, t: &Table) -> Result<(), String> {
    let s = all_rows(t, |v| v);
    plot(
        path,
        "Alternation fan-in: ns per message",
        ("input channels", "ns per message"),
        true,
        &s,
    )
}

fn plot_payload(path: &Path, t: &Table) -> Result<(), String> {
    let s = all_rows(t, |v| v / 1e3);
    plot(
        path,
        "Payload size: time per message",
        ("bytes", "µs per message"),
        true,
        &s,
    )
}

fn plot_speedup(path: &Path, pi: &Table, mandelbrot: &Table) -> Result<(), String> {
    let mut s: Series = Vec::new();
    for (name, t) in [("pi", pi), ("mandelbrot", mandelbrot)] {
        for r in &t.rows {
            if r.name.ends_with(", rayon") {
                continue; // the rayon-kernel variant is in the table
            }
            let Ok(one) = t.get(&r.name, 1.0) else {
                continue;
            };
            let pts = t.points(r, |v| one / v);
            if !pts.is_empty() {
                s.push((
                    format!("{name}: {}", r.name.trim_end_matches(", loop")),
                    pts,
                ));
            }
        }
    }
    let cores = scenarios::cores() as f64;
    let ideal = WORKERS.map(|w| (f64::from(w), f64::from(w).min(cores)));
    s.push((format!("ideal on {cores} cores"), ideal.to_vec()));
    plot(
        path,
        "Farms: speedup over one worker",
        ("workers", "speedup"),
        false,
        &s,
    )
}
