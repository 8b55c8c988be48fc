//! The token ring, commstime and fan-in written directly on crossbeam-channel `bounded(0)`, on OS
//! threads.

use crossbeam_channel::{Receiver, Select, Sender, bounded};
use std::thread;
use std::time::{Duration, Instant};

const STOP: u64 = u64::MAX;

/// A ring of `n` threads passing `tokens` tokens `hops` hops each; the time the hops took.
pub(crate) fn ring(n: usize, tokens: u64, hops: u64) -> Duration {
    let (txs, rxs): (Vec<Sender<u64>>, Vec<Receiver<u64>>) = (0..n).map(|_| bounded(0)).unzip();
    let (done_tx, done_rx) = bounded::<()>(0);
    let (go_tx, go_rx) = bounded::<()>(0);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (inp, out) = (rxs[i].clone(), txs[(i + 1) % n].clone());
        let done = done_tx.clone();
        let go = (i == 0).then(|| go_rx.clone());
        handles.push(thread::spawn(move || {
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
    drop((rxs, done_tx, go_rx));
    let first = txs[0].clone();
    drop(txs);
    let start = Instant::now();
    go_tx.send(()).unwrap();
    for _ in 0..tokens {
        done_rx.recv().unwrap();
    }
    let elapsed = start.elapsed();
    first.send(STOP).unwrap();
    drop(first);
    for h in handles {
        h.join().unwrap();
    }
    elapsed
}

/// Commstime (Prefix, Delta, Successor, Consumer) on four threads; the time `cycles` cycles took.
pub(crate) fn commstime(cycles: u64) -> Duration {
    let (aw, ar) = bounded::<u64>(0);
    let (bw, br) = bounded::<u64>(0);
    let (cw, cr) = bounded::<u64>(0);
    let (dw, dr) = bounded::<u64>(0);
    let prefix = thread::spawn(move || {
        aw.send(0).unwrap();
        while let Ok(v) = cr.recv() {
            if aw.send(v).is_err() {
                return;
            }
        }
    });
    let delta = thread::spawn(move || {
        while let Ok(v) = ar.recv() {
            if bw.send(v).is_err() || dw.send(v).is_err() {
                return;
            }
        }
    });
    let successor = thread::spawn(move || {
        while let Ok(v) = br.recv() {
            if cw.send(v + 1).is_err() {
                return;
            }
        }
    });
    for _ in 0..cycles.min(1_000) {
        dr.recv().unwrap();
    }
    let start = Instant::now();
    for _ in 0..cycles {
        dr.recv().unwrap();
    }
    let elapsed = start.elapsed();
    drop(dr); // delta's next send fails, and the cycle unwinds
    for h in [prefix, delta, successor] {
        h.join().unwrap();
    }
    elapsed
}

/// One thread selecting over `k` channels, each fed by its own writer thread; the time `messages`
/// receives took.
pub(crate) fn fan_in(k: usize, messages: u64) -> Duration {
    let (txs, rxs): (Vec<Sender<u64>>, Vec<Receiver<u64>>) = (0..k).map(|_| bounded(0)).unzip();
    let writers: Vec<_> = txs
        .into_iter()
        .map(|tx| thread::spawn(move || while tx.send(1).is_ok() {}))
        .collect();
    let mut select = Select::new();
    for rx in &rxs {
        select.recv(rx);
    }
    let mut receive = || {
        let op = select.select();
        let i = op.index();
        op.recv(&rxs[i]).unwrap()
    };
    for _ in 0..k {
        receive(); // warm up: every writer has started
    }
    let start = Instant::now();
    for _ in 0..messages {
        receive();
    }
    let elapsed = start.elapsed();
    drop(select);
    drop(rxs); // every writer's next send fails
    for w in writers {
        w.join().unwrap();
    }
    elapsed
}
