//! Any-to-any channels on crossbeam-channel, with poison and retirement that wake every waiter at once.
//!
//! Values travel over one crossbeam channel (`bounded(0)` for a rendezvous, `bounded(n)` for a
//! buffer). Its two endpoints are held only by the channel's control block: an end borrows a clone
//! for the length of one operation. Ending the channel drops the control block's endpoints, so once
//! the operations in flight finish, crossbeam's own disconnection wakes every reader, writer and
//! alternation still waiting, with no polling, no timeouts, and no second channel to select on (a
//! plain `recv`/`send` costs about half a select on a rendezvous channel).
//!
//! Why this cannot deadlock: a reader and a writer can never both be blocked on one channel (a
//! rendezvous pairs them; a buffer is never both empty and full), so the side that waits is always
//! woken when the other side's endpoints are gone.

use crate::ThreadSlot;
use crossbeam_channel::{Receiver, Sender, bounded};
use cspnet_core::{ChannelError, Leave, LeavingEnd, end_dropped, flush_dropped_ends};
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

const OPEN: u8 = 0;
const RETIRED: u8 = 1;
const POISONED: u8 = 2;

/// The crossbeam endpoints of one channel, lent to one operation at a time.
pub(crate) struct Endpoints<T> {
    tx: Mutex<Option<Sender<T>>>,
    rx: Mutex<Option<Receiver<T>>>,
}

/// A lock that nothing can leave inconsistent: only an `Option` is swapped under it.
fn lock<E>(m: &Mutex<E>) -> MutexGuard<'_, E> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

/// The part of a channel that does not depend on the payload type: its state and membership.
pub(crate) struct Control {
    name: Option<Box<str>>,
    state: AtomicU8,
    readers: AtomicUsize,
    writers: AtomicUsize,
    /// Drops the channel's endpoints (type-erased, so ends can leave without knowing `T`).
    close: Box<dyn Fn(Close) + Send + Sync>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Reader,
    Writer,
}

