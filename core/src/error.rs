//! The errors every backend reports: channel errors and process failures.

use crate::deadlock::Deadlock;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a channel operation (read, write or alternation) did not happen.
///
/// `Poisoned` and `Retired` are final for the channel: once poisoned or retired, a channel never
/// works again. `TooLarge` and `Unencodable` concern one value only: it was not sent, and the
/// channel works as before.
///
/// # Examples
///
/// ```
/// use cspnet_core::ChannelError;
///
/// let e = ChannelError::Poisoned;
/// assert!(e.is_poisoned());
/// assert!(e.to_string().contains("poisoned"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The channel was poisoned (by `poison()` on the channel or one of its ends, or by a process that
    /// ended with a poison error or a panic). Propagate it with `?`: a process that returns this error
    /// poisons every channel end it still holds, which brings the whole network down.
    #[error(
        "channel poisoned: the network is shutting down (return this error from the process to pass \
         the poison on)"
    )]
    Poisoned,
    /// Every reader end (or every writer end) of the channel has left, so no communication on it can
    /// ever complete. Values already buffered are still read before readers see this.
    #[error(
        "channel retired: every reader or every writer end has left, so this operation can never \
         complete"
    )]
    Retired,
    /// The value, once encoded, is larger than the channel's payload store can ever hold (the
    /// processes backend's shared-memory heap): it was not sent, and waiting would not help. Send
    /// it in pieces, or give the store more room (the processes backend reads `CSPNET_SHM_SIZE`).
    #[error(
        "payload of {size} bytes can never fit in the shared-memory heap (at most {max} bytes): \
         raise CSPNET_SHM_SIZE or send smaller values"
    )]
    TooLarge {
        /// The encoded size of the value.
        size: usize,
        /// The largest payload the store can hold.
        max: usize,
    },
    /// The value's `Serialize` failed, so it could not be encoded for the channel (only the
    /// processes backend encodes payloads; threads and coroutines move values as they are). It
    /// was not sent, the channel is not poisoned, and later values are sent as usual. It carries
    /// the start of serde's message.
    #[error("payload could not be encoded, so it was not sent: {0}")]
    Unencodable(ErrorText),
    /// Every process of the network was blocked with nothing left that could wake it, so this
    /// wait was ended: the channels it waited on are poisoned. `parallel`/`join` report the whole
    /// deadlock (which process waited on which channel) as [`Cause::Deadlock`] for each process
    /// that ends with this error.
    #[error(
        "deadlock: every process of the network was blocked, so this wait can never complete \
         (return this error from the process; parallel/join report who waited on what)"
    )]
    Deadlock,
}

/// The start of an error message, short enough to keep [`ChannelError`] `Copy`: at most
/// [`ErrorText::MAX`] bytes, cut at a character boundary (a cut text ends with `…`).
///
/// ```
/// use cspnet_core::ErrorText;
/// assert_eq!(ErrorText::new("no maps here").as_str(), "no maps here");
/// let long = ErrorText::new(&"x".repeat(100));
/// assert!(long.as_str().len() <= ErrorText::MAX && long.as_str().ends_with('…'));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorText {
    len: u8,
    bytes: [u8; ErrorText::MAX],
}

impl ErrorText {
    /// The most bytes an `ErrorText` keeps.
    pub const MAX: usize = 46;

    /// `message`, cut to [`ErrorText::MAX`] bytes if longer.
    ///
    /// ```
    /// assert_eq!(cspnet_core::ErrorText::new("bad").to_string(), "bad");
    /// ```
    pub fn new(message: &str) -> Self {
        let kept = if message.len() <= Self::MAX {
            message
        } else {
            let mut end = Self::MAX - '…'.len_utf8();
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            &message[..end]
        };
        let mut bytes = [0; Self::MAX];
        bytes[..kept.len()].copy_from_slice(kept.as_bytes());
        let mut len = kept.len();
        if kept.len() < message.len() {
            let ellipsis = '…'.encode_utf8(&mut bytes[len..]).len();
            len += ellipsis;
        }
        ErrorText {
            len: len as u8, // at most MAX, which fits
            bytes,
        }
    }

