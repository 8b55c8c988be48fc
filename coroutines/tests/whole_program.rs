//! What ends the whole program on coroutines (README, "Where the backends differ"):
//! `std::process::exit` in a process exits it (a stack overflow is reported: `overflow.rs`). The
//! case runs this test binary again as a child (the child test below acts only then) and looks at
//! how it ended.
#![cfg(target_os = "linux")]

use std::process::{Command, Output};

/// Set in the child: which case to run.
const CASE: &str = "CSPNET_TEST_WHOLE_PROGRAM_CASE";

/// In the child: runs the case in a coroutines process, then says the program went on.
#[test]
fn child_runs_a_case() {
    let Some(case) = std::env::var_os(CASE) else {
        return;
    };
    let out =
        cspnet_coroutines::parallel([cspnet_coroutines::process(move || match case.to_str() {
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
fn exit_in_a_process_ends_the_whole_program() {
    let out = run_child("exit");
    assert_eq!(out.status.code(), Some(7));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("went on"));
}
