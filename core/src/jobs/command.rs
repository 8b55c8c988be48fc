//! A job's command as an OS process: its own process group, log, time limit, tree kill, and the guardian.
//!
//! Each command starts in a new process group (its pid is the group's id), so the whole tree it
//! makes (a shell and the simulator it starts, and what that starts) can be signalled at once:
//! SIGTERM, then SIGKILL once the grace period has passed. When the command's first process has
//! ended, what it left behind in its group is killed too, so a finished job leaves nothing running.
//!
//! A process group escapes its creator's death, so a scheduler killed by `kill -9` would leave its
//! jobs running. The [`Guardian`] prevents that: one small `sh` per run, in a process group of its
//! own and deaf to SIGINT/SIGTERM, reads a pipe whose write end only the scheduler's processes hold
//! (close-on-exec, so no command inherits it). Each command is started with the guardian's pid in
//! its environment (`CSPNET_JOB_GUARD`, inherited by everything it starts), and its runner writes
//! its group's id into the pipe once it has started, and again, marked done, once the group is
//! gone. When the pipe reaches end-of-file, because every scheduler process has ended (normally or
//! killed), the guardian kills every group still listed and every process that carries its mark:
//! SIGTERM, then SIGKILL a second later. The mark covers a job whose group was not yet listed
//! and a grandchild that moved to a group of its own.
//!
//! All the `unsafe` of the job-graph layer is in this file: `killpg`, `pidfd_open`, `poll`,
//! `waitid`, `pipe2`, `write`, and the signal handlers.

use super::graph::{Checks, Job};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that marks every process of a run's jobs (and what they start, which
/// inherits it) with the guardian's pid.
pub(crate) const MARK: &str = "CSPNET_JOB_GUARD";

/// The guardian's program: keeps the set of live groups; at end-of-file (the scheduler is gone)
/// or `!` (the run is over) kills what is left, by group and by the mark in the environment
/// (which also finds a job whose group its runner never got to report, and processes that left
/// their group): SIGTERM, then SIGKILL a second later, if anything was found. Builtins only while
/// jobs run (`read`, `case`, parameter expansion), so it costs no fork per job.
const GUARDIAN: &str = r#"trap '' INT TERM HUP QUIT PIPE
live=' '
while read -r op pg; do
  case $op in
    +) live="$live$pg " ;;
    -) case $live in *" $pg "*) live="${live%% $pg *} ${live#* $pg }" ;; esac ;;
    !) break ;;
  esac
done
found=
for sig in TERM KILL; do
  for pg in $live; do kill -s $sig -- "-$pg" 2>/dev/null && found=1; done
  for f in $(grep -lsz "^CSPNET_JOB_GUARD=$$\$" /proc/[0-9]*/environ); do
    p=${f#/proc/}; kill -s $sig "${p%/environ}" 2>/dev/null && found=1
  done
  [ -n "$found" ] || break
  [ $sig = KILL ] || sleep 1
done
"#;

/// The process that kills every job's process group if the scheduler dies without doing so.
pub(crate) struct Guardian {
    child: Child,
    /// The pipe's write end: held by the scheduler (and, inherited, by its forked processes).
    write: OwnedFd,
}

impl Guardian {
    /// Starts the guardian.
    pub(crate) fn start() -> io::Result<Guardian> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let child = Command::new("/bin/sh")
            .args(["-c", GUARDIAN])
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Guardian { child, write })
    }

    /// What runners need to start and account for commands: the pipe and the mark.
    pub(crate) fn handle(&self) -> Guard {
        Guard {
            fd: self.write.as_raw_fd(),
            mark: self.child.id(),
        }
    }

    /// Ends the guardian at the end of a run: it sweeps up anything of the run's still alive
    /// (nothing, unless a runner died between starting a command and reporting it) and exits.
    /// It is told so on the pipe rather than left to read end-of-file, since a process forked
    /// during the run that outlives it (the processes backend's watchdog, a user's process) may
    /// still hold the write end.
    pub(crate) fn finish(mut self) {
        let _ = write_all(self.write.as_raw_fd(), b"! 0\n");
        drop(self.write);
        let _ = self.child.wait();
    }
}

