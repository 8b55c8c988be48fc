//! The life of one CSP process: its id and name, the channel ends it leaves behind, and how it ends.
//!
//! # Why ends are deferred
//!
//! PyCSP poisons every channel end a process holds when the process ends with a poison error, and
//! retires them when it ends normally. In Rust the ends live in the process closure's captures, and a
//! `FnOnce` closure drops its captures *before* its result is visible to the caller. So inside a
//! process, dropping an end does not leave the channel at once: the end is parked in the process's
//! [`ProcessContext`], and it leaves (retires) at the process's next channel operation, or, if the
//! process ends first, it is poisoned or retired according to how the process ended. Outside any
//! process (for example in `main`), dropping an end retires it at once.
//!
//! Each backend keeps the current context where its processes can find it (a thread-local for OS
//! threads and OS processes, a coroutine-local for coroutines) by implementing [`ContextSlot`].

use crate::backend::Role;
use crate::deadlock::Member;
use crate::error::{Cause, ChannelError, Outcome, panic_message};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An identifier for a running CSP process, unique within the program (and, on the processes
/// backend, across the OS processes of one network).
///
/// ```
/// use cspnet_core::ProcessId;
/// let a = ProcessId::next();
/// let b = ProcessId::next();
/// assert_ne!(a, b);
/// assert_eq!(ProcessId::new(7).as_u64(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcessId(u64);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl ProcessId {
    /// An id with the given value (for backends that compose ids, e.g. from an OS pid).
    ///
    /// ```
    /// assert_eq!(cspnet_core::ProcessId::new(3).as_u64(), 3);
    /// ```
    pub const fn new(id: u64) -> Self {
        ProcessId(id)
    }

    /// A fresh id from the program-wide counter.
    ///
    /// ```
    /// assert!(cspnet_core::ProcessId::next().as_u64() > 0);
    /// ```
    pub fn next() -> Self {
        ProcessId(NEXT_ID.fetch_add(1, Ordering::Relaxed))
    }

    /// The id as a number.
    ///
    /// ```
    /// assert_eq!(cspnet_core::ProcessId::new(9).as_u64(), 9);
    /// ```
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a channel end leaves its channel.
///
/// ```
/// use cspnet_core::{ChannelError, Leave};
/// assert_eq!(Leave::for_outcome::<()>(&Err(ChannelError::Poisoned)), Leave::Poison);
/// assert_eq!(Leave::for_outcome(&Ok(1)), Leave::Retire);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// The end retires: when it was the last reader (or writer), the channel is retired.
    Retire,
    /// The end poisons its channel on the way out.
    Poison,
}

impl Leave {
    /// How a process's remaining ends leave, given how its body ended.
    ///
    /// ```
    /// use cspnet_core::{ChannelError, Leave};
    /// assert_eq!(Leave::for_outcome::<u8>(&Err(ChannelError::Retired)), Leave::Retire);
    /// ```
    pub fn for_outcome<T>(outcome: &Outcome<T>) -> Leave {
        match outcome {
            Err(ChannelError::Poisoned) => Leave::Poison,
            _ => Leave::Retire,
        }
    }
}

/// A channel end that has been dropped and still has to leave its channel.
///
/// Backends implement it for a small token holding their channel state and the end's role.
///
/// ```
/// use cspnet_core::{Leave, LeavingEnd};
///
/// struct Noisy;
/// impl LeavingEnd for Noisy {
///     fn leave(self: Box<Self>, how: Leave) {
///         println!("left with {how:?}");
///     }
/// }
/// Box::new(Noisy).leave(Leave::Retire);
/// ```
pub trait LeavingEnd: Send {
    /// Leave the channel.
    fn leave(self: Box<Self>, how: Leave);

    /// Which channel and role this end is, for a crash report ([`Ending::held`]); `None` when the
    /// engine cannot say.
    fn held(&self) -> Option<HeldEnd> {
        None
    }
}

/// A channel end a process held when it ended abnormally: the channel's name (if it was given
/// one) and the end's role. A supervisor reads these in an [`Exit`](crate::Exit).
///
/// ```
/// use cspnet_core::{HeldEnd, Role};
/// let end = HeldEnd::new(Some("results"), Role::Writer);
/// assert_eq!(end.to_string(), "writer of 'results'");
/// assert_eq!(HeldEnd::new(None, Role::Reader).to_string(), "reader of an unnamed channel");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeldEnd {
    /// The channel's name, if it has one.
    pub channel: Option<String>,
    /// Which end.
    pub role: Role,
}

