//! The engine's select: each guard is type-erased to a channel offset and, for an output, its
//! encoded value; `engine::run` commits exactly one of them, and the winner's value is decoded into
//! (or taken out of) its slot.
//!
//! Core's `Alternation` builds the guards, chooses the order ([`Policy`](cspnet_core::Policy)) and
//! runs the winner's action; this module is only the bridge between its typed slots and the
//! engine's byte payloads.

use crate::channel::Held;
use crate::codec;
use crate::engine::{Fired, Spec, Taken, Want, run};
use cspnet_core::{ChannelError, Deadline};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What the engine does with a guard's typed slot, type-erased over the payload.
trait Slot {
    /// An input committed: the value taken goes into the slot (with, for an extended input, the
    /// record of the writer it holds).
    fn fill(&mut self, taken: Taken, holder: u64);
    /// An output's value was delivered.
    fn clear(&mut self);
    /// A `Vec<u8>` moved out to be offered as its own encoding comes back undelivered.
    fn give_back(&mut self, bytes: Vec<u8>);
}

impl<T: DeserializeOwned + 'static> Slot for Option<T> {
    fn fill(&mut self, taken: Taken, _holder: u64) {
        *self = Some(taken.decode());
    }
    fn clear(&mut self) {
        *self = None;
    }
    fn give_back(&mut self, bytes: Vec<u8>) {
        *self = Some(codec::decode_owned(bytes));
    }
}

/// An extended input guard's slot: the value and what holds its writer.
struct HeldSlot<'a, T>(&'a mut Option<(T, Held)>);

impl<T: DeserializeOwned + 'static> Slot for HeldSlot<'_, T> {
    fn fill(&mut self, taken: Taken, holder: u64) {
        let held = Held { writer: holder };
        *self.0 = Some((taken.decode(), held));
    }
    fn clear(&mut self) {}
    fn give_back(&mut self, _bytes: Vec<u8>) {}
}

/// An output guard's value, encoded.
enum Offer {
    /// The bytes of an encoding; the value stays in its slot.
    Encoded(Vec<u8>),
    /// A `Vec<u8>` moved out of its slot: its bytes are its encoding. It goes back into the slot
    /// unless delivered, so the slot is emptied only by a delivery.
    Moved(Vec<u8>),
    /// The value's `Serialize` failed: the select fails with this before any guard is tried.
    Failed(ChannelError),
}

impl Offer {
    fn bytes(&self) -> &[u8] {
        match self {
            Offer::Encoded(b) | Offer::Moved(b) => b,
            Offer::Failed(_) => &[],
        }
    }
}

/// One channel guard, as the processes engine waits on it: the channel's offset, the slot the
/// value is read into or offered from, and an output's encoded value.
pub struct Guard<'a> {
    chan: u64,
    slot: SlotRef<'a>,
    /// `None` for an input (and for an output once delivered).
    offer: Option<Offer>,
}

/// A guard's slot: core's own, or an extended input's wrapper around it.
enum SlotRef<'a> {
    Plain(&'a mut dyn Slot),
    Held(Box<dyn Slot + 'a>),
}

impl SlotRef<'_> {
    fn get(&mut self) -> &mut dyn Slot {
        match self {
            SlotRef::Plain(s) => &mut **s,
            SlotRef::Held(s) => &mut **s,
        }
    }
}

impl Guard<'_> {
    fn spec(&self) -> Spec<'_> {
        Spec {
            chan: self.chan,
            want: match (&self.offer, &self.slot) {
                (Some(offer), _) => Want::Write(offer.bytes()),
                (None, SlotRef::Held(_)) => Want::ReadHeld,
                (None, SlotRef::Plain(_)) => Want::Read,
            },
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(Offer::Moved(bytes)) = self.offer.take() {
            self.slot.get().give_back(bytes);
        }
    }
}

pub(crate) fn input<'a, T>(chan: u64, slot: &'a mut Option<T>) -> Guard<'a>
where
    T: DeserializeOwned + 'static,
{
    Guard {
        chan,
        slot: SlotRef::Plain(slot),
        offer: None,
    }
}

pub(crate) fn input_held<'a, T>(chan: u64, slot: &'a mut Option<(T, Held)>) -> Guard<'a>
where
    T: DeserializeOwned + 'static,
{
    Guard {
        chan,
        slot: SlotRef::Held(Box::new(HeldSlot(slot))),
        offer: None,
    }
}

/// An output guard: its value is encoded now. A value serde cannot encode stays in its slot and
/// makes the select fail with [`ChannelError::Unencodable`], as a write does.
pub(crate) fn output<'a, T>(chan: u64, slot: &'a mut Option<T>) -> Guard<'a>
where
    T: Serialize + DeserializeOwned + 'static,
{
    const OFFERS: &str = "an output guard offers a value";
    let offer = if codec::is_bytes::<T>() {
        // A `Vec<u8>` is its own encoding: this cannot fail.
        match codec::encode(slot.take().expect(OFFERS)) {
            Ok(encoded) => Offer::Moved(encoded.into_bytes()),
            Err(e) => Offer::Failed(e),
        }
    } else {
        match codec::encode_ref(slot.as_ref().expect(OFFERS)) {
            Ok(bytes) => Offer::Encoded(bytes),
            Err(e) => Offer::Failed(e),
        }
    };
    Guard {
        chan,
        slot: SlotRef::Plain(slot),
        offer: Some(offer),
    }
}

/// The engine's `Backend::select`.
pub(crate) fn select(
    guards: &mut [Guard<'_>],
    order: &[usize],
    deadline: Deadline,
) -> Result<Option<usize>, ChannelError> {
    // Before anything is offered: a value that cannot be encoded fails the whole select, with
    // nothing sent and no channel touched.
    if let Some(e) = guards.iter().find_map(|g| match g.offer {
        Some(Offer::Failed(e)) => Some(e),
        _ => None,
    }) {
        return Err(e);
    }
    let fired = {
        let specs: Vec<Spec<'_>> = guards.iter().map(Guard::spec).collect();
        run(&specs, order, deadline)?
    };
    match fired {
        Fired::Guard(i, taken, holder) => {
            let g = &mut guards[i];
            match taken {
                Some(taken) => g.slot.get().fill(taken, holder),
                // Delivered: the value is the reader's (or the buffer's) now.
                None => {
                    if let Some(Offer::Encoded(_)) = g.offer.take() {
                        // The value itself stayed in the slot; a moved one is already out.
                        g.slot.get().clear();
                    }
                }
            }
            Ok(Some(i))
        }
        Fired::Fallback => Ok(None),
    }
}
