//! The coroutines engine's select: one waiter record on every guard's channel, and a single
//! compare-and-swap on it decides which guard commits.
//!
//! A round locks every guard's channel (each once, in address order, so two alternations never
//! deadlock); core's [`live_guards`] then fails it at once if one is poisoned, or with `Retired`
//! when no guard can ever complete; the live guards are tried in the order core's `Policy` chose
//! (the engine never reorders them). If none can complete and the deadline is not `Now`, it
//! enqueues one entry per live guard, in that order, all pointing at one [`Waiter`], and unlocks.
//! The first counterpart to claim the waiter wins; the select then removes its other entries. An
//! end of any of the channels claims the waiter with [`Claim::Ended`], and the round starts again. Because
//! the registration happens with every lock held, no counterpart can slip in between "nothing
//! ready" and "registered", and no guard ever has to be undone. A retired input channel that
//! still buffers values stays a live guard until drained.

use crate::CoSlot;
use crate::channel::{Chan, Control, Entry, Held, Hold, HoldCell, Queues, Waiter, Wake, poisoned};
use cspnet_core::{
    ChannelError, ChannelState, Claim, Deadline, GuardStatus, OnGuards, Role, blocking_raw,
    live_guards,
};
use std::sync::{Arc, MutexGuard};

/// One channel guard, as the coroutines engine waits on it: a guard of core's alternation lends
/// its channel and its value slot for one select.
pub struct Guard<'a>(Box<dyn Op + 'a>);

/// What the engine needs of a guard, type-erased over the payload.
trait Op {
    fn control(&self) -> &Control;
    /// `Reader` for an input guard, `Writer` for an output guard.
    fn role(&self) -> Role;
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
    /// An output guard that completed at a parked extended reader sets `held`: the hold to wait
    /// on once the locks are released.
    unsafe fn try_now(
        &mut self,
        queues: &mut Queues,
        wake: &mut Option<Wake>,
        held: &mut Option<Arc<Hold>>,
    ) -> bool;
    /// With the lock held: enqueues an entry for `waiter`, claimed with `index`.
    ///
    /// # Safety
    ///
    /// As for `drainable`; besides, the guard's slot must stay in place until the entry is removed.
    unsafe fn register(&mut self, queues: &mut Queues, waiter: &Waiter, index: usize);
    /// After this guard was claimed while parked, with every entry removed: an output guard waits
    /// for the extended reader that took its value, if one did.
    fn fired(&mut self) {}
}

struct Input<'a, T> {
    chan: &'a Chan<T>,
    /// Where the value read goes.
    slot: &'a mut Option<T>,
}

impl<T> Op for Input<'_, T> {
    fn role(&self) -> Role {
        Role::Reader
    }
    fn control(&self) -> &Control {
        &self.chan.control
    }
    unsafe fn drainable(&self, queues: &mut Queues) -> bool {
        // SAFETY: the caller passes this channel's locked queues.
        unsafe { self.chan.has_buffered(queues) }
    }
    unsafe fn try_now(
        &mut self,
        queues: &mut Queues,
        wake: &mut Option<Wake>,
        _held: &mut Option<Arc<Hold>>,
    ) -> bool {
        // SAFETY: the caller passes this channel's locked queues.
        *self.slot = unsafe { self.chan.try_take(queues, wake, None) };
        self.slot.is_some()
    }
    unsafe fn register(&mut self, queues: &mut Queues, waiter: &Waiter, index: usize) {
        queues
            .readers
            .push_back(Entry::new(waiter, index, &mut *self.slot));
    }
}

/// An extended input guard: its hold is what the writer it takes from waits on.
struct HeldInput<'a, T> {
    chan: &'a Chan<T>,
    slot: &'a mut Option<(T, Held)>,
    /// Where a parked writer's value lands before it moves to `slot` with the hold.
    value: Option<T>,
    hold: Arc<Hold>,
}

impl<T> HeldInput<'_, T> {
    fn commit(&mut self) {
        let value = self
            .value
            .take()
            .expect("a committed input guard holds its value");
        *self.slot = Some((value, Held(Some(Arc::clone(&self.hold)))));
    }
}

impl<T> Op for HeldInput<'_, T> {
    fn role(&self) -> Role {
        Role::Reader
    }
    fn control(&self) -> &Control {
        &self.chan.control
    }
    unsafe fn drainable(&self, queues: &mut Queues) -> bool {
        // SAFETY: the caller passes this channel's locked queues.
        unsafe { self.chan.has_buffered(queues) }
    }
    unsafe fn try_now(
        &mut self,
        queues: &mut Queues,
        wake: &mut Option<Wake>,
        _held: &mut Option<Arc<Hold>>,
    ) -> bool {
        // SAFETY: the caller passes this channel's locked queues.
        self.value = unsafe { self.chan.try_take(queues, wake, Some(&self.hold)) };
        if self.value.is_none() {
            return false;
        }
        self.commit();
        true
    }
    unsafe fn register(&mut self, queues: &mut Queues, waiter: &Waiter, index: usize) {
        let entry = Entry::new(waiter, index, &mut self.value);
        queues.readers.push_back(if self.chan.is_rendezvous() {
            entry.holding_writer(&self.hold)
        } else {
            entry
        });
    }
    fn fired(&mut self) {
        self.commit();
    }
}

struct Output<'a, T> {
    chan: &'a Chan<T>,
    /// The value offered; emptied once delivered.
    slot: &'a mut Option<T>,
    /// Where an extended reader that takes the value while this guard is parked leaves its hold.
    cell: HoldCell,
}