impl HeldEnd {
    /// An end of the channel called `channel` (or of an unnamed one).
    ///
    /// ```
    /// let end = cspnet_core::HeldEnd::new(Some("jobs"), cspnet_core::Role::Reader);
    /// assert_eq!(end.channel.as_deref(), Some("jobs"));
    /// ```
    pub fn new(channel: Option<&str>, role: Role) -> Self {
        HeldEnd {
            channel: channel.map(str::to_owned),
            role,
        }
    }
}

impl fmt::Display for HeldEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Handle => "handle",
        };
        match &self.channel {
            Some(name) => write!(f, "{role} of '{name}'"),
            None => write!(f, "{role} of an unnamed channel"),
        }
    }
}

/// How a process ended, as an engine reports it (see [`Carries::start`](crate::Carries::start)):
/// the body's outcome or why it failed, and, when it failed, the channel ends it still held.
///
/// ```
/// use cspnet_core::{Ending, ProcessContext, ProcessId, ThreadSlot, run_body};
/// let ending: Ending<u8> = run_body::<ThreadSlot, u8>(ProcessContext::new(ProcessId::next(), "p".into()), || Ok(1));
/// assert_eq!(ending.outcome, Ok(Ok(1)));
/// assert!(ending.held.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending<T> {
    /// The body's outcome, or why the process failed.
    pub outcome: Result<Outcome<T>, Cause>,
    /// The ends the process held when it failed (empty when it did not fail).
    pub held: Vec<HeldEnd>,
    /// The OS process id, where the process was an OS process of its own.
    pub pid: Option<u32>,
}

impl<T> Ending<T> {
    /// An ending with nothing held (a process that could not start, or ended normally).
    ///
    /// ```
    /// let e = cspnet_core::Ending::<u8>::new(Ok(Ok(2)));
    /// assert!(e.held.is_empty());
    /// ```
    pub fn new(outcome: Result<Outcome<T>, Cause>) -> Self {
        Ending {
            outcome,
            held: Vec::new(),
            pid: None,
        }
    }
}

/// Everything cspnet keeps about the running CSP process.
///
/// ```
/// use cspnet_core::{ProcessContext, ProcessId};
/// let ctx = ProcessContext::new(ProcessId::new(1), "worker".into());
/// assert_eq!(ctx.name(), "worker");
/// assert_eq!(ctx.id(), ProcessId::new(1));
/// ```
pub struct ProcessContext {
    id: ProcessId,
    name: Arc<str>,
    /// `false` for the implicit context of a thread that is not a CSP process: there, ends leave at
    /// once because no process end will come to release them.
    defers: bool,
    deferred: Vec<Box<dyn LeavingEnd>>,
    rotation: HashMap<(Location<'static>, usize), usize>,
    /// How the ends leave if the process panics or crashes: poison (the default, PyCSP's rule) or
    /// retire (a supervised process: see [`isolated`](Self::isolated)).
    on_crash: Leave,
    /// The ends that left while the process was unwinding from a panic.
    released: Vec<HeldEnd>,
    /// Its place in a network watched for deadlock (none outside one).
    member: Option<Arc<Member>>,
}

impl ProcessContext {
    /// The context of a CSP process.
    ///
    /// ```
    /// let ctx = cspnet_core::ProcessContext::new(cspnet_core::ProcessId::next(), "p".into());
    /// assert!(ctx.is_process());
    /// ```
    pub fn new(id: ProcessId, name: Arc<str>) -> Self {
        ProcessContext {
            id,
            name,
            defers: true,
            deferred: Vec::new(),
            rotation: HashMap::new(),
            on_crash: Leave::Poison,
            released: Vec::new(),
            member: None,
        }
    }

    /// The context of a supervised process: if it panics or crashes, the channel ends it held
    /// retire instead of poisoning, so channels it shared with healthy processes stay usable and
    /// values already buffered are still read. The crash reaches its supervisor as a value.
    ///
    /// ```
    /// use cspnet_core::{Leave, ProcessContext, ProcessId};
    /// let ctx = ProcessContext::new(ProcessId::next(), "w".into()).isolated();
    /// assert_eq!(ctx.on_crash(), Leave::Retire);
    /// ```
    pub fn isolated(mut self) -> Self {
        self.on_crash = Leave::Retire;
        self
    }

    /// How this process's ends leave if it panics or crashes.
    ///
    /// ```
    /// use cspnet_core::{Leave, ProcessContext, ProcessId};
    /// assert_eq!(ProcessContext::new(ProcessId::next(), "p".into()).on_crash(), Leave::Poison);
    /// ```
    pub fn on_crash(&self) -> Leave {
        self.on_crash
    }

