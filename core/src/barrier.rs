//! Barriers (occam-π's `BARRIER`, JCSP's `Barrier`), written once over a hidden channel's word.
//!
//! A barrier is a hidden channel of `()` that never carries a value. Its counts live in the word
//! every engine keeps with a channel ([`Carries::word`]): the phase, how many members have arrived
//! at the sync under way, and how many are enrolled, changed with one compare-and-swap each. The
//! member that completes a sync (the last to arrive, or the last one needed to resign) moves the
//! phase on and wakes everyone waiting ([`Carries::wake_word`]: one broadcast, not one hand-off per
//! member); a waiting member waits until the phase it arrived in is over ([`Carries::wait_word`]).
//!
//! Each [`BarrierEnd`] holds a reader end of the hidden channel, so a barrier behaves as a channel
//! in what the engines already do for ends: a member whose process panics or ends with `Poisoned`
//! poisons it, an OS process that dies does too (its ends are in its parent's census), and poison
//! wakes every member waiting in a sync.

use crate::Leave;
use crate::backend::Carries;
use crate::channel::{Channel, Reader};
use crate::context::{LeavingEnd, end_dropped};
use crate::error::ChannelError;
use std::fmt;
use std::sync::atomic::Ordering;

/// A backend that can keep barriers: every backend can. Generic code over barriers states
/// `B: Barriers`.
///
/// ```
/// fn lock_step<B: cspnet_core::Barriers>() {}
/// lock_step::<cspnet_threads::Threads>();
/// ```
pub trait Barriers: Carries<()> {}

impl<B: Carries<()>> Barriers for B {}

/// The most members a barrier can have enrolled at once.
const MAX_MEMBERS: u64 = (1 << 24) - 1;

/// A barrier's counts, as packed in its channel's word: the phase in the low 16 bits (it only has
/// to differ from the phase a waiting member arrived in, which cannot come round again while that
/// member waits), then 24 bits of arrived members, then 24 bits of enrolled members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    phase: u64,
    arrived: u64,
    enrolled: u64,
}

impl Count {
    fn unpack(w: u64) -> Count {
        Count {
            phase: w & 0xffff,
            arrived: (w >> 16) & MAX_MEMBERS,
            enrolled: w >> 40,
        }
    }

    fn pack(self) -> u64 {
        (self.phase & 0xffff) | (self.arrived << 16) | (self.enrolled << 40)
    }

    /// The sync under way completes if the members that arrived are all that is needed: the
    /// phase moves on and nobody has arrived in the new one.
    fn completing(mut self) -> (Count, bool) {
        if self.arrived > 0 && self.arrived >= self.enrolled {
            self.phase = (self.phase + 1) & 0xffff;
            self.arrived = 0;
            (self, true)
        } else {
            (self, false)
        }
    }
}

