//! CSP processes as may coroutines: `process`, `parallel`, `sequence`, `spawn`, `current_process_id`.

use crate::CoSlot;
use cspnet_core::{
    Cause, ContextSlot, Outcome, ProcessContext, ProcessError, ProcessId, discard_unstarted,
    run_body,
};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

type Body<T> = Box<dyn FnOnce() -> Outcome<T> + Send + 'static>;

/// A CSP process: a closure that runs as one coroutine once given to [`parallel`], [`sequence`]
/// or [`spawn`].
///
/// The body returns [`Outcome<T>`]: `?` on a channel operation ends the process with the channel's
/// error. Ending with `Err(Poisoned)` poisons every channel end the process still holds; ending any
/// other way retires them. The body must follow the crate's rules for coroutines (no blocking OS
/// calls outside [`io`](crate::io), no thread-local or `std` lock guard held across a channel
/// operation); see the crate docs.
///
/// ```
/// use cspnet_coroutines::{Channel, parallel, process};
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
///
/// A body that captures something tied to one thread does not compile:
///
/// ```compile_fail
/// let shared = std::rc::Rc::new(5);
/// let p = cspnet_coroutines::process(move || Ok(*shared));
/// ```
#[must_use = "a process runs only when given to parallel, sequence or spawn"]
pub struct Process<T> {
    name: Option<String>,
    body: Body<T>,
}

/// Makes a CSP process from a closure.
///
/// ```
/// let p = cspnet_coroutines::process(|| Ok(1 + 1));
/// assert_eq!(cspnet_coroutines::parallel([p]).unwrap(), vec![Ok(2)]);
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
    /// Names the process: the name appears in errors and panic reports.
    ///
    /// ```
    /// let p = cspnet_coroutines::process(|| -> cspnet_coroutines::Outcome<()> { panic!("oops") }).named("sink");
    /// let err = cspnet_coroutines::parallel([p]).unwrap_err();
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

type Started<T> = Result<may::coroutine::JoinHandle<Result<Outcome<T>, Cause>>, Cause>;

/// Processes started by [`spawn`]; [`join`](Self::join) waits for them and gives back their results.
///
/// Dropping the handle without joining also waits (no process outlives its handle), and reports a
/// failed process on standard error.
///
/// ```
/// let handle = cspnet_coroutines::spawn([cspnet_coroutines::process(|| Ok("done"))]);
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
    /// each failed process's name) once all have finished. Called from a coroutine, it parks the
    /// coroutine; from a plain thread, it blocks the thread.
    ///
    /// ```
    /// let h = cspnet_coroutines::spawn((0..3).map(|i| cspnet_coroutines::process(move || Ok(i))));
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

/// Coroutines started and not yet finished.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Memory mappings kept free for everything else (malloc arenas, threads, libraries, and may's
/// cache of up to 1,000 finished coroutines).
const SPARE_MAPPINGS: usize = 8192;

/// Counts a coroutine about to start, unless its stack would take the program past the kernel's
/// mapping limit: there, mmap fails, and so would every allocation that needs a new mapping.
fn reserve_coroutine() -> Result<(), Cause> {
    let live = LIVE.fetch_add(1, Ordering::AcqRel);
    match cspnet_core::max_map_count() {
        Some(max) if live >= coroutine_limit(max) => {
            LIVE.fetch_sub(1, Ordering::AcqRel);
            Err(Cause::CouldNotStart(format!(
                "{live} processes are running, and one more would take the program past the \
                 kernel's limit of {max} memory mappings (each process's stack takes two); \
                 raise it, e.g. `sysctl vm.max_map_count=4194304` for a million processes"
            )))
        }
        _ => Ok(()),
    }
}

/// How many coroutines fit under a limit of `max_map_count` mappings.
fn coroutine_limit(max_map_count: usize) -> usize {
    max_map_count.saturating_sub(SPARE_MAPPINGS) / 2
}

