//! A process that overflows its stack is reported, never silently corrupting memory. The overflow
//! runs in a child process (this test binary re-run with an environment variable).

use cspnet_core::Cause;
use cspnet_coroutines::{configure, parallel, process};
use std::process::Command;

const CHILD: &str = "CSPNET_OVERFLOW_CHILD";

/// Recurses with a 1 KiB frame until the 64 KiB test stack runs out.
fn deep(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 128]);
    if n == 0 {
        frame[1]
    } else {
        deep(n - 1).wrapping_add(frame[7])
    }
}

#[test]
fn a_stack_overflow_is_reported_with_the_process_name() {
    if std::env::var_os(CHILD).is_some() {
        configure().stack_size(64 * 1024).apply().unwrap();
        let err = parallel([process(|| Ok(deep(1_000_000))).named("recursive")]).unwrap_err();
        let failure = err.first();
        assert_eq!(failure.process(), "recursive");
        assert!(matches!(failure.cause(), Cause::Crashed(_)), "{err}");
        println!("child reported: {err}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "a_stack_overflow_is_reported_with_the_process_name",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has overflowed its stack"),
        "no overflow report on stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(
        stdout.contains(
            "child reported: process 'recursive' crashed: overflowed its coroutine stack"
        ),
        "the overflow was not reported by parallel (status {:?}):\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(out.status.success(), "child failed: {stderr}");
}

/// A stack large enough for the work runs it fine (the same recursion, 20 levels deep).
#[test]
fn a_moderate_recursion_fits_the_default_stack() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let out = parallel([process(|| Ok(deep(20)))]).unwrap();
    assert_eq!(out.len(), 1);
}
