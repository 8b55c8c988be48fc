//! The seam between the public surface and the three engines: [`Backend`] and [`Carries`].
//!
//! The public types ([`Channel`](crate::Channel), [`Reader`](crate::Reader),
//! [`Alternation`](crate::Alternation), [`Process`](crate::Process), ...) are written once, in this
//! crate, over these two traits, the way `lock_api` writes `Mutex` once over a raw lock. A backend
//! is a zero-sized type that implements them with its engine:
//!
//! | backend | how a value moves | how a process waits and wakes | how a process starts |
//! | --- | --- | --- | --- |
//! | `cspnet_threads::Threads` | a crossbeam channel | crossbeam's parking | an OS thread |
//! | `cspnet_coroutines::Coroutines` | a direct hand-off between coroutines | may's parking | a may coroutine |
//! | `cspnet_processes::Processes` | a serde encoding in a shared-memory heap | a futex in the segment | a `fork`, or a re-executed program |
//!
//! # Required of an engine
//!
//! [`Backend`] is what does not depend on a payload type: where the running process's context
//! lives, how an alternation waits on its guards, how a process sleeps and makes blocking calls.
//! [`Carries<T>`] is what does: a channel of `T` (create, join, leave, poison, read, write, an
//! extended read that holds its writer, one guard of an alternation, and a shared word that core's
//! barriers keep their counts in) and a process whose result is a `T` (start, join). Each backend
//! implements `Carries<T>` for exactly the `T` it can carry, which is how generic code states the
//! payload bound it needs: `B: Carries<u64>`, or `B: Carries<T>` for a generic `T`.
//!
//! The rules that define CSP semantics are not the engine's to choose; they live here and in
//! [`Policy`](crate::Policy): the order in which guards are tried, what happens when no guard can
//! ever fire ([`live_guards`]), when a channel retires ([`Membership`]), and that poison wins over
//! retirement ([`ChannelState::after`]).

use crate::context::{
    ContextSlot, Ending, HeldEnd, LeavingEnd, ProcessContext, ProcessId, end_dropped,
};
use crate::deadline::Deadline;
use crate::error::{Cause, ChannelError, KillError, Outcome};
use crate::{Leave, flush_dropped_ends};
use std::time::Duration;

/// What an engine calls once with a process's [`Ending`] (see [`Carries::start`]).
///
/// ```
/// let report: cspnet_core::Report<u8> = Box::new(|ending| println!("{:?}", ending.outcome));
/// report(cspnet_core::Ending::new(Ok(Ok(1))));
/// ```
pub type Report<T> = Box<dyn FnOnce(Ending<T>) + Send>;

