//! The coroutines engine's channel, on may's parking: a direct hand-off between a parked party and
//! the one that arrives, with poison and retirement that wake every waiter at once.
//!
//! # The protocol
//!
//! Each channel has one lock over its queues of parked readers and writers, its membership (and,
//! for a buffered channel, its buffer). A party that finds no counterpart enqueues an [`Entry`]
//! and parks. The entry points at a [`Waiter`] and at a value slot, both on the parked party's own
//! stack (or in its alternation's guards), as Go's runtime does with its `sudog`s: nothing is
//! allocated per communication.
//!
//! A party that arrives and finds an entry completes it under the channel's lock: it moves the
//! value into (or out of) the entry's slot, then claims the waiter with one compare-and-swap from
//! [`Claim::Waiting`] to [`Claim::Fired`] with the entry's guard index, and on success unparks it
//! (core's [`ClaimWord`], whose protocol core model-checks with loom). A waiter registered on several
//! channels (an alternation) can be claimed once only, so exactly one guard commits; a claimer that
//! loses the swap puts the value back and tries the next entry. The claimer touches the waiter's
//! memory only while its entry is queued and the lock held (the waiter removes its entries under
//! the same locks before its frame goes away), and clones the wake handle before the swap, since a
//! claimed waiter may return at once.
//!
//! Ending a channel (poison, or retirement of the last reader or writer, as core's [`Membership`]
//! rules) claims every queued waiter with [`Claim::Ended`] and unparks it: no polling and no timeouts. A
//! woken waiter looks at the channel state again.
//!
//! # Extended rendezvous
//!
//! An extended reader holds its writer with a [`Hold`]: it releases it when its `Held` is
//! dropped. Whoever completes the pair passes the hold over under the channel lock. A writer that
//! arrives at a parked extended reader (whose entry points at the reader's hold) takes a clone of
//! the hold before the claim and waits on it after. An extended reader that arrives at a parked
//! writer puts its hold in the writer's own [`HoldCell`] (per entry, so two claimers never share
//! one) before the claim, and takes it back if the claim fails; the writer looks in its cell once
//! claimed. On a buffered channel nobody is held.

use crate::CoSlot;
use cspnet_core::{
    ChannelError, ChannelState, Claim, ClaimWord, Deadline, Leave, LeavingEnd, Membership,
    OnChannel, Role, blocking_raw, end_dropped, flush_dropped_ends,
};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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
    state: ClaimWord,
    wake: Wake,
}

impl Waiter {
    pub(crate) fn new() -> Waiter {
        Waiter {
            state: ClaimWord::new(),
            wake: Wake::current(),
        }
    }

    /// Claims the waiter for `outcome`; `false` if someone else claimed it first.
    pub(crate) fn claim(&self, outcome: Claim) -> bool {
        self.state.claim(outcome)
    }

    /// Parks until claimed, or until `deadline`, when it claims itself with `TimedOut`.
    pub(crate) fn wait(&self, deadline: Deadline) -> Claim {
        loop {
            let state = self.state.load(Ordering::Acquire);
            if !state.is_waiting() {
                return state;
            }
            match deadline.remaining() {
                None => park(None),
                Some(left) if left.is_zero() => {
                    if self.claim(Claim::TimedOut) {
                        return Claim::TimedOut;
                    }
                }
                Some(left) => park(Some(left)),
            }
        }
    }
}

/// Where a writer waits while an extended reader runs its action on the writer's value.
pub(crate) struct Hold {
    /// Released yet, and who to wake then.
    state: Mutex<(bool, Option<Wake>)>,
}