/// A runner's handle on the guardian: the pipe's write end and the mark for the environment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard {
    fd: RawFd,
    mark: u32,
}

/// How one attempt of a command ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// It passed: exit status 0, no fail pattern, every pass pattern.
    Passed,
    /// It failed; why.
    Failed(String),
    /// It ran past its time limit and its process group was killed.
    TimedOut(String),
    /// It was killed by a signal it did not raise through a time limit (SIGTERM or SIGKILL from
    /// outside, such as the scheduler's kill-all): not retried.
    Killed(String),
}

/// Writes `+<pgid>` (`add`) or `-<pgid>` to the guardian: one `write` of a few bytes, which is
/// atomic on a pipe, so runners writing at once never interleave.
fn tell_guardian(fd: RawFd, add: bool, pgid: i32) -> io::Result<()> {
    let line = format!("{} {pgid}\n", if add { '+' } else { '-' });
    write_all(fd, line.as_bytes())
}

/// One `write` of a short message (atomic on a pipe).
fn write_all(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: `bytes` is initialised memory we borrow for the call; `write` does not keep it.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if written == bytes.len() as isize {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Tells the guardian that group `pgid` is gone (best effort: a guardian that is gone has
/// nothing left to guard).
pub(crate) fn release(guard: Guard, pgid: i32) {
    let _ = tell_guardian(guard.fd, false, pgid);
}

/// Sends `signal` to every process of group `pgid`; a group already gone is not an error.
pub(crate) fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg takes plain integers; a wrong id at worst fails with ESRCH.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Starts one attempt of `job`'s command in a new process group, marked in its environment and
/// then registered with the guardian. Returns the child (its pid is the group's id).
///
/// No code runs between `fork` and `exec` (no `pre_exec`), so std can use `posix_spawn` (a
/// `vfork`), which costs the same however large the scheduler is: the mark covers the moment
/// before the group is registered.
pub(crate) fn spawn(job: &Job, guard: Guard) -> io::Result<Child> {
    let mut cmd = Command::new(&job.program);
    cmd.args(&job.args)
        .stdin(Stdio::null())
        .process_group(0)
        .env(MARK, guard.mark.to_string());
    for (k, v) in &job.env {
        cmd.env(k, v);
    }
    if let Some(dir) = &job.dir {
        cmd.current_dir(dir);
    }
    match &job.log {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let log = File::create(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create log {}: {e}", path.display()),
                )
            })?;
            cmd.stdout(log.try_clone()?).stderr(log);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let child = cmd.spawn()?;
    tell_guardian(guard.fd, true, child.id() as i32)?;
    Ok(child)
}

/// Waits up to `limit` (forever if `None`) for `child` to end; true once it has (not yet reaped).
fn wait_exit(child: &mut Child, pidfd: Option<&OwnedFd>, limit: Option<Duration>) -> bool {
    let deadline = limit.map(|d| Instant::now() + d);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match pidfd {
            Some(fd) => {
                // A pidfd becomes readable when the process ends: one poll, no polling loop.
                let ms = left.map_or(-1, |l| l.as_millis().min(i32::MAX as u128) as i32);
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: `p` is one valid pollfd, and the count says one.
                let r = unsafe { libc::poll(&mut p, 1, ms) };
                if r > 0 {
                    return true;
                }
                if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    return exited_now(child);
                }
            }
            None => {
                // Kernels before 5.3 have no pidfd: look every few milliseconds.
                if exited_now(child) {
                    return true;
                }
                std::thread::sleep(left.unwrap_or(Duration::MAX).min(Duration::from_millis(5)));
            }
        }
        if left == Some(Duration::ZERO) {
            return exited_now(child);
        }
    }
}

/// Whether `child` has ended, without reaping it (so its pid, the group's id, stays reserved).
fn exited_now(child: &Child) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is valid for writes; WNOWAIT leaves the child to be reaped by `Child::wait`.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            child.id(),
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: after a successful waitid the pid field is initialised (0 if nothing has ended).
    r == 0 && unsafe { info.si_pid() } != 0
}

