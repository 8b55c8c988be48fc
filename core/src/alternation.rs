//! Alternation, written once over [`Backend::select`]: build the guards, choose the order, commit one.
//!
//! The builder keeps each guard's typed part (its value slot and action) here; when a select
//! runs, each guard lends the engine a type-erased view of its channel and slot
//! ([`Carries::input`]/[`Carries::output`]), the [`Policy`] decides the order in which they are
//! tried, and the engine commits exactly one. The winner's action then runs with the value from
//! its slot; the losers' slots are dropped (an output guard's undelivered value with them).

use crate::backend::{Backend, Carries};
use crate::channel::{Reader, Writer};
use crate::deadline::Deadline;
use crate::error::ChannelError;
use crate::guard::{Fallback, Policy};
use std::fmt;
use std::panic::Location;
use std::time::Duration;

/// One guard's typed part: its channel, its slot and its action.
trait Guard<'a, B: Backend, R> {
    /// The engine's view of the guard, borrowing its channel and slot for one select.
    fn engine(&mut self) -> B::Guard<'_>;
    /// Runs the action of the guard that committed.
    fn finish(self: Box<Self>) -> R;
}

struct Input<'a, B: Carries<T>, T, F> {
    reader: &'a Reader<B, T>,
    slot: Option<T>,
    action: F,
}

impl<'a, B: Carries<T>, T, R, F: FnOnce(T) -> R> Guard<'a, B, R> for Input<'a, B, T, F> {
    fn engine(&mut self) -> B::Guard<'_> {
        B::input(self.reader.raw(), &mut self.slot)
    }
    fn finish(self: Box<Self>) -> R {
        let value = self.slot.expect("a committed input guard holds its value");
        (self.action)(value)
    }
}

struct ExtendedInput<'a, B: Carries<T>, T, F> {
    reader: &'a Reader<B, T>,
    slot: Option<(T, B::Held)>,
    action: F,
}

impl<'a, B: Carries<T>, T, R, F: FnOnce(T) -> R> Guard<'a, B, R> for ExtendedInput<'a, B, T, F> {
    fn engine(&mut self) -> B::Guard<'_> {
        B::input_held(self.reader.raw(), &mut self.slot)
    }
    fn finish(self: Box<Self>) -> R {
        let (value, held) = self.slot.expect("a committed input guard holds its value");
        let result = (self.action)(value);
        // Only now is the writer released.
        drop(held);
        result
    }
}

struct Output<'a, B: Carries<T>, T, F> {
    writer: &'a Writer<B, T>,
    /// The value offered; empty once delivered.
    slot: Option<T>,
    action: F,
}

impl<'a, B: Carries<T>, T, R, F: FnOnce() -> R> Guard<'a, B, R> for Output<'a, B, T, F> {
    fn engine(&mut self) -> B::Guard<'_> {
        B::output(self.writer.raw(), &mut self.slot)
    }
    fn finish(self: Box<Self>) -> R {
        debug_assert!(
            self.slot.is_none(),
            "a committed output guard delivered its value"
        );
        (self.action)()
    }
}

/// A choice between guards: exactly one ready guard commits and its action runs.
///
/// Input guards ([`input`](Self::input)) and output guards ([`output`](Self::output)) may be mixed,
/// also on one channel; [`skip`](Self::skip) and [`timeout`](Self::timeout) fire only when no
/// channel guard is ready. Finish with [`select`](Self::select) (any ready guard, uniformly at
/// random), [`pri_select`](Self::pri_select) (the first ready in the order given) or
/// [`fair_select`](Self::fair_select) (rotating, so none starves).
///
/// ```
/// use cspnet_threads::{Alternation, Channel};
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
pub struct Alternation<'a, B: Backend, R> {
    guards: Vec<Box<dyn Guard<'a, B, R> + 'a>>,
    fallback: Fallback<Box<dyn FnOnce() -> R + 'a>>,
}

impl<B: Backend, R> Default for Alternation<'_, B, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend, R> fmt::Debug for Alternation<'_, B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alternation")
            .field("backend", &B::NAME)
            .field("guards", &self.guards.len())
            .field("fallback", &self.fallback.deadline())
            .finish()
    }
}