fn start_one<T: Send + 'static>(p: Process<T>) -> (Arc<str>, Started<T>) {
    let stack = crate::config::settings().stack_size();
    let id = ProcessId::next();
    let name: Arc<str> = match p.name {
        Some(n) => n.into(),
        None => format!("process-{}", id.as_u64()).into(),
    };
    let body = p.body;
    if let Err(cause) = reserve_coroutine() {
        // The ends it captured poison their channels, so the processes that did start shut down.
        discard_unstarted::<CoSlot, _>(vec![body]);
        return (name, Err(cause));
    }
    let ctx = ProcessContext::new(id, Arc::clone(&name));
    // may allocates the stack inside spawn and panics if it cannot (for instance when the
    // kernel's limit on memory mappings is reached). Unwinding drops the body, whose ends then
    // poison their channels, so the processes that did start shut down.
    let started = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: may's spawn is unsafe because a coroutine (1) must not keep a thread-local
        // reference across a yield, since it may resume on another worker thread, and (2) must
        // not overflow its fixed-size stack. (1): our code keeps nothing in a thread-local across
        // a yield: the process context lives in may's coroutine-local storage, and every park
        // happens outside any lock or thread-local borrow. User bodies are bound by the rules in
        // the crate docs. (2): the stack has a guard page; an overflow stops the coroutine with a
        // report (see the crate docs) instead of corrupting memory.
        unsafe {
            may::coroutine::Builder::new()
                .stack_size(stack / std::mem::size_of::<usize>())
                .spawn(move || {
                    let result = run_body::<CoSlot, T>(ctx, body);
                    LIVE.fetch_sub(1, Ordering::AcqRel);
                    // A parked coroutine that is unparked just as it parks is resumed by may
                    // from inside the park's own bookkeeping (`Park::subscribe`). Were it to
                    // finish there, may would free its park while that bookkeeping still runs
                    // and spin forever (`Park::drop` waits for `wait_kernel`). Yielding once
                    // more makes the coroutine always finish from the run queue instead.
                    may::coroutine::yield_now();
                    result
                })
        }
    }));
    if !matches!(started, Ok(Ok(_))) {
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
    let started = match started {
        Ok(Ok(handle)) => Ok(handle),
        Ok(Err(e)) => Err(Cause::CouldNotStart(format!(
            "may refused a coroutine: {e}"
        ))),
        Err(payload) => Err(Cause::CouldNotStart(format!(
            "no coroutine stack could be allocated ({}); with many processes, raise the \
             kernel's vm.max_map_count (two mappings per process)",
            cspnet_core::panic_message(payload.as_ref())
        ))),
    };
    (name, started)
}

fn join_all<T>(running: Vec<(Arc<str>, Started<T>)>) -> Result<Vec<Outcome<T>>, ProcessError> {
    crate::channel::flush();
    ProcessError::gather(running.into_iter().map(|(name, started)| {
        let result = started.and_then(|handle| {
            // run_body catches every panic of the body, so a coroutine that ends without a
            // result was stopped by may itself: its stack overflowed into the guard page.
            handle.join().unwrap_or_else(|_| {
                Err(Cause::Crashed(format!(
                    "overflowed its coroutine stack of {} bytes; raise CSPNET_STACK_SIZE or \
                     configure().stack_size(..) (the channel ends it held were not released)",
                    crate::config::settings().stack_size()
                )))
            })
        });
        (name, result)
    }))
}

/// Runs the processes concurrently, each as a coroutine, and waits for all of them. Returns
/// their outcomes in the order given; if any panicked (or could not start), the error names every
/// such process, and is returned only after all the others have finished.
///
/// Works from a plain thread (such as `main`) and from inside a process alike.
///
/// ```
/// use cspnet_coroutines::{parallel, process};
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
/// use cspnet_coroutines::{Channel, process, sequence};
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
                discard_unstarted::<CoSlot, _>(rest);
                return Err(e);
            }
        }
    }
    Ok(outcomes)
}

/// Starts the processes and returns at once; the [`Spawned`] handle joins them.
///
/// ```
/// use cspnet_coroutines::{Channel, process, spawn};
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

/// The id of the running CSP process (a thread outside any process has an id of its own).
///
/// ```
/// let out = cspnet_coroutines::parallel([cspnet_coroutines::process(|| Ok(cspnet_coroutines::current_process_id()))]).unwrap();
/// assert_ne!(out[0], Ok(cspnet_coroutines::current_process_id()));
/// ```
pub fn current_process_id() -> ProcessId {
    CoSlot::with(|ctx| ctx.id())
}

#[cfg(test)]
mod tests {
    use super::coroutine_limit;

    #[test]
    fn the_mapping_limit_leaves_room_for_the_rest_of_the_program() {
        assert_eq!(coroutine_limit(65_530), 28_669);
        assert!(coroutine_limit(4_194_304) > 2_000_000);
        assert_eq!(coroutine_limit(100), 0);
    }
}
