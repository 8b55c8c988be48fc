//! The threads engine's select: crossbeam's biased `Select`, which commits exactly one operation.
//!
//! Each guard borrows its channel's endpoint for the select. Poison or retirement drops the
//! channel's own endpoints, so a waiting guard's operation becomes ready with a disconnection: the
//! engine then drops that guard (it is dead) and looks again, where [`live_guards`] fails the
//! select on poison or when no guard is left. A retired input channel that still buffers values
//! stays live until drained. The select is biased: it tries the guards in the order core's
//! `Policy` chose, which is what makes `select` uniformly random and `fair_select` rotate.

use crate::channel::{Control, Held, Msg, Raw, Room, wait_for_reader};
use crossbeam_channel::{Receiver, Select, SelectedOperation, Sender};
use cspnet_core::{
    ChannelError, ChannelState, Deadline, GuardStatus, OnGuards, Role, ThreadSlot, blocking_raw,
    live_guards,
};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One channel guard, as the threads engine waits on it.
pub struct Guard<'a>(Box<dyn Op + 'a>);

/// What the engine needs of a guard, type-erased over the payload.
trait Op {
    fn control(&self) -> &Control;
    fn is_input(&self) -> bool;
    /// Whether its endpoint was lent (it is gone once the channel ended for this side).
    fn has_endpoint(&self) -> bool;
    fn register<'s>(&'s self, sel: &mut Select<'s>) -> usize;
    /// Completes the selected operation: `true` when it committed, `false` when it found the
    /// channel ended (the guard is dead from now on).
    fn complete(&self, op: SelectedOperation<'_>) -> bool;
}

/// A guard's endpoint, lent for the select.
fn lent<E>(end: &Option<E>) -> &E {
    end.as_ref()
        .expect("only guards with an endpoint are registered")
}

/// Completes an input guard's selected receive: the value and its writer's ticket, with the
/// place it took in a large buffer given back; `None` when the channel has ended.
fn receive<T>(
    op: SelectedOperation<'_>,
    rx: &Option<Receiver<Msg<T>>>,
    room: Option<&Room>,
) -> Option<Msg<T>> {
    let msg = op.recv(lent(rx)).ok()?;
    if let Some(room) = room {
        room.freed();
    }
    Some(msg)
}

struct Input<'a, T> {
    control: &'a Control,
    room: Option<&'a Room>,
    rx: Option<Receiver<Msg<T>>>,
    slot: Cell<Option<&'a mut Option<T>>>,
}

impl<T> Op for Input<'_, T> {
    fn control(&self) -> &Control {
        self.control
    }
    fn is_input(&self) -> bool {
        true
    }
    fn has_endpoint(&self) -> bool {
        self.rx.is_some()
    }
    fn register<'s>(&'s self, sel: &mut Select<'s>) -> usize {
        sel.recv(lent(&self.rx))
    }
    fn complete(&self, op: SelectedOperation<'_>) -> bool {
        let Some((value, ticket)) = receive(op, &self.rx, self.room) else {
            return false;
        };
        if let Some(t) = ticket {
            t.release();
        }
        let slot = self.slot.take().expect("a guard commits once");
        *slot = Some(value);
        true
    }
}

/// An extended input guard: counted at its channel as an extended reader while it exists, and
/// when it commits, the count goes with the value's [`Held`].
struct HeldInput<'a, T> {
    control: &'a Arc<Control>,
    room: Option<&'a Room>,
    rx: Option<Receiver<Msg<T>>>,
    slot: Cell<Option<&'a mut Option<(T, Held)>>>,
    /// Whether this guard still owns its count (a committed guard hands it to the `Held`).
    counted: Cell<bool>,
}

