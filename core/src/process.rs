//! Processes, written once over [`Carries`]: `process`, `parallel`, `sequence`, `spawn`, `Spawned`.
//!
//! How a process starts and is waited for is the engine's ([`Carries::start`],
//! [`Carries::join_all`]); what a group of processes means is this module's: `parallel` starts them
//! all and waits for all, `sequence` runs them one after another and stops at the first failure,
//! `spawn` returns at once with a [`Spawned`] that joins them (and that joins them when dropped, so
//! no process outlives its handle).

use crate::backend::{Backend, Carries};
use crate::context::{ContextSlot, ProcessContext, ProcessId};
use crate::error::{Cause, Failure, Outcome, ProcessError};
use std::fmt;
use std::sync::Arc;

/// A CSP process: a closure (or, on the processes backend, a re-executed program) that runs once
/// given to [`parallel`], [`sequence`] or [`spawn`].
///
/// The body returns [`Outcome<T>`]: `?` on a channel operation ends the process with the channel's
/// error. Ending with `Err(Poisoned)` poisons every channel end the process still holds; ending any
/// other way retires them.
///
/// ```
/// use cspnet_threads::{Channel, parallel, process};
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
pub struct Process<B: Carries<T>, T> {
    name: Option<String>,
    start: B::Start,
}

/// Makes a CSP process from a closure.
///
/// ```
/// let p = cspnet_threads::process(|| Ok(1 + 1));
/// assert_eq!(cspnet_threads::parallel([p]).unwrap(), vec![Ok(2)]);
/// ```
pub fn process<B, T, F>(body: F) -> Process<B, T>
where
    B: Carries<T>,
    F: FnOnce() -> Outcome<T> + Send + 'static,
{
    Process::from_start(B::closure(body))
}

impl<B: Carries<T>, T> Process<B, T> {
    /// A process the engine starts its own way (the processes backend's `exec` makes these).
    ///
    /// ```
    /// use cspnet_core::{Carries, Process};
    /// use cspnet_threads::Threads;
    /// let p = Process::<Threads, u8>::from_start(<Threads as Carries<u8>>::closure(|| Ok(1)));
    /// assert_eq!(cspnet_core::parallel([p]).unwrap(), vec![Ok(1)]);
    /// ```
    pub fn from_start(start: B::Start) -> Self {
        Process { name: None, start }
    }

    /// Names the process: the name appears in errors and failure reports (and, on threads, as the
    /// thread's name).
    ///
    /// ```
    /// let p = cspnet_threads::process(|| -> cspnet_threads::Outcome<()> { panic!("oops") }).named("sink");
    /// let err = cspnet_threads::parallel([p]).unwrap_err();
    /// assert_eq!(err.first().process(), "sink");
    /// ```
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// The engine's form of the process, for backends that add start options (the processes
    /// backend's `arg`, `env` and `current_dir` for re-executed programs).
    ///
    /// ```
    /// let mut p = cspnet_threads::process(|| Ok(1u8));
    /// let _start = p.start_mut();
    /// ```
    pub fn start_mut(&mut self) -> &mut B::Start {
        &mut self.start
    }

    /// The process's name, if it was given one.
    ///
    /// ```
    /// assert_eq!(cspnet_threads::process(|| Ok(1)).named("p").name(), Some("p"));
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl<B: Carries<T>, T> fmt::Debug for Process<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("backend", &B::NAME)
            .field("name", &self.name)
            .finish()
    }
}

/// Processes started by [`spawn`]; [`join`](Self::join) waits for them and gives back their results.
///
/// Dropping the handle without joining also waits (no process outlives its handle), and reports a
/// failed process on standard error.
///
/// ```
/// let handle = cspnet_threads::spawn([cspnet_threads::process(|| Ok("done"))]);
/// assert_eq!(handle.join().unwrap(), vec![Ok("done")]);
/// ```
#[must_use = "dropping a Spawned waits for its processes; call join to get their results"]
pub struct Spawned<B: Carries<T>, T> {
    names: Vec<Arc<str>>,
    running: Vec<Result<B::Running, Cause>>,
}

impl<B: Carries<T>, T> Spawned<B, T> {
    fn start(procs: impl IntoIterator<Item = Process<B, T>>) -> Self {
        B::flush();
        let (names, running) = procs.into_iter().map(start_one).unzip();
        Spawned { names, running }
    }

    /// Waits for every process and returns their outcomes in the order given, or the failures (with
    /// each failed process's name) once all have finished.
    ///
    /// ```
    /// let h = cspnet_threads::spawn((0..3).map(|i| cspnet_threads::process(move || Ok(i))));
    /// assert_eq!(h.join().unwrap(), vec![Ok(0), Ok(1), Ok(2)]);
    /// ```
    pub fn join(mut self) -> Result<Vec<Outcome<T>>, ProcessError> {
        ProcessError::gather(self.finish())
    }

