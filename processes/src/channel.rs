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
use crate::shm::{self, segment};
use cspnet_core::{ChannelError, ChannelState, Deadline, Leave, LeavingEnd, Role, end_dropped};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// While `Some`, dropped handles are recorded here instead of leaving (see the module docs).
    static CENSUS: RefCell<Option<Vec<(u64, Role)>>> = const { RefCell::new(None) };
    /// While `Some`, serialized handles are recorded here (the ends an `exec` child receives).
    static SERIALIZED: RefCell<Option<Vec<(u64, Role)>>> = const { RefCell::new(None) };
}

/// Drops `value` in census mode and returns the handles it held.
pub(crate) fn census_drop<V>(value: V) -> Vec<(u64, Role)> {
    CENSUS.with(|c| *c.borrow_mut() = Some(Vec::new()));
    drop(value);
    CENSUS.with(|c| c.borrow_mut().take()).unwrap_or_default()
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

fn join(chan: u64, role: Role) {
    let mut l = engine::lock(&[chan]);
    engine::join(&mut l, chan, role);
}

fn leave(chan: u64, role: Role, how: Leave) {
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

/// Makes the handles in `held` leave with `how` (ends recorded for a process that never started).
pub(crate) fn leave_held(held: Vec<(u64, Role)>, how: Leave) {
    for (c, role) in held {
        leave(c, role, how);
    }
}

/// A dropped end on its way out of the channel, parked in the process's context.
struct Departure {
    chan: u64,
    role: Role,
}

impl LeavingEnd for Departure {
    fn leave(self: Box<Self>, how: Leave) {
        leave(self.chan, self.role, how);
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
    /// A new channel record with no handles or ends counted yet.
    ///
    /// # Panics
    ///
    /// When the buffer does not fit in the segment.
    pub(crate) fn new(name: Option<&str>, capacity: usize) -> Chan {
        let mut l = engine::lock(&[]);
        let off = match engine::new_channel(&mut l, capacity) {
            Ok(c) => c,
            Err(e) => panic!(
                "cspnet-processes: a channel buffer of {capacity} values does not fit in the \
                 shared segment ({e}); raise CSPNET_SHM_SIZE"
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
            return;
        }
        match role {
            Role::Handle => self.leave(role, Leave::Retire),
            _ => end_dropped::<ThreadSlot>(Box::new(Departure {
                chan: self.off,
                role,
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

    /// A write: an operation with one output guard.
    #[inline]
    pub(crate) fn write<T: Serialize + 'static>(&self, value: T) -> Result<(), ChannelError> {
        let encoded = codec::encode(value);
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
    chan.join(role);
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
    Ok(Chan {
        off: w.chan,
        name: w.name.map(Arc::from),
    })
}
