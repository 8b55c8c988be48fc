//! Timeouts and poison racing with communications: a value is delivered exactly once or not at
//! all, and the party that timed out knows it was not delivered.

use cspnet_coroutines::{Alternation, Channel, ChannelError, parallel, process};
use std::time::Duration;

const SENTINEL: u32 = u32::MAX;

/// Writers and a reader that both time out often: a writer resends a value only when its output
/// guard timed out, so a value delivered *and* timed out would arrive twice, and one timed out
/// *and* lost would be missing. The reader pauses now and then for longer than the writers'
/// timeout, so writer timeouts fire while the reader comes back to claim them.
#[test]
fn output_and_input_timeouts_racing_with_hand_offs_never_lose_or_duplicate() {
    const WRITERS: u32 = 3;
    const PER: u32 = 300;
    let ms = Duration::from_millis;
    for buffer in [0usize, 2] {
        let c = Channel::<u32>::with_buffer(buffer);
        let done = Channel::<u32>::new();
        let mut procs = Vec::new();
        for wi in 0..WRITERS {
            let (w, dw) = (c.writer(), done.writer());
            procs.push(process(move || {
                let mut timeouts = 0;
                for k in 0..PER {
                    let v = wi * PER + k;
                    while !Alternation::new()
                        .output(&w, v, || true)
                        .timeout(ms(1), || false)
                        .select()?
                    {
                        timeouts += 1;
                    }
                }
                dw.write(1)?;
                Ok((Vec::new(), timeouts))
            }));
        }
        let (dr, w) = (done.reader(), c.writer());
        procs.push(process(move || {
            for _ in 0..WRITERS {
                dr.read()?;
            }
            w.write(SENTINEL)?; // every writer has finished: nothing else is in flight
            Ok((Vec::new(), 0))
        }));
        let r = c.reader();
        let idle = Channel::<u32>::new();
        let (idle_r, _idle_w) = (idle.reader(), idle.writer());
        procs.push(process(move || {
            let (mut got, mut timeouts) = (Vec::new(), 0);
            loop {
                if got.len() % 10 == 9 {
                    // A pause the writers' timeouts fire in.
                    Alternation::new()
                        .input(&idle_r, |_| ())
                        .timeout(ms(2), || ())
                        .select()?;
                }
                let v = Alternation::new()
                    .input(&r, Some)
                    .timeout(ms(1), || None)
                    .select()?;
                match v {
                    Some(SENTINEL) => return Ok((got, timeouts)),
                    Some(v) => got.push(v),
                    None => timeouts += 1,
                }
            }
        }));
        drop(c);
        let out: Vec<(Vec<u32>, u32)> = parallel(procs)
            .unwrap()
            .into_iter()
            .map(|o| o.unwrap())
            .collect();
        let timeouts: Vec<u32> = out.iter().map(|(_, t)| *t).collect();
        eprintln!("buffer {buffer}: timeouts per process {timeouts:?}");
        let mut all = out.last().unwrap().0.clone();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..WRITERS * PER).collect::<Vec<_>>(),
            "buffer {buffer}: a value was lost or duplicated"
        );
    }
}

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