    /// The names of the processes, in the order given.
    ///
    /// ```
    /// let h = cspnet_threads::spawn([cspnet_threads::process(|| Ok(())).named("w")]);
    /// assert_eq!(h.names(), ["w"]);
    /// # h.join().unwrap();
    /// ```
    pub fn names(&self) -> Vec<&str> {
        self.names.iter().map(|n| &**n).collect()
    }

    fn finish(&mut self) -> impl Iterator<Item = (Arc<str>, Result<Outcome<T>, Cause>)> {
        B::flush();
        let names = std::mem::take(&mut self.names);
        let outcomes = B::join_all(std::mem::take(&mut self.running));
        names.into_iter().zip(outcomes)
    }
}

impl<B: Carries<T>, T> Drop for Spawned<B, T> {
    fn drop(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let failures: Vec<Failure> = self
            .finish()
            .filter_map(|(name, r)| r.err().map(|cause| Failure::new(&*name, cause)))
            .collect();
        if !failures.is_empty() {
            eprintln!(
                "cspnet: a spawned process failed and its handle was never joined: {}",
                ProcessError::new(failures)
            );
        }
    }
}

impl<B: Carries<T>, T> fmt::Debug for Spawned<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawned")
            .field("backend", &B::NAME)
            .field("processes", &self.names())
            .finish()
    }
}

/// Starts one process with a fresh id; an unnamed process is called `process-<id>`.
fn start_one<B: Carries<T>, T>(p: Process<B, T>) -> (Arc<str>, Result<B::Running, Cause>) {
    let id = B::next_id();
    let name: Arc<str> = match p.name {
        Some(n) => n.into(),
        None => format!("process-{}", id.as_u64()).into(),
    };
    let started = B::start(ProcessContext::new(id, Arc::clone(&name)), p.start);
    (name, started)
}

/// Runs the processes concurrently and waits for all of them. Returns their outcomes in the order
/// given; if any panicked, crashed or could not start, the error names every such process, and is
/// returned only after all the others have finished.
///
/// ```
/// use cspnet_threads::{parallel, process};
/// let out = parallel((1..=3).map(|i| process(move || Ok(i * 10)))).unwrap();
/// assert_eq!(out, vec![Ok(10), Ok(20), Ok(30)]);
/// ```
pub fn parallel<B, T, I>(procs: I) -> Result<Vec<Outcome<T>>, ProcessError>
where
    B: Carries<T>,
    I: IntoIterator<Item = Process<B, T>>,
{
    Spawned::start(procs).join()
}

/// Runs the processes one after another, each starting when the previous one has ended. Stops at
/// the first process that fails; the ones after it never run (their channel ends are poisoned).
///
/// ```
/// use cspnet_threads::{Channel, process, sequence};
/// let log = Channel::<u32>::with_buffer(2);
/// let (a, b, r) = (log.writer(), log.writer(), log.reader());
/// sequence([
///     process(move || a.write(1)),
///     process(move || b.write(2)),
/// ]).unwrap();
/// assert_eq!((r.read(), r.read()), (Ok(1), Ok(2)));
/// ```
pub fn sequence<B, T, I>(procs: I) -> Result<Vec<Outcome<T>>, ProcessError>
where
    B: Carries<T>,
    I: IntoIterator<Item = Process<B, T>>,
{
    let mut outcomes = Vec::new();
    let mut procs = procs.into_iter();
    while let Some(p) = procs.next() {
        match Spawned::start([p]).join() {
            Ok(mut one) => outcomes.append(&mut one),
            Err(e) => {
                B::discard(procs.map(|p| p.start).collect());
                return Err(e);
            }
        }
    }
    Ok(outcomes)
}

/// Starts the processes and returns at once; the [`Spawned`] handle joins them.
///
/// ```
/// use cspnet_threads::{Channel, process, spawn};
/// let ch = Channel::<u32>::new();
/// let w = ch.writer();
/// let h = spawn([process(move || w.write(8))]);
/// assert_eq!(ch.reader().read(), Ok(8));
/// h.join().unwrap();
/// ```
pub fn spawn<B, T, I>(procs: I) -> Spawned<B, T>
where
    B: Carries<T>,
    I: IntoIterator<Item = Process<B, T>>,
{
    Spawned::start(procs)
}

/// Runs a blocking call. On coroutines it runs on a helper thread while the calling coroutine is
/// parked, so the other coroutines keep running; on threads and processes blocking is harmless
/// and it runs in place. Code that calls it runs unchanged on every backend.
///
/// ```
/// let n = cspnet_threads::io(|| std::fs::read_dir(".").map(|d| d.count()).unwrap_or(0));
/// assert!(n > 0);
/// ```
pub fn io<B: Backend, R>(f: impl FnOnce() -> R) -> R {
    B::flush();
    B::io(f)
}

/// The id of the running CSP process (a thread outside any process has an id of its own).
///
/// ```
/// let out = cspnet_threads::parallel([cspnet_threads::process(|| Ok(cspnet_threads::current_process_id()))]).unwrap();
/// assert_ne!(out[0], Ok(cspnet_threads::current_process_id()));
/// ```
pub fn current_process_id<B: Backend>() -> ProcessId {
    B::Slot::with(|ctx| ctx.id())
}