impl<T> Op for HeldInput<'_, T> {
    fn control(&self) -> &Control {
        self.control
    }
    fn is_input(&self) -> bool {
        true
    }
    fn has_endpoint(&self) -> bool {
        self.rx.is_some()
    }
    fn register<'s>(&'s self, sel: &mut Select<'s>) -> usize {
        sel.recv(lent(&self.rx))
    }
    fn complete(&self, op: SelectedOperation<'_>) -> bool {
        let Some((value, ticket)) = receive(op, &self.rx, self.room) else {
            return false;
        };
        let slot = self.slot.take().expect("a guard commits once");
        self.counted.set(false);
        *slot = Some((value, Held::new(ticket, Arc::clone(self.control))));
        true
    }
}

impl<T> Drop for HeldInput<'_, T> {
    fn drop(&mut self) {
        if self.counted.get() {
            self.control.extended.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

struct Output<'a, T> {
    control: &'a Control,
    tx: Option<Sender<Msg<T>>>,
    /// A large buffer's limit and its token's receiver: the guard waits for the token, then
    /// sends on the unbounded channel, which never waits.
    room: Option<(&'a Room, Option<Receiver<()>>)>,
    slot: Cell<Option<&'a mut Option<T>>>,
}

impl<T> Op for Output<'_, T> {
    fn control(&self) -> &Control {
        self.control
    }
    fn is_input(&self) -> bool {
        false
    }
    fn has_endpoint(&self) -> bool {
        self.tx.is_some() && !matches!(self.room, Some((_, None)))
    }
    fn register<'s>(&'s self, sel: &mut Select<'s>) -> usize {
        match &self.room {
            Some((_, token)) => sel.recv(lent(token)),
            None => sel.send(lent(&self.tx)),
        }
    }
    fn complete(&self, op: SelectedOperation<'_>) -> bool {
        let tx = lent(&self.tx);
        let slot = self.slot.take().expect("a guard commits once");
        let value = slot.take().expect("an output guard offers a value");
        let (ticket, number) = self.control.ticket();
        let value = (value, ticket);
        let sent = match &self.room {
            Some((room, token)) => {
                let token = token.as_ref().expect("registered with its token receiver");
                if op.recv(token).is_err() {
                    // No reader is left to make room: the value stays the alternation's.
                    *slot = Some(value.0);
                    self.slot.set(Some(slot));
                    return false;
                }
                room.took();
                tx.send(value)
            }
            None => op.send(tx, value),
        };
        match sent {
            Ok(()) => {
                wait_for_reader(self.control, number);
                true
            }
            Err(back) => {
                // Not delivered: the value stays the alternation's.
                *slot = Some(back.into_inner().0);
                self.slot.set(Some(slot));
                false
            }
        }
    }
}

pub(crate) fn input<'a, T: Send + 'static>(raw: &'a Raw<T>, slot: &'a mut Option<T>) -> Guard<'a> {
    Guard(Box::new(Input {
        control: &raw.control,
        room: raw.ends.room.as_ref(),
        rx: raw.ends.receiver(),
        slot: Cell::new(Some(slot)),
    }))
}

pub(crate) fn input_held<'a, T: Send + 'static>(
    raw: &'a Raw<T>,
    slot: &'a mut Option<(T, Held)>,
) -> Guard<'a> {
    // Counted before the guard can take a value: a writer whose value it takes sees the count.
    raw.control.extended.fetch_add(1, Ordering::SeqCst);
    Guard(Box::new(HeldInput {
        control: &raw.control,
        room: raw.ends.room.as_ref(),
        rx: raw.ends.receiver(),
        slot: Cell::new(Some(slot)),
        counted: Cell::new(true),
    }))
}

pub(crate) fn output<'a, T: Send + 'static>(raw: &'a Raw<T>, slot: &'a mut Option<T>) -> Guard<'a> {
    Guard(Box::new(Output {
        control: &raw.control,
        tx: raw.ends.sender(),
        room: raw.ends.room.as_ref().map(|room| (room, room.receiver())),
        slot: Cell::new(Some(slot)),
    }))
}