/// One engine beneath the public API: the part that does not depend on a payload type.
///
/// Code generic over backends names this trait and states the payloads it needs with
/// [`Carries`]:
///
/// ```
/// use cspnet_core::{Alternation, Backend, Carries, Channel, parallel, process};
///
/// /// The sum of what two producers send, taken by whichever is ready: on any backend.
/// fn merged_sum<B: Backend + Carries<u64>>() -> u64 {
///     let (a, b) = (Channel::<B, u64>::new(), Channel::<B, u64>::new());
///     let (aw, bw, ar, br) = (a.writer(), b.writer(), a.reader(), b.reader());
///     let out = parallel::<B, _, _>([
///         process(move || { for i in 1..=3 { aw.write(i)?; } Ok(0) }),
///         process(move || { for i in 10..=12 { bw.write(i)?; } Ok(0) }),
///         process(move || {
///             let mut sum = 0;
///             for _ in 0..6 {
///                 sum += Alternation::new().input(&ar, |v| v).input(&br, |v| v).select()?;
///             }
///             Ok(sum)
///         }),
///     ])
///     .unwrap();
///     out[2].unwrap()
/// }
///
/// assert_eq!(merged_sum::<cspnet_threads::Threads>(), 1 + 2 + 3 + 10 + 11 + 12);
/// ```
pub trait Backend: Sized + Send + Sync + 'static {
    /// The backend's name, as on command lines (`"threads"`).
    const NAME: &'static str;

    /// Where the running process's [`ProcessContext`] lives (a thread-local, a coroutine-local).
    type Slot: ContextSlot;

    /// One channel guard of an alternation as the engine waits on it, made by
    /// [`Carries::input`] or [`Carries::output`] and type-erased over the payload.
    type Guard<'a>;

    /// Waits until one of `guards` commits, trying them in `order` (a permutation of their
    /// indices chosen by the [`Policy`](crate::Policy)), and returns its index; or `Ok(None)` once
    /// `deadline` has passed with no guard ready ([`Deadline::Now`] tries once).
    ///
    /// Exactly one guard commits: an input guard's value is in its slot, an output guard's slot is
    /// empty (its value delivered). Fails with `Poisoned` when any guard's channel is poisoned, and
    /// with `Retired` when [`live_guards`] finds none left. When several guards can commit, the
    /// first in `order` does; when the engine has to wait, a counterpart that could complete several
    /// of them completes the first in `order`. `guards` is never empty.
    ///
    /// ```
    /// use cspnet_core::{Backend, Carries, Channel, Deadline};
    /// use cspnet_threads::Threads;
    ///
    /// let ch = Channel::<Threads, u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(4).unwrap();
    /// let mut slot = None;
    /// let mut guards = [<Threads as Carries<u32>>::input(r.raw(), &mut slot)];
    /// assert_eq!(Threads::select(&mut guards, &[0], Deadline::Now), Ok(Some(0)));
    /// drop(guards);
    /// assert_eq!(slot, Some(4));
    /// ```
    fn select(
        guards: &mut [Self::Guard<'_>],
        order: &[usize],
        deadline: Deadline,
    ) -> Result<Option<usize>, ChannelError>;

    /// Waits for `duration` the way a process of this backend waits (a coroutine parks, a thread
    /// sleeps): what an alternation with only a Timeout guard does.
    ///
    /// ```
    /// use cspnet_core::Backend;
    /// cspnet_threads::Threads::sleep(std::time::Duration::from_millis(1));
    /// ```
    fn sleep(duration: Duration) {
        std::thread::sleep(duration);
    }

    /// Runs a blocking call so that other processes keep running (coroutines move it to a helper
    /// thread; elsewhere it runs in place).
    ///
    /// ```
    /// use cspnet_core::Backend;
    /// assert_eq!(cspnet_threads::Threads::io(|| 2 + 2), 4);
    /// ```
    fn io<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Retires the channel ends the running process dropped since its last operation (see
    /// [`flush_dropped_ends`]); every operation calls it first.
    ///
    /// ```
    /// use cspnet_core::Backend;
    /// cspnet_threads::Threads::flush();
    /// ```
    #[inline]
    fn flush() {
        flush_dropped_ends::<Self::Slot>();
    }

    /// Whether the engine tells core when its processes block with no deadline (it calls
    /// [`blocking`](crate::blocking) just before it sleeps), so that core can find a deadlocked
    /// network (see the [`Deadlock`](crate::Deadlock) rules). Networks of an engine that does not
    /// are never reported.
    ///
    /// ```
    /// use cspnet_core::Backend;
    /// assert!(cspnet_threads::Threads::DETECTS_DEADLOCK);
    /// ```
    const DETECTS_DEADLOCK: bool = false;

    /// Whether handles dropped now are only being counted, not let go: the processes backend's
    /// census of what a forked child holds (see its `channel.rs`). A handle that acts when dropped
    /// (a barrier member resigns) does nothing then.
    ///
    /// ```
    /// use cspnet_core::Backend;
    /// assert!(!cspnet_threads::Threads::taking_census());
    /// ```
    fn taking_census() -> bool {
        false
    }

    /// A fresh id for a process about to start (unique across the network).
    ///
    /// ```
    /// use cspnet_core::Backend;
    /// use cspnet_threads::Threads;
    /// assert_ne!(Threads::next_id(), Threads::next_id());
    /// ```
    fn next_id() -> ProcessId {
        ProcessId::next()
    }
}

/// A [`Backend`] that can carry values of type `T`: over a channel, and as a process's result.
///
/// Each backend implements it for the types it can carry: `Send + 'static` for threads and
/// coroutines, `Serialize + DeserializeOwned + Send + 'static` for OS processes. Generic code states
/// what it needs: `fn f<B: Carries<u64>>()` for concrete payloads, `B: Carries<T>` for a generic
/// one, and several bounds (`B: Carries<u64> + Carries<String>`) for several.
///
/// ```
/// use cspnet_core::{Carries, Channel};
///
/// fn echo<B: Carries<String>>(s: &str) -> String {
///     let ch = Channel::<B, String>::with_buffer(1);
///     ch.writer().write(s.to_owned()).unwrap();
///     ch.reader().read().unwrap()
/// }
/// assert_eq!(echo::<cspnet_threads::Threads>("hi"), "hi");
/// ```
///
/// A type the backend cannot carry is a compile error:
///
/// ```compile_fail
/// let ch = cspnet_core::Channel::<cspnet_threads::Threads, std::rc::Rc<u32>>::new();
/// ```
#[diagnostic::on_unimplemented(
    message = "the `{Self}` backend cannot carry `{T}`",
    label = "`{T}` is not a payload of `{Self}`",
    note = "threads and coroutines carry `Send + 'static` values; processes also need \
            `Serialize + DeserializeOwned`; generic code states the bound as `B: Carries<{T}>`"
)]
pub trait Carries<T>: Backend {
    /// The engine's handle on one channel of `T`. Cloning it clones the handle only: membership
    /// is counted by [`join`](Self::join) and [`leave`](Self::leave).
    type Chan: Clone + Send + Sync + 'static;

