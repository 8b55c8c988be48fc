//! `fair_select` rotates between two guards on the same channel even when it has to wait.
//!
//! The writer delivers only to an alternation that is already waiting: it offers each value with
//! an output guard and a skip, and an unbuffered output commits only to a reader registered on the
//! channel. So every one of the 40 selects below has registered its guards and slept before its
//! value arrives, and the guard the writer finds first is the one the alternation registered first.
//!
//! Linux only, like the processes backend itself.
#![cfg(target_os = "linux")]

use cspnet_processes::{Alternation, Channel, Outcome, parallel, process};
use std::time::Duration;

const ROUNDS: u32 = 40;

#[test]
fn fair_select_alternates_two_waiting_guards_on_one_channel() {
    let ch = Channel::<u32>::new();
    let (r, w) = (ch.reader(), ch.writer());
    drop(ch);
    let out = parallel([
        process(move || -> Outcome<Vec<u32>> {
            let mut chosen = Vec::new();
            for _ in 0..ROUNDS {
                let guard = Alternation::new()
                    .input(&r, |_| 0)
                    .input(&r, |_| 1)
                    .fair_select()?;
                chosen.push(guard);
            }
            Ok(chosen)
        }),
        process(move || -> Outcome<Vec<u32>> {
            for v in 0..ROUNDS {
                // Deliver only to a reader that is already waiting.
                while !Alternation::new()
                    .output(&w, v, || true)
                    .skip(|| false)
                    .select()?
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Ok(Vec::new())
        }),
    ])
    .expect("both processes ran");
    let chosen = out[0]
        .as_ref()
        .expect("the selecting process ended normally");
    let firsts = chosen.iter().filter(|&&g| g == 0).count();
    assert_eq!(
        firsts,
        ROUNDS as usize / 2,
        "each guard should be chosen in turn; got {chosen:?}"
    );
    assert!(
        chosen.windows(2).all(|p| p[0] != p[1]),
        "fair_select should alternate; got {chosen:?}"
    );
}
