//! The engine's channel: a handle on a record in the shared segment, membership across OS
//! processes, the census of ends across `fork`, and handles over serde.
//!
//! The public `Channel`, `Reader` and `Writer` are core's, over [`Chan`]: an offset to the channel's
//! record in the segment (plus the name). The record counts handles, reader ends and writer ends
//! across every OS process of the network, under core's [`Membership`](cspnet_core::Membership)
//! rule (`engine::leave`). Reads and writes are one-guard operations of the engine (`engine.rs`),
//! the same commit protocol that serves alternations.
//!
//! # Ends across `fork`
//!
//! A forked child gets a copy of the process closure and of every end it captured; the parent's copy
//! must then vanish without leaving the channel. The parent drops it in *census* mode: each end's
//! `Drop` records `(channel, role)` in a list for that child instead of leaving ([`Chan::dropped`]).
//! The list is exactly what the child holds, so if the child dies without reporting, the parent
//! poisons those channels.
//!
//! # Ends over serde
//!
//! Serializing a handle joins the channel on behalf of the receiver, who adopts that membership when
//! it deserializes (core's `Mobile`). While [`recording_serialized`] runs (an `exec`'s arguments),
//! the handles serialized are recorded too: the census of a re-executed child.

use crate::ThreadSlot;
use crate::codec;
use crate::engine::{self, Fired, Spec, Want, run};
use crate::ledger;
use crate::shm::{self, segment};
use cspnet_core::{ChannelError, ChannelState, Deadline, Leave, LeavingEnd, Role, end_dropped};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

thread_local! {
    /// While `Some`, dropped handles are recorded here instead of leaving (see the module docs).
    static CENSUS: RefCell<Option<Vec<(u64, Role)>>> = const { RefCell::new(None) };
    /// While `Some`, serialized handles are recorded here (the ends an `exec` child receives).
    static SERIALIZED: RefCell<Option<Vec<(u64, Role)>>> = const { RefCell::new(None) };
    /// The names of the channels counted by the census in progress.
    static NAMES: RefCell<HashMap<u64, Arc<str>>> = RefCell::new(HashMap::new());
}

/// Drops `value` in census mode and returns the handles it held.
pub(crate) fn census_drop<V>(value: V) -> Vec<(u64, Role)> {
    CENSUS.with(|c| *c.borrow_mut() = Some(Vec::new()));
    NAMES.with(|n| n.borrow_mut().clear());
    drop(value);
    CENSUS.with(|c| c.borrow_mut().take()).unwrap_or_default()
}

/// The names of the channels the last [`census_drop`] on this thread counted (for crash reports).
pub(crate) fn census_names() -> HashMap<u64, Arc<str>> {
    NAMES.with(|n| std::mem::take(&mut *n.borrow_mut()))
}

/// Serializes with `f` and returns the handles that were serialized (each joined on the way).
pub(crate) fn recording_serialized<R>(f: impl FnOnce() -> R) -> (R, Vec<(u64, Role)>) {
    SERIALIZED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let r = f();
    let held = SERIALIZED
        .with(|c| c.borrow_mut().take())
        .unwrap_or_default();
    (r, held)
}

/// Whether a census is being taken now (see the module docs).
pub(crate) fn taking_census() -> bool {
    CENSUS.with(|c| c.borrow().is_some())
}

fn counted_in_census(chan: u64, role: Role) -> bool {
    CENSUS.with(|c| match c.borrow_mut().as_mut() {
        Some(list) => {
            list.push((chan, role));
            true
        }
        None => false,
    })
}

/// Joins for this process (counted in its ledger, if its parent gave it one).
fn join(chan: u64, role: Role) {
    join_for_another(chan, role);
    ledger::note(chan, role, 1);
}

/// Joins on behalf of another process (the receiver of a serialized handle, which counts it).
fn join_for_another(chan: u64, role: Role) {
    let mut l = engine::lock(&[chan]);
    engine::join(&mut l, chan, role);
}

