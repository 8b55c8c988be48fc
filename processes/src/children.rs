//! OS children: how a CSP process starts (a `fork`, or a re-executed program), reports, and is
//! reaped; the engine's side of `parallel` and `spawn` (core's) for them.
//!
//! A closure process is a `fork` of the calling process. The child reseeds `fastrand` (so forked
//! siblings do not share `select`'s random order), runs the body with `cspnet_core::run_body`,
//! sends the outcome (or the panic) to the parent over an ipc-channel, and leaves with `_exit`. The parent drops its copy of the closure in census mode (see `channel.rs`),
//! so it knows which channels the child holds; if the child's ipc-channel closes without a report,
//! the parent reaps it with `waitpid` on its pid, poisons those channels, and reports the crash.
//!
//! A re-executed child (`exec.rs`) is started by [`exec_start`]: `/proc/self/exe` (the running
//! binary, even if its file was replaced or deleted since) with the caller's arguments,
//! environment, directory and stdio, plus the bootstrap server's name ([`ENV_BOOT`]) and the
//! segment's memfd, whose `FD_CLOEXEC` flag is cleared in that child only. The child takes both
//! out of its environment and sets `FD_CLOEXEC` again as it attaches ([`take_exec_bootstrap`]),
//! so nothing it starts inherits them. A child that has not said hello within its start timeout
//! is killed and reaped. It reports over the same kind of ipc-channel, and is joined the same way.
//!
//! Fork safety and orphans are handled here too (the crate docs give the rules):
//!
//! - **stdio across `fork`**: [`fork_start`] holds std's `stdout` and `stderr` locks across the
//!   `fork` (the `pthread_atfork` pattern), so no other thread is half-way through a print; the
//!   child's only thread is the one that owns them, and it releases them.
//! - **A multi-threaded parent** is detected at each fork (`/proc/self/task`, less the threads
//!   cspnet runs itself, registered with [`register_own_thread`]) and warned about once per program, naming
//!   `exec` as the remedy; `CSPNET_FORK_WARNING=off` or `set_fork_warning(false)` silences it.
//! - **No orphans**: before its first child, a program forks a *watchdog* that leads a process
//!   group of its own and blocks reading a pipe whose write end only the program holds. Every
//!   child joins that group, and so does everything the child starts; when the program is killed
//!   the pipe reads end-of-file and the watchdog kills the whole group (at `exit`, the program
//!   kills it itself). A forked child's children join the same group and also get
//!   `PR_SET_PDEATHSIG` ([`Keep::Nested`]). `CSPNET_ORPHAN_GUARD=off` or `set_orphan_guard(false)`
//!   keeps children in the caller's group instead, with `PR_SET_PDEATHSIG` (direct children only,
//!   and tied to the thread that forked them) as the fallback.
//!
//! The libc calls that start, set up and reap children live here, each with its `SAFETY` note.

use crate::ThreadSlot;
use crate::channel::{Chan, census_drop, census_names, leave_held, poison_held};
use crate::codec;
use crate::engine::{self, forget_waiter, prepare_waiter, release_waiter};
use crate::ledger;
use crate::shm::{self, segment};
use cspnet_core::{
    Cause, HeldEnd, KillError, Leave, Outcome, ProcessContext, Role, discard_unstarted, run_body,
};
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::time::{Duration, Instant};

/// The body of a closure process.
pub(crate) type Body<T> = Box<dyn FnOnce() -> Outcome<T> + Send + 'static>;

/// What a child sends its parent over ipc-channel.
#[derive(Serialize, Deserialize)]
pub(crate) enum Msg {
    /// A re-executed child announces itself and where to send its job.
    Hello { job: IpcSender<Job> },
    /// The body's outcome, encoded, or why it failed.
    Report(Result<Vec<u8>, Cause>),
    /// Sent before a failed body's `Report`: the channel ends it held when it panicked.
    Held(Vec<HeldEnd>),
}

/// Environment variable: the bootstrap server a re-executed child connects to.
pub(crate) const ENV_BOOT: &str = "CSPNET_EXEC_SERVER";

/// How long a re-executed child may take to say hello unless `ExecOptions::start_timeout` says.
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// What a re-executed child is asked to run.
#[derive(Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) func: String,
    /// `std::any::type_name` of the argument and result types `exec` was called with: the child
    /// checks them against the registered function's (parent and child are the same binary, so
    /// the names agree exactly when the types do).
    pub(crate) arg_type: String,
    pub(crate) result_type: String,
    pub(crate) args: Vec<u8>,
    pub(crate) id: u64,
    pub(crate) name: String,
    /// The child's ledger (see `ledger.rs`), holding the census of the ends it was sent: the child
    /// counts in it from the moment it has taken them up, so a supervised child that is killed
    /// retires exactly what it held, as a forked one does.
    pub(crate) ledger: Option<u64>,
}

/// One change to a re-executed child's environment, applied in the order given.
pub(crate) enum EnvOp {
    Set(OsString, OsString),
    Remove(OsString),
    Clear,
}

/// A process to be started by re-executing the program.
pub(crate) struct ExecSpec {
    pub(crate) func: String,
    pub(crate) arg_type: &'static str,
    pub(crate) result_type: &'static str,
    pub(crate) args: Vec<u8>,
    /// Channel handles serialized into `args` (joined on the child's behalf).
    pub(crate) held: Vec<(u64, Role)>,
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: Vec<EnvOp>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) stdout: Option<Stdio>,
    pub(crate) stderr: Option<Stdio>,
    pub(crate) start_timeout: Duration,
}

