//! io() moves blocking calls off the coroutine workers: 100 sleeping calls on 2 workers overlap.

use cspnet_coroutines::{configure, io, parallel, process};
use std::time::{Duration, Instant};

#[test]
fn blocking_calls_in_io_do_not_stall_the_workers() {
    // The only test in this binary, so it fixes the runtime's settings before anything starts.
    configure().workers(2).io_threads(256).apply().unwrap();
    const PROCS: u32 = 100;
    let nap = Duration::from_millis(100);
    let start = Instant::now();
    let out = parallel((0..PROCS).map(|i| {
        process(move || {
            let slept = io(move || {
                std::thread::sleep(nap);
                i
            });
            Ok(slept)
        })
    }))
    .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(out, (0..PROCS).map(Ok).collect::<Vec<_>>());
    // Run in place on 2 workers, the calls would take PROCS / 2 * 100 ms = 5 s.
    assert!(
        elapsed < Duration::from_secs(1),
        "{PROCS} io() calls of {nap:?} took {elapsed:?} on 2 workers"
    );
    eprintln!("{PROCS} io() calls of {nap:?} on 2 workers took {elapsed:?}");

    // A panic inside io() comes back to the calling process, which reports it with its name.
    let err = parallel([process(|| -> cspnet_coroutines::Outcome<()> {
        io(|| panic!("disk on fire"));
        Ok(())
    })
    .named("reader")])
    .unwrap_err();
    assert_eq!(err.first().process(), "reader");
    assert!(err.to_string().contains("disk on fire"), "{err}");

    // From a plain thread, io() just calls the function.
    assert_eq!(io(|| 5), 5);
}