impl<'a, B: Backend, R> Alternation<'a, B, R> {
    /// An alternation with no guards yet.
    ///
    /// ```
    /// let alt = cspnet_threads::Alternation::<()>::new().skip(|| ());
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
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(2).unwrap();
    /// let doubled = cspnet_threads::Alternation::new().input(&r, |v| v * 2).select();
    /// assert_eq!(doubled, Ok(4));
    /// ```
    pub fn input<T: 'a>(
        mut self,
        reader: &'a Reader<B, T>,
        action: impl FnOnce(T) -> R + 'a,
    ) -> Self
    where
        B: Carries<T>,
    {
        self.guards.push(Box::new(Input {
            reader,
            slot: None,
            action,
        }));
        self
    }

    /// An extended input guard (occam-π's `??` in an `ALT`): ready when `reader` can read; the value
    /// is passed to `action`, and its writer is released only once `action` has returned (see
    /// [`Reader::read_extended`]).
    ///
    /// ```
    /// use cspnet_threads::{Alternation, Channel, parallel, process};
    /// let ch = Channel::<u32>::new();
    /// let (r, w) = (ch.reader(), ch.writer());
    /// let out = parallel([
    ///     process(move || w.write(5).map(|()| 0)),
    ///     process(move || Alternation::new().input_extended(&r, |v| v + 1).select()),
    /// ]).unwrap();
    /// assert_eq!(out, vec![Ok(0), Ok(6)]);
    /// ```
    pub fn input_extended<T: 'a>(
        mut self,
        reader: &'a Reader<B, T>,
        action: impl FnOnce(T) -> R + 'a,
    ) -> Self
    where
        B: Carries<T>,
    {
        self.guards.push(Box::new(ExtendedInput {
            reader,
            slot: None,
            action,
        }));
        self
    }

    /// An output guard: ready when `writer` can write `value`; `action` runs once it is delivered.
    /// If another guard commits, `value` is dropped undelivered.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// let sent = cspnet_threads::Alternation::new().output(&w, 5, || "sent").select();
    /// assert_eq!(sent, Ok("sent"));
    /// assert_eq!(r.read(), Ok(5));
    /// ```
    pub fn output<T: 'a>(
        mut self,
        writer: &'a Writer<B, T>,
        value: T,
        action: impl FnOnce() -> R + 'a,
    ) -> Self
    where
        B: Carries<T>,
    {
        self.guards.push(Box::new(Output {
            writer,
            slot: Some(value),
            action,
        }));
        self
    }

    /// A timeout guard: fires once `duration` has passed with no channel guard ready.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ch = cspnet_threads::Channel::<u32>::new();
    /// let (r, _w) = (ch.reader(), ch.writer());
    /// let got = cspnet_threads::Alternation::new()
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

    /// A skip guard: always ready, but fires only when no channel guard is ready, so the alternation
    /// never blocks.
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::new();
    /// let (r, _w) = (ch.reader(), ch.writer());
    /// let got = cspnet_threads::Alternation::new().input(&r, Some).skip(|| None).select();
    /// assert_eq!(got, Ok(None));
    /// ```
    pub fn skip(mut self, action: impl FnOnce() -> R + 'a) -> Self {
        self.fallback.add(Deadline::Now, Box::new(action));
        self
    }

    /// Commits any one ready guard, each ready guard as likely as the others (as Go's `select`),
    /// and returns its action's result.
    ///
    /// Fails with `Poisoned` if any guard's channel is poisoned, and with `Retired` once every
    /// channel guard's channel is retired (or there are no guards and no Skip or Timeout).
    ///
    /// ```
    /// let ch = cspnet_threads::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(1).unwrap();
    /// assert_eq!(cspnet_threads::Alternation::new().input(&r, |v| v).select(), Ok(1));
    /// ```
    pub fn select(self) -> Result<R, ChannelError> {
        self.run(Policy::Arbitrary)
    }

    /// Commits the first ready guard in the order the guards were given.
    ///
    /// ```
    /// let a = cspnet_threads::Channel::<u32>::with_buffer(1);
    /// let b = cspnet_threads::Channel::<u32>::with_buffer(1);
    /// let (ar, aw, br, bw) = (a.reader(), a.writer(), b.reader(), b.writer());
    /// aw.write(1).unwrap();
    /// bw.write(2).unwrap();
    /// let got = cspnet_threads::Alternation::new().input(&br, |v| v).input(&ar, |v| v).pri_select();
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
    /// let a = cspnet_threads::Channel::<u32>::with_buffer(4);
    /// let b = cspnet_threads::Channel::<u32>::with_buffer(4);
    /// let (ar, aw, br, bw) = (a.reader(), a.writer(), b.reader(), b.writer());
    /// for _ in 0..2 { aw.write(1).unwrap(); bw.write(2).unwrap(); }
    /// let mut got = Vec::new();
    /// for _ in 0..4 {
    ///     got.push(cspnet_threads::Alternation::new().input(&ar, |v| v).input(&br, |v| v).fair_select().unwrap());
    /// }
    /// assert_eq!(got, vec![1, 2, 1, 2]);
    /// ```
    #[track_caller]
    pub fn fair_select(self) -> Result<R, ChannelError> {
        self.run(Policy::Fair(Location::caller()))
    }

    fn run(mut self, policy: Policy) -> Result<R, ChannelError> {
        B::flush();
        let n = self.guards.len();
        let deadline = self.fallback.deadline();
        if n == 0 {
            // Only a Skip or Timeout can fire; with neither, nothing ever could.
            if deadline == Deadline::Never {
                return Err(ChannelError::Retired);
            }
            if let Some(left) = deadline.remaining().filter(|d| !d.is_zero()) {
                B::sleep(left);
            }
            return Ok(self.fire_fallback());
        }
        let order = policy.order::<B::Slot>(n);
        let fired = {
            let mut engine: Vec<B::Guard<'_>> =
                self.guards.iter_mut().map(|g| g.engine()).collect();
            B::select(&mut engine, &order, deadline)?
        };
        match fired {
            Some(i) => {
                policy.chose::<B::Slot>(n, i);
                Ok(self.guards.swap_remove(i).finish())
            }
            None => Ok(self.fire_fallback()),
        }
    }

    fn fire_fallback(&mut self) -> R {
        let action = self
            .fallback
            .take_action()
            .expect("a fallback with a deadline has an action");
        action()
    }
}
