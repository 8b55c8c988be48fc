//! Supervision, written once over [`Carries`]: a crash reaches a supervisor as a value, and healthy processes go on.
//!
//! PyCSP's rule (kept by [`parallel`](crate::parallel) and [`spawn`](crate::spawn)) is that a process
//! that panics poisons every channel end it held, so one failure brings the whole network down: the
//! right default for a pipeline, the wrong one for a farm, where one bad job must not throw away
//! the results of the others. A [`Supervisor`] starts its processes *isolated*, as an Erlang
//! supervisor monitors rather than links:
//!
//! - if a supervised process panics (or, on the processes backend, is killed or crashes), the ends
//!   it held **retire** instead of poisoning. A channel shared with healthy processes stays usable;
//!   a channel whose last reader or writer it was retires as if it had ended, so values already
//!   buffered are still read and nothing written is lost;
//! - the supervisor receives an [`Exit`] for every process the moment it ends, naming the process,
//!   the cause, and the ends it held, on a channel ([`Supervisor::exits`]) that can be read
//!   directly or used as a guard in an [`Alternation`](crate::Alternation) beside the network's own
//!   channels.
//!
//! A supervised process that *returns* `Err(Poisoned)` still poisons what it holds: poison is a
//! deliberate shutdown, a crash is not.

use crate::backend::{Carries, Report};
use crate::channel::{Reader, Writer};
use crate::context::{ContextSlot, HeldEnd, ProcessId};
use crate::deadlock::Network;
use crate::error::{Cause, ChannelError, Failure, KillError, Outcome};
use crate::process::{Process, start_one};
use crate::{Alternation, Channel};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How one supervised process ended, delivered by its [`Supervisor`] the moment it ended.
///
/// ```
/// use cspnet_core::{Cause, Exit, ProcessId};
/// let exit = Exit::<u32> {
///     id: ProcessId::new(3),
///     name: "worker-3".into(),
///     pid: None,
///     outcome: Err(Cause::Panicked("bad job".into())),
///     held: vec![],
/// };
/// assert_eq!(exit.failure().unwrap().to_string(), "process 'worker-3' panicked: bad job");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit<T> {
    /// The process's id (as [`Supervisor::start`] returned it).
    pub id: ProcessId,
    /// The process's name.
    pub name: String,
    /// Its OS process id, on the processes backend.
    pub pid: Option<u32>,
    /// What the body returned, or why the process failed.
    pub outcome: Result<Outcome<T>, Cause>,
    /// When it failed: the channel ends it still held (which retired rather than poisoned).
    pub held: Vec<HeldEnd>,
}

impl<T> Exit<T> {
    /// The failure, if the process panicked, crashed or was killed.
    ///
    /// ```
    /// use cspnet_core::{Exit, ProcessId};
    /// let ok = Exit { id: ProcessId::new(1), name: "w".into(), pid: None, outcome: Ok(Ok(7)), held: vec![] };
    /// assert!(ok.failure().is_none());
    /// ```
    pub fn failure(&self) -> Option<Failure> {
        match &self.outcome {
            Err(cause) => Some(Failure::new(&*self.name, cause.clone())),
            Ok(_) => None,
        }
    }
}

