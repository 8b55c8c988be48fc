//! Supervision on OS processes: a worker killed by a signal is a crash like a panic (reported as a
//! value, its ends released without poisoning healthy processes), a child can be killed through
//! its handle, and a dead child is noticed and reaped while its parent waits on channels.
//!
//! The conformance suite's `supervision` group covers what every backend shares; these are the
//! parts only OS processes have. Linux only, like the processes backend itself.
#![cfg(target_os = "linux")]

mod common;
use common::{assert_gone, assert_nothing_in_dev_shm};

use cspnet_processes::{
    Alternation, Cause, Channel, ChannelError, Exit, Supervisor, process, spawn,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

fn suicide() -> ! {
    // SAFETY: raise(3) with a valid signal number; SIGKILL ends this process at once.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL does not return");
}

enum Event {
    Result((u32, u32, u64)),
    Exit(Exit<u32>),
}

/// The farm from the conformance suite, with one worker that panics (job 13) and one that is
/// killed by SIGKILL (job 21): every other job's result arrives, both lost jobs are reported with
/// their causes, and the shared results channel is retired, not poisoned, when the farm ends
/// (which needs the killed worker's writer to have left it: its ledger says it held one).
#[test]
fn a_farm_survives_a_panic_and_a_sigkill_and_loses_no_result() {
    const WORKERS: usize = 8;
    const JOBS: u32 = 48;
    let results = Channel::<(u32, u32, u64)>::named_with_buffer("results", 64);
    let mut sup = Supervisor::<u32>::new();
    let mut jobs = Vec::new();
    let mut ids = Vec::new();
    for w in 0..WORKERS as u32 {
        let ch = Channel::<u32>::named(&format!("jobs-{w}"));
        let (r, out) = (ch.reader(), results.writer());
        ids.push(
            sup.start(
                process(move || {
                    let mut done = 0;
                    for job in r {
                        let j = job?;
                        match j {
                            13 => panic!("job 13 is cursed"),
                            21 => suicide(),
                            _ => out.write((w, j, u64::from(j) * 3))?,
                        }
                        done += 1;
                    }
                    Ok(done)
                })
                .named(&format!("worker-{w}")),
            )
            .unwrap(),
        );
        jobs.push(Some(ch.writer()));
    }
    let results_r = results.reader();
    drop(results);

    let mut queue: VecDeque<u32> = (0..JOBS).collect();
    let mut assigned: Vec<Option<u32>> = vec![None; WORKERS];
    let mut done = BTreeMap::new();
    let mut failed = BTreeMap::new();
    let mut crashes = Vec::new();
    loop {
        for w in 0..WORKERS {
            if assigned[w].is_none()
                && let (Some(c), Some(&next)) = (&jobs[w], queue.front())
                && c.write(next).is_ok()
            {
                queue.pop_front();
                assigned[w] = Some(next);
            }
        }
        if done.len() + failed.len() == JOBS as usize {
            break;
        }
        let event = Alternation::new()
            .input(&results_r, Event::Result)
            .input(sup.exits(), Event::Exit)
            .select()
            .expect("a crash poisons neither the results nor the exits");
        match event {
            Event::Result((w, j, v)) => {
                assert_eq!(assigned[w as usize].take(), Some(j));
                done.insert(j, v);
            }
            Event::Exit(exit) => {
                let w = ids.iter().position(|&id| id == exit.id).unwrap();
                jobs[w] = None;
                let j = assigned[w].take().expect("a worker dies only on a job");
                failed.insert(j, exit.outcome.clone().unwrap_err());
                assert_gone(exit.pid.expect("an OS process has a pid"));
                crashes.push(exit);
            }
        }
    }
    assert_eq!(done.len(), JOBS as usize - 2);
    assert!(done.iter().all(|(j, v)| *v == u64::from(*j) * 3));
    assert_eq!(failed[&13], Cause::Panicked("job 13 is cursed".into()));
    assert_eq!(
        failed[&21],
        Cause::Crashed("killed by signal 9 (SIGKILL)".into())
    );
    for crash in &crashes {
        let held: Vec<String> = crash.held.iter().map(ToString::to_string).collect();
        assert!(
            held.contains(&"writer of 'results'".to_string()),
            "{crash}: {held:?}"
        );
    }
    drop(jobs);
    let mut ended = 0;
    while let Some(exit) = sup.next_exit() {
        assert!(exit.outcome.unwrap().is_ok());
        assert_gone(exit.pid.unwrap());
        ended += 1;
    }
    assert_eq!(ended, WORKERS - 2);
    // Had the killed worker's writer not left, this would wait for it forever.
    let last = Alternation::new()
        .input(&results_r, |_| Ok(()))
        .timeout(Duration::from_secs(60), || {
            Err("the results channel never retired")
        })
        .select();
    assert_eq!(last, Err(ChannelError::Retired));
    assert_nothing_in_dev_shm();
}

/// A child killed through its handle is reported as such, and reaped.
#[test]
fn a_child_killed_through_its_handle_is_reported_and_reaped() {
    let never = Channel::<u32>::new();
    let (r, _w) = (never.reader(), never.writer());
    let h = spawn([process(move || r.read()).named("sleeper")]);
    let pid = h.pids()[0].expect("an OS process has a pid");
    assert_ne!(pid, std::process::id());
    h.kill(0).unwrap();
    let err = h.join().unwrap_err();
    assert_eq!(
        err.first().cause(),
        &Cause::Crashed("killed by signal 9 (SIGKILL) (killed through its handle)".into())
    );
    assert_gone(pid);
    assert_nothing_in_dev_shm();
}

/// A child that dies while its parent waits on a channel it alone wrote: the parent's read fails
/// with poison within a second (its watcher noticed), and the child is reaped before any join.
#[test]
fn a_dead_child_is_noticed_while_the_parent_waits_on_channels() {
    let ch = Channel::<u32>::new();
    let pid_ch = Channel::<u32>::new();
    let (r, w, pid_r, pid_w) = (ch.reader(), ch.writer(), pid_ch.reader(), pid_ch.writer());
    drop((ch, pid_ch));
    let h = spawn([process(move || -> cspnet_processes::Outcome<()> {
        let _w = w;
        pid_w.write(std::process::id())?;
        suicide()
    })]);
    let pid = pid_r.read().unwrap();
    let started = Instant::now();
    let got = Alternation::new()
        .input(&r, Ok)
        .timeout(Duration::from_secs(1), || Err("no news within a second"))
        .select();
    assert_eq!(
        got,
        Err(ChannelError::Poisoned),
        "after {:?}",
        started.elapsed()
    );
    assert_gone(pid); // reaped by its watcher: no zombie, though nobody joined yet
    assert!(h.join().is_err());
    assert_nothing_in_dev_shm();
}

/// A supervised child killed by a signal releases what it held: a channel whose only other
/// member is healthy is retired, not poisoned, and values it buffered are still read.
#[test]
fn a_killed_supervised_child_retires_its_ends_and_keeps_its_values() {
    let ch = Channel::<u32>::with_buffer(4);
    let w = ch.writer();
    let mut sup = Supervisor::<u32>::new();
    sup.start(process(move || {
        w.write(1)?;
        w.write(2)?;
        suicide()
    }))
    .unwrap();
    let exit = sup.next_exit().unwrap();
    assert_eq!(
        exit.outcome,
        Err(Cause::Crashed("killed by signal 9 (SIGKILL)".into()))
    );
    let r = ch.reader();
    drop(ch);
    assert_eq!(r.into_iter().collect::<Vec<_>>(), vec![Ok(1), Ok(2)]);
}

/// A supervised member of a barrier that is killed resigns (as a supervised member that panics
/// does), so the healthy member's sync completes instead of waiting for it forever.
#[test]
fn a_killed_supervised_barrier_member_resigns() {
    let b = cspnet_processes::Barrier::new();
    let (victim_end, bystander_end) = (b.enroll(), b.enroll());
    drop(b);
    let never = Channel::<u32>::new();
    let (never_r, _never_w) = (never.reader(), never.writer());
    let ready = Channel::<u32>::new();
    let (ready_r, ready_w) = (ready.reader(), ready.writer());
    let mut sup = Supervisor::<u32>::new();
    let victim = sup
        .start(
            process(move || {
                let _enrolled = &victim_end;
                ready_w.write(std::process::id())?;
                never_r.read() // blocks: nobody writes
            })
            .named("victim"),
        )
        .unwrap();
    let bystander = sup
        .start(process(move || bystander_end.sync().map(|()| 7)).named("bystander"))
        .unwrap();
    let pid = ready_r.read().unwrap();
    sup.kill(victim).unwrap();
    let mut exits = [sup.next_exit().unwrap(), sup.next_exit().unwrap()];
    exits.sort_by_key(|e| e.name.clone());
    assert_eq!(exits[0].id, bystander);
    assert_eq!(
        exits[0].outcome,
        Ok(Ok(7)),
        "the sync completed without the dead member"
    );
    assert!(exits[1].outcome.is_err());
    assert_gone(pid);
    assert_nothing_in_dev_shm();
}