impl ExecSpec {
    pub(crate) fn take_held(&mut self) -> Vec<(u64, Role)> {
        std::mem::take(&mut self.held)
    }
}

impl Drop for ExecSpec {
    fn drop(&mut self) {
        // Never started: the ends meant for the child poison their channels, like the ends of a
        // closure process that never ran.
        let held = self.take_held();
        if !held.is_empty() {
            leave_held(held, Leave::Poison);
        }
    }
}

/// A started child of the processes engine: its pid, the receiving end of its report channel, the
/// channel handles it took along (the census), and its ledger of what it holds now.
pub(crate) struct Child {
    pub(crate) pid: libc::pid_t,
    pub(crate) rx: IpcReceiver<Msg>,
    pub(crate) held: Vec<(u64, Role)>,
    pub(crate) names: HashMap<u64, Arc<str>>,
    pub(crate) ledger: Option<u64>,
    /// The thread that started it, when the child dies with that thread (`PR_SET_PDEATHSIG`: a
    /// forked process's child, or the orphan guard is off): a `SIGKILL` is then explained by that
    /// thread's end.
    pub(crate) starter: Option<Starter>,
}

/// Serialises our forks: the report channel's sending end exists in the parent only while the lock
/// is held, so no sibling forked by another thread inherits it (which would delay the parent
/// seeing the child's channel close). The child releases its inherited copy of the guard at once.
static FORK_LOCK: Mutex<()> = Mutex::new(());

/// Starts a closure process as a `fork` of this process, running as the CSP process `ctx`.
pub(crate) fn fork_start<T: Serialize + 'static>(
    ctx: ProcessContext,
    body: Body<T>,
) -> Result<Child, Cause> {
    warn_if_threaded();
    warm_up_ipc();
    let ledger = ledger::create();
    // Held across the fork, so no other thread is inside the panic hook (which holds std's
    // backtrace lock: a child that panicked would wait for it forever). Released in the child.
    let panicking = panic_hook_lock();
    // Held across the fork, so no other thread is half-way through a print: in the child, whose
    // only thread is this one (their owner, by thread id), they are released at once. Taken
    // before FORK_LOCK: a thread that holds `stdout().lock()` while it starts a process must not
    // wait for FORK_LOCK while we wait for its lock.
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let refuse = |guard, body, why: String| {
        drop(guard);
        discard_unstarted::<ThreadSlot, _>(vec![body]);
        Err(Cause::CouldNotStart(why))
    };
    let keep = match orphan_guard() {
        Ok(keep) => keep,
        Err(why) => return refuse(guard, body, why),
    };
    let (tx, rx) = match ipc::channel::<Msg>() {
        Ok(pair) => pair,
        Err(e) => {
            ledger.map(ledger::close);
            return refuse(guard, body, format!("no ipc-channel for the report: {e}"));
        }
    };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let _ = out.flush();
    let _ = err.flush();
    // SAFETY: fork is safe to call; in the child we only run the body on this thread and leave
    // with _exit (see the crate docs on fork safety). The locks held across it are FORK_LOCK and
    // std's stdio locks, all owned by this thread, which the child releases first.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop((out, err, guard, panicking));
        ledger::adopt(ledger);
        child_main::<T>(parent, keep, tx, ctx, body);
    }
    drop((out, err, panicking));
    drop(tx);
    if let (Some(pgid), true) = (keep.group(), pid > 0) {
        // The child joins the group itself too; doing it here as well means it is in the group
        // when we return, whether or not it has run yet (the shells' way).
        // SAFETY: setpgid on our own child, which has not called exec.
        unsafe { libc::setpgid(pid, pgid) };
    }
    drop(guard);
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        ledger.map(ledger::close);
        discard_unstarted::<ThreadSlot, _>(vec![body]);
        return Err(Cause::CouldNotStart(format!("fork failed: {e}")));
    }
    let held = census_drop(body);
    let names = census_names();
    if let Some(l) = ledger {
        for &(chan, role) in &held {
            ledger::add(l, chan, role, 1);
        }
    }
    let starter = keep.death_signal().then(Starter::current);
    Ok(Child {
        pid,
        rx,
        held,
        names,
        ledger,
        starter,
    })
}

/// Serialises the panic hook with our forks (see [`panic_hook_lock`]).
static PANIC_HOOK: Mutex<()> = Mutex::new(());

/// Wraps the panic hook (once) so that it runs under [`PANIC_HOOK`], and takes that lock: while it
/// is held no other thread is inside the hook, where std holds its backtrace lock. A child forked
/// while another thread printed a panic would otherwise find that lock taken for good, and hang
/// the moment it panicked itself. (A hook the program sets later replaces the wrapper.)
fn panic_hook_lock() -> Option<std::sync::MutexGuard<'static, ()>> {
    static WRAPPED: std::sync::Once = std::sync::Once::new();
    if std::thread::panicking() {
        return None; // set_hook may not be called now; a process started while unwinding is rare
    }
    WRAPPED.call_once(|| {
        let inner = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _serial = PANIC_HOOK.lock().unwrap_or_else(|e| e.into_inner());
            inner(info);
        }));
    });
    Some(PANIC_HOOK.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs ipc-channel's lazy initialisation (its send-buffer size is a `LazyLock` set on the first
/// send) in this process before any fork: a child forked while another thread was half-way
/// through it would wait on that `LazyLock` forever.
fn warm_up_ipc() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        if let Ok((tx, rx)) = ipc::channel::<Msg>() {
            let _ = tx.send(Msg::Report(Ok(Vec::new())));
            let _ = rx.recv();
        }
    });
}

