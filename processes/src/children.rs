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
//! The libc calls that start, set up and reap children live here, each with its `SAFETY` note.

use crate::ThreadSlot;
use crate::channel::{census_drop, census_names, leave_held, poison_held};
use crate::codec;
use crate::engine::{forget_waiter, prepare_waiter, release_waiter};
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
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
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    warm_up_ipc();
    let ledger = ledger::create();
    let guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = match ipc::channel::<Msg>() {
        Ok(pair) => pair,
        Err(e) => {
            drop(guard);
            ledger.map(ledger::close);
            discard_unstarted::<ThreadSlot, _>(vec![body]);
            return Err(Cause::CouldNotStart(format!(
                "no ipc-channel for the report: {e}"
            )));
        }
    };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork is safe to call; in the child we only run the body on this thread and leave
    // with _exit (see the crate docs on fork hazards). No lock of ours is held across it except
    // FORK_LOCK, whose guard the child drops first.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(guard);
        ledger::adopt(ledger);
        child_main::<T>(parent, tx, ctx, body);
    }
    drop(tx);
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
    Ok(Child {
        pid,
        rx,
        held,
        names,
        ledger,
    })
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

/// Things every child does first: die with its parent, forget the parent's per-thread state.
pub(crate) fn child_setup(parent: libc::pid_t) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; getppid has no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1); // the parent died before we could ask to die with it
        }
    }
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
    tx: IpcSender<Msg>,
    ctx: ProcessContext,
    body: Body<T>,
) -> ! {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        child_setup(parent);
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
    // No flush of stdout here: another thread of the parent may have held its lock at the fork,
    // and that lock stays locked in the child. `println!` output is line-flushed already.
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
    let fd = seg.fd();
    // SAFETY: the hook runs in the forked child before exec and calls only async-signal-safe
    // functions (fcntl, prctl) on values copied in.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
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
            let job = Job {
                func: std::mem::take(&mut spec.func),
                arg_type: spec.arg_type.to_owned(),
                result_type: spec.result_type.to_owned(),
                args: std::mem::take(&mut spec.args),
                id: ctx.id().as_u64(),
                name: ctx.name().to_owned(),
            };
            if job_tx.send(job).is_err() {
                // The child is gone; joining will reap it and report the crash.
            }
            Ok(Child {
                pid,
                rx,
                held,
                names: HashMap::new(),
                ledger: None,
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
    let accepter = std::thread::Builder::new()
        .name("cspnet-exec-hello".into())
        .spawn(move || {
            let _ = acc_tx.send(server.accept());
        });
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

/// What a re-executed child does first, as a forked one does: die with its parent, set up its
/// waiter record.
pub(crate) fn exec_child_setup() {
    // SAFETY: getppid has no preconditions.
    child_setup(unsafe { libc::getppid() });
}

/// Waits for `pid` and describes how it ended.
pub(crate) fn reap(pid: libc::pid_t) -> String {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child's pid with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return describe(status);
        }
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return format!("vanished (waitpid: {})", std::io::Error::last_os_error());
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
    let started = std::thread::Builder::new()
        .name("cspnet-watch".into())
        .stack_size(256 << 10)
        .spawn(move || {
            let child = in_thread
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("the watcher starts once");
            let (report, held) = wait_for(child, on_crash, &flag);
            done(report, held, pid as u32);
        });
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
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(child.pid, libc::SIGKILL) };
            reap(child.pid);
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
    let how = reap(child.pid);
    match report {
        // A re-executed child that did not run its function (not registered, mismatched types)
        // never took up the ends it was sent.
        Some(Err(Cause::CouldNotStart(why))) => {
            child.ledger.map(ledger::close);
            poison_held(&child.held);
            (Err(Cause::CouldNotStart(why)), Vec::new())
        }
        Some(r) => {
            child.ledger.map(ledger::close);
            (r, held_at_panic)
        }
        None => {
            let still = release(child.ledger, child.held, on_crash);
            let named = still
                .into_iter()
                .map(|(chan, role)| HeldEnd::new(child.names.get(&chan).map(|n| &**n), role))
                .collect();
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
    match ledger.and_then(ledger::close) {
        Some(still) => {
            match on_crash {
                Leave::Retire => leave_held(still.clone(), Leave::Retire),
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
