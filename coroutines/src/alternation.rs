//! Alternation over input and output guards: one waiter record on every guard's channel, and a
//! single compare-and-swap on it decides which guard commits.
//!
//! A round locks every guard's channel (each once, in address order, so two alternations never
//! deadlock), fails at once if one is poisoned, then tries the live guards in the policy's order.
//! If none can complete and there is no Skip, it enqueues one entry per live guard, all pointing at
//! one [`Waiter`], and unlocks. The first counterpart to claim the waiter wins; the alternation
//! then removes its other entries. An end of any of the channels claims the waiter with `ENDED`,
//! and the round starts again. Because the registration happens with every lock held, no
//! counterpart can slip in between "nothing ready" and "registered", and no guard ever has to be
//! undone. A retired input channel that still buffers values stays a live guard until drained.

use crate::CoSlot;
use crate::channel::{Control, Reader, Writer};
use crate::channel::{ENDED, Entry, Queues, TIMED_OUT, Waiter, Wake};
use cspnet_core::{ChannelError, Deadline, Fallback, Policy};
use std::fmt;
use std::panic::Location;
use std::sync::MutexGuard;
use std::time::Duration;

/// One channel guard with its action, type-erased over the payload type.
trait Guard<R> {
    fn control(&self) -> &Control;
    /// With the lock held: whether a retired channel can still complete this guard.
    ///
    /// # Safety
    ///
    /// `queues` must be the guard's own channel's locked queues.
    unsafe fn drainable(&self, queues: &mut Queues) -> bool;
    /// With the lock held: completes the communication now if a counterpart or buffer allows.
    ///
    /// # Safety
    ///
    /// As for `drainable`.
    unsafe fn try_now(&mut self, queues: &mut Queues, wake: &mut Option<Wake>) -> bool;
    /// With the lock held: enqueues an entry for `waiter`, claimed with `index`.
    ///
    /// # Safety
    ///
    /// As for `drainable`; besides, `self` must stay in place until the entry is removed.
    unsafe fn register(&mut self, queues: &mut Queues, waiter: &Waiter, index: usize);
    /// Runs the action of the committed guard.
    fn finish(self: Box<Self>) -> R;
}

struct Input<'a, T, F> {
    reader: &'a Reader<T>,
    slot: Option<T>,
    action: F,
}

impl<T, R, F: FnOnce(T) -> R> Guard<R> for Input<'_, T, F> {
    fn control(&self) -> &Control {
        &self.reader.chan.control
    }
    unsafe fn drainable(&self, queues: &mut Queues) -> bool {
        // SAFETY: the caller passes this channel's locked queues.
        unsafe { self.reader.chan.has_buffered(queues) }
    }
    unsafe fn try_now(&mut self, queues: &mut Queues, wake: &mut Option<Wake>) -> bool {
        // SAFETY: the caller passes this channel's locked queues.
        self.slot = unsafe { self.reader.chan.try_take(queues, wake) };
        self.slot.is_some()
    }
    unsafe fn register(&mut self, queues: &mut Queues, waiter: &Waiter, index: usize) {
        queues
            .readers
            .push_back(Entry::new(waiter, index, &mut self.slot));
    }
    fn finish(self: Box<Self>) -> R {
        let this = *self;
        (this.action)(this.slot.expect("a committed input guard holds its value"))
    }
}

struct Output<'a, T, F> {
    writer: &'a Writer<T>,
    /// The value offered; gone once delivered.
    slot: Option<T>,
    action: F,
}

impl<T, R, F: FnOnce() -> R> Guard<R> for Output<'_, T, F> {
    fn control(&self) -> &Control {
        &self.writer.chan.control
    }
    unsafe fn drainable(&self, _queues: &mut Queues) -> bool {
        false
    }
    unsafe fn try_now(&mut self, queues: &mut Queues, wake: &mut Option<Wake>) -> bool {
        let value = self
            .slot
            .take()
            .expect("an output guard offers its value once");
        // SAFETY: the caller passes this channel's locked queues.
        match unsafe { self.writer.chan.try_put(queues, value, wake) } {
            Ok(()) => true,
            Err(v) => {
                self.slot = Some(v);
                false
            }
        }
    }
    unsafe fn register(&mut self, queues: &mut Queues, waiter: &Waiter, index: usize) {
        queues
            .writers
            .push_back(Entry::new(waiter, index, &mut self.slot));
    }
    fn finish(self: Box<Self>) -> R {
        (self.action)()
    }
}

