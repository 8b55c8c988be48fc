//! Timed parking for coroutines without may's `park_timeout`, which can lose its wake-up.
//!
//! may 0.3.51 registers a park's timer before it stores the parked coroutine; a timer that fires in
//! between finds no coroutine to wake, and the coroutine then sleeps for ever (seen as a hang of the
//! suite's timeout race test on a loaded machine). may's plain `unpark` has no such window: it sets
//! a flag that the parking side checks after storing itself. So a timed park here is a plain
//! `park()` plus an entry in this module's timer thread, which calls `unpark()` at the deadline.
//! A late or stale unpark is harmless: every caller re-checks its condition after waking.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Entry {
    at: Instant,
    seq: u64,
    co: may::coroutine::Coroutine,
    /// Set once the coroutine has stopped waiting, so the timer skips it.
    done: Arc<AtomicBool>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Timers {
    queue: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    changed: Condvar,
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<&'static Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let timers: &'static Timers = Box::leak(Box::default());
        std::thread::Builder::new()
            .name("cspnet-timer".into())
            .spawn(move || run(timers))
            .expect("cspnet-coroutines could not start its timer thread");
        timers
    })
}

/// The timer thread: sleeps until the earliest deadline and unparks whoever is still waiting.
fn run(timers: &'static Timers) {
    let mut guard = timers.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let wait = match guard.0.peek() {
            Some(Reverse(first)) if first.at <= now => {
                let Reverse(entry) = guard.0.pop().expect("peeked");
                if !entry.done.load(Ordering::Acquire) {
                    entry.co.unpark();
                }
                continue;
            }
            Some(Reverse(first)) => Some(first.at - now),
            None => None,
        };
        guard = match wait {
            Some(d) => {
                let waited = timers.changed.wait_timeout(guard, d);
                waited.unwrap_or_else(|e| e.into_inner()).0
            }
            None => timers
                .changed
                .wait(guard)
                .unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// Parks the calling coroutine for at most `timeout` (it may also wake earlier, when unparked).
pub(crate) fn park_coroutine_timeout(timeout: Duration) {
    let Some(at) = Instant::now().checked_add(timeout) else {
        may::coroutine::park();
        return;
    };
    let done = Arc::new(AtomicBool::new(false));
    let timers = timers();
    {
        let mut guard = timers.queue.lock().unwrap_or_else(|e| e.into_inner());
        let seq = guard.1;
        guard.1 += 1;
        let earliest = guard.0.peek().is_none_or(|Reverse(first)| at < first.at);
        guard.0.push(Reverse(Entry {
            at,
            seq,
            co: may::coroutine::current(),
            done: Arc::clone(&done),
        }));
        if earliest {
            timers.changed.notify_one();
        }
    }
    may::coroutine::park();
    done.store(true, Ordering::Release);
}
