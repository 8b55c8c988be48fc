//! Any-to-any channels and their ends, written once over [`Carries`]: `Channel`, `Reader`, `Writer`.
//!
//! A handle holds the engine's raw channel ([`Carries::Chan`]) and counts as one member of it:
//! making or cloning an end joins, dropping or retiring it leaves, and the engine applies the
//! [`Membership`](crate::Membership) rule. Every operation first lets the ends the running process
//! dropped leave ([`Backend::flush`](crate::Backend::flush)), so a dropped end has left before its process can block.

use crate::Leave;
use crate::backend::{Carries, Role};
use crate::error::{BufferError, ChannelError, next_in_stream};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An any-to-any channel: any number of processes read from it and write to it.
///
/// Unbuffered ([`Channel::new`]), a write completes only when a reader has taken the value (a
/// rendezvous). Buffered ([`Channel::with_buffer`]), it holds up to `n` values. Each backend names
/// it for its own engine (`cspnet::threads::Channel<T>` is `Channel<Threads, T>`).
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
pub struct Channel<B: Carries<T>, T> {
    raw: B::Chan,
}

impl<B: Carries<T>, T> Channel<B, T> {
    /// An unbuffered channel: every write is a rendezvous with a reader.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<String>::new();
    /// assert_eq!(ch.name(), None);
    /// ```
    pub fn new() -> Self {
        Self::build(None, 0)
    }

    /// An unbuffered channel with a name (shown in `Debug` output and error reports).
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u8>::named("requests");
    /// assert_eq!(ch.name(), Some("requests"));
    /// ```
    pub fn named(name: &str) -> Self {
        Self::build(Some(name), 0)
    }

    /// The largest buffer a channel accepts, on every backend: 2^48 values, more than a 64-bit
    /// machine's address space holds even at one byte each. No backend reserves a buffer's
    /// storage up front beyond a small first piece: it grows as values are buffered, so a
    /// buffer this large is free until it fills.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u8>::with_buffer(cspnet_threads::Channel::<u8>::MAX_BUFFER);
    /// let (w, r) = (ch.writer(), ch.reader());
    /// w.write(1).unwrap();
    /// assert_eq!(r.read(), Ok(1));
    /// ```
    pub const MAX_BUFFER: usize = if usize::MAX as u64 > 1 << 48 {
        (1u64 << 48) as usize
    } else {
        usize::MAX // a 32-bit machine: its address space is the limit already
    };

    /// A channel that holds up to `n` values before writers wait (`0` is a rendezvous).
    ///
    /// # Panics
    ///
    /// When `n` is more than [`Channel::MAX_BUFFER`], with the message of
    /// [`BufferError::TooLarge`]; [`Channel::try_with_buffer`] returns that error instead.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(2);
    /// let (w, _r) = (ch.writer(), ch.reader());
    /// w.write(1).unwrap();
    /// w.write(2).unwrap(); // both fit without a reader taking them
    /// ```
    pub fn with_buffer(n: usize) -> Self {
        match Self::try_with_buffer(n) {
            Ok(channel) => channel,
            Err(e) => panic!("{e}"),
        }
    }

    /// A channel that holds up to `n` values before writers wait (`0` is a rendezvous), or
    /// [`BufferError::TooLarge`] when `n` is more than [`Channel::MAX_BUFFER`].
    ///
    /// ```
    /// use cspnet_threads::{BufferError, Channel};
    /// assert!(Channel::<u32>::try_with_buffer(4).is_ok());
    /// assert_eq!(
    ///     Channel::<u32>::try_with_buffer(usize::MAX).unwrap_err(),
    ///     BufferError::TooLarge { requested: usize::MAX, max: Channel::<u32>::MAX_BUFFER },
    /// );
    /// ```
    pub fn try_with_buffer(n: usize) -> Result<Self, BufferError> {
        if n > Self::MAX_BUFFER {
            return Err(BufferError::TooLarge {
                requested: n,
                max: Self::MAX_BUFFER,
            });
        }
        Ok(Self::build(None, n))
    }

    /// A channel with a name that holds up to `n` values before writers wait.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::named_with_buffer("results", 8);
    /// assert_eq!(ch.name(), Some("results"));
    /// ```
    pub fn named_with_buffer(name: &str, n: usize) -> Self {
        Self::build(Some(name), n)
    }

