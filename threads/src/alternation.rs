//! Alternation over input and output guards, on crossbeam's `Select`, which commits exactly one.
//!
//! Each guard borrows its channel's endpoint when it is added. Poison or retirement drops the
//! channel's own endpoints, so a waiting guard's operation becomes ready with a disconnection: the
//! alternation then looks at why and either fails (poison) or drops that guard (retirement) and
//! waits on the rest. A retired input channel that still buffers values stays live until drained.

use crate::ThreadSlot;
use crate::channel::{Control, Reader, Writer};
use crossbeam_channel::{Receiver, Select, SelectedOperation, Sender};
use cspnet_core::{ChannelError, Deadline, Fallback, Policy, flush_dropped_ends};
use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::time::Duration;

/// One channel guard with its action, type-erased over the payload type.
trait Guard<'a, R> {
    fn control(&self) -> &'a Control;
    /// Whether the guard can still complete: its endpoint was lent, and it has not seen the
    /// channel end.
    fn is_live(&self) -> bool;
    fn register<'s>(&'s self, sel: &mut Select<'s>) -> usize;
    /// Completes the selected operation: `Ok(Some(result))` when it committed, `Ok(None)` when it
    /// found the channel ended (the guard is dead from now on).
    fn complete(&self, op: SelectedOperation<'_>) -> Option<R>;
}

struct Input<'a, T, F> {
    control: &'a Control,
    rx: Option<Receiver<T>>,
    action: Cell<Option<F>>,
}

impl<'a, T, R, F: FnOnce(T) -> R> Guard<'a, R> for Input<'a, T, F> {
    fn control(&self) -> &'a Control {
        self.control
    }
    fn is_live(&self) -> bool {
        self.rx.is_some()
    }
    fn register<'s>(&'s self, sel: &mut Select<'s>) -> usize {
        sel.recv(self.rx.as_ref().expect("only live guards are registered"))
    }
    fn complete(&self, op: SelectedOperation<'_>) -> Option<R> {
        let rx = self.rx.as_ref().expect("only live guards are registered");
        let value = op.recv(rx).ok()?;
        let action = self.action.take().expect("a guard commits once");
        Some(action(value))
    }
}

struct Output<'a, T, F> {
    control: &'a Control,
    tx: Option<Sender<T>>,
    value: Cell<Option<T>>,
    action: Cell<Option<F>>,
}

impl<'a, T, R, F: FnOnce() -> R> Guard<'a, R> for Output<'a, T, F> {
    fn control(&self) -> &'a Control {
        self.control
    }
    fn is_live(&self) -> bool {
        self.tx.is_some()
    }
    fn register<'s>(&'s self, sel: &mut Select<'s>) -> usize {
        sel.send(self.tx.as_ref().expect("only live guards are registered"))
    }
    fn complete(&self, op: SelectedOperation<'_>) -> Option<R> {
        let tx = self.tx.as_ref().expect("only live guards are registered");
        let value = self.value.take().expect("a value is offered once");
        op.send(tx, value).ok()?;
        let action = self.action.take().expect("a guard commits once");
        Some(action())
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
        self.guards.push(Box::new(Input {
            control: reader.control(),
            rx: reader.ends.receiver(),
            action: Cell::new(Some(action)),
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
        writer: &'a Writer<T>,
        value: T,
        action: impl FnOnce() -> R + 'a,
    ) -> Self {
        self.guards.push(Box::new(Output {
            control: writer.control(),
            tx: writer.ends.sender(),
            value: Cell::new(Some(value)),
            action: Cell::new(Some(action)),
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
        // Guards that found their channel ended; an ended output or drained input never revives.
        let mut dead: Vec<bool> = self.guards.iter().map(|g| !g.is_live()).collect();
        loop {
            let mut live = Vec::with_capacity(n);
            for &i in &order {
                match self.guards[i].control().check() {
                    Err(ChannelError::Poisoned) => return Err(ChannelError::Poisoned),
                    _ if dead[i] => {}
                    _ => live.push(i),
                }
            }
            let deadline = self.fallback.deadline();
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

            match self.select_once(policy, &live, deadline) {
                None => return Ok(self.fire_fallback()),
                Some((i, Some(result))) => {
                    policy.chose::<ThreadSlot>(n, i);
                    return Ok(result);
                }
                // The channel ended under the guard: look at why on the next round.
                Some((i, None)) => dead[i] = true,
            }
        }
    }

    /// One wait for the `live` guards (in offer order): `None` when the deadline passed, or the
    /// guard selected and what completing it gave.
    fn select_once(
        &self,
        policy: Policy,
        live: &[usize],
        deadline: Deadline,
    ) -> Option<(usize, Option<R>)> {
        let mut sel = if policy.is_biased() {
            Select::new_biased()
        } else {
            Select::new()
        };
        for &i in live {
            self.guards[i].register(&mut sel);
        }
        let op = match deadline {
            Deadline::Now => sel.try_select().ok()?,
            Deadline::At(at) => sel.select_deadline(at).ok()?,
            Deadline::Never => sel.select(),
        };
        let i = live[op.index()];
        Some((i, self.guards[i].complete(op)))
    }

    fn fire_fallback(&mut self) -> R {
        let action = self
            .fallback
            .take_action()
            .expect("a fallback with a deadline has an action");
        action()
    }
}