impl<T> fmt::Display for Exit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(Ok(_)) => write!(f, "process '{}' ended", self.name),
            Ok(Err(e)) => write!(f, "process '{}' ended: {e}", self.name),
            Err(cause) => {
                write!(f, "process '{}' {cause}", self.name)?;
                if !self.held.is_empty() {
                    let held: Vec<String> = self.held.iter().map(ToString::to_string).collect();
                    write!(f, " (holding {})", held.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// One supervised process, until reaped.
struct Supervised<R> {
    id: ProcessId,
    running: R,
    /// Set by its report once its exit is in the channel.
    reported: Arc<AtomicBool>,
}

/// The longest a wait for an exit lasts before the supervisor looks again at which processes have
/// reported (an exit taken straight from [`Supervisor::exits`] is not announced to it).
const RECHECK: Duration = Duration::from_millis(50);
/// The first such wait. A report sets its flag just after its exit is written, so right after an
/// exit is taken the flag may not be set yet: waits start short and double up to [`RECHECK`],
/// so that race costs microseconds, not a whole [`RECHECK`].
const FIRST_CHECK: Duration = Duration::from_micros(50);

/// The next wait after one of `pause` found nothing.
fn longer(pause: Duration) -> Duration {
    (pause * 2).min(RECHECK)
}

/// Starts processes isolated from each other's crashes and reports each one's [`Exit`] the moment
/// it ends.
///
/// PyCSP's rule, kept by [`parallel`](crate::parallel) and [`spawn`](crate::spawn), is that a
/// process that panics poisons every channel end it held, so one failure brings the whole network
/// down. A supervisor monitors rather than links (as Erlang's does): if a supervised process
/// panics (or, on the processes backend, is killed or crashes), the ends it held **retire**
/// instead of poisoning. A channel shared with healthy processes stays usable; a channel whose
/// last reader or writer it was retires as if it had ended, so values already buffered are still
/// read and nothing written is lost. Its [`Exit`] names the process, the cause and the ends it
/// held. A supervised process that *returns* `Err(Poisoned)` still poisons what it holds: poison
/// is a deliberate shutdown, a crash is not.
///
/// A farm that survives a crashing worker: the crash arrives as a value, the results the other
/// workers (and the crashed one, before it crashed) wrote are all read.
///
/// ```
/// use cspnet_threads::{Channel, Supervisor, process};
///
/// let results = Channel::<u32>::with_buffer(8);
/// // Every writer joins before any worker starts: a worker that ends leaves, and the last writer
/// // to leave retires the channel.
/// let outs: Vec<_> = (0..3).map(|_| results.writer()).collect();
/// let reader = results.reader();
/// drop(results);
/// let mut sup = Supervisor::<u32>::new();
/// for (w, out) in (0..3u32).zip(outs) {
///     sup.start(process(move || {
///         out.write(w * 10)?;
///         if w == 1 { panic!("worker 1 gives up"); }
///         Ok(w)
///     }).named(&format!("worker-{w}"))).unwrap();
/// }
/// let mut failed = Vec::new();
/// while let Some(exit) = sup.next_exit() {
///     if let Some(f) = exit.failure() { failed.push(f.to_string()); }
/// }
/// assert_eq!(failed, ["process 'worker-1' panicked: worker 1 gives up"]);
/// let mut got: Vec<u32> = reader.into_iter().map(Result::unwrap).collect();
/// got.sort();
/// assert_eq!(got, [0, 10, 20]); // worker 1's value, written before it crashed, is not lost
/// ```
pub struct Supervisor<B, T>
where
    B: Carries<T> + Carries<Exit<T>>,
{
    exits: Reader<B, Exit<T>>,
    /// Each started process's report writes through a clone of it.
    report_to: Writer<B, Exit<T>>,
    children: Vec<Supervised<<B as Carries<T>>::Running>>,
}

/// How many exits wait in the channel before a finished process's report waits for a read.
const EXITS_BUFFERED: usize = 16;

impl<B, T> Default for Supervisor<B, T>
where
    B: Carries<T> + Carries<Exit<T>>,
    T: Send + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<B, T> Supervisor<B, T>
where
    B: Carries<T> + Carries<Exit<T>>,
    T: Send + 'static,
{
    /// A supervisor with no processes yet.
    ///
    /// ```
    /// let sup = cspnet_threads::Supervisor::<()>::new();
    /// assert_eq!(sup.running(), 0);
    /// ```
    pub fn new() -> Self {
        let exits = Channel::<B, Exit<T>>::named_with_buffer("exits", EXITS_BUFFERED);
        Supervisor {
            exits: exits.reader(),
            report_to: exits.writer(),
            children: Vec::new(),
        }
    }

    /// Starts `process` isolated: if it crashes, its channel ends retire instead of poisoning, and
    /// its [`Exit`] names the cause. Returns its id, or the failure if it could not be started
    /// (then no exit follows).
    ///
    /// ```
    /// let mut sup = cspnet_threads::Supervisor::<u8>::new();
    /// let id = sup.start(cspnet_threads::process(|| Ok(1))).unwrap();
    /// assert_eq!(sup.next_exit().unwrap().id, id);
    /// ```
    pub fn start(&mut self, process: Process<B, T>) -> Result<ProcessId, Failure> {
        B::flush();
        self.reap_finished();
        let out = self.report_to.clone();
        let reported = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&reported);
        // Started by a watched process, the children are part of its network: while they run,
        // it is not deadlocked, even if it waits on `exits` or on a channel they write.
        let network = if B::DETECTS_DEADLOCK {
            B::Slot::with(|c| c.member()).map(|m| Arc::clone(m.network()))
        } else {
            None
        };
        let leave_from = network.clone();
        let report = move |id: ProcessId, name: Arc<str>| -> Report<T> {
            Box::new(move |ending| {
                let exit = Exit {
                    id,
                    name: name.to_string(),
                    pid: ending.pid,
                    outcome: ending.outcome,
                    held: ending.held,
                };
                // Fails only once the supervisor is gone, and then nobody is left to tell.
                let _ = out.write(exit);
                flag.store(true, Ordering::Release);
                if let Some(net) = leave_from {
                    Network::leave(&net, id);
                }
            })
        };
        let (id, name, started) = start_one(process, true, network.as_ref(), report);
        match started {
            Ok(running) => {
                self.children.push(Supervised {
                    id,
                    running,
                    reported,
                });
                Ok(id)
            }
            Err(cause) => Err(Failure::new(&*name, cause)),
        }
    }

    /// The channel each process's [`Exit`] arrives on, the moment it ends: read it, or give it to
    /// an [`Alternation`] beside the network's own channels.
    ///
    /// ```
    /// use cspnet_threads::{Alternation, Supervisor, process};
    /// let mut sup = Supervisor::<u8>::new();
    /// sup.start(process(|| Ok(4))).unwrap();
    /// let got = Alternation::new().input(sup.exits(), |e| e.outcome).select().unwrap();
    /// assert_eq!(got, Ok(Ok(4)));
    /// ```
    pub fn exits(&self) -> &Reader<B, Exit<T>> {
        &self.exits
    }

    /// Waits for the next process to end and returns its [`Exit`]; `None` once every process
    /// started so far has ended and its exit has been taken.
    ///
    /// ```
    /// let mut sup = cspnet_threads::Supervisor::<u8>::new();
    /// assert!(sup.next_exit().is_none());
    /// sup.start(cspnet_threads::process(|| Ok(2))).unwrap();
    /// assert_eq!(sup.next_exit().unwrap().outcome, Ok(Ok(2)));
    /// assert!(sup.next_exit().is_none());
    /// ```
    pub fn next_exit(&mut self) -> Option<Exit<T>> {
        let mut pause = FIRST_CHECK;
        loop {
            self.reap_finished();
            // Each report writes its exit before it sets its flag: once all flags are set, an
            // empty channel means every exit has been taken.
            let all_reported = self
                .children
                .iter()
                .all(|c| c.reported.load(Ordering::Acquire));
            match self
                .take_exit((!all_reported).then_some(pause))
                .ok()
                .flatten()
            {
                Some(exit) => return Some(exit),
                None if all_reported => return None,
                None => pause = longer(pause),
            }
        }
    }

    /// How many started processes have not ended yet.
    ///
    /// ```
    /// let sup = cspnet_threads::Supervisor::<u8>::new();
    /// assert_eq!(sup.running(), 0);
    /// ```
    pub fn running(&self) -> usize {
        self.children
            .iter()
            .filter(|c| !<B as Carries<T>>::finished(&c.running))
            .count()
    }

    /// The OS process id of the running process `id`, on the processes backend.
    ///
    /// ```
    /// let mut sup = cspnet_threads::Supervisor::<u8>::new();
    /// let id = sup.start(cspnet_threads::process(|| Ok(1))).unwrap();
    /// assert_eq!(sup.pid(id), None); // a thread has no pid of its own
    /// # sup.next_exit();
    /// ```
    pub fn pid(&self, id: ProcessId) -> Option<u32> {
        self.children
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| <B as Carries<T>>::pid(&c.running))
    }

    /// Kills the running process `id` (OS processes only: see [`KillError::Unsupported`]); its
    /// exit then reports it as crashed.
    ///
    /// ```
    /// let mut sup = cspnet_threads::Supervisor::<u8>::new();
    /// let id = sup.start(cspnet_threads::process(|| Ok(1))).unwrap();
    /// assert!(sup.kill(id).is_err());
    /// # sup.next_exit();
    /// ```
    pub fn kill(&self, id: ProcessId) -> Result<(), KillError> {
        match self.children.iter().find(|c| c.id == id) {
            Some(c) => <B as Carries<T>>::kill(&c.running),
            None => Err(KillError::NoSuchProcess(id.to_string())),
        }
    }
}

/// What the supervisor's own upkeep needs (its `Drop` too, which cannot ask for `T: Send`).
impl<B, T> Supervisor<B, T>
where
    B: Carries<T> + Carries<Exit<T>>,
{
    /// An exit from the channel, waiting up to `wait` for one (not at all for `None`); fails only
    /// if the exits channel was poisoned.
    fn take_exit(&self, wait: Option<Duration>) -> Result<Option<Exit<T>>, ChannelError> {
        let alt = Alternation::new().input(&self.exits, Some);
        let alt = match wait {
            Some(d) => alt.timeout(d, || None),
            None => alt.skip(|| None),
        };
        alt.pri_select()
    }

    /// Reaps the processes that have ended.
    fn reap_finished(&mut self) {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|c| <B as Carries<T>>::finished(&c.running));
        for c in done {
            <B as Carries<T>>::reap(c.running);
        }
        self.children = running;
    }
}

