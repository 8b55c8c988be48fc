//! CSP processes as OS processes, the public surface: `Process`, `process`, `parallel`,
//! `sequence`, `spawn`, `Spawned`, `io`, `current_process_id`.
//!
//! How a child starts, reports and is reaped is in `children.rs`; a process made by
//! [`exec`](crate::exec) is the same `Process` with another start mode.

use crate::ThreadSlot;
use crate::channel::leave_held;
use crate::children::{Body, ExecSpec, Report, Running, exec_start, fork_start, join_all};
use crate::codec;
use crate::shm::segment;
use cspnet_core::{
    Cause, ContextSlot, Failure, Leave, Outcome, ProcessError, ProcessId, discard_unstarted,
    flush_dropped_ends,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ffi::OsStr;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

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

fn start_one<T: Serialize + DeserializeOwned + Send + 'static>(p: Process<T>) -> Running {
    let seg = segment(); // mapped before any fork, so every child shares it
    let id = seg.next_id();
    let name: Arc<str> = match p.name {
        Some(n) => n.into(),
        None => format!("process-{id}").into(),
    };
    let started = match p.kind {
        Kind::Closure(body) => fork_start::<T>(Arc::clone(&name), id, body),
        Kind::Exec(spec) => exec_start(&name, id, spec),
    };
    Running { name, started }
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
