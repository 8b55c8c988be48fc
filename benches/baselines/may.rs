//! The token ring and commstime written directly on may: coroutines started with `may::go!`, one
//! `may::sync::mpsc` channel per link, the same networks as the cspnet versions.
//!
//! may's mpsc channels are unbounded, so a send never waits for the receiver: in the one-token ring
//! that changes nothing (each node waits for the token anyway), in commstime the consumer's side
//! channel has no back-pressure. Both make this a floor, not a stricter rendezvous.

use may::coroutine::JoinHandle;
use may::go;
use may::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

const STOP: u64 = u64::MAX;

/// Starts a coroutine that runs `f`.
fn start<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    // may's spawn is unsafe because a coroutine may move between worker threads where it waits and
    // runs on a small fixed stack: these bodies keep no thread-local across a wait, make no
    // blocking OS call (only may channel operations) and use a few hundred bytes of stack.
    go!(f)
}

/// A ring of `n` coroutines passing `tokens` tokens `hops` hops each; the time the hops took.
pub(crate) fn ring(n: usize, tokens: u64, hops: u64) -> Duration {
    let (txs, rxs): (Vec<Sender<u64>>, Vec<Receiver<u64>>) = (0..n).map(|_| channel()).unzip();
    let (done_tx, done_rx) = channel::<()>();
    let (go_tx, go_rx) = channel::<()>();
    let mut go_rx = Some(go_rx);
    let mut nodes = Vec::with_capacity(n);
    for (i, inp) in rxs.into_iter().enumerate() {
        let out = txs[(i + 1) % n].clone();
        let done = done_tx.clone();
        let go = if i == 0 { go_rx.take() } else { None };
        nodes.push(start(move || {
            if let Some(go) = go {
                go.recv().unwrap();
                for _ in 0..tokens {
                    out.send(hops).unwrap();
                }
            }
            while let Ok(left) = inp.recv() {
                if left == STOP {
                    let _ = out.send(STOP); // the next node may have stopped already
                    return;
                }
                if left <= 1 {
                    done.send(()).unwrap();
                } else {
                    out.send(left - 1).unwrap();
                }
            }
        }));
    }
    let first = txs[0].clone();
    drop((txs, done_tx));
    let timer = start(move || {
        let start = Instant::now();
        go_tx.send(()).unwrap();
        for _ in 0..tokens {
            done_rx.recv().unwrap();
        }
        let elapsed = start.elapsed();
        first.send(STOP).unwrap(); // travels round the ring and ends every node
        elapsed
    });
    let elapsed = timer.join().unwrap();
    for node in nodes {
        node.join().unwrap();
    }
    elapsed
}

/// Commstime (Prefix, Delta, Successor, Consumer) on four coroutines; the time `cycles` cycles took.
pub(crate) fn commstime(cycles: u64) -> Duration {
    let (aw, ar) = channel::<u64>();
    let (bw, br) = channel::<u64>();
    let (cw, cr) = channel::<u64>();
    let (dw, dr) = channel::<u64>();
    let prefix = start(move || {
        aw.send(0).unwrap();
        while let Ok(v) = cr.recv() {
            if aw.send(v).is_err() {
                return;
            }
        }
    });
    let delta = start(move || {
        while let Ok(v) = ar.recv() {
            if bw.send(v).is_err() || dw.send(v).is_err() {
                return;
            }
        }
    });
    let successor = start(move || {
        while let Ok(v) = br.recv() {
            if cw.send(v + 1).is_err() {
                return;
            }
        }
    });
    let consumer = start(move || {
        for _ in 0..cycles.min(1_000) {
            dr.recv().unwrap();
        }
        let start = Instant::now();
        for _ in 0..cycles {
            dr.recv().unwrap();
        }
        start.elapsed() // dropping `dr` makes delta's next send fail, and the cycle unwinds
    });
    let elapsed = consumer.join().unwrap();
    for h in [prefix, delta, successor] {
        h.join().unwrap();
    }
    elapsed
}
