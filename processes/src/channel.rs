//! Any-to-any channels whose state lives in the shared segment: handles, ends, and how ends leave.
//!
//! A `Channel`, `Reader` or `Writer` in a process's memory is only an offset to the channel's record
//! in the segment (plus the name). The record counts reader ends, writer ends and handles across
//! every OS process of the network. Reads and writes are one-guard operations of the engine
//! (`engine.rs`), the same commit protocol that serves alternations.
//!
//! # Ends across `fork`
//!
//! A forked child gets a copy of the process closure and of every end it captured; the parent's copy
//! must then vanish without leaving the channel. The parent drops it in *census* mode: each end's
//! `Drop` records `(channel, role)` in a list for that child instead of leaving. The list is exactly
//! what the child holds, so if the child dies without reporting, the parent poisons those channels.

use crate::ThreadSlot;
use crate::codec;
use crate::engine::{self, Fired, OPEN, POISONED, RETIRED, Spec, Want, run};
use crate::shm::{self, NIL, segment};
use cspnet_core::{ChannelError, Deadline, Leave, LeavingEnd, end_dropped, flush_dropped_ends};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// What a handle is to its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Role {
    Reader,
    Writer,
    /// A `Channel` handle: no end, but it keeps the record alive and can make ends.
    Handle,
}

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

fn counted_in_census(chan: u64, role: Role) -> bool {
    CENSUS.with(|c| match c.borrow_mut().as_mut() {
        Some(list) => {
            list.push((chan, role));
            true
        }
        None => false,
    })
}

/// Adds one handle (and end, for readers and writers) to channel `chan`.
pub(crate) fn join(chan: u64, role: Role) {
    let l = engine::lock(&[chan]);
    let c = l.chan(chan);
    c.handles.set(c.handles.get() + 1);
    let ends = match role {
        Role::Reader => &c.readers,
        Role::Writer => &c.writers,
        Role::Handle => return,
    };
    ends.set(ends.get() + 1);
}

/// Removes one handle of channel `chan`; an end leaves (retiring the channel when it was the last
/// of its role, poisoning it first when `how` says so).
pub(crate) fn leave(chan: u64, role: Role, how: Leave) {
    let mut l = engine::lock(&[chan]);
    if how == Leave::Poison {
        engine::end_channel(&mut l, chan, POISONED);
    }
    let c = l.chan(chan);
    let ends = match role {
        Role::Reader => Some(&c.readers),
        Role::Writer => Some(&c.writers),
        Role::Handle => None,
    };
    let last = ends.is_some_and(|n| {
        n.set(n.get() - 1);
        n.get() == 0
    });
    if last {
        engine::end_channel(&mut l, chan, RETIRED);
    }
    engine::release_handle(&mut l, chan);
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
        engine::end_channel(&mut l, c, POISONED);
    }
}

/// Makes the handles in `held` leave with `how` (ends recorded for a process that never started).
pub(crate) fn leave_held(held: Vec<(u64, Role)>, how: Leave) {
    for (c, role) in held {
        leave(c, role, how);
    }
}

fn poison_chan(chan: u64) {
    flush_dropped_ends::<ThreadSlot>();
    let mut l = engine::lock(&[chan]);
    engine::end_channel(&mut l, chan, POISONED);
}

fn state_error(chan: u64) -> Option<ChannelError> {
    // The handle keeps the record alive; its state word is atomic, read without the lock.
    match engine::state_now(chan) {
        OPEN => None,
        RETIRED => Some(ChannelError::Retired),
        _ => Some(ChannelError::Poisoned),
    }
}

/// A dropped end on its way out of the channel.
struct Departure {
    chan: u64,
    role: Role,
}

impl LeavingEnd for Departure {
    fn leave(self: Box<Self>, how: Leave) {
        leave(self.chan, self.role, how);
    }
}