impl Control {
    /// `Ok` while open, or the error every operation on the channel now fails with.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), ChannelError> {
        match self.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            RETIRED => Err(ChannelError::Retired),
            _ => Err(ChannelError::Poisoned),
        }
    }

    /// The error an operation that found its endpoint gone reports.
    #[inline]
    pub(crate) fn ended(&self) -> ChannelError {
        self.check().err().unwrap_or(ChannelError::Retired)
    }

    /// Ends the channel. Poison is final and overrides retirement; retirement never undoes poison.
    /// The state changes before the endpoints go, so whoever sees an endpoint gone sees why.
    fn end(&self, to: u8, close: Close) {
        let mut current = self.state.load(Ordering::Acquire);
        while current < to {
            match self
                .state
                .compare_exchange(current, to, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        (self.close)(close);
    }

    pub(crate) fn poison(&self) {
        self.end(POISONED, Close::Both);
    }

    fn join(&self, role: Role) {
        self.count(role).fetch_add(1, Ordering::AcqRel);
    }

    fn leave(&self, role: Role, how: Leave) {
        if how == Leave::Poison {
            self.poison();
        }
        if self.count(role).fetch_sub(1, Ordering::AcqRel) == 1 {
            let close = match role {
                Role::Reader => Close::Receivers,
                Role::Writer => Close::Senders,
            };
            self.end(RETIRED, close);
        }
    }

    fn count(&self, role: Role) -> &AtomicUsize {
        match role {
            Role::Reader => &self.readers,
            Role::Writer => &self.writers,
        }
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

fn departed(control: &Arc<Control>, role: Role) {
    end_dropped::<ThreadSlot>(Box::new(Departure {
        control: Arc::clone(control),
        role,
    }));
}

/// An any-to-any channel: any number of processes read from it and write to it.
///
/// Unbuffered ([`Channel::new`]), a write completes only when a reader has taken the value (a
/// rendezvous). Buffered ([`Channel::with_buffer`]), it holds up to `n` values.
///
/// ```
/// use cspnet_threads::{Channel, parallel, process};
///
/// let ch = Channel::<u32>::new();
/// let (r, w) = (ch.reader(), ch.writer());
/// let out = parallel([
///     process(move || { w.write(42)?; Ok(0) }),
///     process(move || r.read()),
/// ]).unwrap();
/// assert_eq!(out, vec![Ok(0), Ok(42)]);
/// ```
pub struct Channel<T> {
    control: Arc<Control>,
    ends: Arc<Endpoints<T>>,
}

impl<T: Send + 'static> Channel<T> {
    /// An unbuffered channel: every write is a rendezvous with a reader.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<String>::new();
    /// assert_eq!(ch.name(), None);
    /// ```
    pub fn new() -> Self {
        Self::build(None, 0)
    }

    /// An unbuffered channel with a name (shown in `Debug` output and traces).
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u8>::named("requests");
    /// assert_eq!(ch.name(), Some("requests"));
    /// ```
    pub fn named(name: &str) -> Self {
        Self::build(Some(name.into()), 0)
    }

    /// A channel that holds up to `n` values before writers wait (`0` is a rendezvous).
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(2);
    /// let w = ch.writer();
    /// w.write(1).unwrap();
    /// w.write(2).unwrap(); // both fit without a reader
    /// # let _r = ch.reader();
    /// ```
    pub fn with_buffer(n: usize) -> Self {
        Self::build(None, n)
    }

    fn build(name: Option<Box<str>>, n: usize) -> Self {
        let (tx, rx) = bounded(n);
        let ends = Arc::new(Endpoints {
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
        });
        let held = Arc::clone(&ends);
        let close = Box::new(move |close: Close| {
            // Take under the lock, drop outside it: dropping may wake other threads.
            let tx = (close != Close::Receivers).then(|| lock(&held.tx).take());
            let rx = (close != Close::Senders).then(|| lock(&held.rx).take());
            drop((tx, rx));
        });
        Channel {
            control: Arc::new(Control {
                name,
                state: AtomicU8::new(OPEN),
                readers: AtomicUsize::new(0),
                writers: AtomicUsize::new(0),
                close,
            }),
            ends,
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
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(5).unwrap();
    /// assert_eq!(r.read(), Ok(5));
    /// ```
    pub fn reader(&self) -> Reader<T> {
        self.control.join(Role::Reader);
        Reader {
            control: Arc::clone(&self.control),
            ends: Arc::clone(&self.ends),
            left: false,
        }
    }

    /// Joins the channel as a new writer end.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
    /// let w = ch.writer();
    /// # let _r = ch.reader();
    /// w.write(5).unwrap();
    /// ```
    pub fn writer(&self) -> Writer<T> {
        self.control.join(Role::Writer);
        Writer {
            control: Arc::clone(&self.control),
            ends: Arc::clone(&self.ends),
            left: false,
        }
    }

    /// Poisons the channel: every pending and later operation on it fails with
    /// [`ChannelError::Poisoned`].
    ///
    /// ```
    /// use cspnet_threads::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let r = ch.reader();
    /// ch.poison();
    /// assert_eq!(r.read(), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        self.control.poison();
    }

    /// The channel's name, if it was made with [`Channel::named`].
    ///
    /// ```
    /// assert_eq!(cspnet_threads::Channel::<u8>::named("x").name(), Some("x"));
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.control.name.as_deref()
    }
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            control: Arc::clone(&self.control),
            ends: Arc::clone(&self.ends),
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_channel(f, "Channel", &self.control)
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
/// use cspnet_threads::{Channel, ChannelError};
/// let ch = Channel::<u32>::with_buffer(2);
/// let (r, w) = (ch.reader(), ch.writer());
/// w.write(1).unwrap();
/// drop(w); // the last writer left: the channel retires once drained
/// assert_eq!(r.read(), Ok(1));
/// assert_eq!(r.read(), Err(ChannelError::Retired));
/// ```
pub struct Reader<T> {
    control: Arc<Control>,
    pub(crate) ends: Arc<Endpoints<T>>,
    left: bool,
}

impl<T> Reader<T> {
    /// Waits for a value. Fails with `Poisoned` once the channel is poisoned, and with `Retired`
    /// once every writer has left and nothing is buffered.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<&str>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write("hi").unwrap();
    /// assert_eq!(r.read(), Ok("hi"));
    /// ```
    pub fn read(&self) -> Result<T, ChannelError> {
        flush_dropped_ends::<ThreadSlot>();
        if let Err(ChannelError::Poisoned) = self.control.check() {
            return Err(ChannelError::Poisoned);
        }
        // A retired channel still lends its receiver while values are buffered.
        let Some(rx) = self.ends.receiver() else {
            return Err(self.control.ended());
        };
        // Once a value is taken it is returned, whatever happens to the channel afterwards.
        rx.recv().map_err(|_| self.control.ended())
    }

    /// Poisons the channel (the end stays usable, but every operation now fails).
    ///
    /// ```
    /// use cspnet_threads::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// r.poison();
    /// assert_eq!(w.write(1), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        self.control.poison();
    }

    /// Leaves the channel; when this was the last reader, the channel is retired.
    ///
    /// ```
    /// use cspnet_threads::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// r.retire();
    /// assert_eq!(w.write(1), Err(ChannelError::Retired));
    /// ```
    pub fn retire(mut self) {
        self.left = true;
        self.control.leave(Role::Reader, Leave::Retire);
    }

    /// Iterates over the values read, ending when the channel retires. A poisoned channel yields
    /// one `Err(Poisoned)` and then ends, so `?` in the loop passes the poison on.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(3);
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

    pub(crate) fn control(&self) -> &Control {
        &self.control
    }
}

impl<T> Clone for Reader<T> {
    fn clone(&self) -> Self {
        self.control.join(Role::Reader);
        Reader {
            control: Arc::clone(&self.control),
            ends: Arc::clone(&self.ends),
            left: false,
        }
    }
}

impl<T> Drop for Reader<T> {
    fn drop(&mut self) {
        if !self.left {
            departed(&self.control, Role::Reader);
        }
    }
}

impl<T> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_channel(f, "Reader", &self.control)
    }
}