/// A choice between guards: exactly one ready guard commits and its action runs.
///
/// Input guards ([`input`](Self::input)) and output guards ([`output`](Self::output)) may be mixed;
/// [`skip`](Self::skip) and [`timeout`](Self::timeout) fire only when no channel guard is ready.
/// Finish with [`select`](Self::select) (any ready guard), [`pri_select`](Self::pri_select) (the
/// first ready in the order given) or [`fair_select`](Self::fair_select) (rotating).
///
/// ```
/// use cspnet_coroutines::{Alternation, Channel};
/// use std::time::Duration;
///
/// let a = Channel::<u32>::with_buffer(1);
/// let b = Channel::<String>::new();
/// let (ar, aw, br) = (a.reader(), a.writer(), b.reader());
/// # let _bw = b.writer();
/// aw.write(7).unwrap();
/// let got = Alternation::new()
///     .input(&ar, |n| format!("number {n}"))
///     .input(&br, |s| format!("text {s}"))
///     .timeout(Duration::from_secs(1), || "nothing".to_string())
///     .select();
/// assert_eq!(got.unwrap(), "number 7");
/// ```
#[must_use = "an alternation does nothing until select, pri_select or fair_select is called"]
pub struct Alternation<'a, R> {
    guards: Vec<Box<dyn Guard<R> + 'a>>,
    fallback: Fallback<Box<dyn FnOnce() -> R + 'a>>,
}

impl<R> Default for Alternation<'_, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> fmt::Debug for Alternation<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alternation")
            .field("guards", &self.guards.len())
            .field("fallback", &self.fallback.deadline())
            .finish()
    }
}

impl<'a, R> Alternation<'a, R> {
    /// An alternation with no guards yet.
    ///
    /// ```
    /// let alt = cspnet_coroutines::Alternation::<()>::new().skip(|| ());
    /// assert_eq!(alt.select(), Ok(()));
    /// ```
    pub fn new() -> Self {
        Alternation {
            guards: Vec::new(),
            fallback: Fallback::new(),
        }
    }

