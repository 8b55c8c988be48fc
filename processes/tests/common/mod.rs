//! What the processes backend's test files check alike: that a process is gone, and that nothing
//! of ours is left in /dev/shm.
// Each test binary includes this module and uses what it needs of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

/// Waits (up to a minute) until `pid` is no longer in /proc: not running, not a zombie.
pub(crate) fn assert_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "pid {pid} is still there");
        std::thread::yield_now();
    }
}

/// Nothing of ours in /dev/shm: the segment is a memfd, and ipc-channel keeps nothing there.
pub(crate) fn assert_nothing_in_dev_shm() {
    let ours: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("cspnet") || n.contains("ipc-channel"))
                .collect()
        })
        .unwrap_or_default();
    assert!(ours.is_empty(), "left in /dev/shm: {ours:?}");
}
