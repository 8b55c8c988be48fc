//! Any-to-any channels on may's parking: a direct hand-off between a parked party and the one that
//! arrives, with poison and retirement that wake every waiter at once.
//!
//! # The protocol
//!
//! Each channel has one lock over its queues of parked readers and writers (and, for a buffered
//! channel, its buffer). A party that finds no counterpart enqueues an [`Entry`] and parks. The
//! entry points at a [`Waiter`] and at a value slot, both on the parked party's own stack (or in
//! its alternation's guards), as Go's runtime does with its `sudog`s: nothing is allocated per
//! communication.
//!
//! A party that arrives and finds an entry completes it under the channel's lock: it moves the
//! value into (or out of) the entry's slot, then claims the waiter with one compare-and-swap from
//! `WAITING` to the entry's guard index, and on success unparks it. A waiter registered on several
//! channels (an alternation) can be claimed once only, so exactly one guard commits; a claimer that
//! loses the swap puts the value back and tries the next entry. The claimer touches the waiter's
//! memory only while its entry is queued and the lock held (the waiter removes its entries under
//! the same locks before its frame goes away), and clones the wake handle before the swap, since a
//! claimed waiter may return at once.
//!
//! Ending a channel (poison, or retirement of the last reader or writer) claims every queued waiter
//! with `ENDED` and unparks it: no polling and no timeouts. A woken waiter looks at the channel
//! state again.

use crate::CoSlot;
use cspnet_core::{ChannelError, Deadline, Leave, LeavingEnd, end_dropped, flush_dropped_ends};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const OPEN: u8 = 0;
const RETIRED: u8 = 1;
const POISONED: u8 = 2;

/// A waiter's state while nobody has claimed it.
pub(crate) const WAITING: usize = usize::MAX;
/// Claimed because a channel it waits on ended: look at the channels again.
pub(crate) const ENDED: usize = usize::MAX - 1;
/// Claimed by the waiter itself when its deadline passed.
pub(crate) const TIMED_OUT: usize = usize::MAX - 2;

/// How to wake a parked party: a may coroutine, or a plain OS thread (such as `main`).
#[derive(Clone)]
pub(crate) enum Wake {
    Coroutine(may::coroutine::Coroutine),
    Thread(std::thread::Thread),
}

impl Wake {
    fn current() -> Wake {
        if may::coroutine::is_coroutine() {
            Wake::Coroutine(may::coroutine::current())
        } else {
            Wake::Thread(std::thread::current())
        }
    }

    pub(crate) fn unpark(self) {
        match self {
            Wake::Coroutine(co) => co.unpark(),
            Wake::Thread(t) => t.unpark(),
        }
    }
}

/// Parks the calling coroutine (never its worker thread), or the calling OS thread.
/// May return early (a stale unpark); callers re-check their condition.
pub(crate) fn park(timeout: Option<Duration>) {
    if may::coroutine::is_coroutine() {
        match timeout {
            None => may::coroutine::park(),
            // Not may's park_timeout: it can lose its wake-up (see timer.rs).
            Some(d) => crate::timer::park_coroutine_timeout(d),
        }
    } else {
        match timeout {
            None => std::thread::park(),
            Some(d) => std::thread::park_timeout(d),
        }
    }
}

/// One blocked read, write or alternation. Claimed exactly once (by a counterpart, by the end of a
/// channel, or by itself on timeout); the claim's value says what happened.
pub(crate) struct Waiter {
    state: AtomicUsize,
    wake: Wake,
}

impl Waiter {
    pub(crate) fn new() -> Waiter {
        Waiter {
            state: AtomicUsize::new(WAITING),
            wake: Wake::current(),
        }
    }

    /// Claims the waiter for `outcome`; `false` if someone else claimed it first.
    pub(crate) fn claim(&self, outcome: usize) -> bool {
        self.state
            .compare_exchange(WAITING, outcome, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Parks until claimed, or until `deadline`, when it claims itself with `TIMED_OUT`.
    pub(crate) fn wait(&self, deadline: Deadline) -> usize {
        loop {
            let state = self.state.load(Ordering::Acquire);
            if state != WAITING {
                return state;
            }
            match deadline.remaining() {
                None => park(None),
                Some(left) if left.is_zero() => {
                    if self.claim(TIMED_OUT) {
                        return TIMED_OUT;
                    }
                }
                Some(left) => park(Some(left)),
            }
        }
    }
}

/// A parked party's registration on one channel.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    waiter: *const Waiter,
    /// The guard index the waiter is claimed with (0 for a plain read or write).
    index: usize,
    /// An `Option<T>` for the channel's `T`: the value offered (writer) or the place for it (reader).
    slot: *mut (),
}

// SAFETY: an entry is only dereferenced by a holder of its channel's lock while it is queued, and
// the waiter keeps the pointees alive until it has removed its entries under that lock.
unsafe impl Send for Entry {}

impl Entry {
    pub(crate) fn new<T>(waiter: &Waiter, index: usize, slot: *mut Option<T>) -> Entry {
        Entry {
            waiter,
            index,
            slot: slot.cast(),
        }
    }

