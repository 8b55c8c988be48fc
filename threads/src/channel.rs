//! Any-to-any channels on crossbeam-channel, with poison and retirement that wake every waiter at once.
//!
//! Values travel over one crossbeam channel (`bounded(0)` for a rendezvous, `bounded(n)` for a
//! buffer). Poison and retirement are a second, never-written crossbeam channel: ending the channel
//! drops its only sender, and the disconnection wakes every reader, writer and alternation that waits
//! on it, with no polling and no timeouts. Each blocking operation selects over both.

use crate::ThreadSlot;
use crossbeam_channel::{Receiver, Sender, bounded, select_biased};
use cspnet_core::{ChannelError, Leave, LeavingEnd, end_dropped, flush_dropped_ends};
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const OPEN: u8 = 0;
const RETIRED: u8 = 1;
const POISONED: u8 = 2;

/// The part of a channel that does not depend on the payload type: its state and its waiters' alarm.
pub(crate) struct Control {
    name: Option<Box<str>>,
    state: AtomicU8,
    readers: AtomicUsize,
    writers: AtomicUsize,
    /// Dropped when the channel ends; the disconnection of `wake_rx` wakes every waiter.
    wake_tx: Mutex<Option<Sender<()>>>,
    pub(crate) wake_rx: Receiver<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Reader,
    Writer,
}

impl Control {
    fn new(name: Option<Box<str>>) -> Self {
        let (wake_tx, wake_rx) = bounded(0);
        Control {
            name,
            state: AtomicU8::new(OPEN),
            readers: AtomicUsize::new(0),
            writers: AtomicUsize::new(0),
            wake_tx: Mutex::new(Some(wake_tx)),
            wake_rx,
        }
    }

    /// `Ok` while open, or the error every operation on the channel now fails with.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), ChannelError> {
        match self.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            RETIRED => Err(ChannelError::Retired),
            _ => Err(ChannelError::Poisoned),
        }
    }

    /// Ends the channel. Poison is final and overrides retirement; retirement never undoes poison.
    fn end(&self, to: u8) {
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
        // Ignore a poisoned lock: the only thing done under it is taking the sender.
        let sender = self
            .wake_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(sender);
    }

    pub(crate) fn poison(&self) {
        self.end(POISONED);
    }

    fn join(&self, role: Role) {
        self.count(role).fetch_add(1, Ordering::AcqRel);
    }

    fn leave(&self, role: Role, how: Leave) {
        if how == Leave::Poison {
            self.poison();
        }
        if self.count(role).fetch_sub(1, Ordering::AcqRel) == 1 {
            self.end(RETIRED);
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
    tx: Sender<T>,
    rx: Receiver<T>,
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
        Channel {
            control: Arc::new(Control::new(name)),
            tx,
            rx,
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
            rx: self.rx.clone(),
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
            tx: self.tx.clone(),
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
            tx: self.tx.clone(),
            rx: self.rx.clone(),
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
    pub(crate) rx: Receiver<T>,
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
        loop {
            match self.control.check() {
                Ok(()) => {}
                Err(ChannelError::Retired) => return self.drain(),
                Err(e) => return Err(e),
            }
            // Once a value is taken it is returned, whatever happens to the channel afterwards.
            select_biased! {
                recv(self.rx) -> v => return v.or_else(|_| self.drain()),
                recv(self.control.wake_rx) -> _ => {}
            }
        }
    }

    /// A retired channel still gives up what it buffered.
    pub(crate) fn drain(&self) -> Result<T, ChannelError> {
        self.rx.try_recv().map_err(|_| ChannelError::Retired)
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
            rx: self.rx.clone(),
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
    pub(crate) tx: Sender<T>,
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
        let mut value = Some(value);
        loop {
            self.control.check()?;
            select_biased! {
                // The value moves only if this operation is the one selected.
                send(self.tx, value.take().expect("a value is only sent once")) -> sent => {
                    return sent.map_err(|_| ChannelError::Retired);
                }
                recv(self.control.wake_rx) -> _ => {}
            }
        }
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
            tx: self.tx.clone(),
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
        next_value(self.reader, &mut self.done)
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
        next_value(&self.reader, &mut self.done)
    }
}

fn next_value<T>(reader: &Reader<T>, done: &mut bool) -> Option<Result<T, ChannelError>> {
    if *done {
        return None;
    }
    match reader.read() {
        Ok(v) => Some(Ok(v)),
        Err(ChannelError::Retired) => {
            *done = true;
            None
        }
        Err(e) => {
            *done = true;
            Some(Err(e))
        }
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
