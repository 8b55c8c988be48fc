//! The threads engine's channel: one crossbeam channel whose endpoints only the control block holds.
//!
//! Values travel over one crossbeam channel (`bounded(0)` for a rendezvous, `bounded(n)` for a
//! small buffer). crossbeam's `bounded(n)` reserves all `n` slots at once, so a buffer whose slots
//! would take more than [`EAGER_BYTES`] travels over an `unbounded` channel (which grows block by
//! block) instead, and its limit is kept by a [`Room`]: a writer first takes the room's token.
//! Its two endpoints are held only by the channel's control block: an operation borrows a
//! clone for its own length. Ending the channel drops the control block's endpoints, so once the
//! operations in flight finish, crossbeam's own disconnection wakes every reader, writer and
//! alternation still waiting, with no polling, no timeouts, and no second channel to select on (a
//! plain `recv`/`send` costs about half a select on a rendezvous channel).
//!
//! Why this cannot deadlock: a reader and a writer can never both be blocked on one channel (a
//! rendezvous pairs them; a buffer is never both empty and full), so the side that waits is always
//! woken when the other side's endpoints are gone. The one exception is a single alternation that
//! offers both to read and to write one channel: it holds both endpoints itself, so poison cannot
//! disconnect them, and it also waits on the channel's poison watch ([`Control::watch`]).

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use cspnet_core::{ChannelError, ChannelState, Leave, Membership, Role};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// A lock that nothing can leave inconsistent: only an `Option` or a count changes under it.
fn lock<E>(m: &Mutex<E>) -> MutexGuard<'_, E> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The most a buffer's slots may take before it grows as it fills rather than being reserved
/// whole when the channel is made.
pub(crate) const EAGER_BYTES: usize = 64 * 1024;

/// The limit of a large buffer, whose values travel over an unbounded channel: how many more
/// values it may take, and a token that is in its one-place channel exactly while that is more
/// than zero (or held by the writer that just took it). Waiting for room is waiting for the token,
/// so a write, and an alternation's output guard, wait on a crossbeam operation as for a small
/// buffer.
pub(crate) struct Room {
    free: Mutex<usize>,
    tx: Mutex<Option<Sender<()>>>,
    rx: Mutex<Option<Receiver<()>>>,
}

impl Room {
    fn new(capacity: usize) -> Self {
        let (tx, rx) = bounded(1);
        tx.try_send(()).expect("a fresh one-place channel has room");
        Room {
            free: Mutex::new(capacity),
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
        }
    }

    /// The token's receiver for one operation, or `None` once no writer can ever use it.
    pub(crate) fn receiver(&self) -> Option<Receiver<()>> {
        lock(&self.rx).clone()
    }

    /// A writer took the token: one place is its own now, and the token goes back while places
    /// remain.
    pub(crate) fn took(&self) {
        let mut free = lock(&self.free);
        *free = free.saturating_sub(1);
        if *free > 0 {
            self.put_token();
        }
    }

    /// A reader took a value: its place is free again, and the token is back if it was gone.
    pub(crate) fn freed(&self) {
        let mut free = lock(&self.free);
        *free += 1;
        if *free == 1 {
            self.put_token();
        }
    }

    /// Called with `free` locked, when the token is nowhere (so the one place is empty).
    fn put_token(&self) {
        if let Some(tx) = lock(&self.tx).as_ref() {
            let _ = tx.try_send(());
        }
    }
}

/// The crossbeam endpoints of one channel, lent to one operation at a time.
pub(crate) struct Endpoints<T> {
    tx: Mutex<Option<Sender<T>>>,
    rx: Mutex<Option<Receiver<T>>>,
    /// A large buffer's limit; `None` when crossbeam keeps it (`bounded`).
    pub(crate) room: Option<Room>,
}

impl<T> Endpoints<T> {
    /// A sender for one operation, or `None` once the channel has ended for writers.
    #[inline]
    pub(crate) fn sender(&self) -> Option<Sender<T>> {
        lock(&self.tx).clone()
    }

    /// A receiver for one operation, or `None` once the channel has ended for readers.
    #[inline]
    pub(crate) fn receiver(&self) -> Option<Receiver<T>> {
        lock(&self.rx).clone()
    }
}

/// Which endpoints an ending drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    /// The last writer left: readers drain the buffer, then see the disconnection.
    Senders,
    /// The last reader left: writers see the disconnection at once.
    Receivers,
    /// Poison: everyone sees it at once.
    Both,
}

/// A channel that disconnects only when its channel is poisoned: what an alternation holding both
/// ends of one channel waits on besides its guards.
struct Watch {
    tx: Mutex<Option<Sender<()>>>,
    rx: Receiver<()>,
}

/// The part of a channel that does not depend on the payload type: its state and membership.
pub(crate) struct Control {
    name: Option<Box<str>>,
    /// A [`ChannelState`]; it only moves forward (`fetch_max`).
    state: AtomicU8,
    members: Mutex<Membership>,
    watch: OnceLock<Watch>,
    /// Drops the channel's endpoints (type-erased, so an end can leave without knowing `T`).
    close: Box<dyn Fn(Close) + Send + Sync>,
}