    /// An input guard: ready when `reader` can read; the value read is passed to `action`.
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(2).unwrap();
    /// let doubled = cspnet_coroutines::Alternation::new().input(&r, |v| v * 2).select();
    /// assert_eq!(doubled, Ok(4));
    /// ```
    pub fn input<T: 'a>(mut self, reader: &'a Reader<T>, action: impl FnOnce(T) -> R + 'a) -> Self {
        self.guards.push(Box::new(Input {
            reader,
            slot: None,
            action,
        }));
        self
    }

    /// An output guard: ready when `writer` can write `value`; `action` runs once it is delivered.
    /// If another guard commits, `value` is dropped undelivered.
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// let sent = cspnet_coroutines::Alternation::new().output(&w, 5, || "sent").select();
    /// assert_eq!(sent, Ok("sent"));
    /// assert_eq!(r.read(), Ok(5));
    /// ```
    pub fn output<T: 'a>(
        mut self,
        writer: &'a Writer<T>,
        value: T,
        action: impl FnOnce() -> R + 'a,
    ) -> Self {
        self.guards.push(Box::new(Output {
            writer,
            slot: Some(value),
            action,
        }));
        self
    }

    /// A timeout guard: fires once `duration` has passed with no channel guard ready.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ch = cspnet_coroutines::Channel::<u32>::new();
    /// let (r, _w) = (ch.reader(), ch.writer());
    /// let got = cspnet_coroutines::Alternation::new()
    ///     .input(&r, |v| v)
    ///     .timeout(Duration::from_millis(1), || 0)
    ///     .select();
    /// assert_eq!(got, Ok(0));
    /// ```
    pub fn timeout(mut self, duration: Duration, action: impl FnOnce() -> R + 'a) -> Self {
        self.fallback
            .add(Deadline::after(duration), Box::new(action));
        self
    }

    /// A skip guard: always ready, but fires only when no channel guard is ready, so the alternation
    /// never blocks.
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<u32>::new();
    /// let (r, _w) = (ch.reader(), ch.writer());
    /// let got = cspnet_coroutines::Alternation::new().input(&r, Some).skip(|| None).select();
    /// assert_eq!(got, Ok(None));
    /// ```
    pub fn skip(mut self, action: impl FnOnce() -> R + 'a) -> Self {
        self.fallback.add(Deadline::Now, Box::new(action));
        self
    }

    /// Commits any one ready guard (no promise which) and returns its action's result.
    ///
    /// Fails with `Poisoned` if any guard's channel is poisoned, and with `Retired` once every
    /// channel guard's channel is retired (or there are no guards at all).
    ///
    /// ```
    /// let ch = cspnet_coroutines::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(1).unwrap();
    /// assert_eq!(cspnet_coroutines::Alternation::new().input(&r, |v| v).select(), Ok(1));
    /// ```
    pub fn select(self) -> Result<R, ChannelError> {
        self.run(Policy::Arbitrary)
    }

    /// Commits the first ready guard in the order the guards were given.
    ///
    /// ```
    /// let a = cspnet_coroutines::Channel::<u32>::with_buffer(1);
    /// let b = cspnet_coroutines::Channel::<u32>::with_buffer(1);
    /// let (ar, aw, br, bw) = (a.reader(), a.writer(), b.reader(), b.writer());
    /// aw.write(1).unwrap();
    /// bw.write(2).unwrap();
    /// let got = cspnet_coroutines::Alternation::new().input(&br, |v| v).input(&ar, |v| v).pri_select();
    /// assert_eq!(got, Ok(2));
    /// ```
    pub fn pri_select(self) -> Result<R, ChannelError> {
        self.run(Policy::Priority)
    }

    /// Commits a ready guard, rotating priority past the guard chosen last time at this call site
    /// in this process, so a guard that stays ready is served within as many rounds as there are
    /// guards.
    ///
    /// ```
    /// let a = cspnet_coroutines::Channel::<u32>::with_buffer(4);
    /// let b = cspnet_coroutines::Channel::<u32>::with_buffer(4);
    /// let (ar, aw, br, bw) = (a.reader(), a.writer(), b.reader(), b.writer());
    /// for _ in 0..2 { aw.write(1).unwrap(); bw.write(2).unwrap(); }
    /// let mut got = Vec::new();
    /// for _ in 0..4 {
    ///     got.push(cspnet_coroutines::Alternation::new().input(&ar, |v| v).input(&br, |v| v).fair_select().unwrap());
    /// }
    /// assert_eq!(got, vec![1, 2, 1, 2]);
    /// ```
    #[track_caller]
    pub fn fair_select(self) -> Result<R, ChannelError> {
        self.run(Policy::Fair(Location::caller()))
    }

    fn run(mut self, policy: Policy) -> Result<R, ChannelError> {
        crate::channel::flush();
        let n = self.guards.len();
        let order = policy.order::<CoSlot>(n);
        // The distinct channels, in address order (the lock order), and each guard's place there.
        let mut controls: Vec<*const Control> = self
            .guards
            .iter()
            .map(|g| g.control() as *const Control)
            .collect();
        controls.sort_unstable();
        controls.dedup();
        let lock_of: Vec<usize> = self
            .guards
            .iter()
            .map(|g| {
                controls
                    .binary_search(&(g.control() as *const Control))
                    .expect("every guard's channel is listed")
            })
            .collect();
        loop {
            // SAFETY: the pointers come from `&Control`s borrowed by the guards, alive for 'a.
            let mut locks: Vec<MutexGuard<'_, Queues>> =
                controls.iter().map(|&c| unsafe { &*c }.lock()).collect();
            let mut live = Vec::with_capacity(n);
            for &i in &order {
                let guard = &self.guards[i];
                match guard.control().check() {
                    Ok(()) => live.push(i),
                    Err(ChannelError::Retired) => {
                        // SAFETY: `locks[lock_of[i]]` is this guard's channel's lock.
                        if unsafe { guard.drainable(&mut locks[lock_of[i]]) } {
                            live.push(i);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if live.is_empty() {
                drop(locks);
                // Every channel guard is retired, or there were none and nothing could ever fire.
                let deadline = self.fallback.deadline();
                if n > 0 || deadline == Deadline::Never {
                    return Err(ChannelError::Retired);
                }
                if let Some(left) = deadline.remaining().filter(|d| !d.is_zero()) {
                    may::coroutine::sleep(left); // parks a coroutine; sleeps a plain thread
                }
                return Ok(self.fire_fallback());
            }

            let mut wake = None;
            for &i in &live {
                // SAFETY: `locks[lock_of[i]]` is this guard's channel's lock.
                if unsafe { self.guards[i].try_now(&mut locks[lock_of[i]], &mut wake) } {
                    drop(locks);
                    if let Some(w) = wake {
                        w.unpark();
                    }
                    return Ok(self.commit(policy, i));
                }
            }
            let deadline = self.fallback.deadline();
            if deadline == Deadline::Now {
                drop(locks);
                return Ok(self.fire_fallback());
            }

            let waiter = Waiter::new();
            for &i in &live {
                // SAFETY: `locks[lock_of[i]]` is this guard's channel's lock; the guard is boxed,
                // so its slot stays in place, and its entry is removed below before it moves.
                unsafe { self.guards[i].register(&mut locks[lock_of[i]], &waiter, i) };
            }
            drop(locks);
            let outcome = waiter.wait(deadline);
            // Remove the entries nobody claimed (the claimer already dequeued the winning one).
            // This also waits out any claimer still inside a channel's lock.
            for &c in &controls {
                // SAFETY: as above.
                unsafe { &*c }.lock().remove(&waiter);
            }
            match outcome {
                TIMED_OUT => return Ok(self.fire_fallback()),
                ENDED => continue,
                i => return Ok(self.commit(policy, i)),
            }
        }
    }

    fn commit(mut self, policy: Policy, i: usize) -> R {
        policy.chose::<CoSlot>(self.guards.len(), i);
        self.guards.swap_remove(i).finish()
    }

    fn fire_fallback(&mut self) -> R {
        let action = self
            .fallback
            .take_action()
            .expect("a fallback with a deadline has an action");
        action()
    }
}
