//! Deadlock detection: who in a network is blocked on what, and the detector that ends a global deadlock.
//!
//! The rule, and what it does not find, are on [`Deadlock`].
//!
//! # Cost
//!
//! Nothing on an operation that completes without sleeping. An operation about to sleep writes
//! only its own process's record (a few stores and one compare-and-swap on a line no other
//! process writes): no count shared by the network, whose updates would bounce between cores on
//! every hop. The detector thread does the work instead: once per delay it looks at each network,
//! stopping at the first process that runs, and a network it finds stuck in the same state at two
//! looks in a row is deadlocked. A network of a million mostly-blocked processes costs it a walk
//! over them once per delay.

use crate::backend::Role;
use crate::context::{ContextSlot, HeldEnd, ProcessId};
use crate::error::ChannelError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

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

/// A member's `state`: running (not blocked).
const RUNNING: u8 = 0;
/// Blocked with no deadline; its `wait` record is published.
const WAITING: u8 = 1;
/// Blocked, and the detector is reading its record: the owner may not return before it is done.
const BORROWED: u8 = 2;

/// One network: its members, each of which the detector looks at.
pub(crate) struct Network {
    members: Mutex<Members>,
    /// What the detector saw at its last look, if the network was stuck then.
    last_seen: Mutex<Option<(u64, u64)>>,
    report: Mutex<Option<Deadlock>>,
}

/// The members of a network and a count of joins and leaves, so that the detector sees any change.
struct Members {
    by_id: HashMap<ProcessId, Arc<Member>>,
    changes: u64,
}

impl Network {
    /// A network whose starting thread is `root`; the detector looks at it from now on.
    pub(crate) fn new(root_id: ProcessId, root_name: Arc<str>) -> (Arc<Network>, Arc<Member>) {
        let net = Arc::new(Network {
            members: Mutex::new(Members {
                by_id: HashMap::new(),
                changes: 0,
            }),
            last_seen: Mutex::new(None),
            report: Mutex::new(None),
        });
        let root = Network::join(&net, root_id, root_name);
        detector().watch(&net);
        (net, root)
    }

    /// A new member (a process about to start, counted from now).
    pub(crate) fn join(net: &Arc<Network>, id: ProcessId, name: Arc<str>) -> Arc<Member> {
        let member = Arc::new(Member {
            id,
            name,
            network: Arc::clone(net),
            state: AtomicU8::new(RUNNING),
            wait: AtomicPtr::new(std::ptr::null_mut()),
            wakes: AtomicU64::new(0),
            joining: AtomicBool::new(false),
            deadlocked: AtomicBool::new(false),
        });
        let mut members = lock(&net.members);
        members.by_id.insert(id, Arc::clone(&member));
        members.changes += 1;
        member
    }

    /// A member ended (or never started): it no longer counts.
    pub(crate) fn leave(net: &Arc<Network>, id: ProcessId) {
        let mut members = lock(&net.members);
        members.by_id.remove(&id);
        members.changes += 1;
    }

    /// The report, once the network was found deadlocked.
    pub(crate) fn report(&self) -> Option<Deadlock> {
        lock(&self.report).clone()
    }

    /// The network's state if it is stuck now (every member blocked, not all of them in joins):
    /// its membership changes and the sum of its members' wake counts, which any change moves on.
    /// Stops at the first member that runs.
    fn stuck(&self) -> Option<(u64, u64)> {
        let members = lock(&self.members);
        let (mut wakes, mut on_channels) = (0u64, false);
        for m in members.by_id.values() {
            if m.state.load(Ordering::Acquire) == RUNNING {
                return None;
            }
            wakes = wakes.wrapping_add(m.wakes.load(Ordering::Acquire));
            on_channels |= !m.joining.load(Ordering::Acquire);
        }
        on_channels.then_some((members.changes, wakes))
    }

    /// The detector's look: a network stuck in the same state at two looks a delay apart is
    /// deadlocked (nobody woke, started or ended in between).
    fn check(&self) {
        let now = self.stuck();
        let mut last = lock(&self.last_seen);
        if now.is_some() && *last == now && self.declare() {
            *last = None;
        } else {
            *last = now;
        }
    }

    /// Reports the deadlock and interrupts every blocked channel operation. `false` if some member
    /// turns out not to be blocked after all (then nothing is done).
    fn declare(&self) -> bool {
        let members = lock(&self.members);
        let mut order: Vec<&Arc<Member>> = members.by_id.values().collect();
        order.sort_by_key(|m| m.id);
        // Every member's record is held until its wait is interrupted: none can return meanwhile.
        for (i, m) in order.iter().enumerate() {
            if !m.borrow() {
                for earlier in &order[..i] {
                    earlier.give_back();
                }
                return false;
            }
        }
        let blocked = order
            .iter()
            .map(|m| Blocked::new(&*m.name, m.record().describe()))
            .collect();
        for m in &order {
            m.deadlocked.store(true, Ordering::Release);
        }
        lock(&self.report).get_or_insert(Deadlock::new(blocked));
        for m in &order {
            m.record().interrupt();
            m.give_back();
        }
        true
    }
}

