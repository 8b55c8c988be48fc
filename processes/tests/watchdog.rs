//! The orphan guard's watchdog holds none of the program's memory. Alone in its binary: the
//! watchdog is forked at a program's first child, and that must come after the memory is touched.
#![cfg(target_os = "linux")]

use cspnet_processes::{parallel, process};
use std::time::{Duration, Instant};

/// Our child that is the watchdog: named `cspnet-watchdog` (the fork) or with a command line that
/// starts so (once it is a shell).
fn watchdog() -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let named = name == "cspnet-watchdog" || cmdline.starts_with(b"cspnet-watchdog\0");
        (ppid == me && named).then_some(pid)
    })
}

/// The resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in the watchdog's status")
}

/// The watchdog is forked at the first child, then becomes a small shell, so the pages the
/// program had then (and may free later) are not kept alive by it. Before, it kept them all.
#[test]
fn the_watchdog_holds_none_of_the_programs_memory() {
    // 64 MiB, touched, so that a fork that kept them would show them in its RSS.
    let table = vec![1u8; 64 << 20];
    let out = parallel([process(move || {
        Ok(table.iter().map(|&b| b as u64).sum::<u64>())
    })]);
    assert_eq!(out.unwrap(), vec![Ok(64 << 20)]);
    let pid = watchdog().expect("the first child started a watchdog");
    // It becomes a shell right after the fork; allow for that with a deadline, not a guess.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rss = rss_kib(pid);
    while rss >= 16 << 10 && Instant::now() < deadline {
        std::thread::yield_now();
        rss = rss_kib(pid);
    }
    assert!(rss < 16 << 10, "the watchdog holds {rss} KiB");
}
