//! Processes, written once over [`Carries`]: `process`, `parallel`, `sequence`, `spawn`, `Spawned`.
//!
//! How a process starts and is waited for is the engine's ([`Carries::start`],
//! [`Carries::reap`], each process reporting its [`Ending`] the moment it ends); what a group of processes means is this module's: `parallel` starts them
//! all and waits for all, `sequence` runs them one after another and stops at the first failure,
//! `spawn` returns at once with a [`Spawned`] that joins them (and that joins them when dropped, so
//! no process outlives its handle).

use crate::backend::{Backend, Carries, Report};
use crate::context::{ContextSlot, Ending, ProcessContext, ProcessId};
use crate::deadlock::{Member, Network, deadlock_delay};
use crate::error::{Cause, ChannelError, Failure, KillError, Outcome, ProcessError};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Processes started by [`spawn`]: a handle to wait for them, see how they are doing, or kill
/// them. [`join`](Self::join) waits for them all and gives back their results.
///
/// Each process reports the moment it ends, so [`try_join`](Self::try_join) and
/// [`join_timeout`](Self::join_timeout) return as soon as the last one has ended. Dropping the
/// handle without joining also waits (no process outlives its handle), and reports a failed
/// process on standard error. For each child's outcome as a value the moment it ends (usable in an
/// alternation), start the processes under a [`Supervisor`](crate::Supervisor) instead.
///
/// ```
/// let handle = cspnet_threads::spawn([cspnet_threads::process(|| Ok("done"))]);
/// assert_eq!(handle.join().unwrap(), vec![Ok("done")]);
/// ```
#[must_use = "dropping a Spawned waits for its processes; call join to get their results"]
pub struct Spawned<B: Carries<T>, T> {
    children: Vec<Child<B, T>>,
    watch: Option<Watch>,
}

/// The network a [`Spawned`] group belongs to, watched for deadlock.
struct Watch {
    network: Arc<Network>,
    /// Who joins the group: the starting thread (`root`), or the process that started it.
    joiner: Arc<Member>,
    /// Whether the group started the network (its starting thread leaves it after the join).
    root: Option<ProcessId>,
}

impl Watch {
    /// The network the processes about to start from here join: the current process's, or a new
    /// one when started from outside any process. None when detection is off, the engine does not
    /// support it, or the current process is not watched (a supervised one).
    fn here<B: Backend>() -> Option<Watch> {
        if !B::DETECTS_DEADLOCK || deadlock_delay().is_none() {
            return None;
        }
        let (member, is_process, id, name) =
            B::Slot::with(|c| (c.member(), c.is_process(), c.id(), c.name_arc()));
        match member {
            Some(joiner) => Some(Watch {
                network: Arc::clone(joiner.network()),
                joiner,
                root: None,
            }),
            None if !is_process => {
                let (network, joiner) = Network::new(id, name);
                Some(Watch {
                    network,
                    joiner,
                    root: Some(id),
                })
            }
            None => None,
        }
    }
}

/// A process of a group that has ended: its name and how it ended.
type Finished<T> = (Arc<str>, Result<Outcome<T>, Cause>);

/// One process of a [`Spawned`] group.
struct Child<B: Carries<T>, T> {
    id: ProcessId,
    name: Arc<str>,
    /// The engine's handle, until reaped; `Err` if the process never started.
    running: Result<Option<B::Running>, Cause>,
    /// Filled by the engine's report the moment the process ends.
    ending: Arc<Mutex<Option<Ending<T>>>>,
}

impl<B: Carries<T>, T> Child<B, T> {
    fn finished(&self) -> bool {
        match &self.running {
            Ok(Some(r)) => B::finished(r),
            _ => true,
        }
    }

