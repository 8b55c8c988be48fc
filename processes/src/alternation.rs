//! The public `Alternation`: guards and actions, the selection policy, and a call into the engine.
//!
//! Each guard is type-erased to a channel offset and, for outputs, the encoded value; [`run`]
//! commits exactly one of them (or the fallback), and the chosen guard's action runs here.

use crate::ThreadSlot;
use crate::channel::{Reader, Writer};
use crate::codec::{self, Encoded};
use crate::engine::{Fired, Spec, Taken, Want, run};
use cspnet_core::{ChannelError, Deadline, Fallback, Policy, flush_dropped_ends};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::time::Duration;

/// One channel guard with its action, type-erased over the payload type.
trait Guard<'a, R> {
    fn chan(&self) -> u64;
    fn offer(&self) -> Option<&[u8]>;
    fn complete(self: Box<Self>, taken: Option<Taken>) -> R;
}

struct Input<'a, T, F> {
    reader: &'a Reader<T>,
    action: F,
}

impl<'a, T: DeserializeOwned + 'static, R, F: FnOnce(T) -> R> Guard<'a, R> for Input<'a, T, F> {
    fn chan(&self) -> u64 {
        self.reader.chan()
    }
    fn offer(&self) -> Option<&[u8]> {
        None
    }
    fn complete(self: Box<Self>, taken: Option<Taken>) -> R {
        let value = taken.expect("an input commits with a value").decode();
        (self.action)(value)
    }
}

struct Output<F> {
    chan: u64,
    value: Encoded,
    action: F,
}

impl<'a, R, F: FnOnce() -> R> Guard<'a, R> for Output<F> {
    fn chan(&self) -> u64 {
        self.chan
    }
    fn offer(&self) -> Option<&[u8]> {
        Some(self.value.bytes())
    }
    fn complete(self: Box<Self>, _: Option<Taken>) -> R {
        (self.action)()
    }
}

/// A choice between guards: exactly one ready guard commits and its action runs.
///
/// Input guards ([`input`](Self::input)) and output guards ([`output`](Self::output)) may be mixed;
/// [`skip`](Self::skip) and [`timeout`](Self::timeout) fire only when no channel guard is ready.
/// Finish with [`select`](Self::select) (any ready guard), [`pri_select`](Self::pri_select) (the
/// first ready in the order given) or [`fair_select`](Self::fair_select) (rotating).
///
/// ```
/// use cspnet_processes::{Alternation, Channel};
/// use std::time::Duration;
///
/// let a = Channel::<u32>::with_buffer(1);
/// let b = Channel::<String>::new();
/// let (ar, aw, br) = (a.reader(), a.writer(), b.reader());
/// # let _bw = b.writer();
/// aw.write(7).unwrap();
/// let got = Alternation::new()
///     .input(&ar, |n| format!("number {n}"))
///     .input(&br, |s| format!("text {s}"))
///     .timeout(Duration::from_secs(1), || "nothing".to_string())
///     .select();
/// assert_eq!(got.unwrap(), "number 7");
/// ```
#[must_use = "an alternation does nothing until select, pri_select or fair_select is called"]
pub struct Alternation<'a, R> {
    guards: Vec<Box<dyn Guard<'a, R> + 'a>>,
    fallback: Fallback<Box<dyn FnOnce() -> R + 'a>>,
}

impl<R> Default for Alternation<'_, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> fmt::Debug for Alternation<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alternation")
            .field("guards", &self.guards.len())
            .field("fallback", &self.fallback.deadline())
            .finish()
    }
}

impl<'a, R> Alternation<'a, R> {
    /// An alternation with no guards yet.
    ///
    /// ```
    /// let alt = cspnet_processes::Alternation::<()>::new().skip(|| ());
    /// assert_eq!(alt.select(), Ok(()));
    /// ```
    pub fn new() -> Self {
        Alternation {
            guards: Vec::new(),
            fallback: Fallback::new(),
        }
    }