/// One process of a network (or its starting thread), as the detector sees it. Only its owner
/// writes it, except the detector's borrow of `state`: blocking costs no shared write.
pub(crate) struct Member {
    id: ProcessId,
    name: Arc<str>,
    network: Arc<Network>,
    /// [`RUNNING`], [`WAITING`] or [`BORROWED`].
    state: AtomicU8,
    /// While not running: the blocked operation's [`Waiting`] (a pointer to a reference to it,
    /// on the owner's stack).
    wait: AtomicPtr<&'static dyn Waiting>,
    /// How many times it has stopped waiting: the detector sees any wake in between its looks.
    wakes: AtomicU64,
    /// Whether its wait is a join of its children.
    joining: AtomicBool,
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
        let what: &dyn Waiting = what;
        // SAFETY: only the lifetime is erased. `Unblock` takes the record back (waiting out a
        // borrow by the detector) before `what` and this reference to it go out of scope, even if
        // `wait` panics; the detector dereferences it only while it holds the borrow.
        let erased: &&'static dyn Waiting =
            unsafe { std::mem::transmute::<&&dyn Waiting, &&'static dyn Waiting>(&what) };
        self.wait
            .store(std::ptr::from_ref(erased).cast_mut(), Ordering::Relaxed);
        self.state.store(WAITING, Ordering::Release);
        let guard = Unblock(self);
        let out = wait();
        drop(guard);
        let ended = self.deadlocked.load(Ordering::Acquire)
            && self.deadlocked.swap(false, Ordering::AcqRel);
        (out, ended)
    }

    /// Runs `wait`, a join of this member's children.
    pub(crate) fn join<R>(&self, wait: impl FnOnce() -> R) -> R {
        self.joining.store(true, Ordering::Release);
        let out = self.block(&OnChildren, wait).0;
        self.joining.store(false, Ordering::Release);
        out
    }

    /// The detector takes the record for a moment; `false` if the member runs.
    fn borrow(&self) -> bool {
        self.state
            .compare_exchange(WAITING, BORROWED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The borrowed record.
    fn record(&self) -> &dyn Waiting {
        debug_assert_eq!(self.state.load(Ordering::Acquire), BORROWED);
        // SAFETY: borrowed, the owner is still inside `block` (its `Unblock` waits for the borrow
        // to end), so the reference it published is alive.
        unsafe { *self.wait.load(Ordering::Acquire) }
    }

    fn give_back(&self) {
        self.state.store(WAITING, Ordering::Release);
    }
}

/// Takes a member's record back and counts the wake.
struct Unblock<'a>(&'a Member);

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        let m = self.0;
        m.wakes.store(
            m.wakes.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        // The detector holds the record only for a moment (it is not waiting on anything).
        while m
            .state
            .compare_exchange_weak(WAITING, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
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
    // With detection off a wait costs nothing more: not even the look-up of the process's context
    // (a hash-map look-up in may's coroutine-local storage). A process that waits while detection
    // is off counts as running, so turning it on again can only miss a deadlock, never invent one.
    if setting().load(Ordering::Relaxed) == OFF {
        return (wait(), false);
    }
    match S::with(|ctx| ctx.member_ptr()) {
        // SAFETY: the running process's context holds an `Arc` of its member for the process's
        // whole life, and this runs inside the process.
        Some(member) => unsafe { &*member }.block(what, wait),
        None => (wait(), false),
    }
}

/// How often the detector looks at each network (a network stuck in the same state at two looks
/// in a row is reported, so between one and two delays after it stopped): `None` when
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

/// The one detector thread of this OS process and the networks it looks at, each once per delay.
struct Detector {
    networks: Mutex<Vec<Weak<Network>>>,
    ready: Condvar,
}

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    let mut started = false;
    let d = DETECTOR.get_or_init(|| {
        started = true;
        Detector {
            networks: Mutex::new(Vec::new()),
            ready: Condvar::new(),
        }
    });
    if started {
        // The thread lives as long as the program, idle on its condition variable while no
        // network runs.
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
    fn watch(&self, net: &Arc<Network>) {
        lock(&self.networks).push(Arc::downgrade(net));
        self.ready.notify_one();
    }

    fn run(&self) {
        loop {
            {
                let mut networks = lock(&self.networks);
                while networks.is_empty() {
                    networks = self.ready.wait(networks).unwrap_or_else(|e| e.into_inner());
                }
            }
            std::thread::sleep(delay().unwrap_or(Duration::from_millis(DEFAULT_MS)));
            let live: Vec<Arc<Network>> = {
                let mut networks = lock(&self.networks);
                networks.retain(|n| n.strong_count() > 0);
                networks.iter().filter_map(Weak::upgrade).collect()
            };
            if delay().is_some() {
                for net in live {
                    net.check();
                }
            }
        }
    }
}
