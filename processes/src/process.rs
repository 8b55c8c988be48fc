//! CSP processes as OS processes: `process`, `parallel`, `sequence`, `spawn`, `io`; fork and reaping.
//!
//! A closure process is a `fork` of the calling process. The child runs the body with
//! `cspnet_core::run_body`, sends the outcome (or the panic) to the parent over an ipc-channel, and
//! leaves with `_exit`. The parent drops its copy of the closure in census mode (see `channel.rs`),
//! so it knows which channels the child holds; if the child's ipc-channel closes without a report,
//! the parent reaps it with `waitpid` on its pid, poisons those channels, and reports the crash.

use crate::ThreadSlot;
use crate::channel::{Role, census_drop, leave_held, poison_held};
use crate::codec;
use crate::engine::{forget_waiter, prepare_waiter, release_waiter};
use crate::exec::{self, ExecSpec};
use crate::shm::segment;
use cspnet_core::{
    Cause, ContextSlot, Failure, Leave, Outcome, ProcessContext, ProcessError, ProcessId,
    discard_unstarted, flush_dropped_ends, run_body,
};
use ipc_channel::ipc::{self, IpcReceiver, IpcReceiverSet, IpcSelectionResult, IpcSender};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};

type Body<T> = Box<dyn FnOnce() -> Outcome<T> + Send + 'static>;

/// What a child sends its parent over ipc-channel.
#[derive(Serialize, Deserialize)]
pub(crate) enum Msg {
    /// A re-executed child announces itself and where to send its job.
    Hello { job: IpcSender<exec::Job> },
    /// The body's outcome, encoded, or why it failed.
    Report(Result<Vec<u8>, Cause>),
}

/// A CSP process: a closure run as a forked OS process (or a registered function run by a
/// re-executed copy of the program, see [`exec`](crate::exec)) once given to [`parallel`],
/// [`sequence`] or [`spawn`].
///
/// The body returns [`Outcome<T>`]: `?` on a channel operation ends the process with the channel's
/// error. Ending with `Err(Poisoned)` poisons every channel end the process still holds; ending any
/// other way retires them. The result travels back to the parent encoded with serde.
///
/// ```
/// use cspnet_processes::{Channel, parallel, process};
///
/// let ch = Channel::<u32>::new();
/// let w = ch.writer();
/// let producer = process(move || {
///     for i in 0..3 { w.write(i)?; }
///     Ok(())
/// })
/// .named("producer");
/// let r = ch.reader();
/// let consumer = process(move || {
///     for v in &r { v?; }
///     Ok(())
/// });
/// assert_eq!(parallel([producer, consumer]).unwrap(), vec![Ok(()), Ok(())]);
/// ```
#[must_use = "a process runs only when given to parallel, sequence or spawn"]
pub struct Process<T> {
    name: Option<String>,
    kind: Kind<T>,
}

enum Kind<T> {
    Closure(Body<T>),
    Exec(ExecSpec),
}

/// Makes a CSP process from a closure; it runs in a `fork` of the calling process.
///
/// ```
/// let p = cspnet_processes::process(|| Ok(1 + 1));
/// assert_eq!(cspnet_processes::parallel([p]).unwrap(), vec![Ok(2)]);
/// ```
pub fn process<T, F>(body: F) -> Process<T>
where
    F: FnOnce() -> Outcome<T> + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    Process {
        name: None,
        kind: Kind::Closure(Box::new(body)),
    }
}

impl<T> Process<T> {
    pub(crate) fn from_exec(spec: ExecSpec) -> Self {
        Process {
            name: None,
            kind: Kind::Exec(spec),
        }
    }

    /// Names the process: the name appears in errors and failure reports.
    ///
    /// ```
    /// let p = cspnet_processes::process(|| -> cspnet_processes::Outcome<()> { panic!("oops") }).named("sink");
    /// let err = cspnet_processes::parallel([p]).unwrap_err();
    /// assert_eq!(err.first().process(), "sink");
    /// ```
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    fn exec_spec(&mut self, what: &str) -> &mut ExecSpec {
        match &mut self.kind {
            Kind::Exec(spec) => spec,
            Kind::Closure(_) => panic!(
                "Process::{what} applies to processes made by exec(..); a closure process is a \
                 fork and shares the parent's arguments, environment and directory"
            ),
        }
    }

