//! Barriers (occam-π's `BARRIER`, JCSP's `Barrier`), written once over two hidden channels.
//!
//! A barrier is a count of enrolled and arrived members, kept as a token in a channel that buffers
//! one value (taking the token is holding the count's lock, across OS processes too), and a
//! rendezvous channel, the *gate*, on which the members that arrived early wait. The member that
//! completes a sync (the last to arrive, or the last one needed to resign) keeps the token while it
//! lets each waiting member through the gate, so nobody can arrive at the next sync before everyone
//! has left this one.
//!
//! Built on channels, a barrier behaves as a channel in everything the engines already do for
//! channels: each [`BarrierEnd`] holds ends of both hidden channels, so a process that panics or
//! ends with `Poisoned` while enrolled poisons the barrier, an OS process that dies does too (its
//! ends are in its parent's census), and poison wakes every member waiting in a sync.

use crate::Leave;
use crate::backend::Carries;
use crate::channel::{Channel, Reader, Writer};
use crate::context::{LeavingEnd, end_dropped};
use crate::error::ChannelError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A backend that can carry a barrier's hidden channels: every backend can. Generic code over
/// barriers states `B: Barriers`.
///
/// ```
/// fn lock_step<B: cspnet_core::Barriers>() {}
/// lock_step::<cspnet_threads::Threads>();
/// ```
pub trait Barriers: Carries<BarrierCount> + Carries<()> {}

impl<B: Carries<BarrierCount> + Carries<()>> Barriers for B {}

/// The token a barrier keeps in its state channel: how many members are enrolled and how many
/// have arrived at the sync under way. Public only because [`Barriers`] names it.
///
/// ```
/// let c = cspnet_core::BarrierCount::default();
/// assert_eq!((c.enrolled(), c.arrived()), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarrierCount {
    enrolled: u64,
    arrived: u64,
}

impl BarrierCount {
    /// Members enrolled.
    ///
    /// ```
    /// assert_eq!(cspnet_core::BarrierCount::default().enrolled(), 0);
    /// ```
    pub fn enrolled(&self) -> u64 {
        self.enrolled
    }

    /// Members waiting in the sync under way.
    ///
    /// ```
    /// assert_eq!(cspnet_core::BarrierCount::default().arrived(), 0);
    /// ```
    pub fn arrived(&self) -> u64 {
        self.arrived
    }

    /// Whether the members that arrived are all that is needed: the sync completes.
    fn complete(&self) -> bool {
        self.arrived > 0 && self.arrived >= self.enrolled
    }
}

/// The ends of a barrier's two hidden channels that one handle holds.
struct Hidden<B: Barriers> {
    state_r: Reader<B, BarrierCount>,
    state_w: Writer<B, BarrierCount>,
    gate_r: Reader<B, ()>,
    gate_w: Writer<B, ()>,
}

impl<B: Barriers> Clone for Hidden<B> {
    fn clone(&self) -> Self {
        Hidden {
            state_r: self.state_r.clone(),
            state_w: self.state_w.clone(),
            gate_r: self.gate_r.clone(),
            gate_w: self.gate_w.clone(),
        }
    }
}

impl<B: Barriers> Hidden<B> {
    /// Takes the count (holding it is holding the barrier's lock), changes it with `f`, lets
    /// through the gate as many waiting members as `f` says, and puts the count back.
    fn with_count<R>(
        &self,
        f: impl FnOnce(&mut BarrierCount) -> (R, u64),
    ) -> Result<R, ChannelError> {
        let mut count = self.state_r.read()?;
        let (result, release) = f(&mut count);
        for _ in 0..release {
            self.gate_w.write(())?;
        }
        self.state_w.write(count)?;
        Ok(result)
    }

    /// One member arrives; `true` when it completed the sync (the others were let through).
    fn arrive(&self) -> Result<bool, ChannelError> {
        self.with_count(|c| {
            c.arrived += 1;
            if c.complete() {
                // The caller is one of the arrived; the others wait at the gate.
                let waiting = c.arrived - 1;
                c.arrived = 0;
                (true, waiting)
            } else {
                (false, 0)
            }
        })
    }

    fn enroll(&self) -> Result<(), ChannelError> {
        self.with_count(|c| {
            c.enrolled += 1;
            ((), 0)
        })
    }