    /// An input guard: ready when `reader` can read; the value read is passed to `action`.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(2).unwrap();
    /// let doubled = cspnet_processes::Alternation::new().input(&r, |v| v * 2).select();
    /// assert_eq!(doubled, Ok(4));
    /// ```
    pub fn input<T: DeserializeOwned + 'static>(
        mut self,
        reader: &'a Reader<T>,
        action: impl FnOnce(T) -> R + 'a,
    ) -> Self {
        self.guards.push(Box::new(Input { reader, action }));
        self
    }

    /// An output guard: ready when `writer` can write `value`; `action` runs once it is delivered.
    /// If another guard commits, `value` is dropped undelivered.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// let sent = cspnet_processes::Alternation::new().output(&w, 5, || "sent").select();
    /// assert_eq!(sent, Ok("sent"));
    /// assert_eq!(r.read(), Ok(5));
    /// ```
    pub fn output<T: Serialize + 'static>(
        mut self,
        writer: &'a Writer<T>,
        value: T,
        action: impl FnOnce() -> R + 'a,
    ) -> Self {
        self.guards.push(Box::new(Output {
            chan: writer.chan(),
            value: codec::encode(value),
            action,
        }));
        self
    }

    /// A timeout guard: fires once `duration` has passed with no channel guard ready.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ch = cspnet_processes::Channel::<u32>::new();
    /// let (r, _w) = (ch.reader(), ch.writer());
    /// let got = cspnet_processes::Alternation::new()
    ///     .input(&r, |v| v)
    ///     .timeout(Duration::from_millis(1), || 0)
    ///     .select();
    /// assert_eq!(got, Ok(0));
    /// ```
    pub fn timeout(mut self, duration: Duration, action: impl FnOnce() -> R + 'a) -> Self {
        self.fallback
            .add(Deadline::after(duration), Box::new(action));
        self
    }

    /// A skip guard: always ready, but fires only when no channel guard is ready, so the
    /// alternation never blocks.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::new();
    /// let (r, _w) = (ch.reader(), ch.writer());
    /// let got = cspnet_processes::Alternation::new().input(&r, Some).skip(|| None).select();
    /// assert_eq!(got, Ok(None));
    /// ```
    pub fn skip(mut self, action: impl FnOnce() -> R + 'a) -> Self {
        self.fallback.add(Deadline::Now, Box::new(action));
        self
    }

    /// Commits any one ready guard (no promise which) and returns its action's result.
    ///
    /// Fails with `Poisoned` if any guard's channel is poisoned, and with `Retired` once every
    /// channel guard's channel is retired (or there are no guards at all).
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(1).unwrap();
    /// assert_eq!(cspnet_processes::Alternation::new().input(&r, |v| v).select(), Ok(1));
    /// ```
    pub fn select(self) -> Result<R, ChannelError> {
        self.run(Policy::Arbitrary)
    }

    /// Commits the first ready guard in the order the guards were given.
    ///
    /// ```
    /// let a = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let b = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let (ar, aw, br, bw) = (a.reader(), a.writer(), b.reader(), b.writer());
    /// aw.write(1).unwrap();
    /// bw.write(2).unwrap();
    /// let got = cspnet_processes::Alternation::new().input(&br, |v| v).input(&ar, |v| v).pri_select();
    /// assert_eq!(got, Ok(2));
    /// ```
    pub fn pri_select(self) -> Result<R, ChannelError> {
        self.run(Policy::Priority)
    }

    /// Commits a ready guard, rotating priority past the guard chosen last time at this call site
    /// in this process, so a guard that stays ready is served within as many rounds as there are
    /// guards.
    ///
    /// ```
    /// let a = cspnet_processes::Channel::<u32>::with_buffer(4);
    /// let b = cspnet_processes::Channel::<u32>::with_buffer(4);
    /// let (ar, aw, br, bw) = (a.reader(), a.writer(), b.reader(), b.writer());
    /// for _ in 0..2 { aw.write(1).unwrap(); bw.write(2).unwrap(); }
    /// let mut got = Vec::new();
    /// for _ in 0..4 {
    ///     got.push(cspnet_processes::Alternation::new().input(&ar, |v| v).input(&br, |v| v).fair_select().unwrap());
    /// }
    /// assert_eq!(got, vec![1, 2, 1, 2]);
    /// ```
    #[track_caller]
    pub fn fair_select(self) -> Result<R, ChannelError> {
        self.run(Policy::Fair(Location::caller()))
    }

    fn run(mut self, policy: Policy) -> Result<R, ChannelError> {
        flush_dropped_ends::<ThreadSlot>();
        let n = self.guards.len();
        let mut order = policy.order::<ThreadSlot>(n);
        if policy == Policy::Arbitrary && n > 1 {
            // Any ready guard: start at a varying place so no guard is systematically favoured.
            let start = (arbitrary_seed() as usize) % n;
            order.rotate_left(start);
        }
        let fired = {
            let specs: Vec<Spec<'_>> = self
                .guards
                .iter()
                .map(|g| Spec {
                    chan: g.chan(),
                    want: match g.offer() {
                        Some(bytes) => Want::Write(bytes),
                        None => Want::Read,
                    },
                })
                .collect();
            run(&specs, &order, self.fallback.deadline())?
        };
        match fired {
            Fired::Guard(i, taken) => {
                policy.chose::<ThreadSlot>(n, i);
                Ok(self.guards.swap_remove(i).complete(taken))
            }
            Fired::Fallback => {
                let action = self
                    .fallback
                    .take_action()
                    .expect("a fallback with a deadline has an action");
                Ok(action())
            }
        }
    }
}

fn arbitrary_seed() -> u32 {
    thread_local! { static SEED: Cell<u32> = const { Cell::new(0x9E37_79B9) }; }
    SEED.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.set(x);
        x
    })
}