    fn is_of(&self, waiter: &Waiter) -> bool {
        std::ptr::eq(self.waiter, waiter)
    }
}

/// What a channel's lock protects (besides the typed buffer).
pub(crate) struct Queues {
    id: usize,
    pub(crate) readers: VecDeque<Entry>,
    pub(crate) writers: VecDeque<Entry>,
}

impl Queues {
    /// Removes every entry of `waiter`.
    pub(crate) fn remove(&mut self, waiter: &Waiter) {
        self.readers.retain(|e| !e.is_of(waiter));
        self.writers.retain(|e| !e.is_of(waiter));
    }
}

static NEXT_CHANNEL: AtomicUsize = AtomicUsize::new(1);

/// The part of a channel that does not depend on the payload type.
pub(crate) struct Control {
    name: Option<Box<str>>,
    id: usize,
    /// Written under the lock; read without it for a quick look.
    state: AtomicU8,
    readers: AtomicUsize,
    writers: AtomicUsize,
    queues: Mutex<Queues>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Reader,
    Writer,
}

impl Control {
    fn new(name: Option<Box<str>>) -> Self {
        let id = NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed);
        Control {
            name,
            id,
            state: AtomicU8::new(OPEN),
            readers: AtomicUsize::new(0),
            writers: AtomicUsize::new(0),
            queues: Mutex::new(Queues {
                id,
                readers: VecDeque::new(),
                writers: VecDeque::new(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Queues> {
        // Nothing panics while the lock is held, but never let a poisoned lock stop the network.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` while open, or the error every operation on the channel now fails with.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), ChannelError> {
        match self.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            RETIRED => Err(ChannelError::Retired),
            _ => Err(ChannelError::Poisoned),
        }
    }

    /// Ends the channel and wakes every waiter. Poison is final and overrides retirement.
    fn end(&self, to: u8) {
        let mut guard = self.lock();
        let queues = &mut *guard;
        if self.state.load(Ordering::Acquire) < to {
            self.state.store(to, Ordering::Release);
        }
        let mut wakes = Vec::new();
        for entry in queues.readers.drain(..).chain(queues.writers.drain(..)) {
            // SAFETY: the entry was queued and we hold the lock, so its waiter is alive.
            let waiter = unsafe { &*entry.waiter };
            let wake = waiter.wake.clone();
            if waiter.claim(ENDED) {
                wakes.push(wake);
            }
        }
        drop(guard);
        for wake in wakes {
            wake.unpark();
        }
    }

    pub(crate) fn poison(&self) {
        self.end(POISONED);
    }

    fn join(&self, role: Role) {
        self.count(role).fetch_add(1, Ordering::AcqRel);
    }

    fn leave(&self, role: Role, how: Leave) {
        if how == Leave::Poison {
            self.poison();
        }
        if self.count(role).fetch_sub(1, Ordering::AcqRel) == 1 {
            self.end(RETIRED);
        }
    }

    fn count(&self, role: Role) -> &AtomicUsize {
        match role {
            Role::Reader => &self.readers,
            Role::Writer => &self.writers,
        }
    }
}

/// How many dropped ends, program-wide, have not left their channels yet.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Retires the ends the current process dropped since its last operation (see
/// [`flush_dropped_ends`]). When no dropped end is pending anywhere, which is the usual case, it
/// skips the lookup of the process context. A process's own pending ends were counted by itself
/// before this call, so it never skips its own.
#[inline]
pub(crate) fn flush() {
    if PENDING.load(Ordering::Acquire) != 0 {
        flush_dropped_ends::<CoSlot>();
    }
}

/// A dropped end on its way out of the channel.
struct Departure {
    control: Arc<Control>,
    role: Role,
}

impl LeavingEnd for Departure {
    fn leave(self: Box<Self>, how: Leave) {
        self.control.leave(self.role, how);
    }
}

impl Drop for Departure {
    fn drop(&mut self) {
        PENDING.fetch_sub(1, Ordering::AcqRel);
    }
}

fn departed(control: &Arc<Control>, role: Role) {
    PENDING.fetch_add(1, Ordering::AcqRel);
    end_dropped::<CoSlot>(Box::new(Departure {
        control: Arc::clone(control),
        role,
    }));
}

/// A channel's shared state: the untyped control and the typed buffer that its lock protects.
pub(crate) struct Chan<T> {
    pub(crate) control: Arc<Control>,
    capacity: usize,
    buffer: UnsafeCell<VecDeque<T>>,
}

// SAFETY: the buffer is only touched while holding `control`'s lock (see `Chan::buffer`), so
// sharing a `Chan<T>` between threads only ever moves `T` values between them.
unsafe impl<T: Send> Sync for Chan<T> {}

impl<T> Chan<T> {
    /// The buffer, given the channel's locked queues as proof that the lock is held.
    ///
    /// # Safety
    ///
    /// `queues` must be the guard of this channel's own lock.
    pub(crate) unsafe fn buffer<'g>(&'g self, queues: &'g mut Queues) -> &'g mut VecDeque<T> {
        debug_assert_eq!(queues.id, self.control.id, "the wrong channel's lock");
        // SAFETY: the caller holds this channel's lock, and the `&mut Queues` borrow keeps this
        // the only reference to the buffer while it lives.
        unsafe { &mut *self.buffer.get() }
    }

    /// Takes a value now if one is there: from the buffer (refilled from a parked writer) or
    /// straight from a parked writer. `wake` receives the writer to unpark after unlocking.
    ///
    /// # Safety
    ///
    /// `queues` must be the guard of this channel's own lock.
    pub(crate) unsafe fn try_take(
        &self,
        queues: &mut Queues,
        wake: &mut Option<Wake>,
    ) -> Option<T> {
        // SAFETY: the caller holds this channel's lock.
        if let Some(v) = unsafe { self.buffer(queues) }.pop_front() {
            // SAFETY: as above; the entries in our queue are alive while we hold the lock.
            if let Some(refill) = unsafe { claim_writer::<T>(&mut queues.writers, wake) } {
                // SAFETY: as above.
                unsafe { self.buffer(queues) }.push_back(refill);
            }
            return Some(v);
        }
        // SAFETY: as above.
        unsafe { claim_writer::<T>(&mut queues.writers, wake) }
    }

    /// Puts a value now if it can go: to a parked reader, or into the buffer if it has room.
    /// Gives it back otherwise.
    ///
    /// # Safety
    ///
    /// `queues` must be the guard of this channel's own lock.
    pub(crate) unsafe fn try_put(
        &self,
        queues: &mut Queues,
        mut value: T,
        wake: &mut Option<Wake>,
    ) -> Result<(), T> {
        while let Some(entry) = queues.readers.pop_front() {
            // SAFETY: the entry was queued on this `Chan<T>` (so its slot is an `Option<T>`) and
            // we hold the lock, so the slot and the waiter are alive.
            let (slot, waiter) = unsafe { (&mut *entry.slot.cast::<Option<T>>(), &*entry.waiter) };
            // The value goes in before the claim: once claimed, the reader may run at once.
            *slot = Some(value);
            let w = waiter.wake.clone();
            if waiter.claim(entry.index) {
                *wake = Some(w);
                return Ok(());
            }
            // Claimed elsewhere (another guard, an end, a timeout): it never reads this slot.
            value = slot.take().expect("the value just put there");
        }
        // SAFETY: the caller holds this channel's lock.
        let buffer = unsafe { self.buffer(queues) };
        if buffer.len() < self.capacity {
            buffer.push_back(value);
            Ok(())
        } else {
            Err(value)
        }
    }

    /// Whether the buffer holds a value (a retired channel stays readable until drained).
    ///
    /// # Safety
    ///
    /// `queues` must be the guard of this channel's own lock.
    pub(crate) unsafe fn has_buffered(&self, queues: &mut Queues) -> bool {
        // SAFETY: the caller holds this channel's lock.
        !unsafe { self.buffer(queues) }.is_empty()
    }
}

/// Takes the value of the first parked writer that can still be claimed.
///
/// # Safety
///
/// `writers` must be the writer queue of a `Chan<T>` whose lock the caller holds.
unsafe fn claim_writer<T>(writers: &mut VecDeque<Entry>, wake: &mut Option<Wake>) -> Option<T> {
    while let Some(entry) = writers.pop_front() {
        // SAFETY: queued on a `Chan<T>` whose lock we hold: slot and waiter are alive.
        let (slot, waiter) = unsafe { (&mut *entry.slot.cast::<Option<T>>(), &*entry.waiter) };
        // The value comes out before the claim: once claimed, the writer may return at once.
        let value = slot.take();
        let w = waiter.wake.clone();
        if waiter.claim(entry.index) {
            *wake = Some(w);
            return value;
        }
        *slot = value;
    }
    None
}

/// An any-to-any channel: any number of processes read from it and write to it.
///
/// Unbuffered ([`Channel::new`]), a write completes only when a reader has taken the value (a
/// rendezvous, handed over directly between the two coroutines). Buffered
/// ([`Channel::with_buffer`]), it holds up to `n` values.
///
/// ```
/// use cspnet_coroutines::{Channel, parallel, process};
///
/// let ch = Channel::<u32>::new();
/// let (r, w) = (ch.reader(), ch.writer());
/// let out = parallel([
///     process(move || { w.write(42)?; Ok(0) }),
///     process(move || r.read()),
/// ]).unwrap();
/// assert_eq!(out, vec![Ok(0), Ok(42)]);
/// ```
///
/// Payloads move between coroutines on different worker threads, so they must be `Send`:
///
/// ```compile_fail
/// let ch = cspnet_coroutines::Channel::<std::rc::Rc<u32>>::new();
/// ```
pub struct Channel<T> {
    chan: Arc<Chan<T>>,
}

impl<T: Send + 'static> Channel<T> {
    /// An unbuffered channel: every write is a rendezvous with a reader.
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<String>::new();
    /// assert_eq!(ch.name(), None);
    /// ```
    pub fn new() -> Self {
        Self::build(None, 0)
    }

    /// An unbuffered channel with a name (shown in `Debug` output and traces).
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<u8>::named("requests");
    /// assert_eq!(ch.name(), Some("requests"));
    /// ```
    pub fn named(name: &str) -> Self {
        Self::build(Some(name.into()), 0)
    }

    /// A channel that holds up to `n` values before writers wait (`0` is a rendezvous).
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(2);
    /// let w = ch.writer();
    /// w.write(1).unwrap();
    /// w.write(2).unwrap(); // both fit without a reader
    /// # let _r = ch.reader();
    /// ```
    pub fn with_buffer(n: usize) -> Self {
        Self::build(None, n)
    }

    fn build(name: Option<Box<str>>, n: usize) -> Self {
        Channel {
            chan: Arc::new(Chan {
                control: Arc::new(Control::new(name)),
                capacity: n,
                buffer: UnsafeCell::new(VecDeque::with_capacity(n.min(64))),
            }),
        }
    }
}

impl<T: Send + 'static> Default for Channel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Channel<T> {
    /// Joins the channel as a new reader end.
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(5).unwrap();
    /// assert_eq!(r.read(), Ok(5));
    /// ```
    pub fn reader(&self) -> Reader<T> {
        self.chan.control.join(Role::Reader);
        Reader {
            chan: Arc::clone(&self.chan),
            left: false,
        }
    }

    /// Joins the channel as a new writer end.
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(1);
    /// let w = ch.writer();
    /// # let _r = ch.reader();
    /// w.write(5).unwrap();
    /// ```
    pub fn writer(&self) -> Writer<T> {
        self.chan.control.join(Role::Writer);
        Writer {
            chan: Arc::clone(&self.chan),
            left: false,
        }
    }

    /// Poisons the channel: every pending and later operation on it fails with
    /// [`ChannelError::Poisoned`].
    ///
    /// ```
    /// use cspnet_coroutines::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let r = ch.reader();
    /// ch.poison();
    /// assert_eq!(r.read(), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        self.chan.control.poison();
    }