/// Leaves for this process.
fn leave(chan: u64, role: Role, how: Leave) {
    leave_for_another(chan, role, how);
    ledger::note(chan, role, -1);
}

/// Leaves on behalf of another process (a dead child's ends).
fn leave_for_another(chan: u64, role: Role, how: Leave) {
    let mut l = engine::lock(&[chan]);
    engine::leave(&mut l, chan, role, how);
}

/// Poisons every channel in `held` (the handles of a process that died without reporting). The
/// counts are left alone: a poisoned channel never works again, whoever holds it.
pub(crate) fn poison_held(held: &[(u64, Role)]) {
    if held.is_empty() {
        return;
    }
    let chans: Vec<u64> = held.iter().map(|&(c, _)| c).collect();
    let mut l = engine::lock(&chans);
    for c in chans {
        engine::end_channel(&mut l, c, ChannelState::Poisoned);
    }
}

/// Makes the handles in `held` leave with `how`, on behalf of a process that never started or is
/// gone (so they are not counted in this process's own ledger).
pub(crate) fn leave_held(held: Vec<(u64, Role)>, how: Leave) {
    for (c, role) in held {
        leave_for_another(c, role, how);
    }
}

/// A dropped end on its way out of the channel, parked in the process's context.
struct Departure {
    chan: u64,
    role: Role,
    name: Option<Arc<str>>,
}

impl LeavingEnd for Departure {
    fn leave(self: Box<Self>, how: Leave) {
        leave(self.chan, self.role, how);
    }
    fn held(&self) -> Option<cspnet_core::HeldEnd> {
        Some(cspnet_core::HeldEnd::new(self.name.as_deref(), self.role))
    }
}

/// The processes engine's handle on a channel: the offset of its record in the shared segment,
/// and its name. Cloning it clones the handle only; membership is counted in the record.
#[derive(Clone, Debug)]
pub struct Chan {
    pub(crate) off: u64,
    name: Option<Arc<str>>,
}

impl Chan {
    /// A handle on the channel record at `off`, without joining (for releasing a dead child's
    /// ends on its behalf).
    pub(crate) fn at(off: u64) -> Chan {
        Chan { off, name: None }
    }

    /// A new channel record with no handles or ends counted yet.
    ///
    /// # Panics
    ///
    /// When the record and the first piece of its buffer (at most 16 slots) do not fit in the
    /// segment's heap at all: a segment far below the minimum size.
    pub(crate) fn new(name: Option<&str>, capacity: usize) -> Chan {
        let mut l = engine::lock(&[]);
        let off = match engine::new_channel(&mut l, capacity) {
            Ok(c) => c,
            Err(e) => panic!(
                "cspnet-processes: a channel record does not fit in the shared segment ({e}); \
                 raise CSPNET_SHM_SIZE"
            ),
        };
        Chan {
            off,
            name: name.map(Arc::from),
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The channel's state; the handle keeps the record alive and its state word is atomic, so
    /// it is read without the lock.
    pub(crate) fn state(&self) -> Result<(), ChannelError> {
        engine::state_now(self.off).check()
    }

    pub(crate) fn join(&self, role: Role) {
        join(self.off, role);
    }

    pub(crate) fn leave(&self, role: Role, how: Leave) {
        leave(self.off, role, how);
    }

    pub(crate) fn poison(&self) {
        let mut l = engine::lock(&[self.off]);
        engine::end_channel(&mut l, self.off, ChannelState::Poisoned);
    }

    /// A handle was dropped: recorded while the census is on (the parent's copy of what a forked
    /// child now holds), otherwise core's rule: a channel handle leaves at once, an end is parked
    /// until the process's next operation or its end.
    pub(crate) fn dropped(&self, role: Role) {
        if counted_in_census(self.off, role) {
            if let Some(name) = &self.name {
                NAMES.with(|n| n.borrow_mut().insert(self.off, Arc::clone(name)));
            }
            return;
        }
        match role {
            Role::Handle => self.leave(role, Leave::Retire),
            _ => end_dropped::<ThreadSlot>(Box::new(Departure {
                chan: self.off,
                role,
                name: self.name.clone(),
            })),
        }
    }

    /// A read: an operation with one input guard.
    #[inline]
    pub(crate) fn read<T: DeserializeOwned + 'static>(&self) -> Result<T, ChannelError> {
        let spec = Spec {
            chan: self.off,
            want: Want::Read,
        };
        match run(&[spec], &[0], Deadline::Never)? {
            Fired::Guard(_, Some(taken), _) => Ok(taken.decode()),
            _ => unreachable!("a lone read commits with a value or fails"),
        }
    }

    /// An extended read: the writer stays held until the returned [`Held`] is dropped.
    pub(crate) fn read_held<T: DeserializeOwned + 'static>(
        &self,
    ) -> Result<(T, Held), ChannelError> {
        let spec = Spec {
            chan: self.off,
            want: Want::ReadHeld,
        };
        match run(&[spec], &[0], Deadline::Never)? {
            Fired::Guard(_, Some(taken), writer) => {
                let held = Held { writer };
                Ok((taken.decode(), held))
            }
            _ => unreachable!("a lone read commits with a value or fails"),
        }
    }