    /// The text.
    ///
    /// ```
    /// assert_eq!(cspnet_core::ErrorText::new("bad").as_str(), "bad");
    /// ```
    pub fn as_str(&self) -> &str {
        // `new` copies whole characters only, so the bytes kept are UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for ErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for ErrorText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| ErrorText::new(&s))
    }
}

/// Why a channel buffer of the size asked for was refused: the one rule of every backend.
///
/// A buffer may hold up to [`Channel::MAX_BUFFER`](crate::Channel::MAX_BUFFER) values; its
/// storage grows with what it holds, so a large limit costs nothing until values fill it.
///
/// ```
/// use cspnet_threads::{BufferError, Channel};
///
/// let e = Channel::<u8>::try_with_buffer(usize::MAX).unwrap_err();
/// assert!(matches!(e, BufferError::TooLarge { max, .. } if max == Channel::<u8>::MAX_BUFFER));
/// assert!(e.to_string().contains("at most"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum BufferError {
    /// More values than any channel buffers: more than a machine's address space could hold
    /// even at one byte each, so it is a mistake (`usize::MAX` for "unbounded", say) rather
    /// than a need.
    #[error(
        "a channel buffer of {requested} values is refused: a buffer holds at most {max} values          (Channel::MAX_BUFFER, and its storage grows only as values are buffered)"
    )]
    TooLarge {
        /// The buffer size asked for.
        requested: usize,
        /// The largest buffer a channel accepts ([`Channel::MAX_BUFFER`](crate::Channel::MAX_BUFFER)).
        max: usize,
    },
}

impl ChannelError {
    /// Whether this is [`ChannelError::Poisoned`].
    ///
    /// ```
    /// assert!(cspnet_core::ChannelError::Poisoned.is_poisoned());
    /// ```
    pub fn is_poisoned(&self) -> bool {
        matches!(self, ChannelError::Poisoned)
    }

    /// Whether this is [`ChannelError::Retired`].
    ///
    /// ```
    /// assert!(cspnet_core::ChannelError::Retired.is_retired());
    /// ```
    pub fn is_retired(&self) -> bool {
        matches!(self, ChannelError::Retired)
    }
}