    /// The channel's name, if it was made with [`Channel::named`].
    ///
    /// ```
    /// assert_eq!(cspnet_coroutines::Channel::<u8>::named("x").name(), Some("x"));
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.chan.control.name.as_deref()
    }
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_channel(f, "Channel", &self.chan.control)
    }
}

fn fmt_channel(f: &mut fmt::Formatter<'_>, what: &str, c: &Control) -> fmt::Result {
    f.debug_struct(what)
        .field("name", &c.name)
        .field("state", &c.check().err())
        .field("readers", &c.readers.load(Ordering::Relaxed))
        .field("writers", &c.writers.load(Ordering::Relaxed))
        .finish()
}

/// A reader end of a [`Channel`]. Each clone is one more reader; dropping or [`retire`](Self::retire)
/// leaves.
///
/// ```
/// use cspnet_coroutines::{Channel, ChannelError};
/// let ch = Channel::<u32>::with_buffer(2);
/// let (r, w) = (ch.reader(), ch.writer());
/// w.write(1).unwrap();
/// drop(w); // the last writer left: the channel retires once drained
/// assert_eq!(r.read(), Ok(1));
/// assert_eq!(r.read(), Err(ChannelError::Retired));
/// ```
pub struct Reader<T> {
    pub(crate) chan: Arc<Chan<T>>,
    left: bool,
}