    /// A process ready to start, whose body returns [`Outcome<T>`].
    type Start: Send;

    /// A started process: what the engine keeps to wait for it (and, where it can, to kill it).
    type Running: Send;

    /// A new channel that buffers up to `capacity` values (0: a rendezvous), with no members yet.
    /// `capacity` is at most [`Channel::MAX_BUFFER`](crate::Channel::MAX_BUFFER) (the public
    /// constructors refuse more), and the engine reserves no more than a small first piece of the
    /// buffer's storage here: the rest grows as values are buffered.
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(Some("x"), 0);
    /// assert_eq!(<Threads as Carries<u8>>::name(&raw), Some("x"));
    /// ```
    fn channel(name: Option<&str>, capacity: usize) -> Self::Chan;

    /// Counts one more member of `role`.
    ///
    /// ```
    /// use cspnet_core::{Carries, ChannelError, Leave, Role};
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 0);
    /// <Threads as Carries<u8>>::join(&raw, Role::Reader);
    /// <Threads as Carries<u8>>::leave(&raw, Role::Reader, Leave::Retire);
    /// assert_eq!(<Threads as Carries<u8>>::state(&raw), Err(ChannelError::Retired));
    /// ```
    fn join(chan: &Self::Chan, role: Role);

    /// One member of `role` leaves now, as [`Membership::leave`] rules.
    ///
    /// ```
    /// use cspnet_core::{Carries, ChannelError, Leave, Role};
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 0);
    /// <Threads as Carries<u8>>::join(&raw, Role::Writer);
    /// <Threads as Carries<u8>>::leave(&raw, Role::Writer, Leave::Poison);
    /// assert_eq!(<Threads as Carries<u8>>::state(&raw), Err(ChannelError::Poisoned));
    /// ```
    fn leave(chan: &Self::Chan, role: Role, how: Leave);

    /// A member's handle was dropped: a channel handle leaves at once; an end is parked in the
    /// running process's context until its next operation or its end (see [`end_dropped`]).
    /// Engines that must see every drop first (the processes backend's census after a fork)
    /// override it.
    ///
    /// ```
    /// use cspnet_core::{Carries, ChannelError, Role};
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 0);
    /// <Threads as Carries<u8>>::join(&raw, Role::Reader);
    /// <Threads as Carries<u8>>::dropped(&raw, Role::Reader); // outside a process: leaves now
    /// assert_eq!(<Threads as Carries<u8>>::state(&raw), Err(ChannelError::Retired));
    /// ```
    fn dropped(chan: &Self::Chan, role: Role) {
        match role {
            Role::Handle => Self::leave(chan, role, Leave::Retire),
            _ => end_dropped::<Self::Slot>(Box::new(Departure {
                chan: chan.clone(),
                role,
                leave: Self::leave,
                name: |c| Self::name(c).map(str::to_owned),
            })),
        }
    }

    /// Poisons the channel for good.
    ///
    /// ```
    /// use cspnet_core::{Carries, ChannelError};
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 0);
    /// <Threads as Carries<u8>>::poison(&raw);
    /// assert_eq!(<Threads as Carries<u8>>::state(&raw), Err(ChannelError::Poisoned));
    /// ```
    fn poison(chan: &Self::Chan);

    /// The channel's name.
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// let raw = <cspnet_threads::Threads as Carries<u8>>::channel(None, 0);
    /// assert_eq!(<cspnet_threads::Threads as Carries<u8>>::name(&raw), None);
    /// ```
    fn name(chan: &Self::Chan) -> Option<&str>;

    /// `Ok` while the channel is open, else the error its operations fail with.
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// let raw = <cspnet_threads::Threads as Carries<u8>>::channel(None, 0);
    /// assert_eq!(<cspnet_threads::Threads as Carries<u8>>::state(&raw), Ok(()));
    /// ```
    fn state(chan: &Self::Chan) -> Result<(), ChannelError>;

    /// Waits for a value, as [`Reader::read`](crate::Reader::read).
    ///
    /// ```
    /// use cspnet_core::{Carries, Role};
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 1);
    /// <Threads as Carries<u8>>::write(&raw, 7).unwrap();
    /// assert_eq!(<Threads as Carries<u8>>::read(&raw), Ok(7));
    /// ```
    fn read(chan: &Self::Chan) -> Result<T, ChannelError>;

    /// What keeps the writer of an extended read waiting: the writer's `write` (or output guard)
    /// completes only once this is dropped. On a buffered channel it holds nothing (the writer was
    /// released when its value was buffered).
    type Held: Send;

    /// Waits for a value, as [`read`](Self::read), but keeps its writer waiting until the
    /// returned [`Held`](Self::Held) is dropped: [`Reader::read_extended`](crate::Reader::read_extended).
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 1);
    /// <Threads as Carries<u8>>::write(&raw, 7).unwrap();
    /// let (v, held) = <Threads as Carries<u8>>::read_held(&raw).unwrap();
    /// drop(held);
    /// assert_eq!(v, 7);
    /// ```
    fn read_held(chan: &Self::Chan) -> Result<(T, Self::Held), ChannelError>;

    /// Delivers a value, as [`Writer::write`](crate::Writer::write).
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 1);
    /// assert_eq!(<Threads as Carries<u8>>::write(&raw, 7), Ok(()));
    /// ```
    fn write(chan: &Self::Chan, value: T) -> Result<(), ChannelError>;

    /// An input guard on `chan` for [`Backend::select`]: a value read goes into `slot`.
    ///
    /// ```
    /// use cspnet_core::{Backend, Carries, Deadline};
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 1);
    /// <Threads as Carries<u8>>::write(&raw, 1).unwrap();
    /// let mut slot = None;
    /// let fired = Threads::select(&mut [<Threads as Carries<u8>>::input(&raw, &mut slot)], &[0], Deadline::Now);
    /// assert_eq!((fired, slot), (Ok(Some(0)), Some(1)));
    /// ```
    fn input<'a>(chan: &'a Self::Chan, slot: &'a mut Option<T>) -> Self::Guard<'a>;

    /// An extended input guard on `chan` for [`Backend::select`]: as [`input`](Self::input), but
    /// the writer is held until the [`Held`](Self::Held) put in `slot` with the value is dropped.
    ///
    /// ```
    /// use cspnet_core::{Backend, Carries, Deadline};
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 1);
    /// <Threads as Carries<u8>>::write(&raw, 2).unwrap();
    /// let mut slot = None;
    /// let fired = Threads::select(&mut [<Threads as Carries<u8>>::input_held(&raw, &mut slot)], &[0], Deadline::Now);
    /// assert_eq!(fired, Ok(Some(0)));
    /// assert_eq!(slot.map(|(v, _held)| v), Some(2));
    /// ```
    fn input_held<'a>(
        chan: &'a Self::Chan,
        slot: &'a mut Option<(T, Self::Held)>,
    ) -> Self::Guard<'a>;

    /// An output guard on `chan` for [`Backend::select`], offering the value in `slot`; the slot is
    /// emptied only when the value is delivered.
    ///
    /// ```
    /// use cspnet_core::{Backend, Carries, Deadline};
    /// use cspnet_threads::Threads;
    /// let raw = <Threads as Carries<u8>>::channel(None, 1);
    /// let mut slot = Some(5);
    /// let fired = Threads::select(&mut [<Threads as Carries<u8>>::output(&raw, &mut slot)], &[0], Deadline::Now);
    /// assert_eq!((fired, slot), (Ok(Some(0)), None));
    /// assert_eq!(<Threads as Carries<u8>>::read(&raw), Ok(5));
    /// ```
    fn output<'a>(chan: &'a Self::Chan, slot: &'a mut Option<T>) -> Self::Guard<'a>;

    /// A word of shared state that the channel carries for constructions written once in core (a
    /// barrier keeps its counts here): zero when the channel is made, changed only by core, and
    /// shared wherever the channel is (across OS processes on the processes backend).
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// use cspnet_threads::Threads;
    /// use std::sync::atomic::Ordering;
    /// let raw = <Threads as Carries<()>>::channel(None, 0);
    /// assert_eq!(<Threads as Carries<()>>::word(&raw).load(Ordering::Relaxed), 0);
    /// ```
    fn word(chan: &Self::Chan) -> &std::sync::atomic::AtomicU64;

    /// Waits, the way this backend's processes wait, until `done` holds for the channel's
    /// [`word`](Self::word) (checked after every [`wake_word`](Self::wake_word)); fails with
    /// `Poisoned` once the channel is poisoned (poison wins: it is checked first). Whoever changes
    /// the word so that `done` may hold calls `wake_word` after the change.
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// use cspnet_threads::Threads;
    /// use std::sync::atomic::Ordering;
    /// let raw = <Threads as Carries<()>>::channel(None, 0);
    /// <Threads as Carries<()>>::word(&raw).store(1, Ordering::SeqCst);
    /// <Threads as Carries<()>>::wake_word(&raw);
    /// assert_eq!(<Threads as Carries<()>>::wait_word(&raw, &mut |w| w == 1), Ok(()));
    /// ```
    fn wait_word(chan: &Self::Chan, done: &mut dyn FnMut(u64) -> bool) -> Result<(), ChannelError>;

    /// Wakes every process in [`wait_word`](Self::wait_word) on this channel, to look again.
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// let raw = <cspnet_threads::Threads as Carries<()>>::channel(None, 0);
    /// <cspnet_threads::Threads as Carries<()>>::wake_word(&raw);
    /// ```
    fn wake_word(chan: &Self::Chan);

    /// A process that runs `body`.
    ///
    /// ```
    /// use cspnet_core::{Carries, ProcessContext};
    /// use cspnet_threads::Threads;
    /// let start = <Threads as Carries<u8>>::closure(|| Ok(3));
    /// let ctx = ProcessContext::new(cspnet_core::ProcessId::next(), "p".into());
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let running = <Threads as Carries<u8>>::start(ctx, start, Box::new(move |e| tx.send(e.outcome).unwrap())).unwrap();
    /// <Threads as Carries<u8>>::reap(running);
    /// assert_eq!(rx.recv().unwrap(), Ok(Ok(3)));
    /// ```
    fn closure<F>(body: F) -> Self::Start
    where
        F: FnOnce() -> Outcome<T> + Send + 'static;

    /// Starts a process as the CSP process `ctx` (its id, name and crash rule). `report` is called
    /// exactly once, from some thread of this OS process, as soon as the process has ended, and
    /// before [`finished`](Self::finished) says so. On failure to start, `report` is not called,
    /// and the ends the process captured poison their channels, so the processes already started
    /// shut down.
    ///
    /// ```
    /// use cspnet_core::{Carries, ProcessContext, ProcessId};
    /// use cspnet_threads::Threads;
    /// use std::sync::mpsc;
    /// let (tx, rx) = mpsc::channel();
    /// let ctx = ProcessContext::new(ProcessId::next(), "p".into());
    /// let start = <Threads as Carries<u8>>::closure(|| Ok(3));
    /// let running = <Threads as Carries<u8>>::start(ctx, start, Box::new(move |e| tx.send(e).unwrap())).unwrap();
    /// assert_eq!(rx.recv().unwrap().outcome, Ok(Ok(3)));
    /// <Threads as Carries<u8>>::reap(running);
    /// ```
    fn start(
        ctx: ProcessContext,
        start: Self::Start,
        report: Report<T>,
    ) -> Result<Self::Running, Cause>;

    /// Whether the process has ended and reported.
    ///
    /// ```
    /// use cspnet_core::{Carries, ProcessContext, ProcessId};
    /// use cspnet_threads::Threads;
    /// let ctx = ProcessContext::new(ProcessId::next(), "p".into());
    /// let r = <Threads as Carries<u8>>::start(ctx, <Threads as Carries<u8>>::closure(|| Ok(1)), Box::new(|_| ())).unwrap();
    /// let _ = <Threads as Carries<u8>>::finished(&r); // true once the thread has ended
    /// <Threads as Carries<u8>>::reap(r);
    /// ```
    fn finished(running: &Self::Running) -> bool;

    /// Waits until the process has ended and reported, and frees what the engine kept for it
    /// (joins its thread or coroutine, reaps the OS process).
    ///
    /// ```
    /// use cspnet_core::{Carries, ProcessContext, ProcessId};
    /// use cspnet_threads::Threads;
    /// let ctx = ProcessContext::new(ProcessId::next(), "p".into());
    /// let r = <Threads as Carries<u8>>::start(ctx, <Threads as Carries<u8>>::closure(|| Ok(1)), Box::new(|_| ())).unwrap();
    /// <Threads as Carries<u8>>::reap(r);
    /// ```
    fn reap(running: Self::Running);

    /// The OS process id, for engines whose processes are OS processes.
    ///
    /// ```
    /// use cspnet_core::{Carries, ProcessContext, ProcessId};
    /// use cspnet_threads::Threads;
    /// let ctx = ProcessContext::new(ProcessId::next(), "p".into());
    /// let r = <Threads as Carries<u8>>::start(ctx, <Threads as Carries<u8>>::closure(|| Ok(1)), Box::new(|_| ())).unwrap();
    /// assert_eq!(<Threads as Carries<u8>>::pid(&r), None);
    /// <Threads as Carries<u8>>::reap(r);
    /// ```
    fn pid(running: &Self::Running) -> Option<u32> {
        let _ = running;
        None
    }

    /// Kills the process from outside, where the engine can (OS processes); it then reports as
    /// crashed.
    ///
    /// ```
    /// use cspnet_core::{Carries, KillError, ProcessContext, ProcessId};
    /// use cspnet_threads::Threads;
    /// let ctx = ProcessContext::new(ProcessId::next(), "p".into());
    /// let r = <Threads as Carries<u8>>::start(ctx, <Threads as Carries<u8>>::closure(|| Ok(1)), Box::new(|_| ())).unwrap();
    /// assert!(matches!(<Threads as Carries<u8>>::kill(&r), Err(KillError::Unsupported { .. })));
    /// <Threads as Carries<u8>>::reap(r);
    /// ```
    fn kill(running: &Self::Running) -> Result<(), KillError> {
        let _ = running;
        Err(KillError::Unsupported {
            backend: Self::NAME,
        })
    }

    /// Throws away processes that will never start: the ends they captured poison their channels.
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// use cspnet_threads::Threads;
    /// <Threads as Carries<u8>>::discard(vec![<Threads as Carries<u8>>::closure(|| Ok(1))]);
    /// ```
    fn discard(starts: Vec<Self::Start>);
}

