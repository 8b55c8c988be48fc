//! Faults: a child that panics, exits early, is killed, or dies holding the segment lock.
//!
//! Each test learns where its victim is through channels (no sleeps): the victim sends its pid on
//! a buffered channel and then blocks in a rendezvous that nobody will complete. Afterwards the
//! test checks that the victim was reaped (no zombie) and that nothing of ours is in /dev/shm.
//!
//! Linux only, like the processes backend itself.
#![cfg(target_os = "linux")]

mod common;
use common::assert_nothing_in_dev_shm;

use cspnet_core::Cause;
use cspnet_processes::{Barrier, Channel, ChannelError, Outcome, parallel, process, spawn};

/// The pid is gone: not our child any more (reaped) and not in /proc.
fn assert_reaped(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on a pid; it fails with ECHILD once the child is reaped.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    assert_eq!(r, -1, "pid {pid} is still our child (a zombie or running)");
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ECHILD)
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still exists"
    );
}

/// Runs a victim that reports its pid, then blocks reading `x` (whose writer the test holds) while
/// holding the writer of `y`; a bystander blocks reading `y` and reports what it got. `act` does
/// something to the victim given its pid. Returns (the victim's failure cause, the bystander's
/// read result, the result of writing on `x` afterwards, the pid).
fn victim_scenario(
    act: impl FnOnce(i32),
    victim_body: fn() -> (),
) -> (Cause, Outcome<u32>, Result<(), ChannelError>, i32) {
    let go = Channel::<u32>::new();
    // A rendezvous: the pid is read before the victim goes on to die (a buffered value would be
    // thrown away by the poison its watcher applies the moment it dies).
    let ready = Channel::<i32>::new();
    let x = Channel::<u32>::new();
    let y = Channel::<u32>::new();
    let report = Channel::<Outcome<u32>>::with_buffer(1);
    let (go_r, go_w) = (go.reader(), go.writer());
    let (ready_r, ready_w) = (ready.reader(), ready.writer());
    let (x_r, x_w) = (x.reader(), x.writer());
    let (y_r, y_w) = (y.reader(), y.writer());
    let (rep_r, rep_w) = (report.reader(), report.writer());
    let handle = spawn([
        process(move || {
            let _holds = &y_w;
            go_r.read()?; // the first blocking operation sets this process's waiter up
            ready_w.write(std::process::id() as i32)?;
            victim_body();
            x_r.read()?; // blocks: the test never writes to x
            Ok(0)
        })
        .named("victim"),
        process(move || {
            rep_w.write(y_r.read())?;
            Ok(1)
        })
        .named("bystander"),
    ]);
    go_w.write(0).unwrap();
    let pid = ready_r.read().unwrap();
    act(pid);
    let err = handle.join().expect_err("the victim must be reported");
    assert_eq!(err.failures().len(), 1, "{err}");
    assert_eq!(err.first().process(), "victim", "{err}");
    assert!(err.to_string().contains("victim"), "{err}");
    let bystander = rep_r.read().unwrap();
    let after = x_w.write(5);
    (err.first().cause().clone(), bystander, after, pid)
}

fn nothing() {}