/// What a forked child does first: join its parent's watchdog group (or ask to die with the
/// forking thread), leave at once if the parent is already gone, drop the parent's watchdog pipe,
/// forget the parent's per-thread state.
fn child_setup(parent: libc::pid_t, keep: Keep) {
    // SAFETY: setpgid, prctl and getppid take plain values; _exit ends the process.
    unsafe {
        if let Some(pgid) = keep.group() {
            libc::setpgid(0, pgid);
        }
        if keep.death_signal() {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        if libc::getppid() != parent {
            libc::_exit(1); // the parent died before we were in its group (or asked to die with it)
        }
    }
    forget_watchdog();
    if let Some(pgid) = keep.group() {
        INHERITED_GROUP.store(pgid, Ordering::Relaxed);
    }
    fresh_process();
}

/// What a re-executed child does first (its process group or death signal were set before exec):
/// attach the inherited segment, and keep it, and where it is, from what this child starts.
///
/// Call it only from `Registry::init`'s child path, which runs before the program starts threads.
pub(crate) fn exec_child_setup() {
    // `take_exec_bootstrap` has taken the segment's variable out of the environment, and
    // `shm::attach_inherited` has set FD_CLOEXEC again on its descriptor.
    fresh_process();
}

/// Per-process state a child must not share with its parent.
fn fresh_process() {
    reseed_random();
    forget_waiter();
    prepare_waiter();
}

/// A forked child inherits its parent's `fastrand` state, so siblings forked from one thread would
/// try their `select` guards in the same "random" orders. Seed it from this process's pid and the
/// clock instead.
fn reseed_random() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    fastrand::seed(u64::from(std::process::id()).rotate_left(32) ^ nanos);
}

fn child_main<T: Serialize + 'static>(
    parent: libc::pid_t,
    keep: Keep,
    tx: IpcSender<Msg>,
    ctx: ProcessContext,
    body: Body<T>,
) -> ! {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        child_setup(parent, keep);
        let ending = run_body::<ThreadSlot, T>(ctx, body);
        let report = match ending.outcome {
            Ok(outcome) => codec::to_bytes(&outcome)
                .map_err(|e| Cause::Panicked(format!("the result could not be encoded: {e}"))),
            Err(cause) => Err(cause),
        };
        if !ending.held.is_empty() {
            let _ = tx.send(Msg::Held(ending.held));
        }
        let sent = tx.send(Msg::Report(report)).is_ok();
        release_waiter();
        sent
    }));
    // No flush of stdout here: a thread the body started may still hold its lock. `println!`
    // output is line-flushed already.
    // SAFETY: _exit ends the child without running the parent's atexit handlers or flushing its
    // copies of stdio buffers a second time.
    unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 101 }) }
}

/// Starts a re-executed child as the CSP process `ctx` and hands it its job.
pub(crate) fn exec_start(ctx: &ProcessContext, mut spec: ExecSpec) -> Result<Child, Cause> {
    let held = spec.take_held();
    let fail = |held: Vec<(u64, Role)>, why: String| {
        leave_held(held, Leave::Poison);
        Err(Cause::CouldNotStart(why))
    };
    let seg = segment();
    let (server, server_name) = match IpcOneShotServer::<Msg>::new() {
        Ok(s) => s,
        Err(e) => return fail(held, format!("no bootstrap server: {e}")),
    };
    let keep = {
        let _serial = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        match orphan_guard() {
            Ok(keep) => keep,
            Err(why) => return fail(held, why),
        }
    };
    // Not `current_exe()`: that is a path, which names another program (or nothing) once the
    // binary is rebuilt or deleted; `/proc/self/exe` is the running binary itself.
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.args(&spec.argv);
    for op in &spec.env {
        match op {
            EnvOp::Set(k, v) => cmd.env(k, v),
            EnvOp::Remove(k) => cmd.env_remove(k),
            EnvOp::Clear => cmd.env_clear(),
        };
    }
    // After the caller's changes, so that `env_clear` cannot remove them.
    cmd.env(ENV_BOOT, &server_name)
        .env(shm::ENV_FD, seg.fd().to_string());
    if let Some(dir) = &spec.dir {
        cmd.current_dir(dir);
    }
    if let Some(out) = spec.stdout.take() {
        cmd.stdout(out);
    }
    if let Some(err) = spec.stderr.take() {
        cmd.stderr(err);
    }
    if let Some(pgid) = keep.group() {
        cmd.process_group(pgid);
    }
    let fd = seg.fd();
    let death_signal = keep.death_signal();
    // SAFETY: the hook runs in the forked child before exec and calls only async-signal-safe
    // functions (fcntl, prctl) on values copied in.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if death_signal {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(held, format!("could not execute the program: {e}")),
    };
    let pid = child.id() as libc::pid_t;
    drop(child); // we reap by pid
    drop(cmd); // closes our copies of the stdio files given for the child

    match hello(pid, server, &server_name, spec.start_timeout) {
        Ok((rx, job_tx)) => {
            let ledger = ledger::create();
            if let Some(l) = ledger {
                for &(chan, role) in &held {
                    ledger::add(l, chan, role, 1);
                }
            }
            let job = Job {
                func: std::mem::take(&mut spec.func),
                arg_type: spec.arg_type.to_owned(),
                result_type: spec.result_type.to_owned(),
                args: std::mem::take(&mut spec.args),
                id: ctx.id().as_u64(),
                name: ctx.name().to_owned(),
                ledger,
            };
            if job_tx.send(job).is_err() {
                // The child is gone; joining will reap it and report the crash.
            }
            Ok(Child {
                pid,
                rx,
                held,
                names: HashMap::new(),
                ledger,
                starter: death_signal.then(Starter::current),
            })
        }
        // The child is reaped already.
        Err(why) => fail(held, why),
    }
}