impl<T> Reader<T> {
    /// Waits for a value. Fails with `Poisoned` once the channel is poisoned, and with `Retired`
    /// once every writer has left and nothing is buffered. A waiting coroutine is parked; its
    /// worker thread runs other coroutines meanwhile.
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<&str>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write("hi").unwrap();
    /// assert_eq!(r.read(), Ok("hi"));
    /// ```
    pub fn read(&self) -> Result<T, ChannelError> {
        flush();
        let chan = &*self.chan;
        loop {
            let mut queues = chan.control.lock();
            match chan.control.check() {
                Ok(()) => {}
                // A retired channel still gives up what it buffered.
                Err(ChannelError::Retired) => {
                    // SAFETY: `queues` is this channel's lock.
                    let value = unsafe { chan.buffer(&mut queues) }.pop_front();
                    return value.ok_or(ChannelError::Retired);
                }
                Err(e) => return Err(e),
            }
            let mut wake = None;
            // SAFETY: `queues` is this channel's lock.
            if let Some(v) = unsafe { chan.try_take(&mut queues, &mut wake) } {
                drop(queues);
                if let Some(w) = wake {
                    w.unpark();
                }
                return Ok(v);
            }
            let waiter = Waiter::new();
            let mut slot: Option<T> = None;
            let slot_ptr: *mut Option<T> = &mut slot;
            queues.readers.push_back(Entry::new(&waiter, 0, slot_ptr));
            drop(queues);
            // Claimed with 0, the writer's value is in the slot (its entry was dequeued by the
            // claimer); with ENDED, the channel ended and dequeued it: look again.
            if waiter.wait(Deadline::Never) == 0 {
                // SAFETY: the entry is gone from every queue, so nothing else touches the slot.
                return Ok(unsafe { (*slot_ptr).take() }.expect("a claimed reader got a value"));
            }
        }
    }