/// A dropped end on its way out of its channel: the default [`Carries::dropped`] parks it. It
/// holds the engine's `leave` rather than the payload type, so it lives as long as the raw channel.
struct Departure<C> {
    chan: C,
    role: Role,
    leave: fn(&C, Role, Leave),
    name: fn(&C) -> Option<String>,
}

impl<C: Send> LeavingEnd for Departure<C> {
    fn leave(self: Box<Self>, how: Leave) {
        (self.leave)(&self.chan, self.role, how);
    }
    fn held(&self) -> Option<HeldEnd> {
        Some(HeldEnd {
            channel: (self.name)(&self.chan),
            role: self.role,
        })
    }
}

/// What a handle is to its channel.
///
/// ```
/// use cspnet_core::Role;
/// assert_ne!(Role::Reader, Role::Writer);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// A [`Reader`](crate::Reader) end.
    Reader,
    /// A [`Writer`](crate::Writer) end.
    Writer,
    /// A [`Channel`](crate::Channel) handle: no end, but it can make ends (engines whose channel
    /// records outlive a process count it).
    Handle,
}

/// Where a channel is in its life. The order is the rule: a channel only moves forward, so poison
/// is final and retirement never undoes it.
///
/// ```
/// use cspnet_core::ChannelState;
/// assert_eq!(ChannelState::Poisoned.after(ChannelState::Retired), ChannelState::Poisoned);
/// assert_eq!(ChannelState::Open.after(ChannelState::Retired), ChannelState::Retired);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ChannelState {
    /// Reads and writes work.
    Open = 0,
    /// Every reader or every writer has left: nothing more can be communicated (what is buffered
    /// is still read).
    Retired = 1,
    /// Poisoned: every operation fails.
    Poisoned = 2,
}

