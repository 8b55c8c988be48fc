//! A writer killed at any moment of its channel operations leaves no reader asleep for good.
//!
//! A supervised child writes to a channel in a loop and is killed (SIGKILL) at a random moment
//! while a thread of the parent reads; the reader must always end, by the channel's retirement
//! once the dead writer's end is released, with every value it was given. Killed between claiming
//! the sleeping reader and waking it, the writer would leave the reader's claim word changed but
//! its futex never woken. Linux only, like the processes backend itself.
#![cfg(target_os = "linux")]

mod common;
use common::assert_gone;

use cspnet_processes::{Channel, ChannelError, Supervisor, process};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Rounds: a few seconds in the normal run, many more with `CSPNET_STRESS`.
fn rounds() -> u64 {
    match std::env::var("CSPNET_STRESS") {
        Ok(n) => n.parse().unwrap_or(3000),
        Err(_) => 300,
    }
}

/// xorshift64: random kill moments without a dependency.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Busy-waits `d` (the writer's work between writes, so that the reader is asleep, not spinning,
/// when a write commits it).
fn busy(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
// A second lost wake-up is still open: the reader sometimes sleeps with its word still `Waiting`
// (never alerted, so not the claim-then-die window that `futex::wait`'s re-check closes). Seen in
// about one debug run in four, and once in seven release runs on a loaded machine. Run it with
// `--include-ignored` (and `CSPNET_STRESS=3000` for more rounds).
#[ignore = "a second lost wake-up (the reader is never alerted) is still open"]
fn a_reader_wakes_whenever_its_writer_is_killed() {
    let mut seed = u64::from(std::process::id()) | 1;
    let mut hung = Vec::new();
    let rounds = rounds();
    for round in 0..rounds {
        let ch = Channel::<u64>::new();
        let (w, r) = (ch.writer(), ch.reader());
        drop(ch);
        let mut sup = Supervisor::<u32>::new();
        let id = sup
            .start(process(move || {
                for i in 0u64.. {
                    busy(Duration::from_micros(20 + i % 17));
                    w.write(i)?;
                }
                Ok(0)
            }))
            .unwrap();
        let pid = sup.pid(id).unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut expect = 0u64;
            let end = loop {
                match r.read() {
                    Ok(v) => {
                        assert_eq!(v, expect, "values arrive in order, none lost");
                        expect += 1;
                    }
                    Err(e) => break e,
                }
            };
            let _ = tx.send(end);
        });
        // Let the writer run a random while (the first write included), then kill it.
        busy(Duration::from_micros(200 + next(&mut seed) % 3000));
        sup.kill(id).unwrap();
        // A kill inside the allocator breaks the heap and poisons every channel, the
        // supervisor's own exits included (a documented limit): the reader must still wake, but
        // no later round can run in this segment.
        let broken = match sup.next_exit() {
            Some(exit) => {
                assert!(
                    exit.outcome.is_err(),
                    "round {round}: the writer was killed"
                );
                false
            }
            None => true,
        };
        assert_gone(pid);
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(end) => {
                // Retired as a rule; poisoned when the kill came inside a critical section.
                assert!(
                    matches!(end, ChannelError::Retired | ChannelError::Poisoned),
                    "round {round}: {end:?}"
                );
                reader.join().unwrap();
            }
            // The reader thread stays blocked; the test fails below, which ends the process.
            Err(_) => hung.push(round),
        }
        if !hung.is_empty() {
            break;
        }
        if broken {
            eprintln!("round {round}: the writer died in the allocator; the heap is broken, stop");
            break;
        }
    }
    assert!(
        hung.is_empty(),
        "a reader never woke after its writer was killed (round {hung:?} of {rounds})"
    );
}
