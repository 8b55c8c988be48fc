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
//!
//! # Extended rendezvous
//!
//! crossbeam releases a writer at the hand-off, so a rendezvous value travels with a [`Ticket`]:
//! its writer thread's [`Hold`] and the write's number. A reader marks the ticket done as soon as
//! it has the value; an extended reader ([`Raw::read_held`]) only when its [`Held`] is dropped.
//! A writer waits for its ticket only if an extended reader was at the channel
//! ([`Control::extended`], counted before that reader takes a value, so a writer whose value it
//! took sees the count): otherwise a write costs the ticket and nothing more.

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded, unbounded};
use cspnet_core::{
    ChannelError, ChannelState, Leave, Membership, OnChannel, Role, ThreadSlot, blocking,
    blocking_raw,
};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;

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

/// Where a writer thread waits for the extended readers of its values: one per thread.
pub(crate) struct Hold {
    /// The highest write number whose reader is done with it.
    done: AtomicU64,
    /// Set while the writer may be parked (the reader unparks it only then).
    sleeping: AtomicBool,
    thread: Thread,
}

impl Hold {
    /// Parks until write `number` is done with.
    fn wait(&self, number: u64) {
        // A Dekker handshake with `Ticket::release`: each side stores, then loads the other's word.
        while self.done.load(Ordering::SeqCst) < number {
            self.sleeping.store(true, Ordering::SeqCst);
            if self.done.load(Ordering::SeqCst) < number {
                std::thread::park();
            }
            self.sleeping.store(false, Ordering::SeqCst);
        }
    }
}

thread_local! {
    /// This thread's hold and the number of its last rendezvous write.
    static HOLD: (Arc<Hold>, Cell<u64>) = (
        Arc::new(Hold {
            done: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            thread: std::thread::current(),
        }),
        Cell::new(0),
    );
}

/// What travels with a rendezvous value: who wrote it, and which of its writes it is.
pub(crate) struct Ticket {
    hold: Arc<Hold>,
    number: u64,
}

impl Ticket {
    /// A ticket for this thread's next write.
    fn next() -> Ticket {
        HOLD.with(|(hold, last)| {
            last.set(last.get() + 1);
            Ticket {
                hold: Arc::clone(hold),
                number: last.get(),
            }
        })
    }

    /// The reader is done with the value: its writer may go on.
    pub(crate) fn release(self) {
        self.hold.done.fetch_max(self.number, Ordering::SeqCst);
        if self.hold.sleeping.load(Ordering::SeqCst) {
            self.hold.thread.unpark();
        }
    }
}

/// Waits, after a rendezvous write numbered `number` was taken, until its reader is done with it,
/// if an extended reader was at the channel.
pub(crate) fn wait_for_reader(control: &Control, number: Option<u64>) {
    if let Some(number) = number
        && control.extended.load(Ordering::SeqCst) > 0
    {
        HOLD.with(|(hold, _)| hold.wait(number));
    }
}

/// What crosses the crossbeam channel: the value, and a ticket on a rendezvous channel.
pub(crate) type Msg<T> = (T, Option<Ticket>);

/// Keeps the writer of an extended read waiting until dropped (the engine's `Carries::Held`).
pub struct Held {
    ticket: Option<Ticket>,
    control: Arc<Control>,
}

impl Held {
    /// Holds the writer of a value taken by an extended reader, which [`Control::extended`] has
    /// counted (this takes the count over).
    pub(crate) fn new(ticket: Option<Ticket>, control: Arc<Control>) -> Held {
        Held { ticket, control }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            ticket.release();
        }
        self.control.extended.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The crossbeam endpoints of one channel, lent to one operation at a time.
pub(crate) struct Endpoints<T> {
    tx: Mutex<Option<Sender<Msg<T>>>>,
    rx: Mutex<Option<Receiver<Msg<T>>>>,
    /// A large buffer's limit; `None` when crossbeam keeps it (`bounded`).
    pub(crate) room: Option<Room>,
}

impl<T> Endpoints<T> {
    /// A sender for one operation, or `None` once the channel has ended for writers.
    #[inline]
    pub(crate) fn sender(&self) -> Option<Sender<Msg<T>>> {
        lock(&self.tx).clone()
    }