    fn build(name: Option<&str>, n: usize) -> Self {
        let raw = B::channel(name, n);
        B::join(&raw, Role::Handle);
        Channel { raw }
    }

    /// Joins the channel as a new reader end.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(5).unwrap();
    /// assert_eq!(r.read(), Ok(5));
    /// ```
    pub fn reader(&self) -> Reader<B, T> {
        Reader {
            end: End::join(&self.raw, Role::Reader),
        }
    }

    /// Joins the channel as a new writer end.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
    /// let (w, _r) = (ch.writer(), ch.reader());
    /// w.write(5).unwrap();
    /// ```
    pub fn writer(&self) -> Writer<B, T> {
        Writer {
            end: End::join(&self.raw, Role::Writer),
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
        B::flush();
        B::poison(&self.raw);
    }

    /// The channel's name, if it was made with [`Channel::named`].
    ///
    /// ```
    /// assert_eq!(cspnet_threads::Channel::<u8>::named("x").name(), Some("x"));
    /// ```
    pub fn name(&self) -> Option<&str> {
        B::name(&self.raw)
    }

    /// The engine's handle on the channel, for engines and generic tools built on them.
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// let ch = cspnet_threads::Channel::<u8>::named("x");
    /// assert_eq!(<cspnet_threads::Threads as Carries<u8>>::name(ch.raw()), Some("x"));
    /// ```
    pub fn raw(&self) -> &B::Chan {
        &self.raw
    }
}

impl<B: Carries<T>, T> Default for Channel<B, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Carries<T>, T> Clone for Channel<B, T> {
    fn clone(&self) -> Self {
        B::join(&self.raw, Role::Handle);
        Channel {
            raw: self.raw.clone(),
        }
    }
}

impl<B: Carries<T>, T> Drop for Channel<B, T> {
    fn drop(&mut self) {
        B::dropped(&self.raw, Role::Handle);
    }
}

impl<B: Carries<T>, T> fmt::Debug for Channel<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_handle::<B, T>(f, "Channel", &self.raw)
    }
}

fn fmt_handle<B: Carries<T>, T>(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    raw: &B::Chan,
) -> fmt::Result {
    f.debug_struct(what)
        .field("backend", &B::NAME)
        .field("name", &B::name(raw))
        .field("state", &B::state(raw).err())
        .finish()
}

/// One member of a channel: joined when made, leaves when retired or dropped.
struct End<B: Carries<T>, T> {
    raw: B::Chan,
    role: Role,
    left: bool,
}

impl<B: Carries<T>, T> End<B, T> {
    fn join(raw: &B::Chan, role: Role) -> Self {
        B::join(raw, role);
        End {
            raw: raw.clone(),
            role,
            left: false,
        }
    }

    /// A member that has already been counted (by whoever sent it), adopted as is.
    fn adopt(raw: B::Chan, role: Role) -> Self {
        End {
            raw,
            role,
            left: false,
        }
    }

    fn retire(mut self) {
        self.left = true;
        B::flush();
        B::leave(&self.raw, self.role, Leave::Retire);
    }
}

impl<B: Carries<T>, T> Clone for End<B, T> {
    fn clone(&self) -> Self {
        End::join(&self.raw, self.role)
    }
}

impl<B: Carries<T>, T> Drop for End<B, T> {
    fn drop(&mut self) {
        if !self.left {
            B::dropped(&self.raw, self.role);
        }
    }
}

/// A reader end of a [`Channel`]. Each clone is one more reader; dropping it or
/// [`retire`](Self::retire) leaves.
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
pub struct Reader<B: Carries<T>, T> {
    end: End<B, T>,
}

impl<B: Carries<T>, T> Reader<B, T> {
    /// Waits for a value. Fails with `Poisoned` once the channel is poisoned, and with `Retired`
    /// once every writer has left and nothing is buffered. A value taken is returned, whatever
    /// happens to the channel afterwards.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<String>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write("hi".to_string()).unwrap();
    /// assert_eq!(r.read(), Ok("hi".to_string()));
    /// ```
    #[inline]
    pub fn read(&self) -> Result<T, ChannelError> {
        B::flush();
        B::read(&self.end.raw)
    }