/// One step of iterating over a reader, shared by every backend: a value is yielded, retirement
/// ends the stream quietly, and any other error (poison) is yielded once before the stream ends, so
/// `?` in the loop passes it on. `done` remembers that the stream has ended.
///
/// ```
/// use cspnet_core::{ChannelError, next_in_stream};
/// let mut done = false;
/// assert_eq!(next_in_stream(|| Ok(1), &mut done), Some(Ok(1)));
/// assert_eq!(next_in_stream::<u8>(|| Err(ChannelError::Poisoned), &mut done), Some(Err(ChannelError::Poisoned)));
/// assert_eq!(next_in_stream(|| Ok(2), &mut done), None); // ended: not read again
/// let mut done = false;
/// assert_eq!(next_in_stream::<u8>(|| Err(ChannelError::Retired), &mut done), None);
/// ```
pub fn next_in_stream<T>(
    read: impl FnOnce() -> Result<T, ChannelError>,
    done: &mut bool,
) -> Option<Result<T, ChannelError>> {
    if *done {
        return None;
    }
    match read() {
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

/// What a CSP process returns: a value, or the channel error that ended it.
///
/// A process ending with `Err(ChannelError::Poisoned)` poisons the channel ends it still holds; one
/// ending with `Ok(..)` or `Err(ChannelError::Retired)` retires them.
///
/// ```
/// use cspnet_core::{ChannelError, Outcome};
///
/// fn body() -> Outcome<u32> {
///     Err(ChannelError::Retired)
/// }
/// assert_eq!(body(), Err(ChannelError::Retired));
/// ```
pub type Outcome<T> = Result<T, ChannelError>;

/// Why one CSP process failed (as opposed to ending by poison or retirement, which are normal).
///
/// ```
/// use cspnet_core::{Cause, Failure};
///
/// let f = Failure::new("producer", Cause::Panicked("boom".into()));
/// assert_eq!(f.process(), "producer");
/// assert_eq!(f.to_string(), "process 'producer' panicked: boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    process: String,
    cause: Cause,
}

impl Failure {
    /// A failure of the process named `process`.
    ///
    /// ```
    /// let f = cspnet_core::Failure::new("p", cspnet_core::Cause::Panicked("x".into()));
    /// assert_eq!(f.process(), "p");
    /// ```
    pub fn new(process: impl Into<String>, cause: Cause) -> Self {
        Failure {
            process: process.into(),
            cause,
        }
    }

    /// The name of the process that failed.
    ///
    /// ```
    /// let f = cspnet_core::Failure::new("sink", cspnet_core::Cause::Panicked("x".into()));
    /// assert_eq!(f.process(), "sink");
    /// ```
    pub fn process(&self) -> &str {
        &self.process
    }

    /// Why it failed.
    ///
    /// ```
    /// use cspnet_core::{Cause, Failure};
    /// let f = Failure::new("p", Cause::Panicked("boom".into()));
    /// assert_eq!(f.cause(), &Cause::Panicked("boom".into()));
    /// ```
    pub fn cause(&self) -> &Cause {
        &self.cause
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process '{}' {}", self.process, self.cause)
    }
}

/// The cause of a [`Failure`].
///
/// ```
/// let c = cspnet_core::Cause::Panicked("index out of bounds".into());
/// assert_eq!(c.to_string(), "panicked: index out of bounds");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Cause {
    /// The process body panicked; the panic's message.
    Panicked(String),
    /// The process could not be started (the operating system refused a thread, a fork, ...).
    CouldNotStart(String),
    /// The process ended abnormally outside the body's control (an OS process killed by a signal or
    /// exiting early); the description says how.
    Crashed(String),
    /// The process was blocked in a deadlocked network and ended with
    /// [`ChannelError::Deadlock`]; the report names every blocked process and what it waited on.
    Deadlock(Deadlock),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Panicked(m) => write!(f, "panicked: {m}"),
            Cause::CouldNotStart(m) => write!(f, "could not be started: {m}"),
            Cause::Crashed(m) => write!(f, "crashed: {m}"),
            Cause::Deadlock(d) => write!(f, "deadlocked: {d}"),
        }
    }
}

/// One or more processes of a `parallel`, `sequence` or `spawn` failed.
///
/// It is reported only after every other process of the group has finished (a failing process
/// poisons its channels, so the rest of a connected network shuts down rather than hangs).
///
/// ```
/// use cspnet_core::{Cause, Failure, ProcessError};
///
/// let e = ProcessError::new(vec![Failure::new("worker-3", Cause::Panicked("bad input".into()))]);
/// assert_eq!(e.failures().len(), 1);
/// assert_eq!(e.to_string(), "process 'worker-3' panicked: bad input");
///
/// // Display names the first three; `failures()` has every one.
/// let many = ProcessError::new(
///     (0..5).map(|i| Failure::new(format!("w{i}"), Cause::CouldNotStart("no".into()))).collect(),
/// );
/// assert!(many.to_string().ends_with("process 'w2' could not be started: no; and 2 more failed processes"));
/// assert_eq!(many.failures().len(), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessError {
    failures: Vec<Failure>,
}

impl ProcessError {
    /// An error listing `failures` (in the order the processes were given).
    ///
    /// # Panics
    ///
    /// If `failures` is empty: an error must name at least one process.
    ///
    /// ```
    /// use cspnet_core::{Cause, Failure, ProcessError};
    /// let e = ProcessError::new(vec![Failure::new("a", Cause::Panicked("x".into()))]);
    /// assert_eq!(e.first().process(), "a");
    /// ```
    pub fn new(failures: Vec<Failure>) -> Self {
        assert!(
            !failures.is_empty(),
            "a ProcessError names at least one failure"
        );
        ProcessError { failures }
    }