/// Waits for the hello of the re-executed child `pid` on `server`: its report channel and where
/// to send its job. If it dies first, or has not said hello within `timeout` (then it is killed),
/// it is reaped and the error says why. The thread that accepts is joined either way.
fn hello(
    pid: libc::pid_t,
    server: IpcOneShotServer<Msg>,
    server_name: &str,
    timeout: Duration,
) -> Result<(IpcReceiver<Msg>, IpcSender<Job>), String> {
    // `accept` blocks until a client connects and sends, so it gets a thread of its own, and
    // this one watches the child and the clock.
    let (acc_tx, acc_rx) = mpsc::channel();
    let accepter = spawn_own_thread(
        std::thread::Builder::new().name("cspnet-accept".into()),
        move || {
            let _ = acc_tx.send(server.accept());
        },
    );
    let accepter = match accepter {
        Ok(handle) => handle,
        Err(e) => {
            kill_and_reap(pid);
            return Err(format!("no thread to accept the child's hello: {e}"));
        }
    };
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match acc_rx.recv_timeout(left.min(Duration::from_millis(20))) {
            Ok(Ok((rx, Msg::Hello { job }))) => break Ok((rx, job)),
            Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                kill_and_reap(pid);
                break Err("the child's bootstrap handshake failed".to_owned());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let mut status = 0;
                // SAFETY: waitpid on our own child's pid, without blocking.
                if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                    break Err(format!(
                        "the program {} (did main call Registry::init?)",
                        describe(status).replace(" before reporting", " before connecting")
                    ));
                }
                if Instant::now() >= deadline {
                    kill_and_reap(pid);
                    break Err(format!(
                        "the program (pid {pid}) did not start within its start timeout of \
                         {timeout:?} (ExecOptions::start_timeout), so it was killed; does main \
                         call Registry::init first thing?"
                    ));
                }
            }
        }
    };
    if outcome.is_err() {
        // Unblock `accept` if it still waits: a connection that closes at once ends it (and the
        // child, if it had connected, is dead, which closes its connection too).
        let _ = IpcSender::<Msg>::connect(server_name.to_owned());
    }
    let _ = accepter.join();
    outcome
}

/// Kills our child `pid` (it may have ended already) and reaps it.
fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: kill on our own child's pid, which is not reaped yet, so it cannot name another
    // process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    reap(pid);
}

/// What a re-executed child was started with: the bootstrap server's name and the segment's fd.
pub(crate) struct Bootstrap {
    pub(crate) server: String,
    pub(crate) fd: Option<RawFd>,
}

/// In a re-executed child: the bootstrap server's name and the inherited segment fd, both taken
/// out of the environment so that they do not leak into processes this child starts. `None` in
/// any other process (whatever `CSPNET_SHM_FD` says there: only an exec child attaches).
///
/// Call it only from [`Registry::init`](crate::Registry::init), which the program calls first
/// thing in `main`, before it starts any thread.
pub(crate) fn take_exec_bootstrap() -> Option<Bootstrap> {
    let server = std::env::var_os(ENV_BOOT)?;
    let fd = std::env::var(shm::ENV_FD).ok().and_then(|s| s.parse().ok());
    // SAFETY: `Registry::init` runs first thing in main, before the program starts threads, so
    // nothing reads the environment concurrently (its documented contract).
    unsafe {
        std::env::remove_var(ENV_BOOT);
        std::env::remove_var(shm::ENV_FD);
    }
    Some(Bootstrap {
        server: server.to_string_lossy().into_owned(),
        fd,
    })
}

/// Waits for `pid` and describes how it ended.
pub(crate) fn reap(pid: libc::pid_t) -> String {
    reap_status(pid).map_or_else(|why| why, describe)
}

/// Waits for `pid`: its wait status, or why there is none.
fn reap_status(pid: libc::pid_t) -> Result<libc::c_int, String> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child's pid with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return Err(format!(
            "vanished (waitpid: {})",
            std::io::Error::last_os_error()
        ));
    }
}

/// How a child that ended without reporting reads in its failure: its wait status, and, if it
/// was killed because the thread that started it ended, that cause.
fn crash_report(status: Result<libc::c_int, String>, starter: Option<&Starter>) -> String {
    let status = match status {
        Ok(status) => status,
        Err(why) => return why,
    };
    let how = describe(status);
    match starter {
        Some(starter)
            if libc::WIFSIGNALED(status)
                && libc::WTERMSIG(status) == libc::SIGKILL
                && starter.ended() =>
        {
            format!(
                "{how}: the thread that started it ({}) ended before it was joined; a child \
                 dies with the thread that forked it when a forked process starts it, or when \
                 the orphan guard is off (CSPNET_ORPHAN_GUARD=off, set_orphan_guard(false)), so \
                 keep that thread until the join",
                starter.thread
            )
        }
        _ => how,
    }
}

/// How a wait status reads in a failure report.
pub(crate) fn describe(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        format!("killed by signal {sig} ({})", signal_name(sig))
    } else if libc::WIFEXITED(status) {
        format!(
            "exited with status {} before reporting",
            libc::WEXITSTATUS(status)
        )
    } else {
        format!("ended with wait status {status:#x} before reporting")
    }
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "signal",
    }
}

/// What a child reported: its encoded outcome, or why it failed.
pub(crate) type Report = Result<Vec<u8>, Cause>;

