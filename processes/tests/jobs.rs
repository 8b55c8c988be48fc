//! Job graphs on OS processes: what only this backend has. Each runner is a forked process under
//! the scheduler's `Supervisor`, so a runner that is killed from outside fails only the job it was
//! running (with the cause) and is replaced; the other jobs run on. The conformance suite's `jobs`
//! group covers what every backend shares. Linux only, like the processes backend itself.
#![cfg(target_os = "linux")]

use cspnet_core::jobs::{Job, JobGraph, JobStatus, Scheduler};
use cspnet_processes::Engine;

#[test]
fn a_killed_runner_fails_only_its_job_and_is_replaced() {
    // The command's parent is its runner: `kill -9 $PPID` kills the runner while it waits.
    let graph = JobGraph::new()
        .job(Job::shell("assassin", "kill -9 $PPID; sleep 7.25").priority(9))
        .jobs((0..4).map(|i| Job::new(format!("fine-{i}"), "true")))
        .job(Job::new("after", "true").needs(["assassin"]))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let report = Scheduler::<Engine>::new(graph).jobs(2).run().unwrap();
    let assassin = report.get("assassin").unwrap();
    assert_eq!(assassin.status, JobStatus::Failed, "{report}");
    let reason = assassin.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("its runner failed: process 'job-runner-0' crashed")
            && reason.contains("SIGKILL"),
        "{reason}"
    );
    for i in 0..4 {
        assert_eq!(
            report.get(&format!("fine-{i}")).unwrap().status,
            JobStatus::Passed
        );
    }
    assert_eq!(
        report.get("after").unwrap().reason.as_deref(),
        Some("needs 'assassin', which failed")
    );
    // The command's group was killed with its runner, not waited for, and nothing is left.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{report}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Some(pid) = running("sleep\x007.25\0") {
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} outlived its job"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A process (not a zombie) whose command line is `cmdline`.
fn running(cmdline: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let zombie = stat.rsplit(')').next()?.trim_start().starts_with('Z');
        (cmd == cmdline.as_bytes() && !zombie).then_some(pid)
    })
}
