//! Deadlock detection: who in a network is blocked on what, and the detector that ends a global deadlock.
//!
//! The rule, and what it does not find, are on [`Deadlock`].
//!
//! # Cost
//!
//! Nothing on an operation that completes without sleeping. An operation about to sleep takes its
//! process's record lock twice and makes two atomic additions to its network's count; a check
//! (blocked == live) arms the detector thread, at most once per delay.

use crate::backend::Role;
use crate::context::{ContextSlot, HeldEnd, ProcessId};
use crate::error::ChannelError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

/// A lock that nothing can leave inconsistent: only an `Option` or a map changes under it.
fn lock<E>(m: &Mutex<E>) -> MutexGuard<'_, E> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a blocked process waits on, as a [`Deadlock`] report names it.
///
/// ```
/// use cspnet_core::{HeldEnd, Role, Wait};
/// assert_eq!(Wait::Read(Some("x".into())).to_string(), "reads 'x'");
/// assert_eq!(Wait::Barrier(None).to_string(), "syncs on an unnamed barrier");
/// let alt = Wait::Alternation(vec![HeldEnd::new(Some("a"), Role::Reader), HeldEnd::new(None, Role::Writer)]);
/// assert_eq!(alt.to_string(), "waits in an alternation over reading 'a', writing an unnamed channel");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Wait {
    /// A read of the channel with this name (`None`: unnamed).
    Read(Option<String>),
    /// A write to the channel with this name.
    Write(Option<String>),
    /// An alternation with no Skip or Timeout, over these guards (a reader end is an input guard,
    /// a writer end an output guard).
    Alternation(Vec<HeldEnd>),
    /// A barrier's sync (the barrier's name).
    Barrier(Option<String>),
    /// A join of its own child processes (`parallel`, `Spawned::join`).
    Join,
}

fn channel(f: &mut fmt::Formatter<'_>, name: &Option<String>) -> fmt::Result {
    match name {
        Some(n) => write!(f, "'{n}'"),
        None => f.write_str("an unnamed channel"),
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Read(c) => {
                f.write_str("reads ")?;
                channel(f, c)
            }
            Wait::Write(c) => {
                f.write_str("writes ")?;
                channel(f, c)
            }
            Wait::Barrier(Some(name)) => write!(f, "syncs on barrier '{name}'"),
            Wait::Barrier(None) => f.write_str("syncs on an unnamed barrier"),
            Wait::Join => f.write_str("waits for its child processes"),
            Wait::Alternation(guards) => {
                f.write_str("waits in an alternation over ")?;
                for (i, g) in guards.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(match g.role {
                        Role::Writer => "writing ",
                        _ => "reading ",
                    })?;
                    channel(f, &g.channel)?;
                }
                Ok(())
            }
        }
    }
}

/// One blocked process of a deadlocked network.
///
/// ```
/// use cspnet_core::{Blocked, Wait};
/// let b = Blocked::new("left", Wait::Write(Some("fork-1".into())));
/// assert_eq!(b.to_string(), "'left' writes 'fork-1'");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Blocked {
    /// The process's name.
    pub process: String,
    /// What it waits on.
    pub wait: Wait,
}

impl Blocked {
    /// Process `process` blocked on `wait`.
    ///
    /// ```
    /// let b = cspnet_core::Blocked::new("p", cspnet_core::Wait::Join);
    /// assert_eq!(b.process, "p");
    /// ```
    pub fn new(process: impl Into<String>, wait: Wait) -> Self {
        Blocked {
            process: process.into(),
            wait,
        }
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' {}", self.process, self.wait)
    }
}