impl ChannelState {
    /// The state after an event that moves the channel `to`: whichever is further along.
    ///
    /// ```
    /// use cspnet_core::ChannelState;
    /// assert_eq!(ChannelState::Retired.after(ChannelState::Poisoned), ChannelState::Poisoned);
    /// ```
    #[inline]
    pub fn after(self, to: ChannelState) -> ChannelState {
        self.max(to)
    }

    /// `Ok` while open, else the error an operation fails with.
    ///
    /// ```
    /// use cspnet_core::{ChannelError, ChannelState};
    /// assert_eq!(ChannelState::Retired.check(), Err(ChannelError::Retired));
    /// ```
    #[inline]
    pub fn check(self) -> Result<(), ChannelError> {
        match self {
            ChannelState::Open => Ok(()),
            ChannelState::Retired => Err(ChannelError::Retired),
            ChannelState::Poisoned => Err(ChannelError::Poisoned),
        }
    }

    /// The state a stored number stands for (engines keep it in an atomic); an unknown number
    /// reads as poisoned, the safe side.
    ///
    /// ```
    /// use cspnet_core::ChannelState;
    /// assert_eq!(ChannelState::from_u8(ChannelState::Retired as u8), ChannelState::Retired);
    /// ```
    #[inline]
    pub fn from_u8(n: u8) -> ChannelState {
        match n {
            0 => ChannelState::Open,
            1 => ChannelState::Retired,
            _ => ChannelState::Poisoned,
        }
    }
}

