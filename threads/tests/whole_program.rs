//! What ends the whole program on threads (README, "Where the backends differ"): a stack overflow
//! in a process aborts it, and `std::process::exit` in a process exits it. Each case runs this
//! test binary again as a child (the child test below acts only then) and looks at how it ended.
#![cfg(target_os = "linux")]

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

/// `SIGABRT` on Linux (the crate has no libc dependency to name it).
const SIGABRT: i32 = 6;

/// Set in the child: which case to run.
const CASE: &str = "CSPNET_TEST_WHOLE_PROGRAM_CASE";

#[allow(unconditional_recursion)]
fn deep(n: u64) -> u64 {
    let frame = [n; 64];
    std::hint::black_box(&frame);
    deep(n + 1) + frame[3]
}

/// In the child: runs the case in a threads process, then says the program went on.
#[test]
fn child_runs_a_case() {
    let Some(case) = std::env::var_os(CASE) else {
        return;
    };
    let out = cspnet_threads::parallel([cspnet_threads::process(move || match case.to_str() {
        Some("overflow") => Ok(deep(0)),
        Some("exit") => std::process::exit(7),
        _ => Ok(0),
    })]);
    println!("the program went on: {out:?}");
}

fn run_child(case: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_runs_a_case",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CASE, case)
        .output()
        .unwrap()
}

#[test]
fn a_stack_overflow_in_a_process_aborts_the_whole_program() {
    let out = run_child("overflow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(SIGABRT), "{stderr}");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("went on"));
}

#[test]
fn exit_in_a_process_ends_the_whole_program() {
    let out = run_child("exit");
    assert_eq!(out.status.code(), Some(7));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("went on"));
}