/// A started child and the thread in this process that watches it.
pub struct Watched {
    pid: libc::pid_t,
    watcher: std::thread::JoinHandle<()>,
    killed: Arc<AtomicBool>,
}

impl Watched {
    pub(crate) fn pid(&self) -> u32 {
        self.pid as u32
    }

    pub(crate) fn finished(&self) -> bool {
        self.watcher.is_finished()
    }

    /// Waits until the child has been reaped and reported.
    pub(crate) fn reap(self) {
        let _ = self.watcher.join();
    }

    /// Sends the child SIGKILL (it is then reported as killed by its handle).
    pub(crate) fn kill(&self) -> Result<(), KillError> {
        if self.finished() {
            return Err(KillError::NoSuchProcess(format!(
                "pid {} has already ended",
                self.pid
            )));
        }
        self.killed.store(true, Ordering::Release);
        // SAFETY: kill(2) on our own child's pid, which is not reaped (and so not reused) until
        // the watcher has seen the child's report channel close.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } == -1 {
            return Err(KillError::Refused(
                std::io::Error::last_os_error().to_string(),
            ));
        }
        Ok(())
    }
}

/// Watches `child` from a thread of its own: waits for its report (or for its report channel to
/// close), reaps it at once so it never lingers as a zombie, releases what it held if it died
/// without reporting (poisoned, or for a supervised child, `on_crash` = retire: left as if it had
/// ended), and calls `done` with how it ended. A child that dies while its parent waits on
/// channels is so noticed at once, not at `join`.
pub(crate) fn watch(
    child: Child,
    on_crash: Leave,
    done: Box<dyn FnOnce(Report, Vec<HeldEnd>, u32) + Send>,
) -> Result<Watched, Cause> {
    let pid = child.pid;
    let killed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&killed);
    let slot = Arc::new(Mutex::new(Some(child)));
    let in_thread = Arc::clone(&slot);
    let started = spawn_own_thread(
        std::thread::Builder::new()
            .name("cspnet-watch".into())
            .stack_size(256 << 10),
        move || {
            let child = in_thread
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("the watcher starts once");
            let (report, held) = wait_for(child, on_crash, &flag);
            done(report, held, pid as u32);
        },
    );
    match started {
        Ok(watcher) => Ok(Watched {
            pid,
            watcher,
            killed,
        }),
        Err(e) => {
            // Without a watcher nobody would reap it: end it now, as a child that never started.
            let child = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("the watcher never ran");
            kill_and_reap(child.pid);
            release(child.ledger, child.held, Leave::Poison);
            Err(Cause::CouldNotStart(format!(
                "no thread to watch the child: {e}"
            )))
        }
    }
}

/// The watcher's work: the child's report and the ends it held when it failed.
fn wait_for(child: Child, on_crash: Leave, killed: &AtomicBool) -> (Report, Vec<HeldEnd>) {
    let mut report = None;
    let mut held_at_panic = Vec::new();
    while let Ok(msg) = child.rx.recv() {
        match msg {
            Msg::Report(r) => report = Some(r),
            Msg::Held(h) => held_at_panic = h,
            Msg::Hello { .. } => {}
        }
    }
    let status = reap_status(child.pid);
    match report {
        Some(r) => {
            child.ledger.map(ledger::close);
            // A re-executed child that did not run its function (not registered, mismatched
            // types) never took up the ends it was sent.
            if matches!(r, Err(Cause::CouldNotStart(_))) {
                poison_held(&child.held);
            }
            (r, held_at_panic)
        }
        None => {
            let still = release(child.ledger, child.held, on_crash);
            let named = still
                .into_iter()
                .map(|(chan, role)| HeldEnd::new(child.names.get(&chan).map(|n| &**n), role))
                .collect();
            let how = crash_report(status, child.starter.as_ref());
            let how = if killed.load(Ordering::Acquire) {
                format!("{how} (killed through its handle)")
            } else {
                how
            };
            (Err(Cause::Crashed(how)), named)
        }
    }
}

/// Releases what a child that died without reporting still held, as `on_crash` says, and
/// returns those ends. Without a complete ledger only the census is known: then its channels are
/// poisoned whatever `on_crash` says, since leaving ends the child may already have left would
/// corrupt the counts.
fn release(ledger: Option<u64>, census: Vec<(u64, Role)>, on_crash: Leave) -> Vec<(u64, Role)> {
    // Writers it held in extended reads go on once its ends are released: a write it took is
    // done, and the writer's next operation sees what the crash did to the channel.
    let holding = ledger.map(ledger::holding).unwrap_or_default();
    let still = release_ends(ledger, census, on_crash);
    for w in holding {
        engine::wake_held(w);
    }
    still
}