/// How many reader and writer ends a channel has: the end-membership rule, kept once for every
/// engine. The last reader (or writer) to leave retires the channel; an end that leaves by poison
/// poisons it, whoever else is still there.
///
/// ```
/// use cspnet_core::{ChannelState, Leave, Membership, Role};
/// let mut m = Membership::default();
/// m.join(Role::Reader);
/// m.join(Role::Reader);
/// assert_eq!(m.leave(Role::Reader, Leave::Retire), None); // one reader is still there
/// assert_eq!(m.leave(Role::Reader, Leave::Retire), Some(ChannelState::Retired));
/// m.join(Role::Writer);
/// assert_eq!(m.leave(Role::Writer, Leave::Poison), Some(ChannelState::Poisoned));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Membership {
    /// Reader ends.
    pub readers: u64,
    /// Writer ends.
    pub writers: u64,
}

impl Membership {
    /// One more end of `role` (a [`Role::Handle`] is not an end and changes nothing).
    ///
    /// ```
    /// let mut m = cspnet_core::Membership::default();
    /// m.join(cspnet_core::Role::Writer);
    /// assert_eq!(m.writers, 1);
    /// ```
    pub fn join(&mut self, role: Role) {
        if let Some(n) = self.count(role) {
            *n += 1;
        }
    }