impl<T> Op for Output<'_, T> {
    fn role(&self) -> Role {
        Role::Writer
    }
    fn control(&self) -> &Control {
        &self.chan.control
    }
    unsafe fn drainable(&self, _queues: &mut Queues) -> bool {
        false
    }
    unsafe fn try_now(
        &mut self,
        queues: &mut Queues,
        wake: &mut Option<Wake>,
        held: &mut Option<Arc<Hold>>,
    ) -> bool {
        let value = self
            .slot
            .take()
            .expect("an output guard offers its value once");
        // SAFETY: the caller passes this channel's locked queues.
        match unsafe { self.chan.try_put(queues, value, wake, held) } {
            Ok(()) => true,
            Err(v) => {
                *self.slot = Some(v);
                false
            }
        }
    }
    unsafe fn register(&mut self, queues: &mut Queues, waiter: &Waiter, index: usize) {
        queues
            .writers
            .push_back(Entry::new(waiter, index, &mut *self.slot).held_in(&self.cell));
    }
    fn fired(&mut self) {
        self.cell.wait();
    }
}

pub(crate) fn input<'a, T: Send + 'static>(
    chan: &'a Chan<T>,
    slot: &'a mut Option<T>,
) -> Guard<'a> {
    Guard(Box::new(Input { chan, slot }))
}

pub(crate) fn output<'a, T: Send + 'static>(
    chan: &'a Chan<T>,
    slot: &'a mut Option<T>,
) -> Guard<'a> {
    Guard(Box::new(Output {
        chan,
        slot,
        cell: HoldCell::new(),
    }))
}

pub(crate) fn input_held<'a, T: Send + 'static>(
    chan: &'a Chan<T>,
    slot: &'a mut Option<(T, Held)>,
) -> Guard<'a> {
    Guard(Box::new(HeldInput {
        chan,
        slot,
        value: None,
        hold: Hold::new(),
    }))
}

/// The engine's `Backend::select`.
pub(crate) fn select(
    guards: &mut [Guard<'_>],
    order: &[usize],
    deadline: Deadline,
) -> Result<Option<usize>, ChannelError> {
    // The distinct channels, in address order (the lock order), and each guard's place there.
    let mut controls: Vec<*const Control> = guards
        .iter()
        .map(|g| g.0.control() as *const Control)
        .collect();
    controls.sort_unstable();
    controls.dedup();
    let lock_of: Vec<usize> = guards
        .iter()
        .map(|g| {
            controls
                .binary_search(&(g.0.control() as *const Control))
                .expect("every guard's channel is listed")
        })
        .collect();
    let mut deadlocked = false;
    loop {
        // SAFETY: the pointers come from `&Control`s borrowed by the guards, alive while they are.
        let mut locks: Vec<MutexGuard<'_, Queues>> =
            controls.iter().map(|&c| unsafe { &*c }.lock()).collect();
        let live = live_guards(order, |i| match guards[i].0.control().state() {
            ChannelState::Open => GuardStatus::Live,
            ChannelState::Poisoned => GuardStatus::Poisoned,
            // SAFETY: `locks[lock_of[i]]` is this guard's channel's lock.
            ChannelState::Retired if unsafe { guards[i].0.drainable(&mut locks[lock_of[i]]) } => {
                GuardStatus::Live
            }
            ChannelState::Retired => GuardStatus::Dead,
        })
        .map_err(|e| match e {
            ChannelError::Poisoned => poisoned(deadlocked),
            e => e,
        })?;

        let (mut wake, mut held) = (None, None);
        for &i in &live {
            // SAFETY: `locks[lock_of[i]]` is this guard's channel's lock.
            if unsafe {
                guards[i]
                    .0
                    .try_now(&mut locks[lock_of[i]], &mut wake, &mut held)
            } {
                drop(locks);
                if let Some(w) = wake {
                    w.unpark();
                }
                if let Some(h) = held {
                    h.wait();
                }
                return Ok(Some(i));
            }
        }
        if deadline == Deadline::Now {
            return Ok(None);
        }

        let waiter = Waiter::new();
        for &i in &live {
            // SAFETY: `locks[lock_of[i]]` is this guard's channel's lock; the guard's slot is
            // borrowed for the whole select, so it stays in place, and its entry is removed below
            // before the select returns.
            unsafe { guards[i].0.register(&mut locks[lock_of[i]], &waiter, i) };
        }
        drop(locks);
        let outcome = if deadline == Deadline::Never {
            let (outcome, ended) = blocked(guards, &live, || waiter.wait(deadline));
            deadlocked |= ended;
            outcome
        } else {
            waiter.wait(deadline)
        };
        // Remove the entries nobody claimed (the claimer already dequeued the winning one).
        // This also waits out any claimer still inside a channel's lock.
        for &c in &controls {
            // SAFETY: as above.
            unsafe { &*c }.lock().remove(&waiter);
        }
        match outcome {
            Claim::Fired(i) => {
                guards[i as usize].0.fired();
                return Ok(Some(i as usize));
            }
            Claim::TimedOut => return Ok(None),
            Claim::Ended => continue,
            Claim::Waiting => unreachable!("a waiter returns once claimed"),
        }
    }
}

/// Parks in `wait`, a select with no deadline on the `live` guards, as a blocked operation that
/// core's deadlock detector can end (by poisoning the guards' channels).
fn blocked(guards: &[Guard<'_>], live: &[usize], wait: impl FnOnce() -> Claim) -> (Claim, bool) {
    let controls: Vec<&Control> = live.iter().map(|&i| guards[i].0.control()).collect();
    let poisons: Vec<_> = controls.iter().map(|c| move || c.poison()).collect();
    let what = OnGuards::new(
        live.iter()
            .zip(&controls)
            .zip(&poisons)
            .map(|((&i, c), p)| (c.name(), guards[i].0.role(), p as &(dyn Fn() + Sync)))
            .collect(),
    );
    blocking_raw::<CoSlot, Claim>(&what, wait)
}
