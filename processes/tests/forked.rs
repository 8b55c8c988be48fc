//! Fork-after-initialise workers (`cspnet_processes::forked`): hooks and per-worker directories,
//! every event exactly once under each dispatch, a crashing worker reported by rank without
//! losing the others' outputs, and nothing left behind. The memory test (PSS against RSS) is in
//! `forked_memory.rs`, alone in its binary.
//!
//! Only OS processes can do this (the other backends share one address space already), so these
//! tests are here and not in the conformance suite. Linux only, like the backend.
#![cfg(target_os = "linux")]

mod common;
use common::{assert_gone, assert_nothing_in_dev_shm};

use cspnet_processes::forked::{Dispatch, ForkError, ForkWorkers, MemoryReport, Run};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Every worker that was sampled has gone, and nothing is in /dev/shm.
fn assert_clean<E>(run: &Run<E>) {
    if let Ok(mem) = run.memory() {
        mem.workers.iter().for_each(|m| assert_gone(m.pid));
    }
    assert_nothing_in_dev_shm();
}

fn suicide() -> ! {
    // SAFETY: raise(3) with a valid signal number; SIGKILL ends this process at once.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL does not return");
}

/// The merged, sorted output as event id -> how many times it appears (each line `id result`).
fn merged_counts<E>(run: &Run<E>, root: &Path) -> BTreeMap<u64, usize> {
    let merged = root.join("merged.txt");
    run.merge_sorted_by_key(&merged, |l| l.split(' ').next().map(str::to_owned))
        .unwrap();
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(&merged).unwrap().lines() {
        let (id, result) = line.split_once(' ').expect("an `id result` line");
        let id: u64 = id.parse().unwrap();
        assert_eq!(
            result.parse::<u64>().unwrap(),
            id * id,
            "result of event {id}"
        );
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// `before_fork` runs once in the parent before any worker starts; `after_fork` runs in each
/// worker, in its own directory (its working directory), in a process of its own, with its rank.
#[test]
fn hooks_run_before_the_fork_and_in_each_worker_in_its_own_directory() {
    let root = tempfile::tempdir().unwrap();
    let parent = std::process::id();
    let marker = root.path().join("before-fork.txt");
    let m = marker.clone();
    let run = ForkWorkers::new(3, root.path())
        .before_fork(move || std::fs::write(&m, "initialised"))
        .after_fork(move |ctx| {
            // Relative: lands in the worker's directory, its working directory.
            let before = std::fs::read_to_string(&marker)?;
            let cwd = std::env::current_dir()?;
            let line = format!(
                "rank {} of {} pid {} cwd {} saw {before}",
                ctx.rank(),
                ctx.workers(),
                std::process::id(),
                cwd.display()
            );
            std::fs::write("after-fork.txt", line)
        })
        .run(0..6u64, |ctx, e| writeln!(ctx, "{e} {}", e * e))
        .unwrap();
    assert!(run.is_complete());
    let mut pids = Vec::new();
    for rank in 0..3 {
        let dir = &run.dirs()[rank];
        assert_eq!(
            dir,
            &root
                .path()
                .canonicalize()
                .unwrap()
                .join(format!("worker-{rank}"))
        );
        let said = std::fs::read_to_string(dir.join("after-fork.txt")).unwrap();
        let words: Vec<&str> = said.split(' ').collect();
        assert_eq!(
            &words[..4],
            ["rank", &rank.to_string(), "of", "3"],
            "{said}"
        );
        let pid: u32 = words[5].parse().unwrap();
        assert_ne!(pid, parent, "after_fork ran in the parent");
        assert_eq!(words[7], dir.display().to_string());
        assert_eq!(words[9], "initialised");
        pids.push(pid);
        assert_eq!(run.memory().unwrap().workers[rank].pid, pid);
    }
    pids.dedup();
    assert_eq!(pids.len(), 3, "one process per worker");
    assert_clean(&run);
}

/// Each dispatch hands every event to exactly one worker, and the merge has each exactly once;
/// round-robin gives event `i` to worker `i % W`.
#[test]
fn every_event_is_processed_exactly_once_under_each_dispatch() {
    const EVENTS: u64 = 500;
    for dispatch in [Dispatch::Queue, Dispatch::RoundRobin, Dispatch::Chunks(7)] {
        let root = tempfile::tempdir().unwrap();
        let run = ForkWorkers::new(3, root.path())
            .dispatch(dispatch)
            .run(0..EVENTS, |ctx, e| writeln!(ctx, "{e} {}", e * e))
            .unwrap();
        assert!(run.is_complete(), "{dispatch:?}: {:?}", run.failures());
        assert_eq!(
            run.events_done().iter().sum::<u64>(),
            EVENTS,
            "{dispatch:?}"
        );
        let counts = merged_counts(&run, root.path());
        assert_eq!(counts.len() as u64, EVENTS, "{dispatch:?}");
        assert!(
            counts.values().all(|&n| n == 1),
            "{dispatch:?}: an event twice"
        );
        assert_eq!(
            run.merge_lines(&root.path().join("plain.txt")).unwrap(),
            EVENTS
        );
        if dispatch == Dispatch::RoundRobin {
            for rank in 0..3u64 {
                let out = run.read_output(rank as usize).unwrap();
                let ids: Vec<u64> = out
                    .lines()
                    .map(|l| l.split(' ').next().unwrap().parse().unwrap())
                    .collect();
                let want: Vec<u64> = (0..EVENTS).filter(|i| i % 3 == rank).collect();
                assert_eq!(ids, want, "worker {rank}");
            }
        }
        assert_clean(&run);
    }
}

/// A worker killed by SIGKILL in the middle of its events is reported by rank; the other workers
/// process every other event, their outputs are intact, and the one event it had taken is listed
/// as lost. The killed worker's committed output is kept too.
#[test]
fn a_killed_worker_is_reported_by_rank_and_the_others_lose_nothing() {
    const EVENTS: u64 = 300;
    const CURSED: u64 = 137;
    let root = tempfile::tempdir().unwrap();
    let run = ForkWorkers::new(3, root.path())
        .run(0..EVENTS, |ctx, e| {
            if e == CURSED {
                // Say who took it, beside the output, before dying.
                std::fs::write("took-the-cursed-event", "")?;
                suicide();
            }
            writeln!(ctx, "{e} {}", e * e)
        })
        .unwrap();
    let failures = run.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let rank = failures[0].rank;
    assert!(run.dirs()[rank].join("took-the-cursed-event").exists());
    assert!(
        failures[0].reason.contains("SIGKILL")
            && failures[0].reason.contains(&format!("worker-{rank}")),
        "{}",
        failures[0]
    );
    assert_eq!(run.lost(), [CURSED]);
    let counts = merged_counts(&run, root.path());
    let want: Vec<u64> = (0..EVENTS).filter(|&e| e != CURSED).collect();
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), want);
    assert!(counts.values().all(|&n| n == 1));
    assert_eq!(run.events_done().iter().sum::<u64>(), EVENTS - 1);
    let mem = run.memory().unwrap();
    assert_eq!(mem.workers.len(), 2, "the dead worker is not sampled");
    assert!(mem.workers.iter().all(|m| m.rank != Some(rank)));
    assert_clean(&run);
}