    fn resign(&self) -> Result<(), ChannelError> {
        self.with_count(|c| {
            c.enrolled = c.enrolled.saturating_sub(1);
            if c.complete() {
                // Every arrived member waits at the gate, and was waiting only for this one.
                let waiting = c.arrived;
                c.arrived = 0;
                ((), waiting)
            } else {
                ((), 0)
            }
        })
    }

    fn enrolled(&self) -> Result<u64, ChannelError> {
        self.with_count(|c| (c.enrolled, 0))
    }

    fn poison(&self) {
        self.state_r.poison();
        self.gate_r.poison();
    }
}

/// A barrier: a set of enrolled processes that meet at every [`sync`](BarrierEnd::sync). No member
/// gets past a sync until every enrolled member has reached it.
///
/// The `Barrier` is a handle (as a [`Channel`] is): [`enroll`](Self::enroll) makes a
/// [`BarrierEnd`], one enrolled member, which a process takes with it. A member leaves by
/// [`resign`](BarrierEnd::resign) or by being dropped; when the members still waiting were waiting
/// only for it, they go on. [`poison`](Self::poison) fails every pending and later sync.
///
/// ```
/// use cspnet_threads::{Barrier, Channel, parallel, process};
///
/// // Three workers in lock-step: nobody starts round 2 before everyone finished round 1.
/// let barrier = Barrier::new();
/// let log = Channel::<(u32, u32)>::with_buffer(6);
/// let procs: Vec<_> = (0..3)
///     .map(|id| {
///         let (end, w) = (barrier.enroll(), log.writer());
///         process(move || {
///             for round in 1..=2 {
///                 w.write((round, id))?;
///                 end.sync()?;
///             }
///             Ok(())
///         })
///     })
///     .collect();
/// let r = log.reader();
/// drop((barrier, log));
/// parallel(procs).unwrap();
/// let rounds: Vec<u32> = r.iter().map(|e| e.unwrap().0).collect();
/// assert_eq!(rounds, vec![1, 1, 1, 2, 2, 2]);
/// ```
pub struct Barrier<B: Barriers> {
    hidden: Hidden<B>,
}

impl<B: Barriers> Barrier<B> {
    /// A barrier with no member enrolled.
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::new();
    /// assert_eq!(b.enrolled(), Ok(0));
    /// ```
    pub fn new() -> Self {
        let state = Channel::<B, BarrierCount>::with_buffer(1);
        let gate = Channel::<B, ()>::new();
        let hidden = Hidden {
            state_r: state.reader(),
            state_w: state.writer(),
            gate_r: gate.reader(),
            gate_w: gate.writer(),
        };
        hidden
            .state_w
            .write(BarrierCount::default())
            .expect("a new channel with room for one value takes it");
        Barrier { hidden }
    }

    /// Enrolls a new member. If a sync is under way, it now waits for this member too. On a
    /// poisoned barrier the member's syncs fail with `Poisoned`.
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::new();
    /// let me = b.enroll();
    /// assert_eq!(me.sync(), Ok(())); // the only member: a sync completes at once
    /// ```
    pub fn enroll(&self) -> BarrierEnd<B> {
        enroll(&self.hidden)
    }

    /// How many members are enrolled now (it changes as members enroll and resign).
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::new();
    /// let _two = (b.enroll(), b.enroll());
    /// assert_eq!(b.enrolled(), Ok(2));
    /// ```
    pub fn enrolled(&self) -> Result<u64, ChannelError> {
        self.hidden.enrolled()
    }

    /// Poisons the barrier: every pending and later sync fails with [`ChannelError::Poisoned`].
    ///
    /// ```
    /// use cspnet_threads::{Barrier, ChannelError};
    /// let b = Barrier::new();
    /// let me = b.enroll();
    /// b.poison();
    /// assert_eq!(me.sync(), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        self.hidden.poison();
    }
}

impl<B: Barriers> Default for Barrier<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Barriers> fmt::Debug for Barrier<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("backend", &B::NAME)
            .field(
                "state",
                &<B as Carries<()>>::state(self.hidden.gate_r.raw()).err(),
            )
            .finish()
    }
}

fn enroll<B: Barriers>(hidden: &Hidden<B>) -> BarrierEnd<B> {
    // On a poisoned barrier the count cannot change; the new member's syncs report the poison.
    let _ = hidden.enroll();
    BarrierEnd {
        hidden: Some(hidden.clone()),
    }
}