/// A deadlocked network: every process blocked, and on what (in the order they were started).
///
/// # The rule
///
/// A *network* is the processes started by one top-level [`parallel`](crate::parallel) or
/// [`spawn`](crate::spawn) and their descendants (a process that runs its own `parallel` adds its
/// children to its own network), plus the thread that started it until its join returns. The
/// network is deadlocked when every one of them is blocked with no deadline: on a channel read or
/// write, an alternation with no Skip or Timeout, a barrier, or a join of its own children; a
/// process with a timeout pending or inside [`io`](crate::io) is running. Then, after a delay
/// during which nothing changed ([`set_deadlock_delay`], `CSPNET_DEADLOCK`), every blocked channel
/// operation fails with [`ChannelError::Deadlock`] (its channels are poisoned, which is what wakes
/// it on every engine), and `parallel`/`join` report [`Cause::Deadlock`](crate::Cause) with a
/// report naming each blocked process, the operation and its channels.
///
/// # What is not detected
///
/// As in Go, only a *global* deadlock of a network is found: while any process of the network runs
/// (computes, sleeps, waits with a timeout, is inside `io`), a group of its processes blocked on
/// each other is not reported; nor is a network whose starting thread is not joining it (it may
/// still write). Processes that a process of the network starts under a
/// [`Supervisor`](crate::Supervisor) belong to its network (a supervisor waiting in `next_exit`
/// looks again periodically, so it counts as running); a supervisor's processes started from
/// outside any process are not watched. A network blocked on a channel that only something
/// *outside* it would serve (another top-level network, or a plain `std::thread` that is no CSP
/// process) looks deadlocked, and is reported: run that work as a process of the network (with
/// [`io`](crate::io) for its blocking calls), or turn detection off.
/// The report lists what each process waits on; it does not compute the cycle of who waits for
/// whom (which process holds which end is not tracked). Engines whose
/// [`Backend::DETECTS_DEADLOCK`](crate::Backend::DETECTS_DEADLOCK) is `false` (the processes
/// backend, for now) are never watched.
///
/// # The report
///
/// `parallel` and `join` report it as [`Cause::Deadlock`](crate::Cause) for every process whose
/// wait it ended. The thread that started the network, waiting in `parallel`, is listed too (as
/// [`Wait::Join`]; `main` is the name of a thread outside any process).
///
/// ```
/// use cspnet_threads::{Cause, Channel, Wait, parallel, process};
///
/// let (x, y) = (Channel::<u32>::named("x"), Channel::<u32>::named("y"));
/// let (xr, xw, yr, yw) = (x.reader(), x.writer(), y.reader(), y.writer());
/// let err = parallel([
///     process(move || { let v = xr.read()?; yw.write(v) }).named("a"),
///     process(move || { let v = yr.read()?; xw.write(v) }).named("b"),
/// ])
/// .unwrap_err();
/// let Cause::Deadlock(d) = err.first().cause() else { panic!("{err}") };
/// assert_eq!(d.waits_of("a"), vec![&Wait::Read(Some("x".into()))]);
/// assert_eq!(d.waits_of("b"), vec![&Wait::Read(Some("y".into()))]);
/// assert!(err.to_string().starts_with("process 'a' deadlocked: every process is blocked:"));
/// ```
///
/// A report can also be made by hand:
///
/// ```
/// use cspnet_core::{Blocked, Deadlock, Wait};
/// let d = Deadlock::new(vec![
///     Blocked::new("a", Wait::Read(Some("x".into()))),
///     Blocked::new("b", Wait::Read(Some("y".into()))),
/// ]);
/// assert_eq!(d.to_string(), "every process is blocked: 'a' reads 'x'; 'b' reads 'y'");
/// assert_eq!(d.waits_of("b"), vec![&Wait::Read(Some("y".into()))]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Deadlock {
    /// Each blocked process and what it waits on.
    pub blocked: Vec<Blocked>,
}

impl Deadlock {
    /// A report of these blocked processes.
    ///
    /// ```
    /// assert!(cspnet_core::Deadlock::new(vec![]).blocked.is_empty());
    /// ```
    pub fn new(blocked: Vec<Blocked>) -> Self {
        Deadlock { blocked }
    }

    /// What the processes named `process` wait on (names need not be unique).
    ///
    /// ```
    /// use cspnet_core::{Blocked, Deadlock, Wait};
    /// let d = Deadlock::new(vec![Blocked::new("main", Wait::Join)]);
    /// assert_eq!(d.waits_of("main"), vec![&Wait::Join]);
    /// ```
    pub fn waits_of(&self, process: &str) -> Vec<&Wait> {
        self.blocked
            .iter()
            .filter(|b| b.process == process)
            .map(|b| &b.wait)
            .collect()
    }
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every process is blocked: ")?;
        for (i, b) in self.blocked.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

/// What an engine's blocked operation tells the detector: what it waits on, and how to end the
/// wait. The detector calls these from its own thread while the operation is blocked (so the
/// implementor is `Sync`), and only then.
///
/// ```
/// use cspnet_core::{Wait, Waiting};
/// struct OnNothing;
/// impl Waiting for OnNothing {
///     fn describe(&self) -> Wait { Wait::Join }
///     fn interrupt(&self) {}
/// }
/// assert_eq!(OnNothing.describe(), Wait::Join);
/// ```
pub trait Waiting: Sync {
    /// What the operation waits on (called once, when a deadlock is reported).
    fn describe(&self) -> Wait;
    /// Ends the wait: poisons the channels it waits on, which wakes it on every engine.
    fn interrupt(&self);
}

/// A read or write of one channel, for [`blocking`]: its name, the side, and how to poison it.
///
/// ```
/// use cspnet_core::{OnChannel, Role, Wait, Waiting};
/// let poison = || ();
/// let w = OnChannel::new(Some("x"), Role::Reader, &poison);
/// assert_eq!(w.describe(), Wait::Read(Some("x".into())));
/// ```
pub struct OnChannel<'a> {
    name: Option<&'a str>,
    role: Role,
    poison: &'a (dyn Fn() + Sync),
}