/// The job's process group, ended and accounted for: waits for `child`, killing its group when
/// `limit` passes (SIGTERM, then SIGKILL after `grace`), then kills anything it left in the group,
/// reaps it, and tells the guardian. Returns its exit status and whether it timed out.
pub(crate) fn wait(
    mut child: Child,
    limit: Option<Duration>,
    grace: Duration,
    guard: Guard,
) -> (io::Result<ExitStatus>, bool) {
    let pgid = child.id() as i32;
    // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pgid, 0) };
    // SAFETY: a non-negative result is a new descriptor that only we own.
    let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as RawFd) });
    let mut timed_out = false;
    if !wait_exit(&mut child, pidfd.as_ref(), limit) {
        timed_out = true;
        signal_group(pgid, libc::SIGTERM);
        if !wait_exit(&mut child, pidfd.as_ref(), Some(grace)) {
            signal_group(pgid, libc::SIGKILL);
            wait_exit(&mut child, pidfd.as_ref(), None);
        }
    }
    // Its first process has ended but is not yet reaped, so the group's id cannot be reused:
    // whatever it left running in its group goes now.
    signal_group(pgid, libc::SIGKILL);
    let status = child.wait();
    release(guard, pgid);
    (status, timed_out)
}

/// Decides the verdict of one attempt from how it ended and its log: a fail pattern beats
/// everything, then the exit status, then every pass pattern must have matched a line.
pub(crate) fn judge(
    job: &Job,
    checks: &Checks,
    status: io::Result<ExitStatus>,
    timed_out: bool,
) -> Verdict {
    let limit = job.time_limit().unwrap_or_default();
    if timed_out {
        return Verdict::TimedOut(format!(
            "timed out after {:.1}s: process group killed",
            limit.as_secs_f64()
        ));
    }
    let status = match status {
        Ok(s) => s,
        Err(e) => return Verdict::Failed(format!("could not wait for the command: {e}")),
    };
    let mut pass_seen = vec![false; checks.pass.len()];
    if let (Some(path), false) = (&job.log, checks.pass.is_empty() && checks.fail.is_empty()) {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => return Verdict::Failed(format!("cannot read log {}: {e}", path.display())),
        };
        for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            if let Some(re) = checks.fail.iter().find(|re| re.is_match(&line)) {
                return Verdict::Failed(format!(
                    "log line {} matches fail pattern '{}': {}",
                    n + 1,
                    re.as_str(),
                    line.trim_end()
                ));
            }
            for (seen, re) in pass_seen.iter_mut().zip(&checks.pass) {
                *seen = *seen || re.is_match(&line);
            }
        }
    }
    if let Some(sig) = status.signal() {
        let text = format!("killed by signal {sig}");
        return if sig == libc::SIGTERM || sig == libc::SIGKILL {
            Verdict::Killed(text)
        } else {
            Verdict::Failed(text)
        };
    }
    if !status.success() {
        return Verdict::Failed(format!("exit status {}", status.code().unwrap_or(-1)));
    }
    if let Some(i) = pass_seen.iter().position(|seen| !seen) {
        return Verdict::Failed(format!(
            "pass pattern '{}' not found in the log",
            checks.pass[i].as_str()
        ));
    }
    Verdict::Passed
}

/// SIGINT and SIGTERM, counted while a run handles them (see
/// [`Scheduler::handle_signals`](super::Scheduler::handle_signals)).
pub(crate) struct SignalCount {
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ids: Vec<signal_hook::SigId>,
}

impl SignalCount {
    /// Installs the handlers.
    pub(crate) fn register() -> io::Result<SignalCount> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let count = std::sync::Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let c = std::sync::Arc::clone(&count);
            // SAFETY: the action only increments an atomic, which is async-signal-safe (no
            // allocation, no lock).
            let id = unsafe {
                signal_hook::low_level::register(signal, move || {
                    c.fetch_add(1, Ordering::SeqCst);
                })
            };
            match id {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for id in ids {
                        signal_hook::low_level::unregister(id);
                    }
                    return Err(e);
                }
            }
        }
        Ok(SignalCount { count, ids })
    }

    /// How many have arrived.
    pub(crate) fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SignalCount {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