/// Changes the count in `chan`'s word with `f` (one compare-and-swap, retried), wakes the waiting
/// members if that completed a sync, and returns the count before and whether it completed.
fn update<B: Barriers>(chan: &B::Chan, f: impl Fn(Count) -> Count) -> (Count, bool) {
    let word = B::word(chan);
    let mut old = word.load(Ordering::SeqCst);
    loop {
        let before = Count::unpack(old);
        let (after, completed) = f(before).completing();
        match word.compare_exchange_weak(old, after.pack(), Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {
                if completed {
                    B::wake_word(chan);
                }
                return (before, completed);
            }
            Err(now) => old = now,
        }
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
    chan: Channel<B, ()>,
}

impl<B: Barriers> Barrier<B> {
    /// A barrier with no member enrolled.
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::new();
    /// assert_eq!(b.enrolled(), Ok(0));
    /// ```
    pub fn new() -> Self {
        Barrier {
            chan: Channel::new(),
        }
    }

    /// A barrier with no member enrolled, with a name that a deadlock report gives.
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::named("step");
    /// assert_eq!(b.enrolled(), Ok(0));
    /// ```
    pub fn named(name: &str) -> Self {
        Barrier {
            chan: Channel::named(name),
        }
    }

    /// Enrolls a new member. If a sync is under way, it now waits for this member too. On a
    /// poisoned barrier the member's syncs fail with `Poisoned`.
    ///
    /// # Panics
    ///
    /// When 16,777,215 members are enrolled already.
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::new();
    /// let me = b.enroll();
    /// assert_eq!(me.sync(), Ok(())); // the only member: a sync completes at once
    /// ```
    pub fn enroll(&self) -> BarrierEnd<B> {
        enroll(self.chan.reader())
    }

    /// How many members are enrolled now (it changes as members enroll and resign), or
    /// `Poisoned`.
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::new();
    /// let _two = (b.enroll(), b.enroll());
    /// assert_eq!(b.enrolled(), Ok(2));
    /// ```
    pub fn enrolled(&self) -> Result<u64, ChannelError> {
        enrolled::<B>(self.chan.raw())
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
        self.chan.poison();
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
            .field("enrolled", &self.enrolled())
            .finish()
    }
}

fn poisoned<B: Barriers>(chan: &B::Chan) -> Result<(), ChannelError> {
    match B::state(chan) {
        Err(ChannelError::Poisoned) => Err(ChannelError::Poisoned),
        _ => Ok(()),
    }
}

fn enrolled<B: Barriers>(chan: &B::Chan) -> Result<u64, ChannelError> {
    poisoned::<B>(chan)?;
    Ok(Count::unpack(B::word(chan).load(Ordering::SeqCst)).enrolled)
}

fn enroll<B: Barriers>(end: Reader<B, ()>) -> BarrierEnd<B> {
    let (before, _) = update::<B>(end.raw(), |c| Count {
        enrolled: (c.enrolled + 1).min(MAX_MEMBERS),
        ..c
    });
    assert!(
        before.enrolled < MAX_MEMBERS,
        "a barrier has at most {MAX_MEMBERS} members enrolled"
    );
    BarrierEnd { end: Some(end) }
}

fn resign<B: Barriers>(chan: &B::Chan) {
    if poisoned::<B>(chan).is_err() {
        return; // nothing completes on a poisoned barrier
    }
    update::<B>(chan, |c| Count {
        enrolled: c.enrolled.saturating_sub(1),
        ..c
    });
}

/// For an engine releasing, as retired, the ends of a process that died without releasing them
/// itself (the processes backend's supervised child killed by a signal): if `chan` is a barrier's
/// hidden channel, one member resigns, so the others' syncs do not wait for the dead one. Only
/// barriers keep counts in a channel's word, so a word with members enrolled is a barrier's.
///
/// ```
/// let raw = <cspnet_threads::Threads as cspnet_core::Carries<()>>::channel(None, 0);
/// cspnet_core::resign_if_barrier::<cspnet_threads::Threads>(&raw); // a plain channel: nothing
/// ```
#[doc(hidden)]
pub fn resign_if_barrier<B: Barriers>(chan: &B::Chan) {
    if Count::unpack(B::word(chan).load(Ordering::SeqCst)).enrolled > 0 {
        resign::<B>(chan);
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
    end: Option<Reader<B, ()>>,
}

impl<B: Barriers> BarrierEnd<B> {
    fn end(&self) -> &Reader<B, ()> {
        self.end
            .as_ref()
            .expect("a barrier end holds its channel until it is dropped")
    }

    /// Waits until every enrolled member has reached this sync. Fails with `Poisoned` once the
    /// barrier is poisoned (also while waiting: poison wins over a sync completing at the same
    /// time).
    ///
    /// ```
    /// let b = cspnet_threads::Barrier::new();
    /// let me = b.enroll();
    /// for _ in 0..3 { me.sync().unwrap(); }
    /// ```
    pub fn sync(&self) -> Result<(), ChannelError> {
        B::flush();
        let chan = self.end().raw();
        poisoned::<B>(chan)?;
        let (before, completed) = update::<B>(chan, |c| Count {
            arrived: c.arrived + 1,
            ..c
        });
        if completed {
            return Ok(());
        }
        B::wait_word(chan, &mut |w| Count::unpack(w).phase != before.phase)
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
        enroll(self.end().clone())
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
        if let Some(end) = self.end.take() {
            B::flush();
            resign::<B>(end.raw());
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
        self.end().poison();
    }
}

impl<B: Barriers> Clone for BarrierEnd<B> {
    fn clone(&self) -> Self {
        self.enroll()
    }
}

/// A dropped member on its way out, parked as a dropped channel end is.
struct Resigning<B: Barriers> {
    end: Reader<B, ()>,
}

impl<B: Barriers> LeavingEnd for Resigning<B> {
    fn leave(self: Box<Self>, how: Leave) {
        match how {
            Leave::Retire => resign::<B>(self.end.raw()),
            Leave::Poison => self.end.poison(),
        }
    }
}

impl<B: Barriers> Drop for BarrierEnd<B> {
    fn drop(&mut self) {
        let Some(end) = self.end.take() else {
            return;
        };
        if B::taking_census() {
            // Only a copy: the member lives on in a forked child, and its hidden end records
            // itself in the child's census as it drops.
            return;
        }
        end_dropped::<B::Slot>(Box::new(Resigning { end }));
    }
}

impl<B: Barriers> fmt::Debug for BarrierEnd<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierEnd")
            .field("backend", &B::NAME)
            .field(
                "enrolled",
                &self.end.as_ref().map(|e| enrolled::<B>(e.raw())),
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

#[cfg(test)]
mod tests {
    use super::Count;

    #[test]
    fn counts_pack_and_unpack() {
        let c = Count {
            phase: 0xfffe,
            arrived: 3,
            enrolled: (1 << 24) - 1,
        };
        assert_eq!(Count::unpack(c.pack()), c);
        let (next, done) = Count {
            arrived: 7,
            enrolled: 7,
            ..c
        }
        .completing();
        assert!(done);
        assert_eq!((next.phase, next.arrived, next.enrolled), (0xffff, 0, 7));
        let (wrapped, _) = Count {
            phase: 0xffff,
            ..next
        }
        .completing();
        assert_eq!(wrapped.phase, 0xffff, "nobody arrived: nothing completes");
        let (wrapped, done) = Count {
            phase: 0xffff,
            arrived: 1,
            enrolled: 1,
        }
        .completing();
        assert!(done);
        assert_eq!(wrapped.phase, 0);
    }
}