    /// Poisons the channel (the end stays usable, but every operation now fails).
    ///
    /// ```
    /// use cspnet_coroutines::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// r.poison();
    /// assert_eq!(w.write(1), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        self.chan.control.poison();
    }

    /// Leaves the channel; when this was the last reader, the channel is retired.
    ///
    /// ```
    /// use cspnet_coroutines::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// r.retire();
    /// assert_eq!(w.write(1), Err(ChannelError::Retired));
    /// ```
    pub fn retire(mut self) {
        self.left = true;
        self.chan.control.leave(Role::Reader, Leave::Retire);
    }

    /// Iterates over the values read, ending when the channel retires. A poisoned channel yields
    /// one `Err(Poisoned)` and then ends, so `?` in the loop passes the poison on.
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(3);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// for i in 0..3 { w.write(i).unwrap(); }
    /// drop(w);
    /// let got: Result<Vec<u32>, _> = r.iter().collect();
    /// assert_eq!(got, Ok(vec![0, 1, 2]));
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            reader: self,
            done: false,
        }
    }
}

impl<T> Clone for Reader<T> {
    fn clone(&self) -> Self {
        self.chan.control.join(Role::Reader);
        Reader {
            chan: Arc::clone(&self.chan),
            left: false,
        }
    }
}

impl<T> Drop for Reader<T> {
    fn drop(&mut self) {
        if !self.left {
            departed(&self.chan.control, Role::Reader);
        }
    }
}

impl<T> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_channel(f, "Reader", &self.chan.control)
    }
}

/// A writer end of a [`Channel`]. Each clone is one more writer; dropping or
/// [`retire`](Self::retire) leaves.
///
/// ```
/// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(1);
/// let (r, w) = (ch.reader(), ch.writer());
/// w.write(9).unwrap();
/// assert_eq!(r.read(), Ok(9));
/// ```
pub struct Writer<T> {
    pub(crate) chan: Arc<Chan<T>>,
    left: bool,
}