    /// The implicit context of a thread that is not a CSP process (such as `main`).
    ///
    /// ```
    /// let ctx = cspnet_core::ProcessContext::outside();
    /// assert!(!ctx.is_process());
    /// ```
    pub fn outside() -> Self {
        ProcessContext {
            defers: false,
            ..ProcessContext::new(ProcessId::next(), Arc::from("main"))
        }
    }

    /// The process's id.
    ///
    /// ```
    /// let ctx = cspnet_core::ProcessContext::new(cspnet_core::ProcessId::new(4), "p".into());
    /// assert_eq!(ctx.id().as_u64(), 4);
    /// ```
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// The process's name.
    ///
    /// ```
    /// let ctx = cspnet_core::ProcessContext::new(cspnet_core::ProcessId::new(4), "sink".into());
    /// assert_eq!(ctx.name(), "sink");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared.
    pub(crate) fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// Its place in a network watched for deadlock.
    pub(crate) fn member(&self) -> Option<Arc<Member>> {
        self.member.clone()
    }

    /// Its place in a watched network, without taking a reference count: valid while this
    /// context lives.
    pub(crate) fn member_ptr(&self) -> Option<*const Member> {
        self.member.as_ref().map(Arc::as_ptr)
    }

    /// Makes it a member of a watched network.
    pub(crate) fn set_member(&mut self, member: Arc<Member>) {
        self.member = Some(member);
    }

    /// Whether this is a CSP process (rather than a thread outside any process).
    ///
    /// ```
    /// assert!(!cspnet_core::ProcessContext::outside().is_process());
    /// ```
    pub fn is_process(&self) -> bool {
        self.defers
    }

    /// Parks a dropped end until the next channel operation or the end of the process. Gives the end
    /// back when it must leave now instead (outside any process).
    ///
    /// ```
    /// use cspnet_core::{Leave, LeavingEnd, ProcessContext};
    /// struct T;
    /// impl LeavingEnd for T { fn leave(self: Box<Self>, _: Leave) {} }
    /// let mut outside = ProcessContext::outside();
    /// assert!(outside.defer(Box::new(T)).is_some());
    /// ```
    pub fn defer(&mut self, end: Box<dyn LeavingEnd>) -> Option<Box<dyn LeavingEnd>> {
        if self.defers {
            self.deferred.push(end);
            None
        } else {
            Some(end)
        }
    }

    /// Takes the parked ends (cheap when there are none).
    ///
    /// ```
    /// let mut ctx = cspnet_core::ProcessContext::new(cspnet_core::ProcessId::new(1), "p".into());
    /// assert!(ctx.take_deferred().is_empty());
    /// ```
    pub fn take_deferred(&mut self) -> Vec<Box<dyn LeavingEnd>> {
        std::mem::take(&mut self.deferred)
    }

    /// The rotation offset that `fair_select` keeps for one call site and guard count.
    ///
    /// ```
    /// let mut ctx = cspnet_core::ProcessContext::outside();
    /// let key = (*std::panic::Location::caller(), 3);
    /// *ctx.rotation(key) = 2;
    /// assert_eq!(*ctx.rotation(key), 2);
    /// ```
    pub fn rotation(&mut self, key: (Location<'static>, usize)) -> &mut usize {
        self.rotation.entry(key).or_insert(0)
    }
}

impl fmt::Debug for ProcessContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessContext")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("deferred_ends", &self.deferred.len())
            .field("on_crash", &self.on_crash)
            .finish()
    }
}

/// Where a backend keeps the context of the CSP process that is running now.
///
/// ```
/// use cspnet_core::{ContextSlot, ThreadSlot};
/// let name = ThreadSlot::with(|ctx| ctx.name().to_owned());
/// assert_eq!(name, "main");
/// ```
pub trait ContextSlot {
    /// Runs `f` on the current context (the implicit outside context when no process is running).
    /// `f` must not drop channel ends or call back into the slot.
    fn with<R>(f: impl FnOnce(&mut ProcessContext) -> R) -> R;

    /// Installs `ctx` as the current context and returns the one it replaces.
    fn swap(ctx: Option<ProcessContext>) -> Option<ProcessContext>;
}

thread_local! {
    static CURRENT: RefCell<Option<ProcessContext>> = const { RefCell::new(None) };
}

/// A [`ContextSlot`] in a thread-local: right for backends where a CSP process never changes thread.
///
/// ```
/// use cspnet_core::{ContextSlot, ThreadSlot};
/// let a = ThreadSlot::with(|c| c.id());
/// let b = ThreadSlot::with(|c| c.id());
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadSlot;

impl ContextSlot for ThreadSlot {
    fn with<R>(f: impl FnOnce(&mut ProcessContext) -> R) -> R {
        CURRENT.with(|cell| {
            let mut slot = cell.borrow_mut();
            f(slot.get_or_insert_with(ProcessContext::outside))
        })
    }