impl Control {
    #[inline]
    pub(crate) fn state(&self) -> ChannelState {
        ChannelState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// The error an operation that found its endpoint gone reports.
    #[inline]
    pub(crate) fn ended(&self) -> ChannelError {
        self.state().check().err().unwrap_or(ChannelError::Retired)
    }

    /// Moves the channel to `to` (never back). The state changes before the endpoints go, so
    /// whoever sees an endpoint gone sees why.
    fn end(&self, to: ChannelState, close: Close) {
        self.state.fetch_max(to as u8, Ordering::AcqRel);
        (self.close)(close);
        if to == ChannelState::Poisoned
            && let Some(watch) = self.watch.get()
        {
            drop(lock(&watch.tx).take());
        }
    }

    pub(crate) fn poison(&self) {
        self.end(ChannelState::Poisoned, Close::Both);
    }

    /// The poison watch's receiver. Made on first use; the state is checked after this, so a
    /// poison that came before is seen there and one that comes after disconnects it.
    pub(crate) fn watch(&self) -> &Receiver<()> {
        &self
            .watch
            .get_or_init(|| {
                let (tx, rx) = bounded(0);
                let tx = (self.state() != ChannelState::Poisoned).then_some(tx);
                Watch {
                    tx: Mutex::new(tx),
                    rx,
                }
            })
            .rx
    }

    fn join(&self, role: Role) {
        lock(&self.members).join(role);
    }

    fn leave(&self, role: Role, how: Leave) {
        let to = lock(&self.members).leave(role, how);
        match to {
            Some(ChannelState::Poisoned) => self.poison(),
            Some(to) => {
                let close = match role {
                    Role::Reader => Close::Receivers,
                    _ => Close::Senders,
                };
                self.end(to, close);
            }
            None => {}
        }
    }
}

/// The threads engine's handle on a channel of `T`.
pub struct Raw<T> {
    pub(crate) control: Arc<Control>,
    pub(crate) ends: Arc<Endpoints<T>>,
}

impl<T> Clone for Raw<T> {
    fn clone(&self) -> Self {
        Raw {
            control: Arc::clone(&self.control),
            ends: Arc::clone(&self.ends),
        }
    }
}

impl<T: Send + 'static> Raw<T> {
    pub(crate) fn new(name: Option<&str>, capacity: usize) -> Self {
        // A slot is the value and crossbeam's stamp.
        let slot = size_of::<T>() + size_of::<usize>();
        let ((tx, rx), room) = if capacity.saturating_mul(slot) <= EAGER_BYTES {
            (bounded(capacity), None)
        } else {
            (unbounded(), Some(Room::new(capacity)))
        };
        let ends = Arc::new(Endpoints {
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
            room,
        });
        let held = Arc::clone(&ends);
        let close = Box::new(move |close: Close| {
            // Take under the lock, drop outside it: dropping may wake other threads.
            let tx = (close != Close::Receivers).then(|| lock(&held.tx).take());
            let rx = (close != Close::Senders).then(|| lock(&held.rx).take());
            // Writers waiting for room wake when no reader is left to make any.
            let room = held
                .room
                .as_ref()
                .filter(|_| close != Close::Senders)
                .map(|room| (lock(&room.tx).take(), lock(&room.rx).take()));
            drop((tx, rx, room));
        });
        Raw {
            control: Arc::new(Control {
                name: name.map(Into::into),
                state: AtomicU8::new(ChannelState::Open as u8),
                members: Mutex::new(Membership::default()),
                watch: OnceLock::new(),
                close,
            }),
            ends,
        }
    }
}

impl<T> Raw<T> {
    pub(crate) fn name(&self) -> Option<&str> {
        self.control.name.as_deref()
    }

    pub(crate) fn join(&self, role: Role) {
        self.control.join(role);
    }

    pub(crate) fn leave(&self, role: Role, how: Leave) {
        self.control.leave(role, how);
    }

    #[inline]
    pub(crate) fn read(&self) -> Result<T, ChannelError> {
        if self.control.state() == ChannelState::Poisoned {
            return Err(ChannelError::Poisoned);
        }
        // A retired channel still lends its receiver while values are buffered.
        let Some(rx) = self.ends.receiver() else {
            return Err(self.control.ended());
        };
        // Once a value is taken it is returned, whatever happens to the channel afterwards.
        let value = rx.recv().map_err(|_| self.control.ended())?;
        if let Some(room) = &self.ends.room {
            room.freed();
        }
        Ok(value)
    }

    #[inline]
    pub(crate) fn write(&self, value: T) -> Result<(), ChannelError> {
        self.control.state().check()?;
        if let Some(room) = &self.ends.room {
            // A place in the buffer first; the unbounded send below then never waits.
            let token = room.receiver().map(|rx| rx.recv());
            let Some(Ok(())) = token else {
                return Err(self.control.ended());
            };
            room.took();
        }
        let Some(tx) = self.ends.sender() else {
            return Err(self.control.ended());
        };
        tx.send(value).map_err(|_| self.control.ended())
    }
}