fn dropped(chan: u64, role: Role) {
    if chan == NIL || counted_in_census(chan, role) {
        return;
    }
    if role == Role::Handle {
        leave(chan, role, Leave::Retire);
    } else {
        end_dropped::<ThreadSlot>(Box::new(Departure { chan, role }));
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

fn serialize_handle<S: Serializer>(
    chan: u64,
    role: Role,
    name: &Option<Arc<str>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    join(chan, role);
    SERIALIZED.with(|c| {
        if let Some(list) = c.borrow_mut().as_mut() {
            list.push((chan, role));
        }
    });
    Wire {
        chan,
        role,
        name: name.as_deref().map(str::to_owned),
    }
    .serialize(s)
}

fn deserialize_handle<'de, D: Deserializer<'de>>(
    d: D,
    want: Role,
) -> Result<(u64, Option<Arc<str>>), D::Error> {
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
    Ok((w.chan, w.name.map(Arc::from)))
}

/// An any-to-any channel in shared memory: any number of OS processes read from it and write to it.
///
/// Unbuffered ([`Channel::new`]), a write completes only when a reader has taken the value (a
/// rendezvous). Buffered ([`Channel::with_buffer`]), it holds up to `n` values. Payloads are encoded
/// with serde (bincode) into the segment's heap.
///
/// ```
/// use cspnet_processes::{Channel, parallel, process};
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
    chan: u64,
    name: Option<Arc<str>>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Channel<T> {
    /// An unbuffered channel: every write is a rendezvous with a reader.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<String>::new();
    /// assert_eq!(ch.name(), None);
    /// ```
    pub fn new() -> Self {
        Self::build(None, 0)
    }

    /// An unbuffered channel with a name (shown in `Debug` output).
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u8>::named("requests");
    /// assert_eq!(ch.name(), Some("requests"));
    /// ```
    pub fn named(name: &str) -> Self {
        Self::build(Some(name.into()), 0)
    }

    /// A channel that holds up to `n` values before writers wait (`0` is a rendezvous).
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(2);
    /// let w = ch.writer();
    /// # let _r = ch.reader();
    /// w.write(1).unwrap();
    /// w.write(2).unwrap(); // both fit without a reader
    /// ```
    pub fn with_buffer(n: usize) -> Self {
        Self::build(None, n)
    }

    fn build(name: Option<Arc<str>>, n: usize) -> Self {
        let mut l = engine::lock(&[]);
        let chan = match engine::new_channel(&mut l, n) {
            Ok(c) => c,
            Err(e) => panic!(
                "cspnet-processes: a channel buffer of {n} values does not fit in the shared \
                 segment ({e}); raise CSPNET_SHM_SIZE"
            ),
        };
        Channel {
            chan,
            name,
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Default for Channel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Channel<T> {
    /// Joins the channel as a new reader end.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(5).unwrap();
    /// assert_eq!(r.read(), Ok(5));
    /// ```
    pub fn reader(&self) -> Reader<T> {
        join(self.chan, Role::Reader);
        Reader {
            chan: self.chan,
            name: self.name.clone(),
            left: false,
            _t: PhantomData,
        }
    }

    /// Joins the channel as a new writer end.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let w = ch.writer();
    /// # let _r = ch.reader();
    /// w.write(5).unwrap();
    /// ```
    pub fn writer(&self) -> Writer<T> {
        join(self.chan, Role::Writer);
        Writer {
            chan: self.chan,
            name: self.name.clone(),
            left: false,
            _t: PhantomData,
        }
    }

    /// Poisons the channel: every pending and later operation on it fails with
    /// [`ChannelError::Poisoned`], in every process.
    ///
    /// ```
    /// use cspnet_processes::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let r = ch.reader();
    /// ch.poison();
    /// assert_eq!(r.read(), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        poison_chan(self.chan);
    }

    /// The channel's name, if it was made with [`Channel::named`].
    ///
    /// ```
    /// assert_eq!(cspnet_processes::Channel::<u8>::named("x").name(), Some("x"));
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        join(self.chan, Role::Handle);
        Channel {
            chan: self.chan,
            name: self.name.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> Drop for Channel<T> {
    fn drop(&mut self) {
        dropped(self.chan, Role::Handle);
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_channel(f, "Channel", self.chan, &self.name)
    }
}

fn fmt_channel(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    chan: u64,
    name: &Option<Arc<str>>,
) -> fmt::Result {
    f.debug_struct(what)
        .field("name", name)
        .field("offset", &chan)
        .field("state", &state_error(chan))
        .finish()
}

impl<T> Serialize for Channel<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.chan, Role::Handle, &self.name, s)
    }
}

impl<'de, T> Deserialize<'de> for Channel<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (chan, name) = deserialize_handle(d, Role::Handle)?;
        Ok(Channel {
            chan,
            name,
            _t: PhantomData,
        })
    }
}

/// A reader end of a [`Channel`]. Each clone is one more reader; dropping or
/// [`retire`](Self::retire) leaves.
///
/// Ends are `Serialize`/`Deserialize` so they can be passed to a re-executed child
/// ([`exec`](crate::exec)) or sent over a channel: serializing joins the channel on behalf of the
/// receiving side, which adopts that membership when it deserializes. Deserialize each serialized
/// end exactly once, in a process of the same network.
///
/// ```
/// use cspnet_processes::{Channel, ChannelError};
/// let ch = Channel::<u32>::with_buffer(2);
/// let (r, w) = (ch.reader(), ch.writer());
/// w.write(1).unwrap();
/// drop(w); // the last writer left: the channel retires once drained
/// assert_eq!(r.read(), Ok(1));
/// assert_eq!(r.read(), Err(ChannelError::Retired));
/// ```
pub struct Reader<T> {
    chan: u64,
    name: Option<Arc<str>>,
    left: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + 'static> Reader<T> {
    /// Waits for a value. Fails with `Poisoned` once the channel is poisoned, and with `Retired`
    /// once every writer has left and nothing is buffered. A value taken is returned, whatever
    /// happens to the channel afterwards.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<String>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write("hi".to_string()).unwrap();
    /// assert_eq!(r.read(), Ok("hi".to_string()));
    /// ```
    pub fn read(&self) -> Result<T, ChannelError> {
        flush_dropped_ends::<ThreadSlot>();
        match run(
            &[Spec {
                chan: self.chan,
                want: Want::Read,
            }],
            &[0],
            Deadline::Never,
        )? {
            Fired::Guard(_, Some(taken)) => Ok(taken.decode()),
            _ => unreachable!("a lone read commits with a value or fails"),
        }
    }

    /// Iterates over the values read, ending when the channel retires. A poisoned channel yields
    /// one `Err(Poisoned)` and then ends, so `?` in the loop passes the poison on.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(3);
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
}

impl<T> Reader<T> {
    /// Poisons the channel (the end stays usable, but every operation now fails).
    ///
    /// ```
    /// use cspnet_processes::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// r.poison();
    /// assert_eq!(w.write(1), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        poison_chan(self.chan);
    }

    /// Leaves the channel; when this was the last reader, the channel is retired.
    ///
    /// ```
    /// use cspnet_processes::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// r.retire();
    /// assert_eq!(w.write(1), Err(ChannelError::Retired));
    /// ```
    pub fn retire(mut self) {
        self.left = true;
        leave(self.chan, Role::Reader, Leave::Retire);
    }

    pub(crate) fn chan(&self) -> u64 {
        self.chan
    }
}