/// Round-robin: a worker whose event fails (an error from the closure) is reported by rank with
/// the error; what it had taken is lost, the rest goes to the other workers, and lost plus done
/// is every event exactly once.
#[test]
fn a_failing_worker_in_round_robin_loses_only_what_it_had_taken() {
    const EVENTS: u64 = 200;
    let root = tempfile::tempdir().unwrap();
    let run = ForkWorkers::new(3, root.path())
        .dispatch(Dispatch::RoundRobin)
        .run(0..EVENTS, |ctx, e| {
            if ctx.rank() == 1 && e >= 40 {
                return Err(std::io::Error::other(format!("event {e} is malformed")));
            }
            writeln!(ctx, "{e} {}", e * e)
        })
        .unwrap();
    assert_eq!(run.failures().len(), 1);
    assert_eq!(run.failures()[0].rank, 1);
    assert!(
        run.failures()[0].reason.contains("event 40 is malformed"),
        "{}",
        run.failures()[0]
    );
    let lost = run.lost().to_vec();
    assert!(lost.contains(&40), "{lost:?}");
    assert!(lost.iter().all(|&e| e >= 40 && e % 3 == 1), "{lost:?}");
    let counts = merged_counts(&run, root.path());
    assert!(counts.values().all(|&n| n == 1));
    let mut all: Vec<u64> = counts.keys().copied().chain(lost.iter().copied()).collect();
    all.sort();
    assert_eq!(all, (0..EVENTS).collect::<Vec<_>>());
    // Worker 1 committed its events before 40.
    let ones: Vec<u64> = (0..40).filter(|e| e % 3 == 1).collect();
    assert!(ones.iter().all(|e| counts.contains_key(e)));
    assert_clean(&run);
}

