//! Job graphs on OS processes: what only this backend has. Each runner is a forked process under
//! the scheduler's `Supervisor`, so a runner that is killed from outside fails only the job it was
//! running (with the cause) and is replaced; the other jobs run on. The conformance suite's `jobs`
//! group covers what every backend shares. Linux only, like the processes backend itself.
#![cfg(target_os = "linux")]

use cspnet_core::jobs::{EventKind, Job, JobEvent, JobGraph, JobStatus, Scheduler};
use cspnet_processes::{Channel, Engine, process, spawn};
use std::time::{Duration, Instant};

#[test]
fn a_killed_runner_fails_only_its_job_and_is_replaced() {
    let dir = std::env::temp_dir().join(format!("cspnet-jobs-runner-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("runner.pid");
    // The command's parent is its runner: the command writes its pid down, and an observer kills
    // it once the scheduler has reported the command started (the runner is then waiting for the
    // command, not in the middle of a channel operation).
    let script = format!(
        "echo $PPID > {p}.tmp; mv {p}.tmp {p}; exec sleep 7.25",
        p = pidfile.display()
    );
    let graph = JobGraph::new()
        .job(Job::shell("victim", script).priority(9))
        .jobs((0..4).map(|i| Job::new(format!("fine-{i}"), "true")))
        .job(Job::new("after", "true").needs(["victim"]))
        .build()
        .unwrap();
    let events = Channel::<JobEvent>::new();
    let r = events.reader();
    let killer = spawn([process(move || {
        for e in r {
            let e = e?;
            if e.job == "victim" && matches!(e.kind, EventKind::Started { .. }) {
                let deadline = Instant::now() + Duration::from_secs(20);
                let pid = loop {
                    if let Ok(text) = std::fs::read_to_string(&pidfile) {
                        break text.trim().parse::<i32>().unwrap();
                    }
                    assert!(Instant::now() < deadline, "the victim never wrote its pid");
                    std::thread::sleep(Duration::from_millis(5));
                };
                // SAFETY: kill takes plain integers.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            }
        }
        Ok(())
    })]);
    let started = Instant::now();
    let report = Scheduler::<Engine>::new(graph)
        .jobs(2)
        .events(events.writer())
        .run()
        .unwrap();
    drop(events);
    killer.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let victim = report.get("victim").unwrap();
    assert_eq!(victim.status, JobStatus::Failed, "{report}");
    let reason = victim.reason.as_deref().unwrap();
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
        Some("needs 'victim', which failed")
    );
    // The command's group was killed with its runner, not waited for, and nothing is left.
    assert!(started.elapsed() < Duration::from_secs(6), "{report}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(pid) = running("sleep\x007.25\0") {
        assert!(Instant::now() < deadline, "{pid} outlived its job");
        std::thread::sleep(Duration::from_millis(10));
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
