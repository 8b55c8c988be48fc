//! CSP processes as OS threads: `process`, `parallel`, `sequence`, `spawn`, `io`.

use crate::ThreadSlot;
use cspnet_core::{
    Cause, ContextSlot, Outcome, ProcessContext, ProcessError, ProcessId, discard_unstarted,
    flush_dropped_ends, run_body,
};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

type Body<T> = Box<dyn FnOnce() -> Outcome<T> + Send + 'static>;

/// A CSP process: a closure that runs as one OS thread once given to [`parallel`], [`sequence`] or
/// [`spawn`].
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
pub struct Process<T> {
    name: Option<String>,
    body: Body<T>,
}

/// Makes a CSP process from a closure.
///
/// ```
/// let p = cspnet_threads::process(|| Ok(1 + 1));
/// assert_eq!(cspnet_threads::parallel([p]).unwrap(), vec![Ok(2)]);
/// ```
pub fn process<T, F>(body: F) -> Process<T>
where
    F: FnOnce() -> Outcome<T> + Send + 'static,
    T: Send + 'static,
{
    Process {
        name: None,
        body: Box::new(body),
    }
}

impl<T> Process<T> {
    /// Names the process: the name appears in errors, panic reports and the thread's name.
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
}

impl<T> fmt::Debug for Process<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process").field("name", &self.name).finish()
    }
}

/// A body that has not run yet. If it is dropped without running (its thread could not be started),
/// the channel ends it captured poison their channels, so the processes that did start shut down
/// instead of waiting forever.
struct Pending<T>(Option<Body<T>>);

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        if let Some(body) = self.0.take() {
            discard_unstarted::<ThreadSlot, _>(vec![body]);
        }
    }
}

type Started<T> = Result<JoinHandle<Result<Outcome<T>, Cause>>, Cause>;

/// Processes started by [`spawn`]; [`join`](Self::join) waits for them and gives back their results.
///
/// Dropping the handle without joining also waits (no thread outlives its handle), and reports a
/// failed process on standard error.
///
/// ```
/// let handle = cspnet_threads::spawn([cspnet_threads::process(|| Ok("done"))]);
/// assert_eq!(handle.join().unwrap(), vec![Ok("done")]);
/// ```
#[must_use = "dropping a Spawned waits for its processes; call join to get their results"]
pub struct Spawned<T> {
    running: Vec<(Arc<str>, Started<T>)>,
}

impl<T: Send + 'static> Spawned<T> {
    fn start(procs: Vec<Process<T>>) -> Self {
        let running = procs.into_iter().map(start_one).collect();
        Spawned { running }
    }
}

impl<T> Spawned<T> {
    /// Waits for every process and returns their outcomes in the order given, or the failures (with
    /// each failed process's name) once all have finished.
    ///
    /// ```
    /// let h = cspnet_threads::spawn((0..3).map(|i| cspnet_threads::process(move || Ok(i))));
    /// assert_eq!(h.join().unwrap(), vec![Ok(0), Ok(1), Ok(2)]);
    /// ```
    pub fn join(mut self) -> Result<Vec<Outcome<T>>, ProcessError> {
        join_all(std::mem::take(&mut self.running))
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        if self.running.is_empty() {
            return;
        }
        if let Err(e) = join_all(std::mem::take(&mut self.running)) {
            eprintln!("cspnet: a spawned process failed and its handle was never joined: {e}");
        }
    }
}

impl<T> fmt::Debug for Spawned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.running.iter().map(|(n, _)| &**n).collect();
        f.debug_struct("Spawned")
            .field("processes", &names)
            .finish()
    }
}

/// Process threads alive now, counted against the kernel's mapping limit.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Mappings one thread takes: its stack and guard page, its signal stack and guard page.
const MAPPINGS_PER_THREAD: usize = 4;
/// Mappings left for everything else the program maps (heap arenas, libraries, files).
const SPARE_MAPPINGS: usize = 8192;

/// Counts a thread about to start, unless it would take the program past the kernel's mapping
/// limit: there std aborts the whole program when the thread cannot get its signal stack.
fn reserve_thread() -> Result<LiveThread, Cause> {
    let live = LIVE.fetch_add(1, Ordering::AcqRel);
    let reservation = LiveThread;
    match cspnet_core::max_map_count() {
        Some(max) if live >= max.saturating_sub(SPARE_MAPPINGS) / MAPPINGS_PER_THREAD => {
            Err(Cause::CouldNotStart(format!(
                "{live} process threads are running, and one more would take the program near \
                 the kernel's limit of {max} memory mappings (each thread takes \
                 {MAPPINGS_PER_THREAD}); raise it (`sysctl vm.max_map_count=..`), or use the \
                 coroutines backend for networks this large"
            )))
        }
        _ => Ok(reservation),
    }
}