#[test]
fn a_child_killed_in_a_rendezvous_poisons_its_channels_and_is_reported() {
    let (cause, bystander, after, pid) = victim_scenario(
        |pid| {
            // SAFETY: kill on the pid of our own child.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        },
        nothing,
    );
    assert_eq!(cause, Cause::Crashed("killed by signal 9 (SIGKILL)".into()));
    assert_eq!(bystander, Err(ChannelError::Poisoned));
    assert_eq!(after, Err(ChannelError::Poisoned));
    assert_reaped(pid);
    assert_nothing_in_dev_shm();
}

fn exit_3() {
    std::process::exit(3);
}

#[test]
fn a_child_that_exits_early_poisons_its_channels_and_is_reported() {
    let (cause, bystander, after, pid) = victim_scenario(|_| {}, exit_3);
    assert_eq!(
        cause,
        Cause::Crashed("exited with status 3 before reporting".into())
    );
    assert_eq!(bystander, Err(ChannelError::Poisoned));
    assert_eq!(after, Err(ChannelError::Poisoned));
    assert_reaped(pid);
    assert_nothing_in_dev_shm();
}

fn panics() {
    panic!("victim gave up");
}

#[test]
fn a_child_that_panics_poisons_its_channels_and_is_reported() {
    let (cause, bystander, after, pid) = victim_scenario(|_| {}, panics);
    assert_eq!(cause, Cause::Panicked("victim gave up".into()));
    assert_eq!(bystander, Err(ChannelError::Poisoned));
    assert_eq!(after, Err(ChannelError::Poisoned));
    assert_reaped(pid);
    assert_nothing_in_dev_shm();
}

#[test]
fn a_child_killed_while_holding_the_segment_lock_does_not_deadlock_the_rest() {
    let held = Channel::<u32>::new();
    let (held_r, held_w) = (held.reader(), held.writer());
    let mut fds = [0; 2];
    // SAFETY: pipe with a valid two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (pipe_r, pipe_w) = (fds[0], fds[1]);
    let handle = spawn([process(move || {
        cspnet_processes::__hold_segment_lock(&held_r, || {
            let pid = std::process::id().to_ne_bytes();
            // SAFETY: writing our pid to the pipe's write end (no channel can be used while the
            // lock is held), then waiting to be killed.
            unsafe {
                libc::write(pipe_w, pid.as_ptr().cast(), pid.len());
                loop {
                    libc::pause();
                }
            }
        });
        Ok(0u32)
    })
    .named("lock-holder")]);
    let mut pid = [0u8; 4];
    // SAFETY: reading four bytes into a valid buffer; they arrive once the child holds the lock.
    assert_eq!(unsafe { libc::read(pipe_r, pid.as_mut_ptr().cast(), 4) }, 4);
    let pid = u32::from_ne_bytes(pid) as i32;
    // SAFETY: kill on the pid of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let err = handle.join().unwrap_err();
    assert_eq!(err.first().process(), "lock-holder");
    assert_eq!(
        err.first().cause(),
        &Cause::Crashed("killed by signal 9 (SIGKILL)".into())
    );
    // The channel it was changing is poisoned; everything else works.
    assert_eq!(held_w.write(1), Err(ChannelError::Poisoned));
    let fresh = Channel::<u32>::with_buffer(1);
    let (fr, fw) = (fresh.reader(), fresh.writer());
    fw.write(7).unwrap();
    assert_eq!(fr.read(), Ok(7));
    let out = parallel([process(|| Ok(1u32))]).unwrap();
    assert_eq!(out, vec![Ok(1)]);
    // SAFETY: closing the pipe fds we opened.
    unsafe {
        libc::close(pipe_r);
        libc::close(pipe_w);
    }
    assert_reaped(pid);
}

#[test]
fn a_payload_larger_than_the_heap_fails_at_the_writer() {
    let c = Channel::<Vec<u8>>::with_buffer(1);
    let (r, w) = (c.reader(), c.writer());
    let huge = vec![0u8; 1 << 30];
    match w.write(huge) {
        Err(ChannelError::TooLarge { size, max }) => {
            assert_eq!(size, 1 << 30);
            assert!(max < size);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let e = ChannelError::TooLarge { size: 10, max: 5 };
    assert!(e.to_string().contains("CSPNET_SHM_SIZE"), "{e}");
    // A 16 MiB payload fits the default heap.
    let big: Vec<u8> = (0..16 << 20).map(|i| i as u8).collect();
    w.write(big.clone()).unwrap();
    assert_eq!(r.read().unwrap(), big);
}

#[test]
fn a_full_heap_makes_writers_wait_and_loses_nothing() {
    // Eight 40 MiB values cannot all be in the 256 MiB heap at once: writers wait for frees.
    const N: u32 = 8;
    let c = Channel::<Vec<u8>>::with_buffer(N as usize);
    let (r, w) = (c.reader(), c.writer());
    let out = parallel([
        process(move || {
            for i in 0..N {
                w.write(vec![i as u8; 40 << 20])?;
            }
            Ok(0)
        }),
        process(move || {
            let mut sum = 0u32;
            for v in &r {
                let v = v?;
                assert_eq!(v.len(), 40 << 20);
                assert!(v.iter().all(|&b| b == v[0]));
                sum += v[0] as u32;
            }
            Ok(sum)
        }),
    ])
    .unwrap();
    assert_eq!(out, vec![Ok(0), Ok((0..N).sum())]);
}

/// A buffer whose slots would overflow `usize` (`1 << 60` values of 16 bytes each) is refused
/// with a clear message, and the shared heap stays intact: the unchecked multiplication once let
/// 5,000 writes "succeed" into a corrupted heap before a read aborted the program. The 5,000
/// values below also make the ring grow several times (it starts at 16 slots).
#[test]
fn an_impossible_buffer_is_refused_and_the_heap_survives() {
    let refused = std::panic::catch_unwind(|| Channel::<u32>::with_buffer(1 << 60));
    let message =
        cspnet_core::panic_message(refused.expect_err("the buffer was accepted").as_ref());
    assert!(
        message.contains("at most") && message.contains("MAX_BUFFER"),
        "unclear refusal: {message}"
    );
    let ch = Channel::<u32>::with_buffer(5000);
    let (r, w) = (ch.reader(), ch.writer());
    for i in 0..5000 {
        w.write(i).unwrap();
    }
    for i in 0..5000 {
        assert_eq!(r.read(), Ok(i));
    }
}

/// A payload whose `Serialize` fails, as a type with a hand-written impl can.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct Refuses(u32);

impl serde::Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 refuses to be encoded"));
        }
        s.serialize_newtype_struct("Refuses", &self.0)
    }
}