/// A writer end of a [`Channel`]. Each clone is one more writer; dropping or
/// [`retire`](Self::retire) leaves.
///
/// ```
/// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
/// let (r, w) = (ch.reader(), ch.writer());
/// w.write(9).unwrap();
/// assert_eq!(r.read(), Ok(9));
/// ```
pub struct Writer<T> {
    control: Arc<Control>,
    pub(crate) ends: Arc<Endpoints<T>>,
    left: bool,
}

impl<T> Writer<T> {
    /// Writes a value: waits until a reader has taken it (unbuffered) or the buffer has room.
    /// Fails with `Poisoned` once the channel is poisoned, and with `Retired` once every reader has
    /// left; then the value was not delivered.
    ///
    /// ```
    /// use cspnet_threads::{Channel, parallel, process};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// let out = parallel([
    ///     process(move || w.write(3).map(|()| 0)),
    ///     process(move || r.read()),
    /// ]).unwrap();
    /// assert_eq!(out[1], Ok(3));
    /// ```
    pub fn write(&self, value: T) -> Result<(), ChannelError> {
        flush_dropped_ends::<ThreadSlot>();
        self.control.check()?;
        let Some(tx) = self.ends.sender() else {
            return Err(self.control.ended());
        };
        tx.send(value).map_err(|_| self.control.ended())
    }

    /// Poisons the channel (the end stays usable, but every operation now fails).
    ///
    /// ```
    /// use cspnet_threads::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.poison();
    /// assert_eq!(r.read(), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        self.control.poison();
    }

    /// Leaves the channel; when this was the last writer, the channel is retired (readers still
    /// get what was buffered).
    ///
    /// ```
    /// use cspnet_threads::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.retire();
    /// assert_eq!(r.read(), Err(ChannelError::Retired));
    /// ```
    pub fn retire(mut self) {
        self.left = true;
        self.control.leave(Role::Writer, Leave::Retire);
    }

    pub(crate) fn control(&self) -> &Control {
        &self.control
    }
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Self {
        self.control.join(Role::Writer);
        Writer {
            control: Arc::clone(&self.control),
            ends: Arc::clone(&self.ends),
            left: false,
        }
    }
}

impl<T> Drop for Writer<T> {
    fn drop(&mut self) {
        if !self.left {
            departed(&self.control, Role::Writer);
        }
    }
}

impl<T> fmt::Debug for Writer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_channel(f, "Writer", &self.control)
    }
}

/// Iterator over the values of a [`Reader`]; see [`Reader::iter`].
///
/// ```
/// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
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
/// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
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