impl<T> Writer<T> {
    /// Writes a value: waits until a reader has taken it (unbuffered) or the buffer has room.
    /// Fails with `Poisoned` once the channel is poisoned, and with `Retired` once every reader has
    /// left; then the value was not delivered.
    ///
    /// ```
    /// use cspnet_coroutines::{Channel, parallel, process};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// let out = parallel([
    ///     process(move || w.write(3).map(|()| 0)),
    ///     process(move || r.read()),
    /// ]).unwrap();
    /// assert_eq!(out[1], Ok(3));
    /// ```
    pub fn write(&self, value: T) -> Result<(), ChannelError> {
        flush();
        let chan = &*self.chan;
        let mut value = value;
        loop {
            let mut queues = chan.control.lock();
            chan.control.check()?;
            let mut wake = None;
            // SAFETY: `queues` is this channel's lock.
            match unsafe { chan.try_put(&mut queues, value, &mut wake) } {
                Ok(()) => {
                    drop(queues);
                    if let Some(w) = wake {
                        w.unpark();
                    }
                    return Ok(());
                }
                Err(v) => value = v,
            }
            let waiter = Waiter::new();
            let mut slot = Some(value);
            let slot_ptr: *mut Option<T> = &mut slot;
            queues.writers.push_back(Entry::new(&waiter, 0, slot_ptr));
            drop(queues);
            if waiter.wait(Deadline::Never) == 0 {
                return Ok(());
            }
            // Ended: the channel dequeued the entry unclaimed, so the value is still ours.
            // SAFETY: the entry is gone from every queue, so nothing else touches the slot.
            value = unsafe { (*slot_ptr).take() }.expect("an unclaimed writer keeps its value");
        }
    }

    /// Poisons the channel (the end stays usable, but every operation now fails).
    ///
    /// ```
    /// use cspnet_coroutines::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.poison();
    /// assert_eq!(r.read(), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        self.chan.control.poison();
    }

    /// Leaves the channel; when this was the last writer, the channel is retired (readers still
    /// get what was buffered).
    ///
    /// ```
    /// use cspnet_coroutines::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.retire();
    /// assert_eq!(r.read(), Err(ChannelError::Retired));
    /// ```
    pub fn retire(mut self) {
        self.left = true;
        self.chan.control.leave(Role::Writer, Leave::Retire);
    }
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Self {
        self.chan.control.join(Role::Writer);
        Writer {
            chan: Arc::clone(&self.chan),
            left: false,
        }
    }
}

impl<T> Drop for Writer<T> {
    fn drop(&mut self) {
        if !self.left {
            departed(&self.chan.control, Role::Writer);
        }
    }
}

impl<T> fmt::Debug for Writer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_channel(f, "Writer", &self.chan.control)
    }
}

/// Iterator over the values of a [`Reader`]; see [`Reader::iter`].
///
/// ```
/// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(1);
/// let (r, w) = (ch.reader(), ch.writer());
/// w.write(1).unwrap();
/// w.retire();
/// assert_eq!(r.iter().collect::<Vec<_>>(), vec![Ok(1)]);
/// ```
#[derive(Debug)]
pub struct Iter<'a, T> {
    reader: &'a Reader<T>,
    done: bool,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = Result<T, ChannelError>;

    fn next(&mut self) -> Option<Self::Item> {
        cspnet_core::next_in_stream(|| self.reader.read(), &mut self.done)
    }
}

/// Owning iterator over the values of a [`Reader`]; see [`Reader::iter`].
///
/// ```
/// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(1);
/// let (r, w) = (ch.reader(), ch.writer());
/// w.write(1).unwrap();
/// w.retire();
/// let all: Vec<_> = r.into_iter().collect();
/// assert_eq!(all, vec![Ok(1)]);
/// ```
#[derive(Debug)]
pub struct IntoIter<T> {
    reader: Reader<T>,
    done: bool,
}

impl<T> Iterator for IntoIter<T> {
    type Item = Result<T, ChannelError>;

    fn next(&mut self) -> Option<Self::Item> {
        cspnet_core::next_in_stream(|| self.reader.read(), &mut self.done)
    }
}

impl<'a, T> IntoIterator for &'a Reader<T> {
    type Item = Result<T, ChannelError>;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Reader<T> {
    type Item = Result<T, ChannelError>;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter {
            reader: self,
            done: false,
        }
    }
}