impl<'a> OnChannel<'a> {
    /// A wait to read (`Role::Reader`), write (`Role::Writer`) or sync on a barrier
    /// (`Role::Handle`) on the channel called `name`, which `poison` poisons.
    ///
    /// ```
    /// let poison = || ();
    /// let _ = cspnet_core::OnChannel::new(None, cspnet_core::Role::Writer, &poison);
    /// ```
    pub fn new(name: Option<&'a str>, role: Role, poison: &'a (dyn Fn() + Sync)) -> Self {
        OnChannel { name, role, poison }
    }
}

impl Waiting for OnChannel<'_> {
    fn describe(&self) -> Wait {
        let name = self.name.map(str::to_owned);
        match self.role {
            Role::Reader => Wait::Read(name),
            Role::Writer => Wait::Write(name),
            Role::Handle => Wait::Barrier(name),
        }
    }
    fn interrupt(&self) {
        (self.poison)();
    }
}

/// The guards of an alternation, for [`blocking`]: each channel's name and side, and how to
/// poison it.
///
/// ```
/// use cspnet_core::{OnGuards, Role, Wait, Waiting};
/// let poison = || ();
/// let g = OnGuards::new(vec![(Some("a"), Role::Reader, &poison as &(dyn Fn() + Sync))]);
/// assert!(matches!(g.describe(), Wait::Alternation(v) if v.len() == 1));
/// ```
pub struct OnGuards<'a> {
    guards: Vec<GuardWait<'a>>,
}

/// One guard of a blocked alternation, for [`OnGuards`]: its channel's name, `Role::Reader` for
/// an input guard or `Role::Writer` for an output guard, and how to poison the channel.
///
/// ```
/// use cspnet_core::{GuardWait, Role};
/// let poison = || ();
/// let g: GuardWait<'_> = (Some("jobs"), Role::Reader, &poison);
/// assert_eq!(g.0, Some("jobs"));
/// ```
pub type GuardWait<'a> = (Option<&'a str>, Role, &'a (dyn Fn() + Sync));

impl<'a> OnGuards<'a> {
    /// The guards, as (channel name, reader for an input guard or writer for an output guard,
    /// how to poison the channel).
    ///
    /// ```
    /// let _ = cspnet_core::OnGuards::new(vec![]);
    /// ```
    pub fn new(guards: Vec<GuardWait<'a>>) -> Self {
        OnGuards { guards }
    }
}

impl Waiting for OnGuards<'_> {
    fn describe(&self) -> Wait {
        Wait::Alternation(
            self.guards
                .iter()
                .map(|(name, role, _)| HeldEnd::new(*name, *role))
                .collect(),
        )
    }
    fn interrupt(&self) {
        for (_, _, poison) in &self.guards {
            poison();
        }
    }
}

/// A join: nothing to interrupt (its children are).
struct OnChildren;

impl Waiting for OnChildren {
    fn describe(&self) -> Wait {
        Wait::Join
    }
    fn interrupt(&self) {}
}

/// Bits of [`Network::state`] that count blocked processes; the rest is a generation.
const BLOCKED: u64 = (1 << 32) - 1;
/// One unblock: the generation goes up by one and the blocked count down by one, in one addition.
const UNBLOCK: u64 = (1 << 32) - 1;

/// One network's counts and members.
pub(crate) struct Network {
    /// Processes of the network that have not ended, and the starting thread until its join ends.
    live: AtomicU64,
    /// Blocked processes (low 32 bits) and a generation bumped by every unblock (high 32 bits):
    /// a detector that sees the same word twice knows nobody woke in between.
    state: AtomicU64,
    /// Members blocked in a join of their children (counted in `state` too).
    joins: AtomicU64,
    /// Whether the detector has this network in its queue.
    armed: AtomicBool,
    members: Mutex<HashMap<ProcessId, Arc<Member>>>,
    report: Mutex<Option<Deadlock>>,
}