    fn swap(ctx: Option<ProcessContext>) -> Option<ProcessContext> {
        CURRENT.with(|cell| std::mem::replace(&mut *cell.borrow_mut(), ctx))
    }
}

/// Called from a channel end's `Drop`: the end leaves now (poisoning, if the thread is unwinding
/// from a panic), or is parked until the process's next operation or end.
///
/// ```
/// use cspnet_core::{Leave, LeavingEnd, ThreadSlot, end_dropped};
/// struct T;
/// impl LeavingEnd for T { fn leave(self: Box<Self>, how: Leave) { assert_eq!(how, Leave::Retire) } }
/// end_dropped::<ThreadSlot>(Box::new(T)); // outside a process: leaves at once
/// ```
pub fn end_dropped<S: ContextSlot>(end: Box<dyn LeavingEnd>) {
    if std::thread::panicking() {
        // A panicking process poisons what it holds, so the rest of the network shuts down; a
        // supervised one retires it instead, and its supervisor learns which ends they were.
        let how = S::with(|ctx| {
            if ctx.defers {
                ctx.released.extend(end.held());
            }
            ctx.on_crash
        });
        end.leave(how);
    } else if let Some(end) = S::with(|ctx| ctx.defer(end)) {
        end.leave(Leave::Retire);
    }
}

/// Retires the ends the current process dropped since its last operation. Every channel operation
/// calls this first, so a dropped end has left before its process can block.
///
/// ```
/// cspnet_core::flush_dropped_ends::<cspnet_core::ThreadSlot>();
/// ```
#[inline]
pub fn flush_dropped_ends<S: ContextSlot>() {
    let ends = S::with(|ctx| {
        if ctx.deferred.is_empty() {
            Vec::new()
        } else {
            ctx.take_deferred()
        }
    });
    leave_all(ends, Leave::Retire);
}

fn leave_all(ends: Vec<Box<dyn LeavingEnd>>, how: Leave) {
    for end in ends {
        end.leave(how);
    }
}

/// Runs a process body as the current CSP process: installs its context, catches a panic, and makes
/// the ends it still holds leave according to how it ended (poison for `Err(Poisoned)`, retire
/// otherwise; after a panic, as the context's [`on_crash`](ProcessContext::on_crash) says).
/// Returns the body's outcome, or the panic as a [`Cause`] with the ends the process held.
///
/// ```
/// use cspnet_core::{ChannelError, ProcessContext, ProcessId, ThreadSlot, run_body};
/// let ctx = ProcessContext::new(ProcessId::next(), "p".into());
/// let out = run_body::<ThreadSlot, u32>(ctx, || Ok(3));
/// assert_eq!(out.outcome, Ok(Ok(3)));
/// let ctx = ProcessContext::new(ProcessId::next(), "q".into());
/// let out = run_body::<ThreadSlot, u32>(ctx, || panic!("boom"));
/// assert!(out.outcome.is_err());
/// ```
pub fn run_body<S: ContextSlot, T>(
    ctx: ProcessContext,
    body: impl FnOnce() -> Outcome<T>,
) -> Ending<T> {
    let previous = S::swap(Some(ctx));
    let result = catch_unwind(AssertUnwindSafe(body));
    let mut ctx = S::swap(previous).expect("the process context was removed while it ran");
    let deferred = ctx.take_deferred();
    match result {
        Ok(outcome) => {
            leave_all(deferred, Leave::for_outcome(&outcome));
            Ending::new(Ok(outcome))
        }
        Err(payload) => {
            // Ends dropped before the panic were leaving anyway: not counted as held.
            let held = std::mem::take(&mut ctx.released);
            leave_all(deferred, ctx.on_crash);
            Ending {
                outcome: Err(Cause::Panicked(panic_message(payload.as_ref()))),
                held,
                pid: None,
            }
        }
    }
}

/// Makes never-started processes' captured ends poison their channels (used when starting a
/// group fails part-way, so the processes that did start are not left waiting forever).
///
/// ```
/// use cspnet_core::{ThreadSlot, discard_unstarted};
/// discard_unstarted::<ThreadSlot, _>(vec![1, 2, 3]);
/// ```
pub fn discard_unstarted<S: ContextSlot, B>(bodies: Vec<B>) {
    let ctx = ProcessContext::new(ProcessId::next(), Arc::from("unstarted"));
    let previous = S::swap(Some(ctx));
    drop(bodies);
    let mut ctx = S::swap(previous).expect("the process context was removed");
    leave_all(ctx.take_deferred(), Leave::Poison);
}