/// A value that cannot be encoded is an error from `write` and from an alternation offering it,
/// before anything is sent: the writer does not panic, its peers are not poisoned, and the good
/// values around it arrive, in order, in another OS process.
#[test]
fn an_unencodable_value_is_an_error_at_the_writer_and_loses_nothing() {
    let c = Channel::<Refuses>::new();
    let (r, w) = (c.reader(), c.writer());
    let out = parallel([
        process(move || {
            w.write(Refuses(1))?;
            let refused = w.write(Refuses(13));
            let unencodable = |e: &ChannelError| {
                matches!(e, ChannelError::Unencodable(t) if t.as_str().contains("refuses"))
            };
            assert!(refused.as_ref().is_err_and(unencodable), "{refused:?}");
            // An output guard with that value fails the select before any guard commits, even
            // with a ready skip guard beside it.
            let alt = cspnet_processes::Alternation::new()
                .output(&w, Refuses(13), || 0u32)
                .skip(|| 1)
                .pri_select();
            assert!(alt.as_ref().is_err_and(unencodable), "{alt:?}");
            w.write(Refuses(2))?;
            let sent = cspnet_processes::Alternation::new()
                .output(&w, Refuses(3), || 3u32)
                .select()?;
            Ok(sent)
        }),
        process(move || {
            let got = [r.read()?, r.read()?, r.read()?];
            assert_eq!(got, [Refuses(1), Refuses(2), Refuses(3)]);
            Ok(got.iter().map(|v| v.0).sum())
        }),
    ])
    .unwrap();
    assert_eq!(out, vec![Ok(3), Ok(6)]);
    // The channel was never poisoned: only the writer's leaving retired it.
    assert_eq!(c.reader().read(), Err(ChannelError::Retired));
}

#[allow(unconditional_recursion)]
fn deep(n: u64) -> u64 {
    let frame = [n; 64];
    std::hint::black_box(&frame);
    deep(n + 1) + frame[3]
}

/// A stack overflow, which aborts the whole program on threads, ends only the child here: it is
/// reported as killed by `SIGABRT` (Rust's overflow handler aborts), and its channels are poisoned.
#[test]
fn a_stack_overflow_ends_only_that_child_and_is_reported() {
    let c = Channel::<u64>::new();
    let (r, w) = (c.reader(), c.writer());
    let e = parallel([
        process(move || {
            let v = deep(0);
            w.write(v)?;
            Ok(0)
        }),
        process(move || r.read()),
    ])
    .unwrap_err();
    assert_eq!(e.failures().len(), 1, "{e}");
    assert_eq!(
        e.first().cause(),
        &Cause::Crashed("killed by signal 6 (SIGABRT)".into())
    );
    assert_eq!(c.reader().read(), Err(ChannelError::Poisoned));
}