impl Network {
    /// A network whose starting thread is `root`.
    pub(crate) fn new(root_id: ProcessId, root_name: Arc<str>) -> (Arc<Network>, Arc<Member>) {
        let net = Arc::new(Network {
            live: AtomicU64::new(0),
            state: AtomicU64::new(0),
            joins: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            members: Mutex::new(HashMap::new()),
            report: Mutex::new(None),
        });
        let root = Network::join(&net, root_id, root_name);
        (net, root)
    }

    /// A new member (a process about to start, counted live from now).
    pub(crate) fn join(net: &Arc<Network>, id: ProcessId, name: Arc<str>) -> Arc<Member> {
        let member = Arc::new(Member {
            id,
            name,
            network: Arc::clone(net),
            wait: Mutex::new(None),
            deadlocked: AtomicBool::new(false),
        });
        net.live.fetch_add(1, Ordering::SeqCst);
        lock(&net.members).insert(id, Arc::clone(&member));
        member
    }

    /// A member ended (or never started): it no longer counts.
    pub(crate) fn leave(net: &Arc<Network>, id: ProcessId) {
        lock(&net.members).remove(&id);
        let live = net.live.fetch_sub(1, Ordering::SeqCst) - 1;
        // The rest may be blocked on each other now that this one is gone.
        if net.stuck((live, net.state.load(Ordering::SeqCst))) {
            net.arm();
        }
    }

    /// The report, once the network was found deadlocked.
    pub(crate) fn report(&self) -> Option<Deadlock> {
        lock(&self.report).clone()
    }

    fn blocked(self: &Arc<Self>) {
        let state = self.state.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        if self.stuck((self.live.load(Ordering::SeqCst), state)) {
            self.arm();
        }
    }

    fn unblocked(&self) {
        self.state.fetch_add(UNBLOCK, Ordering::SeqCst);
    }

    /// Hands the network to the detector, unless it has it already.
    fn arm(self: &Arc<Self>) {
        let Some(delay) = delay() else { return };
        if !self.armed.load(Ordering::Relaxed) && !self.armed.swap(true, Ordering::SeqCst) {
            detector().watch(self, delay);
        }
    }

    /// (live, state) read so that the pair is consistent: live did not change around the read.
    fn snapshot(&self) -> (u64, u64) {
        loop {
            let live = self.live.load(Ordering::SeqCst);
            let state = self.state.load(Ordering::SeqCst);
            if self.live.load(Ordering::SeqCst) == live {
                return (live, state);
            }
        }
    }

    /// Whether every live member is blocked, and not all of them in joins: a starter joining
    /// children that have all ended is about to go on (so every `parallel` ends without arming
    /// the detector).
    fn stuck(&self, (live, state): (u64, u64)) -> bool {
        state & BLOCKED == live && live > self.joins.load(Ordering::SeqCst)
    }

    /// The detector's second look, `delay` after `seen`: reports and ends the deadlock if nothing
    /// changed; otherwise watches again if the network is still all blocked.
    fn check(self: &Arc<Self>, seen: (u64, u64), delay: Duration) {
        let now = self.snapshot();
        if now == seen && self.stuck(now) && self.declare() {
            self.armed.store(false, Ordering::SeqCst);
            return;
        }
        self.armed.store(false, Ordering::SeqCst);
        // A process that blocked while this was armed did not arm it again: look once more.
        if self.stuck(self.snapshot()) && !self.armed.swap(true, Ordering::SeqCst) {
            detector().watch(self, delay);
        }
    }

    /// Reports the deadlock and interrupts every blocked channel operation. `false` if some member
    /// turns out not to be blocked after all (then nothing is done).
    fn declare(&self) -> bool {
        let members = lock(&self.members);
        let mut order: Vec<&Arc<Member>> = members.values().collect();
        order.sort_by_key(|m| m.id);
        let mut blocked = Vec::with_capacity(order.len());
        let mut on_channels = 0;
        for m in &order {
            let wait = lock(&m.wait);
            let Some(record) = wait.as_ref() else {
                return false;
            };
            // SAFETY: the record points at the owner's `Waiting`, alive while it is stored: the
            // owner clears it under this lock before its wait returns.
            let describe = unsafe { &*record.0 }.describe();
            if describe != Wait::Join {
                on_channels += 1;
            }
            blocked.push(Blocked::new(&*m.name, describe));
        }
        if on_channels == 0 {
            return false;
        }
        for m in &order {
            m.deadlocked.store(true, Ordering::SeqCst);
        }
        lock(&self.report).get_or_insert(Deadlock::new(blocked));
        for m in &order {
            let wait = lock(&m.wait);
            if let Some(record) = wait.as_ref() {
                // SAFETY: as above; the record is still stored, so its owner is still waiting.
                unsafe { &*record.0 }.interrupt();
            }
        }
        true
    }
}

