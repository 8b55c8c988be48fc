//! configure() applies before the first process starts and gives a clear error afterwards.

use cspnet_coroutines::{configure, parallel, process, settings};

#[test]
fn configure_before_start_applies_and_after_start_fails_clearly() {
    let applied = configure()
        .workers(3)
        .stack_size(96 * 1024)
        .io_threads(7)
        .apply()
        .unwrap();
    assert_eq!(
        (
            applied.workers(),
            applied.stack_size(),
            applied.io_threads()
        ),
        (3, 96 * 1024, 7)
    );
    assert_eq!(parallel([process(|| Ok(1))]).unwrap(), vec![Ok(1)]);
    assert_eq!(settings(), applied);
    // Asking again for what is in force is fine; asking for something else is an error.
    assert_eq!(
        configure()
            .workers(3)
            .stack_size(96 * 1024)
            .io_threads(7)
            .apply(),
        Ok(applied)
    );
    let err = configure().workers(1).apply().unwrap_err();
    assert_eq!(err.current(), applied);
    let msg = err.to_string();
    assert!(msg.contains("before the first process starts"), "{msg}");
    assert_eq!(
        settings(),
        applied,
        "a failed configure changed the settings"
    );
}