    /// Waits for the process and takes its outcome.
    fn finish(mut self) -> (Arc<str>, Result<Outcome<T>, Cause>) {
        let outcome = match std::mem::replace(&mut self.running, Ok(None)) {
            Err(cause) => Err(cause),
            Ok(running) => {
                if let Some(r) = running {
                    B::reap(r);
                }
                take_ending(&self.ending).outcome
            }
        };
        (self.name, outcome)
    }
}

fn take_ending<T>(cell: &Mutex<Option<Ending<T>>>) -> Ending<T> {
    cell.lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_else(|| {
            Ending::new(Err(Cause::Crashed(
                "ended without reporting (the engine lost its report)".into(),
            )))
        })
}

impl<B: Carries<T>, T: Send + 'static> Spawned<B, T> {
    fn start(procs: impl IntoIterator<Item = Process<B, T>>) -> Self {
        B::flush();
        let watch = Watch::here::<B>();
        let network = watch.as_ref().map(|w| &w.network);
        let children = procs
            .into_iter()
            .map(|p| {
                let ending = Arc::new(Mutex::new(None));
                let cell = Arc::clone(&ending);
                let net = network.cloned();
                let report = move |id: ProcessId, _| -> Report<T> {
                    Box::new(move |e| {
                        *cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        if let Some(net) = net {
                            Network::leave(&net, id);
                        }
                    })
                };
                let (id, name, running) = start_one(p, false, network, report);
                Child {
                    id,
                    name,
                    running: running.map(Some),
                    ending,
                }
            })
            .collect();
        Spawned { children, watch }
    }
}

impl<B: Carries<T>, T> Spawned<B, T> {
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

    /// Joins if every process has ended, without waiting; otherwise gives the handle back.
    ///
    /// ```
    /// use cspnet_threads::{Channel, process, spawn};
    /// let gate = Channel::<()>::new();
    /// let r = gate.reader();
    /// let h = spawn([process(move || r.read())]);
    /// let h = h.try_join().unwrap_err(); // still waiting on the gate
    /// gate.writer().write(()).unwrap();
    /// assert_eq!(h.join().unwrap(), vec![Ok(())]);
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn try_join(self) -> Result<Result<Vec<Outcome<T>>, ProcessError>, Self> {
        if self.is_finished() {
            Ok(self.join())
        } else {
            Err(self)
        }
    }

    /// Joins once every process has ended, or gives the handle back when `timeout` passes first.
    ///
    /// ```
    /// use std::time::Duration;
    /// let h = cspnet_threads::spawn([cspnet_threads::process(|| Ok(5))]);
    /// let out = h.join_timeout(Duration::from_secs(10)).ok().expect("ended in time");
    /// assert_eq!(out.unwrap(), vec![Ok(5)]);
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn join_timeout(
        self,
        timeout: Duration,
    ) -> Result<Result<Vec<Outcome<T>>, ProcessError>, Self> {
        let deadline = Instant::now() + timeout;
        // The engines report without waking anyone here, so this polls, backing off to a few
        // milliseconds: a join with a deadline is not on a hot path.
        let mut pause = Duration::from_micros(50);
        while !self.is_finished() {
            let now = Instant::now();
            if now >= deadline {
                return Err(self);
            }
            B::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        Ok(self.join())
    }

    /// Whether every process has ended.
    ///
    /// ```
    /// let h = cspnet_threads::spawn([cspnet_threads::process(|| Ok(()))]);
    /// while !h.is_finished() { std::thread::yield_now(); }
    /// h.join().unwrap();
    /// ```
    pub fn is_finished(&self) -> bool {
        self.children.iter().all(Child::finished)
    }

    /// The names of the processes, in the order given.
    ///
    /// ```
    /// let h = cspnet_threads::spawn([cspnet_threads::process(|| Ok(())).named("w")]);
    /// assert_eq!(h.names(), ["w"]);
    /// # h.join().unwrap();
    /// ```
    pub fn names(&self) -> Vec<&str> {
        self.children.iter().map(|c| &*c.name).collect()
    }

    /// The processes' ids, in the order given.
    ///
    /// ```
    /// let h = cspnet_threads::spawn([cspnet_threads::process(|| Ok(cspnet_threads::current_process_id()))]);
    /// let ids = h.ids();
    /// assert_eq!(h.join().unwrap(), vec![Ok(ids[0])]);
    /// ```
    pub fn ids(&self) -> Vec<ProcessId> {
        self.children.iter().map(|c| c.id).collect()
    }

    /// The OS process ids, in the order given: `Some` on the processes backend for a process that
    /// started, `None` for threads and coroutines (they have none of their own).
    ///
    /// ```
    /// let h = cspnet_threads::spawn([cspnet_threads::process(|| Ok(()))]);
    /// assert_eq!(h.pids(), vec![None]);
    /// # h.join().unwrap();
    /// ```
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.children
            .iter()
            .map(|c| match &c.running {
                Ok(Some(r)) => B::pid(r),
                _ => None,
            })
            .collect()
    }