/// The engine's `Backend::select`.
pub(crate) fn select(
    guards: &mut [Guard<'_>],
    order: &[usize],
    deadline: Deadline,
) -> Result<Option<usize>, ChannelError> {
    let mut deadlocked = false;
    match select_inner(guards, order, deadline, &mut deadlocked) {
        // The deadlock detector ended the wait by poisoning the guards' channels.
        Err(ChannelError::Poisoned) if deadlocked => Err(ChannelError::Deadlock),
        out => out,
    }
}

fn select_inner(
    guards: &mut [Guard<'_>],
    order: &[usize],
    deadline: Deadline,
    deadlocked: &mut bool,
) -> Result<Option<usize>, ChannelError> {
    // Guards that found their channel ended; an ended output or drained input never revives.
    let mut dead: Vec<bool> = guards.iter().map(|g| !g.0.has_endpoint()).collect();
    let watches = poison_watches(guards);
    loop {
        let live = live_guards(order, |i| match guards[i].0.control().state() {
            ChannelState::Poisoned => GuardStatus::Poisoned,
            _ if dead[i] => GuardStatus::Dead,
            _ => GuardStatus::Live,
        })?;
        let mut sel = Select::new_biased();
        for &i in &live {
            guards[i].0.register(&mut sel);
        }
        for watch in &watches {
            sel.recv(watch);
        }
        let op = match deadline {
            Deadline::Now => sel.try_select().ok(),
            Deadline::At(at) => sel.select_deadline(at).ok(),
            Deadline::Never => match sel.try_select() {
                Ok(op) => Some(op),
                // Only a select that must sleep counts as blocked.
                Err(_) => {
                    let (op, ended) = blocked(guards, &live, || sel.select());
                    *deadlocked |= ended;
                    Some(op)
                }
            },
        };
        let Some(op) = op else {
            return Ok(None);
        };
        let Some(&i) = live.get(op.index()) else {
            // A poison watch disconnected: the next round sees the poison.
            let watch = &watches[op.index() - live.len()];
            let _ = op.recv(watch);
            continue;
        };
        if guards[i].0.complete(op) {
            return Ok(Some(i));
        }
        // The channel ended under the guard: look at why on the next round.
        dead[i] = true;
    }
}

/// Runs `wait`, a select about to sleep on the `live` guards, as a blocked operation that core's
/// deadlock detector can end (by poisoning the guards' channels).
fn blocked<R>(guards: &[Guard<'_>], live: &[usize], wait: impl FnOnce() -> R) -> (R, bool) {
    let controls: Vec<&Control> = live.iter().map(|&i| guards[i].0.control()).collect();
    let poisons: Vec<_> = controls.iter().map(|c| move || c.poison()).collect();
    let what = OnGuards::new(
        live.iter()
            .zip(&controls)
            .zip(&poisons)
            .map(|((&i, c), p)| {
                let role = if guards[i].0.is_input() {
                    Role::Reader
                } else {
                    Role::Writer
                };
                (c.name(), role, p as &(dyn Fn() + Sync))
            })
            .collect(),
    );
    blocking_raw::<ThreadSlot, R>(&what, wait)
}

/// The poison watches this select needs: one per channel it offers both to read and to write,
/// since it then holds both of that channel's endpoints and poison cannot disconnect them.
fn poison_watches(guards: &[Guard<'_>]) -> Vec<Receiver<()>> {
    let inputs = guards.iter().filter(|g| g.0.is_input()).count();
    if inputs == 0 || inputs == guards.len() {
        return Vec::new(); // the common case: all inputs (or all outputs)
    }
    let mut watches: Vec<(*const Control, Receiver<()>)> = Vec::new();
    for (i, a) in guards.iter().enumerate() {
        for b in &guards[i + 1..] {
            let (ca, cb) = (a.0.control(), b.0.control());
            if std::ptr::eq(ca, cb)
                && a.0.is_input() != b.0.is_input()
                && !watches.iter().any(|(c, _)| std::ptr::eq(*c, ca))
            {
                watches.push((ca, ca.watch().clone()));
            }
        }
    }
    watches.into_iter().map(|(_, rx)| rx).collect()
}