/// A worker whose `after_fork` hook fails is reported by rank; in the shared queue the others take
/// every event, so nothing is lost.
#[test]
fn a_failing_after_fork_hook_fails_that_worker_only() {
    let root = tempfile::tempdir().unwrap();
    let run = ForkWorkers::new(3, root.path())
        .after_fork(|ctx| match ctx.rank() {
            2 => Err(std::io::Error::other("cannot open the conditions database")),
            _ => Ok(()),
        })
        .dispatch(Dispatch::Chunks(5))
        .run(0..100u64, |ctx, e| writeln!(ctx, "{e} {}", e * e))
        .unwrap();
    assert_eq!(run.failures().len(), 1);
    assert_eq!(run.failures()[0].rank, 2);
    assert!(
        run.failures()[0]
            .reason
            .contains("cannot open the conditions database")
    );
    assert!(run.lost().is_empty(), "{:?}", run.lost());
    assert_eq!(run.events_done()[2], 0);
    let counts = merged_counts(&run, root.path());
    assert_eq!(counts.len(), 100);
    assert!(counts.values().all(|&n| n == 1));
    assert_clean(&run);
}

/// Every worker fails: the run still returns, with every failure and every event lost.
#[test]
fn when_every_worker_fails_every_event_is_lost_and_reported() {
    let root = tempfile::tempdir().unwrap();
    let run = ForkWorkers::new(2, root.path())
        .run(0..50u64, |_, e| {
            Err(std::io::Error::other(format!("refuse {e}")))
        })
        .unwrap();
    let ranks: Vec<usize> = run.failures().iter().map(|f| f.rank).collect();
    assert_eq!(ranks, [0, 1]);
    assert_eq!(run.lost(), (0..50).collect::<Vec<u64>>());
    assert_eq!(run.memory().unwrap().workers.len(), 0);
    assert_eq!(run.merge_lines(&root.path().join("m.txt")).unwrap(), 0);
    assert_nothing_in_dev_shm();
}

/// Bad input is a clear error, and no worker starts.
#[test]
fn bad_settings_and_a_failing_before_fork_are_errors_before_any_fork() {
    let root = tempfile::tempdir().unwrap();
    let err = ForkWorkers::new(0, root.path())
        .run(0..1u64, |_, _| Ok(()))
        .unwrap_err();
    assert!(matches!(err, ForkError::NoWorkers));
    let err = ForkWorkers::new(2, root.path())
        .dispatch(Dispatch::Chunks(0))
        .run(0..1u64, |_, _| Ok(()))
        .unwrap_err();
    assert!(matches!(err, ForkError::EmptyChunks), "{err}");
    let file = root.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = ForkWorkers::new(2, &file)
        .run(0..1u64, |_, _| Ok(()))
        .unwrap_err();
    assert!(
        matches!(&err, ForkError::Io { path, .. } if path.starts_with(&file)),
        "{err}"
    );
    let err = ForkWorkers::new(2, root.path().join("run"))
        .before_fork(|| Err(std::io::Error::other("still connected")))
        .after_fork(|_| std::fs::write("started", ""))
        .run(0..1u64, |_, _| Ok(()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the before_fork hook failed: still connected"
    );
    assert!(!root.path().join("run/worker-0/started").exists());
    assert!(!root.path().join("run/worker-1/started").exists());
}

/// Reading the memory of a process that is not there is an error naming it, not a panic.
#[test]
fn an_unreadable_smaps_rollup_is_an_error() {
    let err = MemoryReport::read(u32::MAX).unwrap_err();
    assert_eq!(err.pid, u32::MAX);
    assert!(err.to_string().contains("smaps_rollup"), "{err}");
    let me = MemoryReport::read(std::process::id()).unwrap();
    assert_eq!(me.shared + me.private, me.rss);
}

/// A panic in the parent in the middle of a run (here, in the iterator of events) unwinds
/// without hanging: the queues retire, every worker ends and is waited for, nothing is left.
#[test]
fn a_panic_in_the_parent_mid_run_ends_every_worker() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_path_buf();
    let events = (0..100u64).inspect(|&e| assert!(e < 20, "the event source broke at {e}"));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ForkWorkers::new(2, &dir)
            .after_fork(|_| std::fs::write("pid", std::process::id().to_string()))
            .run(events, |ctx, e| writeln!(ctx, "{e} {}", e * e))
    }));
    let message = unwound.expect_err("the run unwinds");
    let text = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(text.contains("the event source broke at 20"), "{text}");
    for rank in 0..2 {
        let pid = std::fs::read_to_string(root.path().join(format!("worker-{rank}/pid"))).unwrap();
        assert_gone(pid.parse().unwrap());
    }
    assert_nothing_in_dev_shm();
}