    /// A write: an operation with one output guard. A value that cannot be encoded is an error
    /// before anything is offered, so the channel is left as it was.
    #[inline]
    pub(crate) fn write<T: Serialize + 'static>(&self, value: T) -> Result<(), ChannelError> {
        let encoded = codec::encode(value)?;
        let spec = Spec {
            chan: self.off,
            want: Want::Write(encoded.bytes()),
        };
        run(&[spec], &[0], Deadline::Never).map(drop)
    }
}

/// Keeps the writer of an extended read waiting until dropped (the engine's `Carries::Held`): the
/// offset of the writer's waiter record, whose `hold` word it zeroes.
pub struct Held {
    pub(crate) writer: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        engine::release_writer(self.writer);
    }
}

/// The wire form of a handle (for `exec` arguments and for ends sent over channels). Serializing
/// joins the channel on behalf of the receiver, who adopts that membership when deserializing.
#[derive(Serialize, Deserialize)]
struct Wire {
    chan: u64,
    role: Role,
    name: Option<String>,
}

/// Writes a handle of `role` on `chan`, joining the channel on the receiver's behalf.
pub(crate) fn serialize_handle<S: Serializer>(
    chan: &Chan,
    role: Role,
    s: S,
) -> Result<S::Ok, S::Error> {
    join_for_another(chan.off, role);
    SERIALIZED.with(|c| {
        if let Some(list) = c.borrow_mut().as_mut() {
            list.push((chan.off, role));
        }
    });
    Wire {
        chan: chan.off,
        role,
        name: chan.name.as_deref().map(str::to_owned),
    }
    .serialize(s)
}

/// Reads a handle written by [`serialize_handle`], which must be of `want` and lie in the segment.
pub(crate) fn deserialize_handle<'de, D: Deserializer<'de>>(
    d: D,
    want: Role,
) -> Result<Chan, D::Error> {
    let w = Wire::deserialize(d)?;
    if w.role != want {
        return Err(serde::de::Error::custom(format!(
            "expected a {want:?} handle, found a {:?}",
            w.role
        )));
    }
    let seg = segment();
    if w.chan < shm::HEADER as u64 || w.chan as usize >= seg.size() {
        return Err(serde::de::Error::custom(
            "a channel handle outside the segment",
        ));
    }
    // The membership joined by the sender is ours now.
    ledger::note(w.chan, w.role, 1);
    Ok(Chan {
        off: w.chan,
        name: w.name.map(Arc::from),
    })
}