    /// One end of `role` leaves with `how`; returns the state the channel moves to, if any (to be
    /// combined with its current state by [`ChannelState::after`]).
    ///
    /// ```
    /// use cspnet_core::{Leave, Membership, Role};
    /// let mut m = Membership::default();
    /// m.join(Role::Writer);
    /// m.join(Role::Writer);
    /// assert_eq!(m.leave(Role::Writer, Leave::Retire), None);
    /// ```
    pub fn leave(&mut self, role: Role, how: Leave) -> Option<ChannelState> {
        let last = match self.count(role) {
            Some(n) => {
                debug_assert!(*n > 0, "an end left a channel it had not joined");
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        match how {
            Leave::Poison => Some(ChannelState::Poisoned),
            Leave::Retire if last => Some(ChannelState::Retired),
            Leave::Retire => None,
        }
    }

    fn count(&mut self, role: Role) -> Option<&mut u64> {
        match role {
            Role::Reader => Some(&mut self.readers),
            Role::Writer => Some(&mut self.writers),
            Role::Handle => None,
        }
    }
}

/// How one guard's channel looks to an alternation about to wait.
///
/// ```
/// use cspnet_core::GuardStatus;
/// assert_ne!(GuardStatus::Live, GuardStatus::Dead);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardStatus {
    /// The guard can still complete (an open channel, or a retired one with values to drain).
    Live,
    /// The guard can never complete (its channel retired, nothing left to drain).
    Dead,
    /// Its channel is poisoned: the whole alternation fails.
    Poisoned,
}

/// The "no live guard left" rule: the guards of `order` that can still complete, in that order.
/// A poisoned guard fails the alternation at once; when every guard is dead, the alternation
/// fails with `Retired` (a Skip or Timeout does not save it: nothing it waits for can happen).
///
/// ```
/// use cspnet_core::{ChannelError, GuardStatus, live_guards};
/// let status = [GuardStatus::Dead, GuardStatus::Live, GuardStatus::Live];
/// assert_eq!(live_guards(&[2, 0, 1], |i| status[i]), Ok(vec![2, 1]));
/// assert_eq!(live_guards(&[0], |_| GuardStatus::Dead), Err(ChannelError::Retired));
/// assert_eq!(live_guards(&[0, 1], |i| status[i + 1]), Ok(vec![0, 1]));
/// let poisoned = [GuardStatus::Live, GuardStatus::Poisoned];
/// assert_eq!(live_guards(&[0, 1], |i| poisoned[i]), Err(ChannelError::Poisoned));
/// ```
pub fn live_guards(
    order: &[usize],
    mut status: impl FnMut(usize) -> GuardStatus,
) -> Result<Vec<usize>, ChannelError> {
    let mut live = Vec::with_capacity(order.len());
    for &i in order {
        match status(i) {
            GuardStatus::Live => live.push(i),
            GuardStatus::Dead => {}
            GuardStatus::Poisoned => return Err(ChannelError::Poisoned),
        }
    }
    if live.is_empty() {
        Err(ChannelError::Retired)
    } else {
        Ok(live)
    }
}