/// One enrolled member of a [`Barrier`], held by one process. Cloning it enrolls another member
/// (JCSP's `enroll`); dropping it resigns (or, if its process panics or fails with `Poisoned`,
/// poisons the barrier, as a channel end does).
///
/// ```
/// use cspnet_threads::{Barrier, parallel, process};
/// let b = Barrier::new();
/// let (x, y) = (b.enroll(), b.enroll());
/// let out = parallel([
///     process(move || { x.sync()?; x.sync()?; Ok(2) }),
///     process(move || { y.sync()?; y.sync()?; Ok(2) }),
/// ]).unwrap();
/// assert_eq!(out, vec![Ok(2), Ok(2)]);
/// ```
pub struct BarrierEnd<B: Barriers> {
    /// `None` once resigned (so `Drop` does nothing more).
    hidden: Option<Hidden<B>>,
}

impl<B: Barriers> BarrierEnd<B> {
    fn hidden(&self) -> &Hidden<B> {
        self.hidden
            .as_ref()
            .expect("a barrier end holds its channels until it is dropped")
    }

    /// Waits until every enrolled member has reached this sync. Fails with `Poisoned` once the
    /// barrier is poisoned (also while waiting).
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::new();
    /// let me = b.enroll();
    /// for _ in 0..3 { me.sync().unwrap(); }
    /// ```
    pub fn sync(&self) -> Result<(), ChannelError> {
        let h = self.hidden();
        if h.arrive()? {
            return Ok(());
        }
        h.gate_r.read()
    }

    /// Enrolls another member of the same barrier (the same as `clone`).
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::new();
    /// let me = b.enroll();
    /// let _other = me.enroll();
    /// assert_eq!(b.enrolled(), Ok(2));
    /// ```
    pub fn enroll(&self) -> BarrierEnd<B> {
        enroll(self.hidden())
    }

    /// Resigns: the barrier no longer waits for this member. If the members waiting in a sync were
    /// waiting only for it, they go on.
    ///
    /// ```
    /// use cspnet_threads::{Barrier, parallel, process};
    /// let b = Barrier::new();
    /// let (x, y) = (b.enroll(), b.enroll());
    /// let out = parallel([
    ///     process(move || x.sync().map(|()| 1)), // waits for y ...
    ///     process(move || { y.resign(); Ok(0) }), // ... which resigns instead
    /// ]).unwrap();
    /// assert_eq!(out, vec![Ok(1), Ok(0)]);
    /// ```
    pub fn resign(mut self) {
        if let Some(h) = self.hidden.take() {
            let _ = h.resign();
        }
    }

    /// Poisons the barrier: every pending and later sync fails with [`ChannelError::Poisoned`].
    ///
    /// ```
    /// use cspnet_threads::{Barrier, ChannelError};
    /// let b = Barrier::new();
    /// let (x, y) = (b.enroll(), b.enroll());
    /// x.poison();
    /// assert_eq!(y.sync(), Err(ChannelError::Poisoned));
    /// ```
    pub fn poison(&self) {
        self.hidden().poison();
    }
}

impl<B: Barriers> Clone for BarrierEnd<B> {
    fn clone(&self) -> Self {
        self.enroll()
    }
}

/// A dropped member on its way out, parked as a dropped channel end is.
struct Resigning<B: Barriers> {
    hidden: Hidden<B>,
}

impl<B: Barriers> LeavingEnd for Resigning<B> {
    fn leave(self: Box<Self>, how: Leave) {
        match how {
            Leave::Retire => {
                let _ = self.hidden.resign();
            }
            Leave::Poison => self.hidden.poison(),
        }
    }
}

impl<B: Barriers> Drop for BarrierEnd<B> {
    fn drop(&mut self) {
        let Some(hidden) = self.hidden.take() else {
            return;
        };
        if B::taking_census() {
            // Only a copy: the member lives on in a forked child, and its hidden ends record
            // themselves in the child's census as they drop.
            return;
        }
        end_dropped::<B::Slot>(Box::new(Resigning { hidden }));
    }
}

impl<B: Barriers> fmt::Debug for BarrierEnd<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierEnd")
            .field("backend", &B::NAME)
            .field(
                "state",
                &self
                    .hidden
                    .as_ref()
                    .and_then(|h| <B as Carries<()>>::state(h.gate_r.raw()).err()),
            )
            .finish()
    }
}

/// Checks at compile time that barrier handles can be moved into processes.
#[allow(dead_code)]
fn handles_are_send<B: Barriers>() {
    fn is_send<S: Send>() {}
    is_send::<Barrier<B>>();
    is_send::<BarrierEnd<B>>();
}