    /// The outcomes of a group of processes, in order, or an error naming every process that
    /// failed: how `parallel`, `sequence` and `join` report, on every backend.
    ///
    /// ```
    /// use cspnet_core::{Cause, ProcessError};
    /// let ok = ProcessError::gather([("a", Ok(Ok(1))), ("b", Ok(Ok(2)))]);
    /// assert_eq!(ok, Ok(vec![Ok(1), Ok(2)]));
    /// let bad = ProcessError::gather([("a", Ok(Ok(1))), ("b", Err(Cause::Panicked("x".into())))]);
    /// assert_eq!(bad.unwrap_err().first().process(), "b");
    /// ```
    pub fn gather<T, N: AsRef<str>>(
        results: impl IntoIterator<Item = (N, Result<Outcome<T>, Cause>)>,
    ) -> Result<Vec<Outcome<T>>, ProcessError> {
        let mut outcomes = Vec::new();
        let mut failures = Vec::new();
        for (name, result) in results {
            match result {
                Ok(outcome) => outcomes.push(outcome),
                Err(cause) => failures.push(Failure::new(name.as_ref(), cause)),
            }
        }
        if failures.is_empty() {
            Ok(outcomes)
        } else {
            Err(ProcessError::new(failures))
        }
    }

    /// Every failed process, in the order the processes were given.
    ///
    /// ```
    /// use cspnet_core::{Cause, Failure, ProcessError};
    /// let e = ProcessError::new(vec![
    ///     Failure::new("a", Cause::Panicked("x".into())),
    ///     Failure::new("b", Cause::Panicked("y".into())),
    /// ]);
    /// assert_eq!(e.failures()[1].process(), "b");
    /// ```
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// The first failed process.
    ///
    /// ```
    /// use cspnet_core::{Cause, Failure, ProcessError};
    /// let e = ProcessError::new(vec![Failure::new("a", Cause::Panicked("x".into()))]);
    /// assert_eq!(e.first().process(), "a");
    /// ```
    pub fn first(&self) -> &Failure {
        &self.failures[0]
    }
}

/// Why [`Spawned::kill`](crate::Spawned::kill) or [`Supervisor::kill`](crate::Supervisor::kill)
/// did not kill a process.
///
/// ```
/// use cspnet_core::KillError;
/// let e = KillError::Unsupported { backend: "threads" };
/// assert!(e.to_string().contains("cannot be killed"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KillError {
    /// The backend's processes cannot be killed from outside: a thread or a coroutine can only end
    /// itself (poison a channel it waits on to make it end).
    #[error(
        "a process of the {backend} backend cannot be killed from outside (only OS processes can); \
         poison a channel it waits on to make it end"
    )]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
    },
    /// No process with that index or id is running under this handle.
    #[error("no such running process: {0}")]
    NoSuchProcess(String),
    /// The operating system refused (the message says why).
    #[error("the operating system refused to kill the process: {0}")]
    Refused(String),
}

/// How many failures `Display` spells out; [`ProcessError::failures`] has them all.
const SHOWN: usize = 3;

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut deadlock_shown = false;
        for (i, failure) in self.failures.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match &failure.cause {
                // One deadlock report names every process: spell it out once.
                Cause::Deadlock(_) if deadlock_shown => {
                    write!(f, "process '{}' deadlocked", failure.process)?
                }
                Cause::Deadlock(_) => {
                    deadlock_shown = true;
                    write!(f, "{failure}")?
                }
                _ => write!(f, "{failure}")?,
            }
        }
        if self.failures.len() > SHOWN {
            write!(
                f,
                "; and {} more failed processes",
                self.failures.len() - SHOWN
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ProcessError {}

/// The message of a caught panic payload (`&str` or `String` payloads; anything else is described).
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
/// assert_eq!(cspnet_core::panic_message(payload.as_ref()), "boom 7");
/// ```
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
