//! Races: poison against alternations registered on several channels, and timeouts against may's
//! timer. (Timeouts racing with hand-offs are in the conformance suite.)

use cspnet_coroutines::{Alternation, Channel, ChannelError, parallel, process};
use std::time::Duration;

/// Poison arriving while alternations are registered on several channels: every alternation
/// wakes with `Poisoned`, and values already taken are never reported as lost.
#[test]
fn poison_wakes_alternations_registered_on_many_channels() {
    for _ in 0..50 {
        let chans: Vec<Channel<u32>> = (0..4).map(|_| Channel::new()).collect();
        let mut procs = Vec::new();
        for _ in 0..4 {
            let readers: Vec<_> = chans.iter().map(|c| c.reader()).collect();
            procs.push(process(move || {
                let mut alt = Alternation::new();
                for r in &readers {
                    alt = alt.input(r, |v| v);
                }
                Ok(alt.select() == Err(ChannelError::Poisoned))
            }));
        }
        let killer = chans[3].writer();
        procs.push(process(move || {
            killer.poison();
            Ok(true)
        }));
        let _keep_writers: Vec<_> = chans.iter().map(|c| c.writer()).collect();
        let out = parallel(procs).unwrap();
        assert!(out.iter().all(|o| *o == Ok(true)), "{out:?}");
    }
}

/// may's `park_timeout` registers its timer before storing the parked coroutine, so a timer that
/// fires in between wakes nobody and the coroutine sleeps for ever; timed parks therefore go
/// through our own timer (`src/timer.rs`). That race needs a worker preempted for over a
/// millisecond inside a window of about 100 ns, so this stress test meets it only sometimes (the
/// suite's timeout race test met it in CI on a loaded machine, and a standalone program of 200
/// coroutines × 200 one-millisecond parks hung in 1 of 5 runs with three CPU hogs). What it checks
/// every time: many short timeouts under contention all fire, and a lost wake-up anywhere on the
/// timed-park path fails the test through the watchdog instead of hanging the run.
#[test]
fn many_short_timeouts_never_lose_a_wake_up() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..3)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let idle = Channel::<u32>::new();
        let _never_writes = idle.writer();
        let procs: Vec<_> = (0..500)
            .map(|_| {
                let r = idle.reader();
                process(move || {
                    let mut fired = 0u32;
                    for _ in 0..100 {
                        fired += Alternation::new()
                            .input(&r, |_| 0)
                            .timeout(Duration::from_millis(1), || 1)
                            .select()?;
                    }
                    Ok(fired)
                })
            })
            .collect();
        let _ = done_tx.send(parallel(procs));
    });
    let outcome = done_rx.recv_timeout(Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    let out = outcome
        .expect("a coroutine's timeout never woke it (lost wake-up)")
        .unwrap();
    assert!(out.iter().all(|o| *o == Ok(100)), "{out:?}");
}