    /// Adds a command-line argument for a re-executed child ([`exec`](crate::exec) only).
    ///
    /// # Panics
    ///
    /// On a closure process (it is a fork, with the parent's arguments).
    ///
    /// ```
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).arg("--fast");
    /// # drop(p);
    /// ```
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.exec_spec("arg").argv.push(arg.as_ref().to_owned());
        self
    }

    /// Sets an environment variable for a re-executed child ([`exec`](crate::exec) only).
    ///
    /// # Panics
    ///
    /// On a closure process.
    ///
    /// ```
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).env("RUST_LOG", "debug");
    /// # drop(p);
    /// ```
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.exec_spec("env")
            .env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets the working directory of a re-executed child ([`exec`](crate::exec) only).
    ///
    /// # Panics
    ///
    /// On a closure process.
    ///
    /// ```
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).current_dir("/tmp");
    /// # drop(p);
    /// ```
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.exec_spec("current_dir").dir = Some(dir.as_ref().to_owned());
        self
    }
}

impl<T> fmt::Debug for Process<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Closure(_) => "fork",
            Kind::Exec(spec) => spec.func.as_str(),
        };
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("start", &kind)
            .finish()
    }
}

/// A started child: its pid, the receiving end of its report channel, and the channel handles it
/// holds (poisoned if it dies without reporting).
pub(crate) struct Child {
    pub(crate) pid: libc::pid_t,
    pub(crate) rx: IpcReceiver<Msg>,
    pub(crate) held: Vec<(u64, Role)>,
}

struct Running {
    name: Arc<str>,
    started: Result<Child, Cause>,
}

/// Processes started by [`spawn`]; [`join`](Self::join) waits for them and gives back their results.
///
/// Dropping the handle without joining also waits (no child outlives its handle), and reports a
/// failed process on standard error. Join from the thread that spawned: children are started with
/// `PR_SET_PDEATHSIG`, which fires when the *thread* that forked them ends.
///
/// ```
/// let handle = cspnet_processes::spawn([cspnet_processes::process(|| Ok("done".to_string()))]);
/// assert_eq!(handle.join().unwrap(), vec![Ok("done".to_string())]);
/// ```
#[must_use = "dropping a Spawned waits for its processes; call join to get their results"]
pub struct Spawned<T> {
    running: Vec<Running>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Spawned<T> {
    fn start(procs: Vec<Process<T>>) -> Self {
        flush_dropped_ends::<ThreadSlot>();
        let running = procs.into_iter().map(start_one).collect();
        Spawned {
            running,
            _t: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Spawned<T> {
    /// Waits for every process and returns their outcomes in the order given, or the failures (with
    /// each failed process's name) once all have finished.
    ///
    /// ```
    /// let h = cspnet_processes::spawn((0..3u32).map(|i| cspnet_processes::process(move || Ok(i))));
    /// assert_eq!(h.join().unwrap(), vec![Ok(0), Ok(1), Ok(2)]);
    /// ```
    pub fn join(mut self) -> Result<Vec<Outcome<T>>, ProcessError> {
        let running = std::mem::take(&mut self.running);
        decode_all(join_all(running))
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let reports = join_all(std::mem::take(&mut self.running));
        let failures: Vec<Failure> = reports
            .into_iter()
            .filter_map(|(name, r)| r.err().map(|c| Failure::new(&*name, c)))
            .collect();
        if !failures.is_empty() {
            eprintln!(
                "cspnet: a spawned process failed and its handle was never joined: {}",
                ProcessError::new(failures)
            );
        }
    }
}

impl<T> fmt::Debug for Spawned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.running.iter().map(|r| &*r.name).collect();
        f.debug_struct("Spawned")
            .field("processes", &names)
            .finish()
    }
}

/// Serialises our forks: the report channel's sending end exists in the parent only while the lock
/// is held, so no sibling forked by another thread inherits it (which would delay the parent
/// seeing the child's channel close). The child releases its inherited copy of the guard at once.
static FORK_LOCK: Mutex<()> = Mutex::new(());

fn start_one<T: Serialize + DeserializeOwned + Send + 'static>(p: Process<T>) -> Running {
    let seg = segment(); // mapped before any fork, so every child shares it
    let id = seg.next_id();
    let name: Arc<str> = match p.name {
        Some(n) => n.into(),
        None => format!("process-{id}").into(),
    };
    let started = match p.kind {
        Kind::Closure(body) => fork_start::<T>(Arc::clone(&name), id, body),
        Kind::Exec(spec) => exec::start(&name, id, spec),
    };
    Running { name, started }
}

fn fork_start<T: Serialize + 'static>(
    name: Arc<str>,
    id: u64,
    body: Body<T>,
) -> Result<Child, Cause> {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    warm_up_ipc();
    let guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = match ipc::channel::<Msg>() {
        Ok(pair) => pair,
        Err(e) => {
            drop(guard);
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
        child_main::<T>(parent, tx, id, name, body);
    }
    drop(tx);
    drop(guard);
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        discard_unstarted::<ThreadSlot, _>(vec![body]);
        return Err(Cause::CouldNotStart(format!("fork failed: {e}")));
    }
    let held = census_drop(body);
    Ok(Child { pid, rx, held })
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
    forget_waiter();
    prepare_waiter();
}