impl Hold {
    pub(crate) fn new() -> Arc<Hold> {
        Arc::new(Hold {
            state: Mutex::new((false, None)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (bool, Option<Wake>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reader is done: the writer goes on.
    pub(crate) fn release(&self) {
        let wake = {
            let mut s = self.lock();
            s.0 = true;
            s.1.take()
        };
        if let Some(w) = wake {
            w.unpark();
        }
    }

    /// Parks the writer until the reader releases it.
    pub(crate) fn wait(&self) {
        loop {
            {
                let mut s = self.lock();
                if s.0 {
                    return;
                }
                s.1 = Some(Wake::current());
            }
            park(None);
        }
    }
}

/// Keeps the writer of an extended read waiting until dropped (the engine's `Carries::Held`).
pub struct Held(pub(crate) Option<Arc<Hold>>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.release();
        }
    }
}

/// A parked writer's place for the hold of the extended reader that takes its value: an
/// `Arc<Hold>` as a raw pointer, or null. Only the claimer of the writer's entry puts one there
/// (before its claim, and takes it back if the claim fails), and the writer looks only once that
/// claim succeeded, so the claim word orders the two.
pub(crate) struct HoldCell(AtomicPtr<Hold>);

impl HoldCell {
    pub(crate) fn new() -> HoldCell {
        HoldCell(AtomicPtr::new(std::ptr::null_mut()))
    }

    fn put(&self, hold: &Arc<Hold>) {
        let old = self.0.swap(
            Arc::into_raw(Arc::clone(hold)).cast_mut(),
            Ordering::Relaxed,
        );
        debug_assert!(old.is_null(), "one claimer at a time fills a cell");
    }

    fn take(&self) -> Option<Arc<Hold>> {
        let p = self.0.swap(std::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: a non-null pointer came from `Arc::into_raw` in `put`, and the swap makes this
        // its only taker.
        (!p.is_null()).then(|| unsafe { Arc::from_raw(p) })
    }

    /// After the writer's entry was claimed: waits on the hold its claimer left, if any.
    pub(crate) fn wait(&self) {
        if let Some(h) = self.take() {
            h.wait();
        }
    }
}

impl Drop for HoldCell {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// A parked party's registration on one channel.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    waiter: *const Waiter,
    /// What the waiter is claimed with when this entry completes: its guard, `Fired(0)` for a
    /// plain read or write.
    fired: Claim,
    /// An `Option<T>` for the channel's `T`: the value offered (writer) or the place for it (reader).
    slot: *mut (),
    /// Null, or in a reader's entry the reader's [`Hold`] (its writer waits on it), in a writer's
    /// entry the writer's [`HoldCell`] (its claimer leaves a hold there): the queue says which.
    hold: *const (),
}

// SAFETY: an entry is only dereferenced by a holder of its channel's lock while it is queued, and
// the waiter keeps the pointees alive until it has removed its entries under that lock.
unsafe impl Send for Entry {}

impl Entry {
    pub(crate) fn new<T>(waiter: &Waiter, index: usize, slot: *mut Option<T>) -> Entry {
        Entry {
            waiter,
            fired: Claim::fired(index),
            slot: slot.cast(),
            hold: std::ptr::null(),
        }
    }

    /// A parked extended reader's entry: a writer that completes it waits on `hold`.
    pub(crate) fn holding_writer(mut self, hold: &Arc<Hold>) -> Entry {
        self.hold = Arc::as_ptr(hold).cast();
        self
    }

    /// A parked writer's entry: an extended reader that claims it leaves its hold in `cell`.
    pub(crate) fn held_in(mut self, cell: &HoldCell) -> Entry {
        self.hold = std::ptr::from_ref(cell).cast();
        self
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
    /// Waiters in `Carries::wait_word` (each on its own stack, kept there until claimed).
    watchers: Vec<*const Waiter>,
    members: Membership,
}

impl Queues {
    /// Removes every entry of `waiter`.
    pub(crate) fn remove(&mut self, waiter: &Waiter) {
        self.readers.retain(|e| !e.is_of(waiter));
        self.writers.retain(|e| !e.is_of(waiter));
    }
}

static NEXT_CHANNEL: AtomicUsize = AtomicUsize::new(1);

/// The part of a channel that does not depend on the payload type: what an alternation locks.
pub(crate) struct Control {
    name: Option<Box<str>>,
    id: usize,
    /// A [`ChannelState`], written under the lock (it only moves forward); read without it for a
    /// quick look.
    state: AtomicU8,
    queues: Mutex<Queues>,
    /// Core's word (`Carries::word`); a waiter looks at it under the lock, and a waker takes the
    /// lock after changing it, so no wake is lost.
    pub(crate) word: AtomicU64,
}

// SAFETY: the only non-`Send` part is `Queues::watchers`, raw pointers to waiters that are touched
// only under the lock while the waiter keeps them alive (it waits until claimed).
unsafe impl Send for Queues {}

impl Control {
    fn new(name: Option<&str>) -> Self {
        let id = NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed);
        Control {
            name: name.map(Into::into),
            id,
            state: AtomicU8::new(ChannelState::Open as u8),
            queues: Mutex::new(Queues {
                id,
                readers: VecDeque::new(),
                writers: VecDeque::new(),
                watchers: Vec::new(),
                members: Membership::default(),
            }),
            word: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Queues> {
        // Nothing panics while the lock is held, but never let a poisoned lock stop the network.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub(crate) fn state(&self) -> ChannelState {
        ChannelState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves the channel to `to` (never back: poison is final and overrides retirement) and wakes
    /// every waiter, which then looks at the state again.
    fn end(&self, mut guard: MutexGuard<'_, Queues>, to: ChannelState) {
        self.state.fetch_max(to as u8, Ordering::AcqRel);
        let queues = &mut *guard;
        let mut wakes = Vec::new();
        let waiters = queues.readers.drain(..).chain(queues.writers.drain(..));
        let waiters: Vec<*const Waiter> = waiters
            .map(|e| e.waiter)
            .chain(queues.watchers.drain(..))
            .collect();
        for waiter in waiters {
            // SAFETY: the waiter was queued and we hold the lock, so it is alive.
            let waiter = unsafe { &*waiter };
            let wake = waiter.wake.clone();
            if waiter.claim(Claim::Ended) {
                wakes.push(wake);
            }
        }
        drop(guard);
        for wake in wakes {
            wake.unpark();
        }
    }

    pub(crate) fn poison(&self) {
        self.end(self.lock(), ChannelState::Poisoned);
    }

    /// `Carries::wait_word`.
    pub(crate) fn wait_word(&self, done: &mut dyn FnMut(u64) -> bool) -> Result<(), ChannelError> {
        let mut deadlocked = false;
        let look = |done: &mut dyn FnMut(u64) -> bool, deadlocked: bool| {
            // Poison wins, also over a change of the word that came before it.
            if self.state() == ChannelState::Poisoned {
                Some(Err(poisoned(deadlocked)))
            } else if done(self.word.load(Ordering::SeqCst)) {
                Some(Ok(()))
            } else {
                None
            }
        };
        if let Some(r) = look(done, false) {
            return r;
        }
        if may::coroutine::is_coroutine() {
            // Let the coroutines that are ready run first: when they are the ones that change
            // the word (the rest of a barrier's members arriving), this one finds it changed
            // without parking, and the waker has one fewer to unpark.
            may::coroutine::yield_now();
        }
        loop {
            // A first look without the lock: a woken waiter usually finds the word changed, and
            // many waking at once would otherwise queue for the lock.
            if let Some(r) = look(done, deadlocked) {
                return r;
            }
            let mut queues = self.lock();
            if let Some(r) = look(done, deadlocked) {
                return r;
            }
            let waiter = Waiter::new();
            queues.watchers.push(&waiter);
            drop(queues);
            // Claimed (and removed from `watchers`) by `wake_word` or by the channel's end.
            deadlocked |= blocked(self, Role::Handle, || waiter.wait(Deadline::Never)).1;
        }
    }

    /// `Carries::wake_word`.
    pub(crate) fn wake_word(&self) {
        let mut wakes = Vec::new();
        {
            let mut queues = self.lock();
            for waiter in queues.watchers.drain(..) {
                // SAFETY: queued, and we hold the lock: the waiter is alive.
                let waiter = unsafe { &*waiter };
                let wake = waiter.wake.clone();
                if waiter.claim(Claim::fired(0)) {
                    wakes.push(wake);
                }
            }
        }
        for wake in wakes {
            wake.unpark();
        }
    }

    pub(crate) fn join(&self, role: Role) {
        self.lock().members.join(role);
    }

    pub(crate) fn leave(&self, role: Role, how: Leave) {
        let mut queues = self.lock();
        if let Some(to) = queues.members.leave(role, how) {
            self.end(queues, to);
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// Parks in `wait` on `control` as `role` (`Role::Handle`: a barrier's word) as a blocked
/// operation that core's deadlock detector can end, by poisoning the channel; `true` with the
/// claim when it did.
pub(crate) fn blocked(
    control: &Control,
    role: Role,
    wait: impl FnOnce() -> Claim,
) -> (Claim, bool) {
    let poison = || control.poison();
    blocking_raw::<CoSlot, Claim>(&OnChannel::new(control.name(), role, &poison), wait)
}

/// The error of an operation that found its channel poisoned: a deadlock when the detector
/// poisoned it to end this operation's wait.
pub(crate) fn poisoned(deadlocked: bool) -> ChannelError {
    if deadlocked {
        ChannelError::Deadlock
    } else {
        ChannelError::Poisoned
    }
}

/// How many dropped ends, program-wide, have not left their channels yet.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Retires the ends the current process dropped since its last operation (see
/// [`flush_dropped_ends`]). When no dropped end is pending anywhere, which is the usual case, it
/// skips the lookup of the process context in may's coroutine-local storage: that lookup is a
/// noticeable part of a channel hand-off. A process's own pending ends were counted by itself
/// before this call, so it never skips its own.
#[inline]
pub(crate) fn flush() {
    if PENDING.load(Ordering::Acquire) != 0 {
        flush_dropped_ends::<CoSlot>();
    }
}

/// A member's handle was dropped: as core's default (`Carries::dropped`), but each end on its way
/// out is counted in [`PENDING`], for [`flush`].
pub(crate) fn dropped<T: Send + 'static>(chan: &Arc<Chan<T>>, role: Role) {
    match role {
        Role::Handle => chan.control.leave(role, Leave::Retire),
        Role::Reader | Role::Writer => {
            PENDING.fetch_add(1, Ordering::AcqRel);
            end_dropped::<CoSlot>(Box::new(Departure {
                chan: Arc::clone(chan),
                role,
            }));
        }
    }
}

/// A dropped end on its way out of the channel; counted in [`PENDING`] while it exists.
struct Departure<T> {
    chan: Arc<Chan<T>>,
    role: Role,
}

impl<T: Send> LeavingEnd for Departure<T> {
    fn leave(self: Box<Self>, how: Leave) {
        self.chan.control.leave(self.role, how);
    }
    fn held(&self) -> Option<cspnet_core::HeldEnd> {
        Some(cspnet_core::HeldEnd::new(
            self.chan.control.name(),
            self.role,
        ))
    }
}

impl<T> Drop for Departure<T> {
    fn drop(&mut self) {
        PENDING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The coroutines engine's channel of `T`: the untyped control and the typed buffer that its lock
/// protects. Handles share it through an `Arc`.
pub struct Chan<T> {
    pub(crate) control: Control,
    capacity: usize,
    buffer: UnsafeCell<VecDeque<T>>,
}

// SAFETY: the buffer is only touched while holding `control`'s lock (see `Chan::buffer`), so
// sharing a `Chan<T>` between threads only ever moves `T` values between them.
unsafe impl<T: Send> Sync for Chan<T> {}

impl<T> Chan<T> {
    pub(crate) fn new(name: Option<&str>, capacity: usize) -> Self {
        Chan {
            control: Control::new(name),
            capacity,
            buffer: UnsafeCell::new(VecDeque::with_capacity(capacity.min(64))),
        }
    }

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
        hold: Option<&Arc<Hold>>,
    ) -> Option<T> {
        // SAFETY: the caller holds this channel's lock.
        if let Some(v) = unsafe { self.buffer(queues) }.pop_front() {
            // SAFETY: as above; the entries in our queue are alive while we hold the lock.
            if let Some(refill) = unsafe { claim_writer::<T>(&mut queues.writers, wake, None) } {
                // SAFETY: as above.
                unsafe { self.buffer(queues) }.push_back(refill);
            }
            return Some(v);
        }
        // Only a rendezvous holds its writer.
        let hold = hold.filter(|_| self.capacity == 0);
        // SAFETY: as above.
        unsafe { claim_writer::<T>(&mut queues.writers, wake, hold) }
    }

    /// Whether a value taken from this channel was handed over (so its writer can be held).
    pub(crate) fn is_rendezvous(&self) -> bool {
        self.capacity == 0
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
        held: &mut Option<Arc<Hold>>,
    ) -> Result<(), T> {
        while let Some(entry) = queues.readers.pop_front() {
            // SAFETY: the entry was queued on this `Chan<T>` (so its slot is an `Option<T>`) and
            // we hold the lock, so the slot and the waiter are alive.
            let (slot, waiter) = unsafe { (&mut *entry.slot.cast::<Option<T>>(), &*entry.waiter) };
            // The value goes in before the claim: once claimed, the reader may run at once. So
            // does our share of an extended reader's hold, which it may release at once.
            *slot = Some(value);
            let hold = if !entry.hold.is_null() && self.capacity == 0 {
                let h = entry.hold.cast::<Hold>();
                // SAFETY: a reader entry's `hold` comes from an `Arc<Hold>` that the parked reader
                // keeps while its entry is queued, and the entry is ours under the lock.
                Some(unsafe {
                    Arc::increment_strong_count(h);
                    Arc::from_raw(h)
                })
            } else {
                None
            };
            let w = waiter.wake.clone();
            if waiter.claim(entry.fired) {
                *wake = Some(w);
                *held = hold;
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

    /// Waits for a value, parking the coroutine (or blocking the plain thread) until a writer
    /// hands one over. A retired channel still gives up what it buffered.
    #[inline]
    pub(crate) fn read(&self) -> Result<T, ChannelError> {
        self.take(None)
    }

    /// A read that holds the writer until the returned [`Held`] is dropped.
    pub(crate) fn read_held(&self) -> Result<(T, Held), ChannelError> {
        let hold = Hold::new();
        let value = self.take(Some(&hold))?;
        // A buffered value's writer went on long ago; nobody waits on the hold then.
        Ok((value, Held(Some(hold))))
    }

    #[inline(always)]
    fn take(&self, hold: Option<&Arc<Hold>>) -> Result<T, ChannelError> {
        let mut deadlocked = false;
        loop {
            let mut queues = self.control.lock();
            match self.control.state() {
                ChannelState::Open => {}
                ChannelState::Retired => {
                    // SAFETY: `queues` is this channel's lock.
                    let value = unsafe { self.buffer(&mut queues) }.pop_front();
                    return value.ok_or(ChannelError::Retired);
                }
                ChannelState::Poisoned => return Err(poisoned(deadlocked)),
            }
            let mut wake = None;
            // SAFETY: `queues` is this channel's lock.
            if let Some(v) = unsafe { self.try_take(&mut queues, &mut wake, hold) } {
                drop(queues);
                if let Some(w) = wake {
                    w.unpark();
                }
                return Ok(v);
            }
            let waiter = Waiter::new();
            let mut slot: Option<T> = None;
            let slot_ptr: *mut Option<T> = &mut slot;
            let entry = Entry::new(&waiter, 0, slot_ptr);
            queues
                .readers
                .push_back(hold.map_or(entry, |h| entry.holding_writer(h)));
            drop(queues);
            // Fired, the writer's value is in the slot (its entry was dequeued by the claimer);
            // Ended, the channel ended and dequeued it: look again.
            let (claim, ended) =
                blocked(&self.control, Role::Reader, || waiter.wait(Deadline::Never));
            deadlocked |= ended;
            if claim == Claim::Fired(0) {
                // SAFETY: the entry is gone from every queue, so nothing else touches the slot.
                return Ok(unsafe { (*slot_ptr).take() }.expect("a claimed reader got a value"));
            }
        }
    }

    /// Delivers a value: hands it to a parked reader, buffers it, or parks until a reader takes
    /// it. On failure the value was not delivered.
    #[inline]
    pub(crate) fn write(&self, mut value: T) -> Result<(), ChannelError> {
        let mut deadlocked = false;
        loop {
            let mut queues = self.control.lock();
            match self.control.state() {
                ChannelState::Poisoned => return Err(poisoned(deadlocked)),
                state => state.check()?,
            }
            let (mut wake, mut held) = (None, None);
            // SAFETY: `queues` is this channel's lock.
            match unsafe { self.try_put(&mut queues, value, &mut wake, &mut held) } {
                Ok(()) => {
                    drop(queues);
                    if let Some(w) = wake {
                        w.unpark();
                    }
                    if let Some(h) = held {
                        h.wait();
                    }
                    return Ok(());
                }
                Err(v) => value = v,
            }
            let waiter = Waiter::new();
            let mut slot = Some(value);
            let slot_ptr: *mut Option<T> = &mut slot;
            let cell = HoldCell::new();
            queues
                .writers
                .push_back(Entry::new(&waiter, 0, slot_ptr).held_in(&cell));
            drop(queues);
            let (claim, ended) =
                blocked(&self.control, Role::Writer, || waiter.wait(Deadline::Never));
            deadlocked |= ended;
            if claim == Claim::Fired(0) {
                cell.wait();
                return Ok(());
            }
            // Ended: the channel dequeued the entry unclaimed, so the value is still ours.
            // SAFETY: the entry is gone from every queue, so nothing else touches the slot.
            value = unsafe { (*slot_ptr).take() }.expect("an unclaimed writer keeps its value");
        }
    }
}

/// Takes the value of the first parked writer that can still be claimed; with `hold`, the writer
/// waits on it once claimed.
///
/// # Safety
///
/// `writers` must be the writer queue of a `Chan<T>` whose lock the caller holds.
unsafe fn claim_writer<T>(
    writers: &mut VecDeque<Entry>,
    wake: &mut Option<Wake>,
    hold: Option<&Arc<Hold>>,
) -> Option<T> {
    while let Some(entry) = writers.pop_front() {
        // SAFETY: queued on a `Chan<T>` whose lock we hold: slot and waiter are alive.
        let (slot, waiter) = unsafe { (&mut *entry.slot.cast::<Option<T>>(), &*entry.waiter) };
        // The value comes out, and the hold goes in, before the claim: once claimed, the writer
        // may look at both at once.
        let value = slot.take();
        let cell = match hold {
            // SAFETY: a writer entry's `hold` is its cell, in the parked writer's frame (or
            // guard), alive while the entry is queued; only this entry's claimer fills it.
            Some(_) if !entry.hold.is_null() => Some(unsafe { &*entry.hold.cast::<HoldCell>() }),
            _ => None,
        };
        if let (Some(h), Some(cell)) = (hold, cell) {
            cell.put(h);
        }
        let w = waiter.wake.clone();
        if waiter.claim(entry.fired) {
            *wake = Some(w);
            return value;
        }
        // Claimed elsewhere: the writer never looks in this entry's cell.
        if let Some(cell) = cell {
            drop(cell.take());
        }
        *slot = value;
    }
    None
}
