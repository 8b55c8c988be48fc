//! Poison racing with alternations registered on several channels. (Timeouts racing with
//! hand-offs are in the conformance suite.)

use cspnet_coroutines::{Alternation, Channel, ChannelError, parallel, process};

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