fn child_main<T: Serialize + 'static>(
    parent: libc::pid_t,
    tx: IpcSender<Msg>,
    id: u64,
    name: Arc<str>,
    body: Body<T>,
) -> ! {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        child_setup(parent);
        let ctx = ProcessContext::new(ProcessId::new(id), name);
        let report = match run_body::<ThreadSlot, T>(ctx, body) {
            Ok(outcome) => codec::to_bytes(&outcome)
                .map_err(|e| Cause::Panicked(format!("the result could not be encoded: {e}"))),
            Err(cause) => Err(cause),
        };
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

type Report = Result<Vec<u8>, Cause>;
/// A started child's pid and the channel handles to poison if it dies without reporting.
type Reapable = (libc::pid_t, Vec<(u64, Role)>);

/// Waits for every child, in whatever order they end, and collects their reports. A child whose
/// channel closes without a report is reaped at once and its channels poisoned, so the rest of its
/// network shuts down while we wait for the others.
fn join_all(running: Vec<Running>) -> Vec<(Arc<str>, Report)> {
    flush_dropped_ends::<ThreadSlot>();
    let n = running.len();
    let mut reports: Vec<Option<Report>> = (0..n).map(|_| None).collect();
    let mut names = Vec::with_capacity(n);
    let mut children: Vec<Option<Reapable>> = Vec::with_capacity(n);
    let mut ids = HashMap::new();
    let mut set = None;
    for (i, r) in running.into_iter().enumerate() {
        names.push(r.name);
        match r.started {
            Err(cause) => {
                reports[i] = Some(Err(cause));
                children.push(None);
            }
            Ok(child) => {
                let set = set.get_or_insert_with(|| {
                    IpcReceiverSet::new().expect("cspnet-processes: an ipc receiver set")
                });
                let id = set
                    .add(child.rx)
                    .expect("cspnet-processes: adding a report channel to the set");
                ids.insert(id, i);
                children.push(Some((child.pid, child.held)));
            }
        }
    }
    let mut open = ids.len();
    while open > 0 {
        let events = set
            .as_mut()
            .expect("a set exists while channels are open")
            .select()
            .expect("cspnet-processes: waiting on the children's report channels");
        for event in events {
            match event {
                IpcSelectionResult::MessageReceived(id, msg) => {
                    if let (Some(&i), Ok(Msg::Report(r))) = (ids.get(&id), msg.to::<Msg>()) {
                        reports[i] = Some(r);
                    }
                }
                IpcSelectionResult::ChannelClosed(id) => {
                    open -= 1;
                    let Some(&i) = ids.get(&id) else { continue };
                    let (pid, held) = children[i].take().expect("each child closes once");
                    let how = reap(pid);
                    if reports[i].is_none() {
                        poison_held(&held);
                        reports[i] = Some(Err(Cause::Crashed(how)));
                    }
                }
            }
        }
    }
    names
        .into_iter()
        .zip(reports)
        .map(|(name, r)| (name, r.expect("every child reported or was reaped")))
        .collect()
}

fn decode_all<T: DeserializeOwned>(
    reports: Vec<(Arc<str>, Report)>,
) -> Result<Vec<Outcome<T>>, ProcessError> {
    ProcessError::gather(reports.into_iter().map(|(name, report)| {
        let decoded = report.and_then(|bytes| {
            codec::from_bytes::<Outcome<T>>(&bytes)
                .map_err(|e| Cause::Crashed(format!("sent a result that does not decode: {e}")))
        });
        (name, decoded)
    }))
}

/// Runs the processes concurrently, each in its own OS process, and waits for all of them. Returns
/// their outcomes in the order given; if any panicked, crashed or could not start, the error names
/// every such process, and is returned only after all the others have finished.
///
/// ```
/// use cspnet_processes::{parallel, process};
/// let out = parallel((1..=3u32).map(|i| process(move || Ok(i * 10)))).unwrap();
/// assert_eq!(out, vec![Ok(10), Ok(20), Ok(30)]);
/// ```
pub fn parallel<T, I>(procs: I) -> Result<Vec<Outcome<T>>, ProcessError>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    I: IntoIterator<Item = Process<T>>,
{
    Spawned::start(procs.into_iter().collect()).join()
}

/// Runs the processes one after another, each starting when the previous one has ended. Stops at
/// the first process that fails; the ones after it never run (their channel ends are poisoned).
///
/// ```
/// use cspnet_processes::{Channel, process, sequence};
/// let log = Channel::<u32>::with_buffer(2);
/// let (a, b, r) = (log.writer(), log.writer(), log.reader());
/// sequence([
///     process(move || a.write(1)),
///     process(move || b.write(2)),
/// ]).unwrap();
/// assert_eq!((r.read(), r.read()), (Ok(1), Ok(2)));
/// ```
pub fn sequence<T, I>(procs: I) -> Result<Vec<Outcome<T>>, ProcessError>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    I: IntoIterator<Item = Process<T>>,
{
    let mut outcomes = Vec::new();
    let mut procs = procs.into_iter();
    for p in procs.by_ref() {
        match Spawned::start(vec![p]).join() {
            Ok(mut one) => outcomes.append(&mut one),
            Err(e) => {
                let mut bodies = Vec::new();
                for p in procs {
                    match p.kind {
                        Kind::Closure(body) => bodies.push(body),
                        Kind::Exec(mut spec) => leave_held(spec.take_held(), Leave::Poison),
                    }
                }
                discard_unstarted::<ThreadSlot, _>(bodies);
                return Err(e);
            }
        }
    }
    Ok(outcomes)
}

/// Starts the processes and returns at once; the [`Spawned`] handle joins them.
///
/// ```
/// use cspnet_processes::{Channel, process, spawn};
/// let ch = Channel::<u32>::new();
/// let w = ch.writer();
/// let h = spawn([process(move || w.write(8))]);
/// assert_eq!(ch.reader().read(), Ok(8));
/// h.join().unwrap();
/// ```
pub fn spawn<T, I>(procs: I) -> Spawned<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    I: IntoIterator<Item = Process<T>>,
{
    Spawned::start(procs.into_iter().collect())
}

/// Runs a blocking call. In an OS process blocking is harmless, so this just calls `f`; it exists
/// so that code written for the coroutines backend runs unchanged here.
///
/// ```
/// let n = cspnet_processes::io(|| std::fs::read_dir(".").map(|d| d.count()).unwrap_or(0));
/// assert!(n > 0);
/// ```
pub fn io<R>(f: impl FnOnce() -> R) -> R {
    flush_dropped_ends::<ThreadSlot>();
    f()
}

/// The id of the running CSP process, unique across the OS processes of the network (a thread
/// outside any process has an id of its own).
///
/// ```
/// use cspnet_processes::{current_process_id, parallel, process};
/// let out = parallel([process(|| Ok(current_process_id().as_u64()))]).unwrap();
/// assert_ne!(out[0], Ok(current_process_id().as_u64()));
/// ```
pub fn current_process_id() -> ProcessId {
    ThreadSlot::with(|ctx| ctx.id())
}
