//! `CSPNET_SHM_SIZE`: a value that does not parse or is too small is ignored with a one-line
//! warning naming the variable, the value and the size used instead.
//!
//! The segment is created once per process, so each case runs this test binary again as a child
//! with the variable set (the child test below does the work only then) and reads its output.
#![cfg(target_os = "linux")]

use cspnet_processes::{Channel, ChannelError};
use std::process::Command;

/// Set in the child: the setting under test is in its environment.
const CHILD: &str = "CSPNET_TEST_SETTINGS_CHILD";

/// In the child: creates the segment and reports whether a 1 MiB payload fits its heap (it does
/// in the default 256 MiB segment, not in a 64 KiB one).
#[test]
fn child_reports_whether_a_mebibyte_fits() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let c = Channel::<Vec<u8>>::with_buffer(1);
    let (r, w) = (c.reader(), c.writer());
    match w.write(vec![7; 1 << 20]) {
        Ok(()) => {
            assert_eq!(r.read().map(|v| v.len()), Ok(1 << 20));
            println!("payload: fits");
        }
        Err(ChannelError::TooLarge { .. }) => println!("payload: too large"),
        Err(e) => panic!("unexpected: {e}"),
    }
}

/// Runs the child with `CSPNET_SHM_SIZE=value`: (what it reported, its stderr).
fn run_child(value: &str) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_reports_whether_a_mebibyte_fits",
            "--exact",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(CHILD, "1")
        .env("CSPNET_SHM_SIZE", value)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    let report = stdout
        .lines()
        .find_map(|l| l.split_once("payload: ").map(|(_, report)| report.trim()))
        .unwrap_or_else(|| panic!("no report: {stdout}"))
        .to_owned();
    (report, stderr)
}

#[test]
fn a_bad_or_too_small_shm_size_warns_and_uses_the_default() {
    for value in ["abc", "0", "1k", "-5", "12q"] {
        let (report, stderr) = run_child(value);
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("CSPNET_SHM_SIZE"))
            .collect();
        assert_eq!(
            warnings,
            [format!(
                "cspnet-processes: ignoring CSPNET_SHM_SIZE={value:?}: expected a number >= 8192 \
                 (k/m/g suffixes allowed); using {}",
                256 << 20
            )],
            "for {value:?}"
        );
        assert_eq!(
            report, "fits",
            "the default segment was not used for {value:?}"
        );
    }
}

#[test]
fn a_valid_shm_size_is_used_without_a_warning() {
    let (report, stderr) = run_child("64k");
    assert!(!stderr.contains("CSPNET_SHM_SIZE"), "{stderr}");
    assert_eq!(report, "too large", "a 64 KiB segment held a 1 MiB payload");
    let (report, stderr) = run_child("8M");
    assert!(!stderr.contains("CSPNET_SHM_SIZE"), "{stderr}");
    assert_eq!(report, "fits");
}