    /// An extended rendezvous (occam-π's `??`, CHP's `extRead`): takes a value and runs `action`
    /// on it *while its writer is still held*; the writer's `write` completes only when `action`
    /// has returned (or panicked). So a process can pass a value on before its sender continues:
    /// a buffer that adds no slack. Fails as [`read`](Self::read) does, without running `action`.
    /// Poison arriving during `action` does not cut it short: the value was taken.
    ///
    /// On a buffered channel the writer was released when its value was buffered, so this is a
    /// read followed by `action`.
    ///
    /// ```
    /// use cspnet_threads::{Channel, parallel, process};
    ///
    /// // `forward` passes each value on before its writer may go on: the pipeline holds no value
    /// // in between, so the producer's write completes only once the consumer has the value.
    /// let (a, b) = (Channel::<u32>::new(), Channel::<u32>::new());
    /// let (aw, ar, bw, br) = (a.writer(), a.reader(), b.writer(), b.reader());
    /// let out = parallel([
    ///     process(move || { for i in 0..3 { aw.write(i)?; } Ok(0) }),
    ///     process(move || { for _ in 0..3 { ar.read_extended(|v| bw.write(v))??; } Ok(0) }),
    ///     process(move || { let mut s = 0; for _ in 0..3 { s += br.read()?; } Ok(s) }),
    /// ]).unwrap();
    /// assert_eq!(out[2], Ok(3));
    /// ```
    pub fn read_extended<R>(&self, action: impl FnOnce(T) -> R) -> Result<R, ChannelError> {
        B::flush();
        let (value, held) = B::read_held(&self.end.raw)?;
        let result = action(value);
        drop(held);
        Ok(result)
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
        B::flush();
        B::poison(&self.end.raw);
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
    pub fn retire(self) {
        self.end.retire();
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
    pub fn iter(&self) -> Iter<'_, B, T> {
        Iter {
            reader: self,
            done: false,
        }
    }

    /// The engine's handle on the channel, for engines and generic tools built on them.
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// let ch = cspnet_threads::Channel::<u8>::named("in");
    /// let r = ch.reader();
    /// assert_eq!(<cspnet_threads::Threads as Carries<u8>>::name(r.raw()), Some("in"));
    /// ```
    pub fn raw(&self) -> &B::Chan {
        &self.end.raw
    }
}

impl<B: Carries<T>, T> Clone for Reader<B, T> {
    fn clone(&self) -> Self {
        Reader {
            end: self.end.clone(),
        }
    }
}

impl<B: Carries<T>, T> fmt::Debug for Reader<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_handle::<B, T>(f, "Reader", &self.end.raw)
    }
}

/// A writer end of a [`Channel`]. Each clone is one more writer; dropping it or
/// [`retire`](Self::retire) leaves.
///
/// ```
/// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
/// let (r, w) = (ch.reader(), ch.writer());
/// w.write(9).unwrap();
/// assert_eq!(r.read(), Ok(9));
/// ```
pub struct Writer<B: Carries<T>, T> {
    end: End<B, T>,
}

impl<B: Carries<T>, T> Writer<B, T> {
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
    #[inline]
    pub fn write(&self, value: T) -> Result<(), ChannelError> {
        B::flush();
        B::write(&self.end.raw, value)
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
        B::flush();
        B::poison(&self.end.raw);
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
    pub fn retire(self) {
        self.end.retire();
    }

    /// The engine's handle on the channel, for engines and generic tools built on them.
    ///
    /// ```
    /// use cspnet_core::Carries;
    /// let ch = cspnet_threads::Channel::<u8>::named("out");
    /// let w = ch.writer();
    /// assert_eq!(<cspnet_threads::Threads as Carries<u8>>::name(w.raw()), Some("out"));
    /// ```
    pub fn raw(&self) -> &B::Chan {
        &self.end.raw
    }
}

impl<B: Carries<T>, T> Clone for Writer<B, T> {
    fn clone(&self) -> Self {
        Writer {
            end: self.end.clone(),
        }
    }
}

impl<B: Carries<T>, T> fmt::Debug for Writer<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_handle::<B, T>(f, "Writer", &self.end.raw)
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
pub struct Iter<'a, B: Carries<T>, T> {
    reader: &'a Reader<B, T>,
    done: bool,
}

