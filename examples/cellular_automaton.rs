//! A one-dimensional cellular automaton (Wolfram's elementary rules) on a ring of cells, computed
//! in lock-step by worker processes that meet at a barrier once per generation.
//!
//! Each worker owns a slice of the ring. A generation is one bulk-synchronous superstep: every
//! worker posts its two edge cells to its neighbours (over channels that buffer one value), all
//! sync on the barrier, so that every edge is posted, then each reads its neighbours' edges and
//! computes its slice's next generation. The result is checked against a sequential run.
//!
//! `cargo run --release --example cellular_automaton -- --backend threads --cells 256 --workers 8`

mod common;

use clap::Parser;
use cspnet::{Backend, with_backend};
use std::time::Instant;

/// Runs an elementary cellular automaton in lock-step on worker processes and a barrier.
#[derive(Parser)]
struct Args {
    /// threads, processes or coroutines
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// Cells in the ring (a multiple of --workers)
    #[arg(long, default_value_t = 256)]
    cells: usize,
    /// Worker processes, each owning cells / workers cells
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Generations to compute
    #[arg(long, default_value_t = 200)]
    generations: u64,
    /// Wolfram rule number, 0 to 255
    #[arg(long, default_value_t = 30)]
    rule: u8,
}

fn main() {
    let args = Args::parse();
    if args.workers == 0 || args.cells == 0 || args.cells % args.workers != 0 {
        common::usage_error("--cells must be a positive multiple of --workers (at least 1)");
    }
    let (cells, workers, generations, rule) =
        (args.cells, args.workers, args.generations, args.rule);
    let start = first_generation(cells);
    let begun = Instant::now();
    let board = common::finish(lock_step(args.backend, &start, workers, generations, rule))
        .unwrap_or_else(|e| {
            eprintln!("error: a worker failed: {e}");
            std::process::exit(1);
        });
    let elapsed = begun.elapsed();
    let expected = sequential(&start, generations, rule);
    println!(
        "backend: {}, cells: {cells}, workers: {workers}, generations: {generations}, rule: {rule}",
        args.backend
    );
    println!(
        "{generations} generations in {:.1} ms ({:.1} µs per generation, start-up included)",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / generations.max(1) as f64
    );
    if board != expected {
        eprintln!("error: the lock-step board differs from the sequential run");
        std::process::exit(1);
    }
    let live = board.iter().filter(|&&c| c == 1).count();
    println!(
        "cellular_automaton: rule {rule}, {cells} cells, {generations} generations on {workers} \
         workers in lock-step: {live} live, matches the sequential run"
    );
}

/// One live cell in the middle of the ring.
fn first_generation(cells: usize) -> Vec<u8> {
    let mut board = vec![0u8; cells];
    board[cells / 2] = 1;
    board
}

/// The next state of a cell from its left neighbour, itself and its right neighbour.
fn next(rule: u8, left: u8, me: u8, right: u8) -> u8 {
    (rule >> ((left << 2) | (me << 1) | right)) & 1
}

/// The next generation of `slice`, given the cells just outside it.
fn step(rule: u8, left: u8, slice: &[u8], right: u8) -> Vec<u8> {
    let n = slice.len();
    (0..n)
        .map(|i| {
            let l = if i == 0 { left } else { slice[i - 1] };
            let r = if i + 1 == n { right } else { slice[i + 1] };
            next(rule, l, slice[i], r)
        })
        .collect()
}

/// The whole ring, one generation after another, in this process.
fn sequential(start: &[u8], generations: u64, rule: u8) -> Vec<u8> {
    let mut board = start.to_vec();
    let n = board.len();
    for _ in 0..generations {
        board = step(rule, board[n - 1], &board, board[0]);
    }
    board
}

/// The board after `generations`, computed by `workers` processes in lock-step.
fn lock_step(
    backend: Backend,
    start: &[u8],
    workers: usize,
    generations: u64,
    rule: u8,
) -> Result<Result<Result<Vec<u8>, cspnet::ChannelError>, cspnet::ProcessError>, cspnet::BackendError>
{
    let width = start.len() / workers;
    with_backend!(backend, csp => {
        let barrier = csp::Barrier::new();
        // from_left[i] carries worker i-1's last cell to worker i; from_right[i] carries worker
        // i+1's first cell. One value each: a generation's edges, posted before the sync.
        let from_left: Vec<csp::Channel<u8>> = (0..workers).map(|_| csp::Channel::with_buffer(1)).collect();
        let from_right: Vec<csp::Channel<u8>> = (0..workers).map(|_| csp::Channel::with_buffer(1)).collect();
        let procs: Vec<csp::Process<Vec<u8>>> = (0..workers)
            .map(|i| {
                let (left, right) = ((i + workers - 1) % workers, (i + 1) % workers);
                let to_left = from_right[left].writer();
                let to_right = from_left[right].writer();
                let (in_left, in_right) = (from_left[i].reader(), from_right[i].reader());
                let end = barrier.enroll();
                let mut slice = start[i * width..(i + 1) * width].to_vec();
                csp::process(move || {
                    for _ in 0..generations {
                        to_left.write(slice[0])?;
                        to_right.write(slice[width - 1])?;
                        end.sync()?; // every edge of this generation is posted
                        let (l, r) = (in_left.read()?, in_right.read()?);
                        slice = step(rule, l, &slice, r);
                    }
                    Ok(slice)
                })
                .named(&format!("worker-{i}"))
            })
            .collect();
        drop((barrier, from_left, from_right));
        csp::parallel(procs).map(|slices| {
            slices
                .into_iter()
                .collect::<Result<Vec<Vec<u8>>, _>>()
                .map(|s| s.concat())
        })
    })
}