/// One counted process thread; dropping it (when the thread ends, or was never started) uncounts it.
struct LiveThread;

impl Drop for LiveThread {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

fn start_one<T: Send + 'static>(p: Process<T>) -> (Arc<str>, Started<T>) {
    let id = ProcessId::next();
    let name: Arc<str> = match p.name {
        Some(n) => n.into(),
        None => format!("process-{}", id.as_u64()).into(),
    };
    let ctx = ProcessContext::new(id, Arc::clone(&name));
    let mut pending = Pending(Some(p.body));
    let live = match reserve_thread() {
        Ok(live) => live,
        // Dropping `pending` poisons the channels its ends held, so the started processes end.
        Err(cause) => return (name, Err(cause)),
    };
    let started = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _live = live;
            let body = pending.0.take().expect("a process body runs once");
            run_body::<ThreadSlot, T>(ctx, body)
        })
        .map_err(|e| Cause::CouldNotStart(format!("the OS refused a thread: {e}")));
    (name, started)
}

fn join_all<T>(running: Vec<(Arc<str>, Started<T>)>) -> Result<Vec<Outcome<T>>, ProcessError> {
    flush_dropped_ends::<ThreadSlot>();
    ProcessError::gather(running.into_iter().map(|(name, started)| {
        let result = started.and_then(|handle| {
            handle.join().unwrap_or_else(|_| {
                Err(Cause::Panicked("the process runner itself panicked".into()))
            })
        });
        (name, result)
    }))
}

/// Runs the processes concurrently, each on its own OS thread, and waits for all of them. Returns
/// their outcomes in the order given; if any panicked (or could not start), the error names every
/// such process, and is returned only after all the others have finished.
///
/// ```
/// use cspnet_threads::{parallel, process};
/// let out = parallel((1..=3).map(|i| process(move || Ok(i * 10)))).unwrap();
/// assert_eq!(out, vec![Ok(10), Ok(20), Ok(30)]);
/// ```
pub fn parallel<T, I>(procs: I) -> Result<Vec<Outcome<T>>, ProcessError>
where
    T: Send + 'static,
    I: IntoIterator<Item = Process<T>>,
{
    Spawned::start(procs.into_iter().collect()).join()
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
pub fn sequence<T, I>(procs: I) -> Result<Vec<Outcome<T>>, ProcessError>
where
    T: Send + 'static,
    I: IntoIterator<Item = Process<T>>,
{
    let mut outcomes = Vec::new();
    let mut procs = procs.into_iter();
    for p in procs.by_ref() {
        match Spawned::start(vec![p]).join() {
            Ok(mut one) => outcomes.append(&mut one),
            Err(e) => {
                let rest: Vec<Body<T>> = procs.map(|p| p.body).collect();
                discard_unstarted::<ThreadSlot, _>(rest);
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
pub fn spawn<T, I>(procs: I) -> Spawned<T>
where
    T: Send + 'static,
    I: IntoIterator<Item = Process<T>>,
{
    Spawned::start(procs.into_iter().collect())
}

/// Runs a blocking call. On OS threads blocking is harmless, so this just calls `f`; it exists so
/// that code written for the coroutines backend (where it matters) runs unchanged here.
///
/// ```
/// let n = cspnet_threads::io(|| std::fs::read_dir(".").map(|d| d.count()).unwrap_or(0));
/// assert!(n > 0);
/// ```
pub fn io<R>(f: impl FnOnce() -> R) -> R {
    flush_dropped_ends::<ThreadSlot>();
    f()
}

/// The id of the running CSP process (a thread outside any process has an id of its own).
///
/// ```
/// let out = cspnet_threads::parallel([cspnet_threads::process(|| Ok(cspnet_threads::current_process_id()))]).unwrap();
/// assert_ne!(out[0], Ok(cspnet_threads::current_process_id()));
/// ```
pub fn current_process_id() -> ProcessId {
    ThreadSlot::with(|ctx| ctx.id())
}
