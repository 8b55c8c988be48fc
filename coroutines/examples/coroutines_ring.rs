//! A token ring: `processes` CSP processes in a circle pass one token for `hops` hops, on
//! cspnet-coroutines, on raw `may::sync::mpsc` channels, and on cspnet-threads; prints ns per hop.
//!
//! ```text
//! cargo run -p cspnet-coroutines --release --example coroutines_ring -- <processes> <hops> [coroutines|may|threads|all]
//! ```
//!
//! Each ring runs `RING_REPS` times (default 3); the ratios use the best run of each. The threads
//! ring runs only up to 10,000 processes (one OS thread each). A million coroutines need
//! `vm.max_map_count` above two million (two memory mappings per coroutine stack).

use std::time::{Duration, Instant};

/// When the token was injected and when it arrived for the last time.
#[derive(Debug, Clone, Copy, Default)]
struct Stamp {
    start: Option<Instant>,
    end: Option<Instant>,
}

/// The ring on a cspnet backend; the same code for both backends, pasted by a macro.
macro_rules! cspnet_ring {
    ($name:ident, $csp:ident) => {
        fn $name(processes: usize, hops: u64) -> (Duration, Duration) {
            use $csp as csp;
            let setup = Instant::now();
            let chans: Vec<csp::Channel<u64>> =
                (0..processes).map(|_| csp::Channel::new()).collect();
            let mut procs = Vec::with_capacity(processes);
            for i in 0..processes {
                let r = chans[i].reader();
                let w = chans[(i + 1) % processes].writer();
                procs.push(csp::process(move || {
                    let mut stamp = Stamp::default();
                    if i == 0 {
                        stamp.start = Some(Instant::now());
                        w.write(hops)?;
                    }
                    loop {
                        match r.read() {
                            Ok(0) => {
                                stamp.end = Some(Instant::now());
                                w.poison(); // shuts the ring down
                                return Ok(stamp);
                            }
                            Ok(left) => {
                                if w.write(left - 1).is_err() {
                                    return Ok(stamp);
                                }
                            }
                            Err(_) => return Ok(stamp),
                        }
                    }
                }));
            }
            drop(chans);
            let out = match csp::parallel(procs) {
                Ok(out) => out,
                Err(e) => {
                    eprintln!(
                        "{} processes failed; the first: {}",
                        e.failures().len(),
                        e.first()
                    );
                    std::process::exit(1);
                }
            };
            let total = setup.elapsed();
            let stamps: Vec<Stamp> = out.into_iter().map(|o| o.unwrap()).collect();
            let start = stamps.iter().find_map(|s| s.start).unwrap();
            let end = stamps.iter().find_map(|s| s.end).unwrap();
            (end - start, total)
        }
    };
}

cspnet_ring!(ring_coroutines, cspnet_coroutines);
cspnet_ring!(ring_threads, cspnet_threads);

/// The same ring on raw may coroutines and `may::sync::mpsc` channels (one per link).
fn ring_may(processes: usize, hops: u64) -> (Duration, Duration) {
    use may::sync::mpsc;
    let setup = Instant::now();
    let (mut txs, mut rxs): (Vec<_>, Vec<_>) =
        (0..processes).map(|_| mpsc::channel::<u64>()).unzip();
    txs.rotate_left(1); // process i reads link i and writes link i + 1
    let mut handles = Vec::with_capacity(processes);
    for (i, (rx, tx)) in rxs.drain(..).zip(txs.drain(..)).enumerate() {
        // SAFETY: the closure keeps no thread-local across a yield and needs little stack.
        let h = unsafe {
            may::coroutine::spawn(move || {
                let mut stamp = Stamp::default();
                if i == 0 {
                    stamp.start = Some(Instant::now());
                    tx.send(hops).unwrap();
                }
                while let Ok(left) = rx.recv() {
                    if left == 0 {
                        stamp.end = Some(Instant::now());
                        break; // dropping `tx` disconnects the next link, and so on around
                    }
                    if tx.send(left - 1).is_err() {
                        break;
                    }
                }
                stamp
            })
        };
        handles.push(h);
    }
    let stamps: Vec<Stamp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let total = setup.elapsed();
    let start = stamps.iter().find_map(|s| s.start).unwrap();
    let end = stamps.iter().find_map(|s| s.end).unwrap();
    (end - start, total)
}

/// CPU time used by the whole program so far (all threads), from `/proc/self/stat` (Linux), so
/// that a loaded machine's stolen time does not count.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

/// Runs `ring` `reps` times; prints and returns the best wall-clock ns per hop.
fn report(what: &str, hops: u64, reps: u32, ring: impl Fn() -> (Duration, Duration)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..reps {
        let cpu0 = cpu_time();
        let (token, total) = ring();
        let cpu = cpu_time().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
        let ns = token.as_nanos() as f64 / hops as f64;
        best = best.min(ns);
        let cpu_ns = cpu.map_or("?".to_string(), |c| {
            format!("{:.0}", c.as_nanos() as f64 / hops as f64)
        });
        println!(
            "{what:<18} {ns:>8.1} ns/hop  (cpu {cpu_ns} ns/hop incl. setup; token {:.3} s, with setup and shutdown {:.3} s)",
            token.as_secs_f64(),
            total.as_secs_f64()
        );
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ring <processes> <hops> [coroutines|may|threads|all]";
    let processes: usize = args.first().and_then(|s| s.parse().ok()).expect(usage);
    let hops: u64 = args.get(1).and_then(|s| s.parse().ok()).expect(usage);
    let which = args.get(2).map(String::as_str).unwrap_or("all");
    let reps: u32 = std::env::var("RING_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    assert!(processes >= 2, "{usage}");
    // Apply the settings (from CSPNET_* or defaults) before anything starts may's scheduler.
    let s = cspnet_coroutines::settings();
    println!(
        "ring of {processes} processes, {hops} hops, {} workers, {} KiB stacks",
        s.workers(),
        s.stack_size() / 1024
    );
    let mut ours = None;
    let mut raw = None;
    let mut threads = None;
    if matches!(which, "may" | "all") {
        raw = Some(report("raw may mpsc", hops, reps, || {
            ring_may(processes, hops)
        }));
    }
    if matches!(which, "coroutines" | "all") {
        ours = Some(report("cspnet-coroutines", hops, reps, || {
            ring_coroutines(processes, hops)
        }));
    }
    if matches!(which, "threads" | "all") {
        if processes <= 10_000 {
            threads = Some(report("cspnet-threads", hops, reps, || {
                ring_threads(processes, hops)
            }));
        } else {
            println!("cspnet-threads     skipped (one OS thread per process; at most 10,000)");
        }
    }
    if let (Some(o), Some(r)) = (ours, raw) {
        println!("best of {reps}: coroutines / raw may = {:.2}x", o / r);
    }
    if let (Some(o), Some(t)) = (ours, threads) {
        println!("best of {reps}: threads / coroutines = {:.1}x", t / o);
    }
}