#[test]
fn a_member_killed_while_enrolled_poisons_the_barrier() {
    // The victim is enrolled but never syncs (it blocks reading `x`), so the bystander's sync can
    // only end by poison, whether it starts before or after the kill.
    let b = Barrier::new();
    let (victim_end, bystander_end) = (b.enroll(), b.enroll());
    drop(b);
    let ready = Channel::<i32>::new();
    let x = Channel::<u32>::new();
    let report = Channel::<String>::with_buffer(1);
    let (ready_r, ready_w) = (ready.reader(), ready.writer());
    let (x_r, x_w) = (x.reader(), x.writer());
    let (rep_r, rep_w) = (report.reader(), report.writer());
    let handle = spawn([
        process(move || {
            let _enrolled = &victim_end;
            ready_w.write(std::process::id() as i32)?;
            x_r.read()?; // blocks: the test never writes to x
            Ok(0)
        })
        .named("victim"),
        process(move || {
            rep_w.write(format!("{:?}", bystander_end.sync()))?;
            Ok(1)
        })
        .named("bystander"),
    ]);
    let pid = ready_r.read().unwrap();
    // SAFETY: kill on the pid of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let err = handle.join().expect_err("the victim must be reported");
    assert_eq!(err.first().process(), "victim", "{err}");
    assert_eq!(
        rep_r.read(),
        Ok(format!("{:?}", Err::<(), _>(ChannelError::Poisoned)))
    );
    drop(x_w);
    assert_reaped(pid);
}

/// A child forked while another thread of the parent is printing a panic (inside the panic hook,
/// which holds std's backtrace lock) can still panic itself and be reported: the fork waits for
/// the hook. Before, such a child hung forever in its own panic hook.
#[test]
fn a_child_forked_while_another_thread_panics_can_panic_too() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::panic::catch_unwind(|| panic!("noise from another thread"));
            }
        })
    };
    for round in 0..40 {
        let handle = spawn([process(|| -> Outcome<()> {
            panic!("the child's own panic")
        })]);
        let joined = match handle.join_timeout(Duration::from_secs(30)) {
            Ok(joined) => joined,
            Err(hung) => {
                let _ = hung.kill(0);
                drop(hung);
                panic!("round {round}: the panicking child hung");
            }
        };
        let err = joined.unwrap_err();
        assert_eq!(
            err.first().cause(),
            &Cause::Panicked("the child's own panic".into())
        );
    }
    stop.store(true, Ordering::Relaxed);
    noise.join().unwrap();
}

/// A reader killed in the middle of an extended read lets its writer go: the parent, which sees
/// it die, releases the writer it held (noted in its ledger before the commit). Before, the writer
/// waited forever for an action that would never end.
#[test]
fn a_reader_killed_in_an_extended_read_lets_its_writer_go() {
    use cspnet_processes::Alternation;
    use std::time::Duration;

    let ch = Channel::<u32>::new();
    let ready = Channel::<i32>::new();
    let x = Channel::<u32>::new();
    let report = Channel::<String>::with_buffer(1);
    let (ch_r, ch_w) = (ch.reader(), ch.writer());
    let (ready_r, ready_w) = (ready.reader(), ready.writer());
    let (x_r, x_w) = (x.reader(), x.writer());
    let (rep_r, rep_w) = (report.reader(), report.writer());
    let handle = spawn([
        process(move || {
            ch_r.read_extended(|_| -> Result<(), ChannelError> {
                // The writer is held now; die before letting it go.
                ready_w.write(std::process::id() as i32)?;
                x_r.read()?; // blocks: the test never writes to x
                Ok(())
            })??;
            Ok(0)
        })
        .named("reader"),
        process(move || {
            rep_w.write(format!("{:?}", ch_w.write(7)))?;
            Ok(1)
        })
        .named("writer"),
    ]);
    let pid = ready_r.read().unwrap();
    // SAFETY: kill on the pid of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    // A bound on how long the release may take, not a guess at when it happens.
    let got = Alternation::new()
        .input(&rep_r, Some)
        .timeout(Duration::from_secs(20), || None)
        .select()
        .unwrap();
    let Some(got) = got else {
        // SAFETY: kill on the pid of our own child (the writer, still held).
        unsafe { libc::kill(handle.pids()[1].unwrap() as i32, libc::SIGKILL) };
        panic!("the writer was still held 20 s after its reader died");
    };
    assert_eq!(got, "Ok(())", "the write was taken before the reader died");
    let err = handle.join().expect_err("the reader must be reported");
    assert_eq!(err.failures().len(), 1, "{err}");
    assert_eq!(err.first().process(), "reader", "{err}");
    drop(x_w);
    assert_reaped(pid);
    assert_nothing_in_dev_shm();
}