    /// A receiver for one operation, or `None` once the channel has ended for readers.
    #[inline]
    pub(crate) fn receiver(&self) -> Option<Receiver<Msg<T>>> {
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
    /// Whether values are handed over (capacity 0), so that a writer can be held.
    rendezvous: bool,
    /// Extended readers at the channel: waiting for a value, or holding its writer.
    pub(crate) extended: AtomicUsize,
    /// Core's word (`Carries::word`), and where `wait_word` sleeps: a waiter looks at the word
    /// under `word_lock`, and a waker takes that lock before it notifies, so no wake is lost.
    pub(crate) word: AtomicU64,
    word_lock: Mutex<()>,
    word_cv: Condvar,
    /// Drops the channel's endpoints (type-erased, so an end can leave without knowing `T`).
    close: Box<dyn Fn(Close) + Send + Sync>,
}

/// Runs `wait`, which is about to sleep on `control` as `role`, as a blocked operation that
/// core's deadlock detector can end (by poisoning the channel).
pub(crate) fn blocked<R>(
    control: &Control,
    role: Role,
    wait: impl FnOnce() -> Result<R, ChannelError>,
) -> Result<R, ChannelError> {
    let poison = || control.poison();
    blocking::<ThreadSlot, R>(&OnChannel::new(control.name(), role, &poison), wait)
}

impl Control {
    /// The channel's name, if it has one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// A ticket for a write on this channel (only a rendezvous value has one) and its number.
    #[inline]
    pub(crate) fn ticket(&self) -> (Option<Ticket>, Option<u64>) {
        if self.rendezvous {
            let t = Ticket::next();
            let n = t.number;
            (Some(t), Some(n))
        } else {
            (None, None)
        }
    }

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
        if to == ChannelState::Poisoned {
            self.wake_word();
        }
    }

    /// `Carries::wait_word`.
    pub(crate) fn wait_word(&self, done: &mut dyn FnMut(u64) -> bool) -> Result<(), ChannelError> {
        let mut guard = lock(&self.word_lock);
        // Whether the deadlock detector ended a wait here (by poisoning the channel).
        let mut deadlocked = false;
        loop {
            // Poison wins, also over a change of the word that came before it.
            if self.state() == ChannelState::Poisoned {
                return Err(if deadlocked {
                    ChannelError::Deadlock
                } else {
                    ChannelError::Poisoned
                });
            }
            if done(self.word.load(Ordering::SeqCst)) {
                return Ok(());
            }
            let poison = || self.poison();
            // The lock is let go before the wait counts as over: the detector may be poisoning
            // this channel (which takes the lock) while it holds this process's record.
            let ((), ended) = blocking_raw::<ThreadSlot, _>(
                &OnChannel::new(self.name(), Role::Handle, &poison),
                || drop(self.word_cv.wait(guard).unwrap_or_else(|e| e.into_inner())),
            );
            deadlocked |= ended;
            guard = lock(&self.word_lock);
        }
    }

    /// `Carries::wake_word`.
    pub(crate) fn wake_word(&self) {
        drop(lock(&self.word_lock));
        self.word_cv.notify_all();
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
        // A slot is the value (with its ticket) and crossbeam's stamp.
        let slot = size_of::<Msg<T>>() + size_of::<usize>();
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
                rendezvous: capacity == 0,
                extended: AtomicUsize::new(0),
                word: AtomicU64::new(0),
                word_lock: Mutex::new(()),
                word_cv: Condvar::new(),
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
        let (value, ticket) = self.take()?;
        if let Some(t) = ticket {
            t.release();
        }
        Ok(value)
    }

    /// A read that holds the writer until the returned [`Held`] is dropped.
    pub(crate) fn read_held(&self) -> Result<(T, Held), ChannelError> {
        // Counted before the value is taken: a writer whose value this takes sees the count.
        self.control.extended.fetch_add(1, Ordering::SeqCst);
        match self.take() {
            Ok((value, ticket)) => Ok((value, Held::new(ticket, Arc::clone(&self.control)))),
            Err(e) => {
                self.control.extended.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    #[inline]
    fn take(&self) -> Result<Msg<T>, ChannelError> {
        if self.control.state() == ChannelState::Poisoned {
            return Err(ChannelError::Poisoned);
        }
        // A retired channel still lends its receiver while values are buffered.
        let Some(rx) = self.ends.receiver() else {
            return Err(self.control.ended());
        };
        // Once a value is taken it is returned, whatever happens to the channel afterwards.
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(TryRecvError::Disconnected) => return Err(self.control.ended()),
            // Only an operation that must sleep counts as blocked.
            Err(TryRecvError::Empty) => blocked(&self.control, Role::Reader, || {
                rx.recv().map_err(|_| self.control.ended())
            })?,
        };
        if let Some(room) = &self.ends.room {
            room.freed();
        }
        Ok(msg)
    }

    #[inline]
    pub(crate) fn write(&self, value: T) -> Result<(), ChannelError> {
        self.control.state().check()?;
        if let Some(room) = &self.ends.room {
            // A place in the buffer first; the unbounded send below then never waits.
            let token = room.receiver().map(|rx| match rx.try_recv() {
                Ok(()) => Ok(()),
                Err(TryRecvError::Disconnected) => Err(self.control.ended()),
                Err(TryRecvError::Empty) => blocked(&self.control, Role::Writer, || {
                    rx.recv().map_err(|_| self.control.ended())
                }),
            });
            match token {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(self.control.ended()),
            }
            room.took();
        }
        let Some(tx) = self.ends.sender() else {
            return Err(self.control.ended());
        };
        let (ticket, number) = self.control.ticket();
        match tx.try_send((value, ticket)) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(self.control.ended()),
            Err(TrySendError::Full(msg)) => blocked(&self.control, Role::Writer, || {
                tx.send(msg).map_err(|_| self.control.ended())
            })?,
        }
        wait_for_reader(&self.control, number);
        Ok(())
    }
}