/// A pointer to a blocked operation's [`Waiting`], valid while stored in its member's record.
struct Record(*const (dyn Waiting + 'static));

// SAFETY: the pointee is `Sync` (the trait requires it) and outlives the record (see `block`).
unsafe impl Send for Record {}

/// One process of a network (or its starting thread), as the detector sees it.
pub(crate) struct Member {
    id: ProcessId,
    name: Arc<str>,
    network: Arc<Network>,
    /// What it waits on while blocked with no deadline.
    wait: Mutex<Option<Record>>,
    /// Set by the detector: the wait it is in failed because of a deadlock.
    deadlocked: AtomicBool,
}

impl Member {
    /// The member's network.
    pub(crate) fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// Runs `wait` as a blocked operation of this member on `what`; `true` with its result when
    /// the detector ended it.
    pub(crate) fn block<R>(&self, what: &dyn Waiting, wait: impl FnOnce() -> R) -> (R, bool) {
        // SAFETY: only the lifetime is erased; `Unblock` clears the record (under the lock the
        // detector reads it with) before `what` goes out of scope, even if `wait` panics.
        let erased: *const (dyn Waiting + 'static) = unsafe {
            std::mem::transmute::<*const (dyn Waiting + '_), *const (dyn Waiting + 'static)>(
                what as *const dyn Waiting,
            )
        };
        *lock(&self.wait) = Some(Record(erased));
        let guard = Unblock(self);
        self.network.blocked();
        let out = wait();
        drop(guard);
        (out, self.deadlocked.swap(false, Ordering::SeqCst))
    }

    /// Runs `wait`, a join of this member's children.
    pub(crate) fn join<R>(&self, wait: impl FnOnce() -> R) -> R {
        // Counted before the join counts as blocked, and uncounted after it no longer does.
        self.network.joins.fetch_add(1, Ordering::SeqCst);
        let out = self.block(&OnChildren, wait).0;
        self.network.joins.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

/// Clears a member's record and counts it unblocked.
struct Unblock<'a>(&'a Member);

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        *lock(&self.0.wait) = None;
        self.0.network.unblocked();
    }
}

/// Runs `wait`, a channel operation of the current process about to sleep with no deadline on
/// `what`: the process counts as blocked meanwhile. If its network deadlocks, the detector ends
/// the wait (poisoning what it waits on) and this returns [`ChannelError::Deadlock`]. Outside a
/// watched network (outside any process, under a supervisor, or with detection off) it just runs
/// `wait`. Engines call it only once they know they must sleep, so an operation that completes at
/// once costs nothing more.
///
/// A value that was taken is never thrown away: only a wait that failed becomes `Deadlock`.
///
/// ```
/// use cspnet_core::{ChannelError, OnChannel, Role, ThreadSlot, blocking};
/// let poison = || ();
/// let what = OnChannel::new(Some("x"), Role::Reader, &poison);
/// assert_eq!(blocking::<ThreadSlot, u8>(&what, || Ok(3)), Ok(3));
/// ```
pub fn blocking<S: ContextSlot, R>(
    what: &dyn Waiting,
    wait: impl FnOnce() -> Result<R, ChannelError>,
) -> Result<R, ChannelError> {
    match blocking_raw::<S, _>(what, wait) {
        (Err(_), true) => Err(ChannelError::Deadlock),
        (out, _) => out,
    }
}

/// [`blocking`] for a wait whose result is not yet the operation's (an alternation that looks
/// again after waking): its result, and whether the deadlock detector ended it (then the engine
/// fails the operation with [`ChannelError::Deadlock`] where it would fail with `Poisoned`).
///
/// ```
/// use cspnet_core::{OnChannel, Role, ThreadSlot, blocking_raw};
/// let poison = || ();
/// let what = OnChannel::new(None, Role::Writer, &poison);
/// assert_eq!(blocking_raw::<ThreadSlot, u8>(&what, || 3), (3, false));
/// ```
pub fn blocking_raw<S: ContextSlot, R>(what: &dyn Waiting, wait: impl FnOnce() -> R) -> (R, bool) {
    match S::with(|ctx| ctx.member()) {
        Some(member) => member.block(what, wait),
        None => (wait(), false),
    }
}

/// The delay before a network seen all blocked is reported, unless something changes: `None` when
/// detection is off. Set by [`set_deadlock_delay`], or the `CSPNET_DEADLOCK` environment variable
/// (`off`, or a number of milliseconds); 300 ms by default.
///
/// ```
/// assert!(cspnet_core::deadlock_delay().is_some()); // on by default
/// ```
pub fn deadlock_delay() -> Option<Duration> {
    delay()
}

/// Sets the delay before a deadlock is reported (`None`: detection off) for the whole program,
/// overriding `CSPNET_DEADLOCK`. Networks already running use the new setting from their next check.
///
/// ```
/// use std::time::Duration;
/// let before = cspnet_core::deadlock_delay();
/// cspnet_core::set_deadlock_delay(Some(Duration::from_millis(100)));
/// assert_eq!(cspnet_core::deadlock_delay(), Some(Duration::from_millis(100)));
/// cspnet_core::set_deadlock_delay(before);
/// ```
pub fn set_deadlock_delay(delay: Option<Duration>) {
    let ms = match delay {
        None => OFF,
        Some(d) => u64::try_from(d.as_millis()).unwrap_or(OFF - 1).min(OFF - 1),
    };
    setting().store(ms, Ordering::SeqCst);
}

/// The setting that means "off".
const OFF: u64 = u64::MAX;
/// The default delay, well under the one second within which a deadlock is promised to be found.
const DEFAULT_MS: u64 = 300;

fn setting() -> &'static AtomicU64 {
    static SETTING: OnceLock<AtomicU64> = OnceLock::new();
    SETTING.get_or_init(|| {
        let ms = match std::env::var("CSPNET_DEADLOCK") {
            Err(_) => DEFAULT_MS,
            Ok(v) if v.trim().eq_ignore_ascii_case("off") => OFF,
            Ok(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms < OFF => ms,
                _ => {
                    eprintln!(
                        "cspnet: CSPNET_DEADLOCK={v:?} is neither `off` nor a number of \
                         milliseconds; using {DEFAULT_MS}"
                    );
                    DEFAULT_MS
                }
            },
        };
        AtomicU64::new(ms)
    })
}

