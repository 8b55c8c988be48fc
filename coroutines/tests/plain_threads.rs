//! Channels and alternations work between coroutines and plain OS threads, in both directions.

use cspnet_coroutines::{Alternation, Channel, ChannelError, process, spawn};
use std::time::Duration;

#[test]
fn a_plain_thread_and_coroutines_talk_both_ways() {
    let to_co = Channel::<u32>::new();
    let from_co = Channel::<u32>::new();
    let (tr, fw) = (to_co.reader(), from_co.writer());
    let handle = spawn([process(move || {
        for v in &tr {
            fw.write(v? * 2)?;
        }
        Ok(())
    })]);
    let (tw, fr) = (to_co.writer(), from_co.reader());
    let worker = std::thread::spawn(move || {
        let mut got = Vec::new();
        for i in 0..100 {
            tw.write(i).unwrap();
            got.push(fr.read().unwrap());
        }
        drop(tw);
        assert_eq!(fr.read(), Err(ChannelError::Retired));
        got
    });
    let got = worker.join().unwrap();
    assert_eq!(got, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(handle.join().unwrap(), vec![Ok(())]);
}

#[test]
fn a_plain_thread_alternation_times_out_and_is_woken_by_a_coroutine() {
    let c = Channel::<u32>::new();
    let r = c.reader();
    let w = c.writer();
    // Nothing ready: the timeout fires on the plain thread.
    let v = Alternation::new()
        .input(&r, |v| v)
        .timeout(Duration::from_millis(5), || 0)
        .select();
    assert_eq!(v, Ok(0));
    let h = spawn([process(move || w.write(9))]);
    let v = Alternation::new()
        .input(&r, |v| v)
        .timeout(Duration::from_secs(600), || 0)
        .select();
    assert_eq!(v, Ok(9));
    h.join().unwrap();
}

#[test]
fn ten_thousand_processes_in_a_pipeline() {
    const N: usize = 10_000;
    let chans: Vec<Channel<u64>> = (0..=N).map(|_| Channel::new()).collect();
    let mut procs = Vec::with_capacity(N);
    for i in 0..N {
        let (r, w) = (chans[i].reader(), chans[i + 1].writer());
        procs.push(process(move || {
            for v in &r {
                w.write(v? + 1)?;
            }
            Ok(())
        }));
    }
    let (w0, rn) = (chans[0].writer(), chans[N].reader());
    drop(chans);
    let h = spawn(procs);
    for k in 0..3 {
        w0.write(k).unwrap();
        assert_eq!(rn.read(), Ok(k + N as u64));
    }
    drop(w0);
    assert_eq!(rn.read(), Err(ChannelError::Retired));
    assert!(h.join().unwrap().iter().all(|o| o.is_ok()));
}