impl<T> Clone for Reader<T> {
    fn clone(&self) -> Self {
        join(self.chan, Role::Reader);
        Reader {
            chan: self.chan,
            name: self.name.clone(),
            left: false,
            _t: PhantomData,
        }
    }
}

impl<T> Drop for Reader<T> {
    fn drop(&mut self) {
        if !self.left {
            dropped(self.chan, Role::Reader);
        }
    }
}

impl<T> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_channel(f, "Reader", self.chan, &self.name)
    }
}

impl<T> Serialize for Reader<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.chan, Role::Reader, &self.name, s)
    }
}

impl<'de, T> Deserialize<'de> for Reader<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (chan, name) = deserialize_handle(d, Role::Reader)?;
        Ok(Reader {
            chan,
            name,
            left: false,
            _t: PhantomData,
        })
    }
}

/// A writer end of a [`Channel`]. Each clone is one more writer; dropping or
/// [`retire`](Self::retire) leaves. Serializable like [`Reader`].
///
/// ```
/// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
/// let (r, w) = (ch.reader(), ch.writer());
/// w.write(9).unwrap();
/// assert_eq!(r.read(), Ok(9));
/// ```
pub struct Writer<T> {
    chan: u64,
    name: Option<Arc<str>>,
    left: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + 'static> Writer<T> {
    /// Writes a value: waits until a reader has taken it (unbuffered) or the buffer has room (and
    /// the heap has room for it). Fails with `Poisoned` once the channel is poisoned, with `Retired`
    /// once every reader has left (then the value was not delivered), and with `TooLarge` when the
    /// encoded value can never fit in the heap.
    ///
    /// ```
    /// use cspnet_processes::{Channel, parallel, process};
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
        let encoded = codec::encode(value);
        run(
            &[Spec {
                chan: self.chan,
                want: Want::Write(encoded.bytes()),
            }],
            &[0],
            Deadline::Never,
        )
        .map(|_| ())
    }
}