impl<B: Carries<T>, T> Iterator for Iter<'_, B, T> {
    type Item = Result<T, ChannelError>;

    fn next(&mut self) -> Option<Self::Item> {
        next_in_stream(|| self.reader.read(), &mut self.done)
    }
}

impl<B: Carries<T>, T> fmt::Debug for Iter<'_, B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("reader", self.reader)
            .field("done", &self.done)
            .finish()
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
pub struct IntoIter<B: Carries<T>, T> {
    reader: Reader<B, T>,
    done: bool,
}

impl<B: Carries<T>, T> Iterator for IntoIter<B, T> {
    type Item = Result<T, ChannelError>;

    fn next(&mut self) -> Option<Self::Item> {
        next_in_stream(|| self.reader.read(), &mut self.done)
    }
}

impl<B: Carries<T>, T> fmt::Debug for IntoIter<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter")
            .field("reader", &self.reader)
            .field("done", &self.done)
            .finish()
    }
}

impl<'a, B: Carries<T>, T> IntoIterator for &'a Reader<B, T> {
    type Item = Result<T, ChannelError>;
    type IntoIter = Iter<'a, B, T>;

    fn into_iter(self) -> Iter<'a, B, T> {
        self.iter()
    }
}

impl<B: Carries<T>, T> IntoIterator for Reader<B, T> {
    type Item = Result<T, ChannelError>;
    type IntoIter = IntoIter<B, T>;

    fn into_iter(self) -> IntoIter<B, T> {
        IntoIter {
            reader: self,
            done: false,
        }
    }
}

/// A backend whose channel handles can travel: as arguments of a re-executed process, or as values
/// over another channel (a mobile channel end). Serializing a handle joins the channel on the
/// receiver's behalf; deserializing adopts that membership.
///
/// ```
/// fn needs_mobile<B: cspnet_core::Mobile<u8>>() {}
/// ```
pub trait Mobile<T>: Carries<T> {
    /// Writes a handle of `role` that a receiver can adopt (joining on its behalf).
    ///
    /// # Errors
    ///
    /// When the serializer fails.
    fn serialize_handle<S: Serializer>(
        chan: &Self::Chan,
        role: Role,
        s: S,
    ) -> Result<S::Ok, S::Error>;

    /// Reads a handle written by [`serialize_handle`](Self::serialize_handle), which must be of
    /// `role`.
    ///
    /// # Errors
    ///
    /// When the data is not a handle of `role` on this backend.
    fn deserialize_handle<'de, D: Deserializer<'de>>(
        d: D,
        role: Role,
    ) -> Result<Self::Chan, D::Error>;
}

impl<B: Mobile<T>, T> Serialize for Channel<B, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        B::serialize_handle(&self.raw, Role::Handle, s)
    }
}

impl<'de, B: Mobile<T>, T> Deserialize<'de> for Channel<B, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = B::deserialize_handle(d, Role::Handle)?;
        Ok(Channel { raw })
    }
}

impl<B: Mobile<T>, T> Serialize for Reader<B, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        B::serialize_handle(&self.end.raw, Role::Reader, s)
    }
}

impl<'de, B: Mobile<T>, T> Deserialize<'de> for Reader<B, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = B::deserialize_handle(d, Role::Reader)?;
        Ok(Reader {
            end: End::adopt(raw, Role::Reader),
        })
    }
}

impl<B: Mobile<T>, T> Serialize for Writer<B, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        B::serialize_handle(&self.end.raw, Role::Writer, s)
    }
}

impl<'de, B: Mobile<T>, T> Deserialize<'de> for Writer<B, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = B::deserialize_handle(d, Role::Writer)?;
        Ok(Writer {
            end: End::adopt(raw, Role::Writer),
        })
    }
}

/// Checks at compile time that the handles are `Send` whenever the engine's raw channel is.
#[allow(dead_code)]
fn handles_are_send<B: Carries<T>, T>() {
    fn is_send<S: Send>() {}
    is_send::<Channel<B, T>>();
    is_send::<Reader<B, T>>();
    is_send::<Writer<B, T>>();
}
