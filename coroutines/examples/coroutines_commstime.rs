//! Classic CSP commstime: Prefix -> Delta -> Successor -> Prefix, with Delta also feeding a
//! Consumer; prints ns per communication on cspnet-coroutines, raw `may::sync::mpsc` channels and
//! cspnet-threads.
//!
//! ```text
//! cargo run -p cspnet-coroutines --release --example coroutines_commstime -- [loops]
//! ```
//!
//! Each loop is four communications (Prefix->Delta, Delta->Successor, Successor->Prefix,
//! Delta->Consumer); Delta outputs in sequence.

use std::time::{Duration, Instant};

macro_rules! cspnet_commstime {
    ($name:ident, $csp:ident) => {
        fn $name(loops: u64) -> Duration {
            use $csp as csp;
            let (a, b, c, d) = (
                csp::Channel::<u64>::new(),
                csp::Channel::<u64>::new(),
                csp::Channel::<u64>::new(),
                csp::Channel::<u64>::new(),
            );
            let (aw, ar, bw, br, cw, cr, dw, dr) = (
                a.writer(),
                a.reader(),
                b.writer(),
                b.reader(),
                c.writer(),
                c.reader(),
                d.writer(),
                d.reader(),
            );
            let out = csp::parallel([
                csp::process(move || {
                    aw.write(0)?; // Prefix
                    loop {
                        aw.write(cr.read()?)?;
                    }
                }),
                csp::process(move || {
                    loop {
                        let v = ar.read()?; // Delta
                        bw.write(v)?;
                        dw.write(v)?;
                    }
                }),
                csp::process(move || {
                    loop {
                        cw.write(br.read()? + 1)?; // Successor
                    }
                }),
                csp::process(move || {
                    let start = Instant::now(); // Consumer
                    for _ in 0..loops {
                        dr.read()?;
                    }
                    let took = start.elapsed();
                    dr.poison();
                    Ok(took)
                }),
            ])
            .expect("no process fails");
            out[3].unwrap()
        }
    };
}

cspnet_commstime!(commstime_coroutines, cspnet_coroutines);
cspnet_commstime!(commstime_threads, cspnet_threads);

fn commstime_may(loops: u64) -> Duration {
    use may::sync::mpsc::channel;
    let (aw, ar) = channel::<u64>();
    let (bw, br) = channel::<u64>();
    let (cw, cr) = channel::<u64>();
    let (dw, dr) = channel::<u64>();
    // SAFETY: the closure keeps no thread-local across a yield and needs little stack.
    let prefix = unsafe {
        may::coroutine::spawn(move || {
            aw.send(0).ok();
            while let Ok(v) = cr.recv() {
                if aw.send(v).is_err() {
                    break;
                }
            }
        })
    };
    // SAFETY: as for `prefix`.
    let delta = unsafe {
        may::coroutine::spawn(move || {
            while let Ok(v) = ar.recv() {
                if bw.send(v).is_err() || dw.send(v).is_err() {
                    break;
                }
            }
        })
    };
    // SAFETY: as for `prefix`.
    let successor = unsafe {
        may::coroutine::spawn(move || {
            while let Ok(v) = br.recv() {
                if cw.send(v + 1).is_err() {
                    break;
                }
            }
        })
    };
    // SAFETY: as for `prefix`.
    let consumer = unsafe {
        may::coroutine::spawn(move || {
            let start = Instant::now();
            for _ in 0..loops {
                dr.recv().unwrap();
            }
            start.elapsed()
        })
    };
    let took = consumer.join().unwrap();
    for h in [prefix, delta, successor] {
        h.join().unwrap();
    }
    took
}

fn main() {
    let loops: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("usage: commstime [loops]"))
        .unwrap_or(200_000);
    let s = cspnet_coroutines::settings();
    println!(
        "commstime, {loops} loops (4 communications each), {} workers",
        s.workers()
    );
    let comms = (loops * 4) as f64;
    let mut best = [f64::MAX; 3];
    for _ in 0..3 {
        for (k, took) in [
            commstime_may(loops),
            commstime_coroutines(loops),
            commstime_threads(loops),
        ]
        .into_iter()
        .enumerate()
        {
            best[k] = best[k].min(took.as_nanos() as f64 / comms);
        }
    }
    println!("raw may mpsc       {:>8.1} ns/communication", best[0]);
    println!("cspnet-coroutines  {:>8.1} ns/communication", best[1]);
    println!("cspnet-threads     {:>8.1} ns/communication", best[2]);
    println!(
        "best of 3: coroutines / raw may = {:.2}x, threads / coroutines = {:.1}x",
        best[1] / best[0],
        best[2] / best[1]
    );
}