impl<T> Writer<T> {
    /// Poisons the channel (the end stays usable, but every operation now fails).
    ///
    /// ```
    /// use cspnet_processes::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.poison();
    /// assert_eq!(r.read(), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        poison_chan(self.chan);
    }

    /// Leaves the channel; when this was the last writer, the channel is retired (readers still
    /// get what was buffered).
    ///
    /// ```
    /// use cspnet_processes::{Channel, ChannelError};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.retire();
    /// assert_eq!(r.read(), Err(ChannelError::Retired));
    /// ```
    pub fn retire(mut self) {
        self.left = true;
        leave(self.chan, Role::Writer, Leave::Retire);
    }

    pub(crate) fn chan(&self) -> u64 {
        self.chan
    }
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Self {
        join(self.chan, Role::Writer);
        Writer {
            chan: self.chan,
            name: self.name.clone(),
            left: false,
            _t: PhantomData,
        }
    }
}

impl<T> Drop for Writer<T> {
    fn drop(&mut self) {
        if !self.left {
            dropped(self.chan, Role::Writer);
        }
    }
}

impl<T> fmt::Debug for Writer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_channel(f, "Writer", self.chan, &self.name)
    }
}

impl<T> Serialize for Writer<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.chan, Role::Writer, &self.name, s)
    }
}

impl<'de, T> Deserialize<'de> for Writer<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (chan, name) = deserialize_handle(d, Role::Writer)?;
        Ok(Writer {
            chan,
            name,
            left: false,
            _t: PhantomData,
        })
    }
}

/// Iterator over the values of a [`Reader`]; see [`Reader::iter`].
///
/// ```
/// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
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

impl<T: DeserializeOwned + 'static> Iterator for Iter<'_, T> {
    type Item = Result<T, ChannelError>;

    fn next(&mut self) -> Option<Self::Item> {
        cspnet_core::next_in_stream(|| self.reader.read(), &mut self.done)
    }
}

/// Owning iterator over the values of a [`Reader`]; see [`Reader::iter`].
///
/// ```
/// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
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

impl<T: DeserializeOwned + 'static> Iterator for IntoIter<T> {
    type Item = Result<T, ChannelError>;

    fn next(&mut self) -> Option<Self::Item> {
        cspnet_core::next_in_stream(|| self.reader.read(), &mut self.done)
    }
}

impl<'a, T: DeserializeOwned + 'static> IntoIterator for &'a Reader<T> {
    type Item = Result<T, ChannelError>;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T: DeserializeOwned + 'static> IntoIterator for Reader<T> {
    type Item = Result<T, ChannelError>;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter {
            reader: self,
            done: false,
        }
    }
}