fn release_ends(
    ledger: Option<u64>,
    census: Vec<(u64, Role)>,
    on_crash: Leave,
) -> Vec<(u64, Role)> {
    match ledger.and_then(ledger::close) {
        Some(still) => {
            match on_crash {
                Leave::Retire => {
                    // A barrier member resigns, as a dropped one does, before its end leaves.
                    for &(chan, role) in &still {
                        if role == Role::Reader {
                            cspnet_core::resign_if_barrier::<crate::Processes>(&Chan::at(chan));
                        }
                    }
                    leave_held(still.clone(), Leave::Retire);
                }
                Leave::Poison => poison_held(&still),
            }
            still
        }
        None => {
            poison_held(&census);
            census
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fork safety: the warning about forking a multi-threaded program.

/// Environment variable: `off` silences the warning about forking a multi-threaded program.
pub(crate) const ENV_FORK_WARNING: &str = "CSPNET_FORK_WARNING";

/// Whether `set_fork_warning(false)` was called.
static FORK_WARNING_OFF: AtomicBool = AtomicBool::new(false);
/// Set once the warning was given (or found silenced by the environment): at most once a program.
static FORK_WARNED: AtomicBool = AtomicBool::new(false);

/// Silences (`false`) or restores (`true`) the warning about forking a multi-threaded program.
pub(crate) fn set_fork_warning(on: bool) {
    FORK_WARNING_OFF.store(!on, Ordering::Relaxed);
}

/// How many threads cspnet may run at once that it knows are its own by id (one watcher per
/// running child); past that, a thread is still known as ours by its `cspnet-` name.
const OWN_SLOTS: usize = 4096;
/// The kernel thread ids of the threads cspnet runs itself (0: a free slot). Atomics, not a lock:
/// a forked child must never find it locked.
static OWN_THREADS: [AtomicI32; OWN_SLOTS] = [const { AtomicI32::new(0) }; OWN_SLOTS];

/// Registers the calling thread as one of cspnet's own, so the fork warning does not count it.
/// Every thread cspnet starts calls it first. The slot is freed when the thread is no longer in
/// `/proc/self/task` (see [`other_threads`]), not when its body ends: a thread that has finished
/// its work is still listed until the kernel has let it go.
pub(crate) fn register_own_thread() {
    let tid = gettid();
    for slot in &OWN_THREADS {
        if slot
            .compare_exchange(0, tid, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

/// cspnet threads started but not yet registered: until a new thread has run its first line (and
/// set its name) a fork would count it as the program's.
static STARTING: AtomicUsize = AtomicUsize::new(0);

/// Starts one of cspnet's own threads, which the fork warning does not count.
pub(crate) fn spawn_own_thread<R: Send + 'static>(
    builder: std::thread::Builder,
    f: impl FnOnce() -> R + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<R>> {
    STARTING.fetch_add(1, Ordering::AcqRel);
    let started = builder.spawn(move || {
        register_own_thread();
        STARTING.fetch_sub(1, Ordering::AcqRel);
        f()
    });
    if started.is_err() {
        STARTING.fetch_sub(1, Ordering::AcqRel);
    }
    started
}

fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// The program's other threads (not the caller, not cspnet's own): how many, and one's name.
fn other_threads() -> (usize, Option<String>) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, None);
    };
    let me = gettid();
    let tids: Vec<libc::pid_t> = tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect();
    // Free the slots of our threads that are gone (in a forked child: all of the parent's).
    for slot in &OWN_THREADS {
        let tid = slot.load(Ordering::Relaxed);
        // Looked up again: a thread registered since the listing is not in it, yet alive.
        if tid != 0
            && !tids.contains(&tid)
            && !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
        {
            let _ = slot.compare_exchange(tid, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
    let ours: Vec<libc::pid_t> = OWN_THREADS
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .filter(|&t| t != 0)
        .collect();
    let others: Vec<libc::pid_t> = tids
        .into_iter()
        .filter(|t| *t != me && !ours.contains(t))
        .filter(|tid| {
            // A thread that has gone since the listing (its comm no longer reads) is no threat.
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"));
            comm.is_ok_and(|c| !c.starts_with("cspnet-"))
        })
        .collect();
    let name = others.first().map(|tid| {
        let comm =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
        format!("\"{}\" (tid {tid})", comm.trim_end())
    });
    (others.len(), name)
}

/// Before a fork: if the program runs other threads, says once (on stderr) that a lock one of
/// them holds stays locked in the child, and that `exec` is the remedy.
fn warn_if_threaded() {
    if FORK_WARNED.load(Ordering::Relaxed) || FORK_WARNING_OFF.load(Ordering::Relaxed) {
        return;
    }
    // Read before the threads are listed: a thread of ours that is starting now is either still
    // unregistered in the listing and counted here, or registered (and not counted) by then.
    // Read after, a thread listed before it registered (its name perhaps not even set yet) could
    // have registered and left STARTING in between, and be taken for the program's.
    let starting = STARTING.load(Ordering::Acquire);
    let (count, name) = other_threads();
    if count <= starting {
        return;
    }
    if std::env::var_os(ENV_FORK_WARNING).is_some_and(|v| v == "off") {
        FORK_WARNED.store(true, Ordering::Relaxed);
        return;
    }
    if FORK_WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    let name = name.unwrap_or_default();
    eprintln!(
        "cspnet-processes: warning: a process is being forked while this program runs {count} \
         other thread(s), e.g. {name}. A lock such a thread holds at the fork (a Mutex, the \
         environment, a library's global state) stays locked in the child forever, and the \
         child hangs if it needs it. Start processes from a multi-threaded program with `exec` \
         (cspnet_processes::exec, which re-executes the program) instead; if no thread holds a \
         lock the children need, silence this with CSPNET_FORK_WARNING=off or \
         cspnet_processes::set_fork_warning(false). (Said once per program.)"
    );
}

// ---------------------------------------------------------------------------------------------
// No orphans: the watchdog.

/// Environment variable: `off` turns the orphan guard off (see [`set_orphan_guard`]).
pub(crate) const ENV_ORPHAN_GUARD: &str = "CSPNET_ORPHAN_GUARD";

/// How this process's children are kept from outliving it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Keep {
    /// In the process group of this process's watchdog (its pid), which kills the group when
    /// this process ends.
    Group(libc::pid_t),
    /// In this forked child's group (its program's watchdog's), and with `PR_SET_PDEATHSIG`:
    /// killed when the program ends, or when the thread that forked them does. A sub-network
    /// costs no watchdog of its own.
    Nested(libc::pid_t),
    /// In the caller's process group, with `PR_SET_PDEATHSIG`: killed when the thread that
    /// forked them ends (the orphan guard is off).
    DeathSignal,
}

impl Keep {
    /// The process group a child joins, if not the caller's.
    fn group(self) -> Option<libc::pid_t> {
        match self {
            Keep::Group(pgid) | Keep::Nested(pgid) => Some(pgid),
            Keep::DeathSignal => None,
        }
    }

    /// Whether a child dies with the thread that started it.
    fn death_signal(self) -> bool {
        !matches!(self, Keep::Group(_))
    }
}

/// In a forked child: the watchdog group it was placed in (0: none, a program's first process).
static INHERITED_GROUP: AtomicI32 = AtomicI32::new(0);

const GUARD_UNDECIDED: u8 = 0;
const GUARD_ON: u8 = 1;
const GUARD_OFF: u8 = 2;
/// Decided by `set_orphan_guard` or, at the first child, by `CSPNET_ORPHAN_GUARD`; then fixed.
static ORPHAN_GUARD: AtomicU8 = AtomicU8::new(GUARD_UNDECIDED);

/// Chooses whether children are guarded by a watchdog; `false` once the choice was made.
pub(crate) fn set_orphan_guard(on: bool) -> bool {
    let want = if on { GUARD_ON } else { GUARD_OFF };
    ORPHAN_GUARD
        .compare_exchange(GUARD_UNDECIDED, want, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
        || ORPHAN_GUARD.load(Ordering::Relaxed) == want
}

fn orphan_guard_on() -> bool {
    let decided = ORPHAN_GUARD.load(Ordering::Relaxed);
    if decided != GUARD_UNDECIDED {
        return decided == GUARD_ON;
    }
    let off = std::env::var_os(ENV_ORPHAN_GUARD).is_some_and(|v| v == "off");
    let choice = if off { GUARD_OFF } else { GUARD_ON };
    match ORPHAN_GUARD.compare_exchange(
        GUARD_UNDECIDED,
        choice,
        Ordering::Relaxed,
        Ordering::Relaxed,
    ) {
        Ok(_) => choice == GUARD_ON,
        Err(now) => now == GUARD_ON,
    }
}

/// The process whose watchdog [`WATCHDOG`] and [`WATCH_FD`] describe (a forked child inherits
/// its parent's values and must start its own).
static WATCH_OWNER: AtomicI32 = AtomicI32::new(0);
/// The watchdog's pid, which is also its process group's id.
static WATCHDOG: AtomicI32 = AtomicI32::new(0);
/// The write end of the watchdog's pipe: only the supervising process holds it (`O_CLOEXEC`, and
/// forked children close it first thing).
static WATCH_FD: AtomicI32 = AtomicI32::new(-1);

/// How to keep the next child from outliving this process: starts this process's watchdog if it
/// has none running (the first time, or if it was killed). Call it with [`FORK_LOCK`] held, so
/// that no child of ours is forked while the watchdog's pipe is being made.
fn orphan_guard() -> Result<Keep, String> {
    if !orphan_guard_on() {
        return Ok(Keep::DeathSignal);
    }
    let inherited = INHERITED_GROUP.load(Ordering::Relaxed);
    if inherited != 0 {
        return Ok(Keep::Nested(inherited));
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if WATCH_OWNER.load(Ordering::Relaxed) == me {
        let watchdog = WATCHDOG.load(Ordering::Relaxed);
        let mut status = 0;
        // SAFETY: a non-blocking waitpid on our own child; it reaps the watchdog if it died.
        if unsafe { libc::waitpid(watchdog, &mut status, libc::WNOHANG) } == 0 {
            return Ok(Keep::Group(watchdog));
        }
        forget_watchdog(); // killed by someone: a new one guards the children from now on
    }
    let (watchdog, fd) = start_watchdog()?;
    WATCHDOG.store(watchdog, Ordering::Relaxed);
    WATCH_FD.store(fd, Ordering::Relaxed);
    WATCH_OWNER.store(me, Ordering::Relaxed);
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: atexit with a function that lives as long as the program.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(end_watchdog);
    });
    Ok(Keep::Group(watchdog))
}

/// At `exit`: kills what is left of the watchdog's group, the watchdog with it, and reaps the
/// watchdog, so that nothing we started is running when `exit` returns, and the watchdog is not
/// left as a zombie for init to reap. (Killing the group here rather than waiting for the
/// watchdog to see end-of-file: a process forked by other means may hold the pipe's write end.)
extern "C" fn end_watchdog() {
    // SAFETY: getpid has no preconditions.
    if WATCH_OWNER.load(Ordering::Relaxed) != unsafe { libc::getpid() } {
        return; // a forked child that called exit: not its watchdog
    }
    let watchdog = WATCHDOG.load(Ordering::Relaxed);
    forget_watchdog();
    let mut status = 0;
    // SAFETY: kill on the group our watchdog leads, which we checked is still ours (it has not
    // been reaped, so its pid and group id cannot have been reused); waitpid on our own child
    // with a valid status pointer, retried on EINTR.
    unsafe {
        if libc::waitpid(watchdog, &mut status, libc::WNOHANG) != 0 {
            return; // already gone (and reaped now)
        }
        libc::kill(-watchdog, libc::SIGKILL);
        while libc::waitpid(watchdog, &mut status, 0) == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

/// Closes our copy of the watchdog pipe's write end: in a forked child (whose parent's watchdog
/// must see end-of-file when the parent ends), or when the watchdog is gone.
fn forget_watchdog() {
    let fd = WATCH_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: closing a descriptor this module opened and nothing else uses.
        unsafe { libc::close(fd) };
    }
    WATCH_OWNER.store(0, Ordering::Relaxed);
}

/// Forks the watchdog: its pid (and process group), and the write end of its pipe.
fn start_watchdog() -> Result<(libc::pid_t, libc::c_int), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 with a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(format!(
            "no pipe for the orphan watchdog: {}",
            std::io::Error::last_os_error()
        ));
    }
    let [read_end, write_end] = fds;
    // SAFETY: the child runs only watchdog_main, which makes async-signal-safe calls only.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        watchdog_main(read_end, write_end);
    }
    let forked = std::io::Error::last_os_error();
    // SAFETY: closing our copy of the read end; setpgid on our own child (it does the same, so
    // the group exists whichever runs first).
    unsafe {
        libc::close(read_end);
        if pid > 0 {
            libc::setpgid(pid, pid);
        }
    }
    if pid < 0 {
        // SAFETY: closing the write end we opened.
        unsafe { libc::close(write_end) };
        return Err(format!("could not fork the orphan watchdog: {forked}"));
    }
    Ok((pid, write_end))
}

/// The watchdog: leads a process group of its own, in which every child of the supervisor is
/// placed, waits for end-of-file on the pipe (the supervisor ended, however), and kills the group.
/// It does the waiting as `/bin/sh` (`cspnet-watchdog -c 'read line; kill -9 0'`), so that it
/// holds none of the supervisor's memory.
///
/// It is a fork of a possibly multi-threaded program, so it makes async-signal-safe calls only.
fn watchdog_main(read_end: libc::c_int, write_end: libc::c_int) -> ! {
    // SAFETY: each call takes plain values or pointers to locals; all are async-signal-safe.
    unsafe {
        libc::close(write_end);
        if libc::setpgid(0, 0) != 0 || libc::getpgrp() != libc::getpid() {
            libc::_exit(1); // never kill a group we do not lead
        }
        libc::prctl(libc::PR_SET_NAME, c"cspnet-watchdog".as_ptr());
        // The supervisor's signal handlers are not for us; its terminal signals do not reach our
        // group anyway.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        // Hold nothing of the supervisor's open: no pipe of its reads end-of-file late because
        // of us.
        close_all_but(read_end);
        // The pipe as standard input (without close-on-exec), then become a shell that waits for
        // end-of-file and kills the group: a fork would otherwise keep every page the supervisor
        // had when it started, for as long as the program runs, even after the supervisor frees
        // them (gigabytes, for a program that builds its data before its first child). Its argv[0]
        // names it. Should there be no shell, the fork waits itself.
        let mut fd = read_end;
        if fd != 0 && libc::dup2(fd, 0) == 0 {
            libc::close(fd);
            fd = 0;
        }
        if fd == 0 {
            let argv = [
                c"cspnet-watchdog".as_ptr(),
                c"-c".as_ptr(),
                c"read line; kill -9 0".as_ptr(),
                std::ptr::null(),
            ];
            let envp = [std::ptr::null()];
            libc::execve(c"/bin/sh".as_ptr(), argv.as_ptr(), envp.as_ptr());
        }
        let mut byte = 0u8;
        loop {
            let n = libc::read(fd, (&raw mut byte).cast(), 1);
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
        libc::kill(0, libc::SIGKILL); // our own group, ourselves last
        libc::_exit(0)
    }
}

/// Closes every descriptor but `keep` (async-signal-safe).
fn close_all_but(keep: libc::c_int) {
    let keep = keep as libc::c_uint;
    // SAFETY: close_range and close take plain numbers.
    unsafe {
        let below = keep == 0 || libc::syscall(libc::SYS_close_range, 0, keep - 1, 0) == 0;
        let above = libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0) == 0;
        if !(below && above) {
            for fd in 0..4096 {
                if fd != keep as libc::c_int {
                    libc::close(fd);
                }
            }
        }
    }
}

/// The thread that started a child which dies with it (`PR_SET_PDEATHSIG`): its name, and a
/// token that tells whether it has ended.
pub(crate) struct Starter {
    thread: String,
    alive: Weak<()>,
}

thread_local! {
    /// Dropped when the thread ends, which is how a [`Starter`] learns that it did.
    static ALIVE: Arc<()> = Arc::new(());
}

impl Starter {
    fn current() -> Self {
        let name = std::thread::current()
            .name()
            .map_or_else(|| "unnamed".to_owned(), |n| format!("\"{n}\""));
        Starter {
            thread: format!("{name}, tid {}", gettid()),
            alive: ALIVE.with(Arc::downgrade),
        }
    }

    fn ended(&self) -> bool {
        self.alive.upgrade().is_none()
    }
}

#[cfg(test)]
mod tests {
    use crate::{parallel, process};

    /// Forked siblings do not share `select`'s random sequence: each child reseeds `fastrand`.
    #[test]
    fn forked_siblings_draw_different_random_numbers() {
        // Its children allocate waiter records in the segment's heap.
        let _alone = crate::SEGMENT_TESTS
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        fastrand::seed(7);
        let draws = parallel((0..4).map(|_| process(|| Ok(fastrand::u64(..))))).unwrap();
        let mut draws: Vec<u64> = draws.into_iter().map(Result::unwrap).collect();
        draws.sort_unstable();
        draws.dedup();
        assert_eq!(draws.len(), 4, "siblings drew the same numbers");
    }
}