    /// Kills the process at `index` (in the order given). Only OS processes can be killed from
    /// outside; on threads and coroutines this is [`KillError::Unsupported`]. A killed process
    /// is reported as crashed, and its channel ends are poisoned as a crash's are.
    ///
    /// ```
    /// let h = cspnet_threads::spawn([cspnet_threads::process(|| Ok(()))]);
    /// assert!(h.kill(0).is_err()); // a thread cannot be killed
    /// # h.join().unwrap();
    /// ```
    pub fn kill(&self, index: usize) -> Result<(), KillError> {
        match self.children.get(index).map(|c| &c.running) {
            Some(Ok(Some(r))) => B::kill(r),
            _ => Err(KillError::NoSuchProcess(format!("index {index}"))),
        }
    }

    fn finish(&mut self) -> Vec<Finished<T>> {
        B::flush();
        let children = std::mem::take(&mut self.children);
        let reap = || children.into_iter().map(Child::finish).collect::<Vec<_>>();
        let Some(watch) = self.watch.take() else {
            return reap();
        };
        // Waiting for its children, the joiner is blocked (on them, not on a channel).
        let mut done = watch.joiner.join(reap);
        if let Some(root) = watch.root {
            Network::leave(&watch.network, root);
        }
        if let Some(report) = watch.network.report() {
            for (_, outcome) in &mut done {
                if matches!(outcome, Ok(Err(ChannelError::Deadlock))) {
                    *outcome = Err(Cause::Deadlock(report.clone()));
                }
            }
        }
        done
    }
}

impl<B: Carries<T>, T> Drop for Spawned<B, T> {
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let failures: Vec<Failure> = self
            .finish()
            .into_iter()
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

/// Starts one process with a fresh id (an unnamed process is called `process-<id>`) and the
/// report `report` makes for that id and name; an `isolated` one retires its ends if it crashes
/// instead of poisoning them.
pub(crate) fn start_one<B: Carries<T>, T>(
    p: Process<B, T>,
    isolated: bool,
    network: Option<&Arc<Network>>,
    report: impl FnOnce(ProcessId, Arc<str>) -> Report<T>,
) -> (ProcessId, Arc<str>, Result<B::Running, Cause>) {
    let id = B::next_id();
    let name: Arc<str> = match p.name {
        Some(n) => n.into(),
        None => format!("process-{}", id.as_u64()).into(),
    };
    let mut ctx = ProcessContext::new(id, Arc::clone(&name));
    if isolated {
        ctx = ctx.isolated();
    }
    if let Some(net) = network {
        ctx.set_member(Network::join(net, id, Arc::clone(&name)));
    }
    let started = B::start(ctx, p.start, report(id, Arc::clone(&name)));
    if let (Err(_), Some(net)) = (&started, network) {
        Network::leave(net, id);
    }
    (id, name, started)
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
    T: Send + 'static,
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
    T: Send + 'static,
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
    T: Send + 'static,
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