fn delay() -> Option<Duration> {
    match setting().load(Ordering::Relaxed) {
        OFF => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

/// The one detector thread of this OS process: networks to look at again, each when its delay
/// has passed.
struct Detector {
    queue: Mutex<Vec<Due>>,
    ready: Condvar,
}

/// A network to look at again: when, what it looked like, and the delay it was armed with.
struct Due {
    at: Instant,
    network: Weak<Network>,
    seen: (u64, u64),
    delay: Duration,
}

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    let mut started = false;
    let d = DETECTOR.get_or_init(|| {
        started = true;
        Detector {
            queue: Mutex::new(Vec::new()),
            ready: Condvar::new(),
        }
    });
    if started {
        // The thread lives as long as the program, idle on its condition variable between checks.
        let spawned = std::thread::Builder::new()
            .name("cspnet-deadlock".into())
            .spawn(|| detector().run());
        if let Err(e) = spawned {
            eprintln!("cspnet: deadlock detection is off: no thread for it ({e})");
        }
    }
    d
}

impl Detector {
    fn watch(&self, net: &Arc<Network>, delay: Duration) {
        let seen = net.snapshot();
        lock(&self.queue).push(Due {
            at: Instant::now() + delay,
            network: Arc::downgrade(net),
            seen,
            delay,
        });
        self.ready.notify_one();
    }

    fn run(&self) {
        let mut queue = lock(&self.queue);
        loop {
            let now = Instant::now();
            if let Some(i) = queue.iter().position(|d| d.at <= now) {
                let due = queue.swap_remove(i);
                drop(queue);
                if let Some(net) = due.network.upgrade() {
                    net.check(due.seen, due.delay);
                }
                queue = lock(&self.queue);
                continue;
            }
            queue = match queue.iter().map(|d| d.at).min() {
                Some(due) => {
                    self.ready
                        .wait_timeout(queue, due - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.ready.wait(queue).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}
