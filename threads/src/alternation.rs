//! Alternation over input and output guards, on crossbeam's `Select`, which commits exactly one.
//!
//! Each round offers every live guard's operation plus one wake operation per open channel, so that
//! poison or retirement of any channel interrupts the wait. A retired input channel that still
//! buffers values stays a live guard until drained; it is only ever tried, never waited on, since
//! nothing can arrive on it any more.

use crate::ThreadSlot;
use crate::channel::{Control, Reader, Writer};
use crossbeam_channel::{Select, SelectedOperation};
use cspnet_core::{ChannelError, Deadline, Fallback, Policy, flush_dropped_ends};
use std::fmt;
use std::panic::Location;
use std::time::Duration;

/// One channel guard with its action, type-erased over the payload type.
trait Guard<'a, R> {
    fn control(&self) -> &'a Control;
    /// Whether a retired channel can still complete this guard (an input with buffered values).
    fn drainable(&self) -> bool;
    fn register(&self, sel: &mut Select<'a>) -> usize;
    fn complete(self: Box<Self>, op: SelectedOperation<'_>) -> Result<R, ChannelError>;
}

struct Input<'a, T, F> {
    reader: &'a Reader<T>,
    action: F,
}

impl<'a, T, R, F: FnOnce(T) -> R> Guard<'a, R> for Input<'a, T, F> {
    fn control(&self) -> &'a Control {
        self.reader.control()
    }
    fn drainable(&self) -> bool {
        !self.reader.rx.is_empty()
    }
    fn register(&self, sel: &mut Select<'a>) -> usize {
        let reader: &'a Reader<T> = self.reader;
        sel.recv(&reader.rx)
    }
    fn complete(self: Box<Self>, op: SelectedOperation<'_>) -> Result<R, ChannelError> {
        let value = op
            .recv(&self.reader.rx)
            .map_err(|_| ChannelError::Retired)?;
        Ok((self.action)(value))
    }
}

struct Output<'a, T, F> {
    writer: &'a Writer<T>,
    value: T,
    action: F,
}

impl<'a, T, R, F: FnOnce() -> R> Guard<'a, R> for Output<'a, T, F> {
    fn control(&self) -> &'a Control {
        self.writer.control()
    }
    fn drainable(&self) -> bool {
        false
    }
    fn register(&self, sel: &mut Select<'a>) -> usize {
        let writer: &'a Writer<T> = self.writer;
        sel.send(&writer.tx)
    }
    fn complete(self: Box<Self>, op: SelectedOperation<'_>) -> Result<R, ChannelError> {
        op.send(&self.writer.tx, self.value)
            .map_err(|_| ChannelError::Retired)?;
        Ok((self.action)())
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
    pub fn input<T: 'a>(mut self, reader: &'a Reader<T>, action: impl FnOnce(T) -> R + 'a) -> Self {
        self.guards.push(Box::new(Input { reader, action }));
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
        writer: &'a Writer<T>,
        value: T,
        action: impl FnOnce() -> R + 'a,
    ) -> Self {
        self.guards.push(Box::new(Output {
            writer,
            value,
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

    /// Commits any one ready guard (no promise which) and returns its action's result.
    ///
    /// Fails with `Poisoned` if any guard's channel is poisoned, and with `Retired` once every
    /// channel guard's channel is retired (or there are no guards at all).
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
        flush_dropped_ends::<ThreadSlot>();
        let n = self.guards.len();
        let order = policy.order::<ThreadSlot>(n);
        loop {
            let mut live = Vec::with_capacity(n);
            let mut draining = false;
            for &i in &order {
                let guard = &self.guards[i];
                match guard.control().check() {
                    Ok(()) => live.push(i),
                    Err(ChannelError::Retired) if guard.drainable() => {
                        live.push(i);
                        draining = true;
                    }
                    Err(ChannelError::Retired) => {}
                    Err(e) => return Err(e),
                }
            }
            // A draining guard is only tried: nothing new can arrive on a retired channel.
            let deadline = if draining {
                Deadline::Now
            } else {
                self.fallback.deadline()
            };
            if live.is_empty() {
                // Every channel guard is retired, or there were none and nothing could ever fire.
                if n > 0 || deadline == Deadline::Never {
                    return Err(ChannelError::Retired);
                }
                if let Some(left) = deadline.remaining() {
                    std::thread::sleep(left);
                }
                return Ok(self.fire_fallback());
            }

            let mut sel = if policy.is_biased() {
                Select::new_biased()
            } else {
                Select::new()
            };
            let mut ops: Vec<Op<'a>> = Vec::with_capacity(2 * live.len());
            for &i in &live {
                let k = self.guards[i].register(&mut sel);
                debug_assert_eq!(k, ops.len());
                ops.push(Op::Guard(i));
            }
            // One wake operation per open channel: poison or retirement interrupts the wait.
            for &i in &live {
                let control = self.guards[i].control();
                let listed = ops
                    .iter()
                    .any(|op| matches!(op, Op::Wake(c) if std::ptr::eq(*c, control)));
                if control.check().is_ok() && !listed {
                    sel.recv(&control.wake_rx);
                    ops.push(Op::Wake(control));
                }
            }

            let selected = match deadline {
                Deadline::Now => sel.try_select().ok(),
                Deadline::At(at) => sel.select_deadline(at).ok(),
                Deadline::Never => Some(sel.select()),
            };
            let Some(op) = selected else {
                if draining {
                    continue; // the drained guards are dead now; look again
                }
                return Ok(self.fire_fallback());
            };
            match ops[op.index()] {
                Op::Guard(i) => {
                    policy.chose::<ThreadSlot>(n, i);
                    return self.guards.swap_remove(i).complete(op);
                }
                // A channel ended: complete the wake operation and classify the guards again.
                Op::Wake(control) => {
                    let _ = op.recv(&control.wake_rx);
                }
            }
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

/// What an operation registered with the selector stands for.
enum Op<'a> {
    Guard(usize),
    Wake(&'a Control),
}