impl<B, T> Drop for Supervisor<B, T>
where
    B: Carries<T> + Carries<Exit<T>>,
{
    fn drop(&mut self) {
        // No process outlives its supervisor: wait for each, taking exits so none is stuck
        // reporting, and tell standard error about failures nobody read.
        let mut pause = FIRST_CHECK;
        loop {
            self.reap_finished();
            if self
                .children
                .iter()
                .all(|c| c.reported.load(Ordering::Acquire))
            {
                // Every exit is in the channel or taken, and a process that has reported is
                // ending: join each rather than poll for it.
                while let Ok(Some(exit)) = self.take_exit(None) {
                    warn_unread(&exit);
                }
                for c in std::mem::take(&mut self.children) {
                    <B as Carries<T>>::reap(c.running);
                }
                return;
            }
            let wait = !self.children.is_empty();
            match self.take_exit(wait.then_some(pause)) {
                Ok(Some(exit)) => {
                    warn_unread(&exit);
                    pause = FIRST_CHECK;
                }
                Ok(None) if !wait => return,
                Ok(None) => pause = longer(pause),
                Err(_) => return,
            }
        }
    }
}

fn warn_unread<T>(exit: &Exit<T>) {
    if let Some(f) = exit.failure() {
        eprintln!("cspnet: a supervised process failed and its supervisor never read it: {f}");
    }
}

impl<B, T> fmt::Debug for Supervisor<B, T>
where
    B: Carries<T> + Carries<Exit<T>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("backend", &B::NAME)
            .field("children", &self.children.len())
            .finish()
    }
}
