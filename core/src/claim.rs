//! The claim-once state of a blocked waiter: which guard fired it, or why it stopped waiting.
//!
//! # The protocol
//!
//! A party that blocks (a read, a write, or an alternation over several guards) registers one entry
//! per guard on the guard's channel, all pointing at one waiter, and sleeps on the waiter's
//! [`ClaimWord`]. The word leaves [`Claim::Waiting`] exactly once, by compare-and-swap:
//!
//! - a counterpart that matches an entry, under that channel's lock, first moves the value into (or
//!   out of) the entry's slot and then claims the waiter with [`Claim::Fired`] and the entry's
//!   guard index; if the claim fails, the waiter was claimed elsewhere and will never look at the
//!   slot, so the counterpart moves the value back;
//! - the end of a channel (poison, or retirement of its last reader or writer) claims each waiter
//!   queued on it with [`Claim::Ended`], and the waiter looks at its channels again;
//! - the waiter itself, when its deadline passes, claims itself with [`Claim::TimedOut`].
//!
//! Whoever wins the swap owns the outcome; everybody else backs off. The swap is `AcqRel`, so the
//! value a counterpart put in the slot before claiming is visible to the waiter once it loads the
//! word with `Acquire` and sees its guard fired. The loom model at the end of this file checks that
//! rule in every interleaving of two counterparts, an end of channel and a time-out.

use crate::loom::{AtomicU32, Ordering};
use std::fmt;

/// Where a waiter's claim stands: still waiting, or claimed once and for all, with the reason.
///
/// Each value has a `u32` encoding ([`Claim::to_u32`], [`Claim::from_u32`]) so that the state fits
/// in one atomic word, which the processes backend keeps in shared memory and sleeps on as a futex.
/// Guard indices take the low range, `0..Claim::MAX_GUARDS`; the other states sit at the top.
///
/// ```
/// use cspnet_core::Claim;
/// for claim in [Claim::Waiting, Claim::Fired(0), Claim::Fired(7), Claim::Ended, Claim::TimedOut] {
///     assert_eq!(Claim::from_u32(claim.to_u32()), claim);
/// }
/// assert_eq!(Claim::Fired(3).to_u32(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claim {
    /// Nobody has claimed the waiter yet: it is (or is about to be) asleep.
    ///
    /// ```
    /// assert_eq!(cspnet_core::Claim::Waiting.to_u32(), u32::MAX);
    /// ```
    Waiting,
    /// A counterpart completed the guard with this index (0 for a plain read or write); the value
    /// was moved through that guard's slot before the claim.
    ///
    /// ```
    /// assert_eq!(cspnet_core::Claim::from_u32(2), cspnet_core::Claim::Fired(2));
    /// ```
    Fired(u32),
    /// A channel the waiter was queued on ended (poisoned or retired) and dequeued it: nothing was
    /// exchanged; the waiter looks at its channels again to learn which and how.
    ///
    /// ```
    /// assert_eq!(cspnet_core::Claim::Ended.to_u32(), u32::MAX - 1);
    /// ```
    Ended,
    /// The waiter claimed itself when its deadline passed: nothing was exchanged, and an
    /// alternation runs its timeout fallback.
    ///
    /// ```
    /// assert_eq!(cspnet_core::Claim::TimedOut.to_u32(), u32::MAX - 2);
    /// ```
    TimedOut,
}

const WAITING: u32 = u32::MAX;
const ENDED: u32 = u32::MAX - 1;
const TIMED_OUT: u32 = u32::MAX - 2;

impl Claim {
    /// How many guard indices the encoding holds: [`Claim::Fired`] takes `0..MAX_GUARDS`, and the
    /// words from `MAX_GUARDS` up are the other states.
    ///
    /// ```
    /// use cspnet_core::Claim;
    /// assert_eq!(Claim::from_u32(Claim::MAX_GUARDS - 1), Claim::Fired(Claim::MAX_GUARDS - 1));
    /// assert_eq!(Claim::from_u32(Claim::MAX_GUARDS), Claim::TimedOut);
    /// ```
    pub const MAX_GUARDS: u32 = TIMED_OUT;

    /// The claim for the guard at `index`, as the engines number guards (`usize`).
    ///
    /// # Panics
    ///
    /// If `index` is not below [`Claim::MAX_GUARDS`] (no alternation has four billion guards).
    ///
    /// ```
    /// assert_eq!(cspnet_core::Claim::fired(5), cspnet_core::Claim::Fired(5));
    /// ```
    #[track_caller]
    #[inline]
    pub fn fired(index: usize) -> Claim {
        match u32::try_from(index) {
            Ok(i) if i < Claim::MAX_GUARDS => Claim::Fired(i),
            _ => panic!("guard index {index} is too large for a claim word"),
        }
    }

    /// The state as one word: the guard index for [`Claim::Fired`], `u32::MAX`, `u32::MAX - 1`
    /// and `u32::MAX - 2` for the others.
    ///
    /// # Panics
    ///
    /// For `Fired(i)` with `i >= Claim::MAX_GUARDS`, whose word would read back as another state.
    ///
    /// ```
    /// use cspnet_core::Claim;
    /// assert_eq!(Claim::Fired(0).to_u32(), 0);
    /// assert_eq!(Claim::Ended.to_u32(), u32::MAX - 1);
    /// ```
    #[track_caller]
    #[inline]
    pub const fn to_u32(self) -> u32 {
        match self {
            Claim::Waiting => WAITING,
            Claim::Fired(i) => {
                assert!(
                    i < Claim::MAX_GUARDS,
                    "guard index too large for a claim word"
                );
                i
            }
            Claim::Ended => ENDED,
            Claim::TimedOut => TIMED_OUT,
        }
    }

    /// The state a word holds. Every word is some state, so this never fails, and it is the
    /// inverse of [`Claim::to_u32`].
    ///
    /// ```
    /// use cspnet_core::Claim;
    /// assert_eq!(Claim::from_u32(u32::MAX), Claim::Waiting);
    /// assert_eq!(Claim::from_u32(4), Claim::Fired(4));
    /// ```
    #[inline]
    pub const fn from_u32(word: u32) -> Claim {
        match word {
            WAITING => Claim::Waiting,
            ENDED => Claim::Ended,
            TIMED_OUT => Claim::TimedOut,
            i => Claim::Fired(i),
        }
    }

    /// Whether nobody has claimed the waiter yet.
    ///
    /// ```
    /// use cspnet_core::Claim;
    /// assert!(Claim::Waiting.is_waiting());
    /// assert!(!Claim::Ended.is_waiting());
    /// ```
    #[inline]
    pub const fn is_waiting(self) -> bool {
        matches!(self, Claim::Waiting)
    }
}

/// A waiter's claim state in one atomic word, claimed exactly once.
///
/// It is a `u32` in memory (`#[repr(transparent)]` over an [`AtomicU32`](std::sync::atomic::AtomicU32)),
/// so it can sit in a `#[repr(C)]` record in memory shared between OS processes, and a futex can
/// sleep on it through [`ClaimWord::as_atomic`]. A zeroed word reads as `Fired(0)`, not as
/// `Waiting`: initialise shared records with [`ClaimWord::reset`] before publishing them.
///
/// ```
/// use cspnet_core::{Claim, ClaimWord};
/// use std::sync::atomic::Ordering;
///
/// let word = ClaimWord::new();
/// assert!(word.claim(Claim::Fired(1))); // a counterpart completes guard 1
/// assert!(!word.claim(Claim::TimedOut)); // too late for the waiter's own time-out
/// assert_eq!(word.load(Ordering::Acquire), Claim::Fired(1));
/// ```
#[repr(transparent)]
pub struct ClaimWord(AtomicU32);

impl ClaimWord {
    /// A word in [`Claim::Waiting`].
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let word = cspnet_core::ClaimWord::new();
    /// assert!(word.load(Ordering::Relaxed).is_waiting());
    /// ```
    #[inline]
    pub fn new() -> ClaimWord {
        ClaimWord(AtomicU32::new(WAITING))
    }

    /// Puts the word back to [`Claim::Waiting`], for a waiter record that is reused (the processes
    /// backend's, which lives in shared memory).
    ///
    /// The store is `Relaxed`: the waiter must publish the word to its claimers through the
    /// channel locks under which it queues its entries, and must have removed every entry of
    /// its previous wait (so no claimer still holds it) before resetting.
    ///
    /// ```
    /// use cspnet_core::{Claim, ClaimWord};
    /// use std::sync::atomic::Ordering;
    /// let word = ClaimWord::new();
    /// assert!(word.claim(Claim::Ended));
    /// word.reset();
    /// assert_eq!(word.load(Ordering::Relaxed), Claim::Waiting);
    /// ```
    #[inline]
    pub fn reset(&self) {
        self.0.store(WAITING, Ordering::Relaxed);
    }

    /// The state now. The waiter loads with `Acquire` when it wakes, so that after seeing
    /// `Fired(i)` it sees the value the claimer put in guard `i`'s slot before claiming.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let word = cspnet_core::ClaimWord::new();
    /// assert_eq!(word.load(Ordering::Acquire), cspnet_core::Claim::Waiting);
    /// ```
    #[inline]
    pub fn load(&self, order: Ordering) -> Claim {
        Claim::from_u32(self.0.load(order))
    }

    /// Claims the waiter with `outcome` if nobody has yet: `true` for exactly one claim over the
    /// word's life (until a [`ClaimWord::reset`]), `false` for every later one.
    ///
    /// One compare-and-swap from [`Claim::Waiting`]. On success it is `AcqRel`: the release half
    /// publishes what the claimer wrote before it (the value moved through the slot) to the
    /// waiter, which loads the word with `Acquire`; the acquire half lets the claimer see what the
    /// waiter wrote before it queued. On failure it is `Acquire`, so the loser sees the winner's
    /// claim before it backs off (and moves its value back out of the slot).
    ///
    /// # Panics
    ///
    /// If `outcome` is [`Claim::Waiting`] (that is no claim), or a `Fired` index that
    /// [`Claim::to_u32`] rejects.
    ///
    /// ```
    /// use cspnet_core::{Claim, ClaimWord};
    /// let word = ClaimWord::new();
    /// assert!(word.claim(Claim::TimedOut));
    /// assert!(!word.claim(Claim::Fired(0)));
    /// ```
    #[track_caller]
    #[inline]
    pub fn claim(&self, outcome: Claim) -> bool {
        assert!(
            !outcome.is_waiting(),
            "a waiter cannot be claimed with Waiting"
        );
        self.0
            .compare_exchange(
                WAITING,
                outcome.to_u32(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The word itself, for sleeping on it (a futex wait while it still holds
    /// `Claim::Waiting.to_u32()`) and waking its sleeper. Only [`ClaimWord::claim`] and
    /// [`ClaimWord::reset`] should change it.
    ///
    /// Under `cfg(loom)` this is loom's `AtomicU32`, which has no futex.
    ///
    /// ```
    /// use cspnet_core::{Claim, ClaimWord};
    /// use std::sync::atomic::Ordering;
    /// let word = ClaimWord::new();
    /// assert_eq!(word.as_atomic().load(Ordering::Relaxed), Claim::Waiting.to_u32());
    /// ```
    #[inline]
    pub fn as_atomic(&self) -> &AtomicU32 {
        &self.0
    }
}

impl Default for ClaimWord {
    /// A word in [`Claim::Waiting`], as [`ClaimWord::new`].
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let word = cspnet_core::ClaimWord::default();
    /// assert!(word.load(Ordering::Relaxed).is_waiting());
    /// ```
    fn default() -> ClaimWord {
        ClaimWord::new()
    }
}

impl fmt::Debug for ClaimWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClaimWord")
            .field(&self.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Claim;

    #[test]
    fn every_state_round_trips_through_its_word() {
        let claims = [
            Claim::Waiting,
            Claim::Ended,
            Claim::TimedOut,
            Claim::Fired(0),
            Claim::Fired(1),
            Claim::Fired(Claim::MAX_GUARDS - 1),
        ];
        for claim in claims {
            assert_eq!(Claim::from_u32(claim.to_u32()), claim);
        }
        for word in [0, 1, 1000, TOP - 3, TOP - 2, TOP - 1, TOP] {
            assert_eq!(Claim::from_u32(word).to_u32(), word);
        }
    }

    const TOP: u32 = u32::MAX;

    #[test]
    fn the_special_states_are_distinct_words_above_every_guard() {
        let specials = [Claim::Waiting, Claim::Ended, Claim::TimedOut].map(Claim::to_u32);
        assert_eq!(specials, [TOP, TOP - 1, TOP - 2]);
        assert!(specials.iter().all(|&w| w >= Claim::MAX_GUARDS));
    }

    #[test]
    #[should_panic(expected = "too large")]
    fn a_guard_index_in_the_special_range_is_refused() {
        let _ = Claim::Fired(Claim::MAX_GUARDS).to_u32();
    }

    #[test]
    #[should_panic(expected = "too large")]
    fn a_usize_guard_index_past_the_range_is_refused() {
        let _ = Claim::fired(usize::MAX);
    }

    #[cfg(not(loom))]
    #[test]
    fn only_the_first_claim_wins_until_reset() {
        use super::ClaimWord;
        use std::sync::atomic::Ordering;
        let word = ClaimWord::new();
        assert!(word.claim(Claim::Fired(2)));
        for later in [Claim::Fired(0), Claim::Ended, Claim::TimedOut] {
            assert!(!word.claim(later));
        }
        assert_eq!(word.load(Ordering::Acquire), Claim::Fired(2));
        word.reset();
        assert!(word.claim(Claim::Ended));
        assert_eq!(format!("{word:?}"), "ClaimWord(Ended)");
    }

    #[cfg(not(loom))]
    #[test]
    #[should_panic(expected = "cannot be claimed with Waiting")]
    fn claiming_with_waiting_is_refused() {
        super::ClaimWord::new().claim(Claim::Waiting);
    }

    #[cfg(not(loom))]
    #[test]
    fn the_word_is_a_plain_u32_in_memory() {
        use super::ClaimWord;
        assert_eq!(size_of::<ClaimWord>(), size_of::<u32>());
        assert_eq!(align_of::<ClaimWord>(), align_of::<u32>());
    }
}

/// The claim protocol as the coroutines engine runs it, model-checked by loom in every
/// interleaving (up to its preemption bound). Run it with
/// `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p cspnet-core --release --lib claim`
/// (see `.ci/run`; without the variable the bound is 3 too).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::{Claim, ClaimWord};
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::Ordering;
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    /// What each counterpart offers, by channel (and guard: the waiter's guard `c` is on channel `c`).
    const VALUES: [u32; 2] = [10, 20];

    /// One channel's state behind its lock: the waiter's entry (its guard index) while queued,
    /// and whether the channel has ended.
    struct Queue {
        entry: Option<u32>,
        ended: bool,
    }

    /// An alternation blocked on two channels: its claim word and one value slot per guard, and
    /// the two channels' queues.
    struct Net {
        word: ClaimWord,
        slots: [UnsafeCell<Option<u32>>; 2],
        chans: [Mutex<Queue>; 2],
    }

    // SAFETY: a slot is touched by a counterpart only under its channel's lock while the entry
    // for it is queued, and by the waiter only once claimed (the entry is gone from its queue):
    // exactly what loom checks below, since loom's cell reports any unsynchronised access.
    unsafe impl Sync for Net {}

    impl Net {
        /// The waiter registered on both channels, its guard `c` on channel `c`, as it is
        /// before it sleeps.
        fn registered() -> Net {
            let queue = |c| Queue {
                entry: Some(c),
                ended: false,
            };
            Net {
                word: ClaimWord::new(),
                slots: [UnsafeCell::new(None), UnsafeCell::new(None)],
                chans: [Mutex::new(queue(0)), Mutex::new(queue(1))],
            }
        }

        /// A writer arriving on channel `c` (coroutines' `try_put`): under the channel's lock,
        /// puts its value in the entry's slot, then claims; takes the value back if the claim
        /// fails. `Err` gives back the value it kept.
        fn offer(&self, c: usize, value: u32) -> Result<(), u32> {
            let mut queue = self.chans[c].lock().unwrap();
            if queue.ended {
                return Err(value);
            }
            let Some(index) = queue.entry.take() else {
                return Err(value);
            };
            let slot = &self.slots[index as usize];
            // SAFETY: the entry was queued and we hold its channel's lock.
            slot.with_mut(|s| unsafe { *s = Some(value) });
            if self.word.claim(Claim::Fired(index)) {
                return Ok(());
            }
            // SAFETY: as above; claimed elsewhere, the waiter never reads this slot.
            let back = slot.with_mut(|s| unsafe { (*s).take() });
            Err(back.expect("the value just put there"))
        }

        /// The end of channel `c` (poison or retirement): dequeues the entry and claims with
        /// `Ended`. `true` if this claim won.
        fn end(&self, c: usize) -> bool {
            let mut queue = self.chans[c].lock().unwrap();
            queue.ended = true;
            queue.entry.take().is_some() && self.word.claim(Claim::Ended)
        }

        /// The waiter at its deadline: claims itself, loads the outcome, takes the winning slot's
        /// value without any lock (as a plain read does, so only the claim's ordering makes the
        /// value visible), then removes its entries. Returns whether its own claim won, the
        /// outcome, and the value it got.
        fn time_out(&self) -> (bool, Claim, Option<u32>) {
            let timed_out = self.word.claim(Claim::TimedOut);
            let outcome = self.word.load(Ordering::Acquire);
            let got = match outcome {
                // SAFETY: the claimer dequeued this guard's entry, so nobody else touches the slot.
                Claim::Fired(i) => self.slots[i as usize].with_mut(|s| unsafe { (*s).take() }),
                _ => None,
            };
            for chan in &self.chans {
                chan.lock().unwrap().entry = None;
            }
            (timed_out, outcome, got)
        }
    }

    #[test]
    fn exactly_one_claim_wins_and_no_value_is_lost_or_doubled() {
        let mut builder = loom::model::Builder::new();
        // LOOM_MAX_PREEMPTIONS overrides this; unbounded, the model takes far too long.
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(|| {
            let net = Arc::new(Net::registered());
            let writers: Vec<_> = (0..2)
                .map(|c| {
                    let net = Arc::clone(&net);
                    thread::spawn(move || net.offer(c, VALUES[c]))
                })
                .collect();
            let ender = {
                let net = Arc::clone(&net);
                thread::spawn(move || net.end(1))
            };
            let (timed_out, outcome, got) = net.time_out();
            let offers: Vec<Result<(), u32>> =
                writers.into_iter().map(|w| w.join().unwrap()).collect();
            let ended = ender.join().unwrap();

            let wins = offers.iter().filter(|o| o.is_ok()).count()
                + usize::from(ended)
                + usize::from(timed_out);
            assert_eq!(
                wins, 1,
                "exactly one claim succeeds: {outcome:?} {offers:?}"
            );
            assert_eq!(net.word.load(Ordering::Relaxed), outcome);
            match outcome {
                Claim::Fired(i) => {
                    let (i, other) = (i as usize, 1 - i as usize);
                    assert_eq!(got, Some(VALUES[i]), "the waiter got guard {i}'s value");
                    assert_eq!(offers[i], Ok(()));
                    assert_eq!(
                        offers[other],
                        Err(VALUES[other]),
                        "the loser kept its value"
                    );
                }
                Claim::Ended | Claim::TimedOut => {
                    assert_eq!(ended, outcome == Claim::Ended);
                    assert_eq!(timed_out, outcome == Claim::TimedOut);
                    assert_eq!(got, None);
                    assert_eq!(offers, [Err(VALUES[0]), Err(VALUES[1])]);
                }
                Claim::Waiting => panic!("the waiter stopped waiting unclaimed"),
            }
            for slot in &net.slots {
                // SAFETY: every thread has been joined.
                let left = slot.with(|s| unsafe { *s });
                assert_eq!(left, None, "no value left in a slot");
            }
        });
    }
}

/// The processes backend's sleep and wake handshake, model-checked by loom: a waiter spins on its
/// claim word, then announces `sleeping`, fences, and futex-waits while the word reads `Waiting`;
/// a claimer claims under the channel lock, fences, and calls `futex_wake` only if it reads
/// `sleeping`. The futex is modelled as the kernel runs it: its value check and its wake both
/// under one hash-bucket lock (a loom `Mutex` and `Condvar`). A lost wake leaves the waiter
/// asleep for ever, which loom reports as a deadlock. Run with the command above.
///
/// The `broken_*` tests drop one part of the handshake each and check that loom does find the
/// lost wake, so that the passing model is known to be able to fail.
#[cfg(all(test, loom))]
mod loom_wake_tests {
    use super::{Claim, ClaimWord};
    use loom::sync::atomic::{AtomicU32, Ordering, fence};
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    /// Which handshake the model runs: the real one, or one with a deliberate flaw.
    #[derive(Clone, Copy, PartialEq)]
    enum Variant {
        /// `Locked::wake_waiter_later` and `Operation::sleep` as written.
        Sound,
        /// No SeqCst fences (the accesses stay SeqCst; the claim is `AcqRel`).
        NoFences,
        /// The claimer reads `sleeping` before it claims.
        FlagBeforeClaim,
    }

    /// A waiter record (claim word and `sleeping` flag), the channel lock claimers take, and the
    /// futex's bucket.
    struct Rec {
        word: ClaimWord,
        sleeping: AtomicU32,
        chan: Mutex<()>,
        bucket: Mutex<()>,
        sleepers: Condvar,
    }

    impl Rec {
        /// `FUTEX_WAIT`: sleeps if the word still holds `expected`, checked under the bucket lock.
        fn futex_wait(&self, expected: u32) {
            let guard = self.bucket.lock().unwrap();
            if self.word.as_atomic().load(Ordering::SeqCst) == expected {
                drop(self.sleepers.wait(guard).unwrap());
            }
        }

        /// `FUTEX_WAKE`: wakes every sleeper, under the bucket lock.
        fn futex_wake(&self) {
            let _guard = self.bucket.lock().unwrap();
            self.sleepers.notify_all();
        }

        /// `Operation::sleep`: one look while spinning (loom cannot bound a timed spin), then
        /// announce, fence, and sleep while unclaimed. Returns the claim it saw.
        fn wait(&self, v: Variant) -> Claim {
            let seen = self.word.load(Ordering::Acquire);
            if !seen.is_waiting() {
                return seen;
            }
            self.sleeping.store(1, Ordering::SeqCst);
            if v != Variant::NoFences {
                fence(Ordering::SeqCst);
            }
            loop {
                let now = self.word.load(Ordering::SeqCst);
                if !now.is_waiting() {
                    return now;
                }
                self.futex_wait(Claim::Waiting.to_u32());
            }
        }

        /// A commit or an alert: claim under the channel lock, decide there whether to wake
        /// (`Locked::wake_waiter_later`), wake after unlocking. `true` if this claim won.
        fn claim(&self, outcome: Claim, v: Variant) -> bool {
            let chan = self.chan.lock().unwrap();
            let early = v == Variant::FlagBeforeClaim && self.sleeping.load(Ordering::SeqCst) != 0;
            let won = self.word.claim(outcome);
            let wake = won
                && match v {
                    Variant::Sound => {
                        fence(Ordering::SeqCst);
                        self.sleeping.load(Ordering::SeqCst) != 0
                    }
                    Variant::NoFences => self.sleeping.load(Ordering::SeqCst) != 0,
                    Variant::FlagBeforeClaim => early,
                };
            drop(chan);
            if wake {
                self.futex_wake();
            }
            won
        }
    }

    fn check(v: Variant) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(move || {
            let rec = Arc::new(Rec {
                word: ClaimWord::new(),
                sleeping: AtomicU32::new(0),
                chan: Mutex::new(()),
                bucket: Mutex::new(()),
                sleepers: Condvar::new(),
            });
            let claimers: Vec<_> = [Claim::Fired(0), Claim::Ended]
                .into_iter()
                .map(|outcome| {
                    let rec = Arc::clone(&rec);
                    thread::spawn(move || rec.claim(outcome, v))
                })
                .collect();
            let seen = rec.wait(v);
            let won: Vec<bool> = claimers.into_iter().map(|c| c.join().unwrap()).collect();
            assert_eq!(won.iter().filter(|&&w| w).count(), 1, "one claim wins");
            let expected = if won[0] {
                Claim::Fired(0)
            } else {
                Claim::Ended
            };
            assert_eq!(seen, expected, "the waiter saw the winning claim");
        });
    }

    #[test]
    fn no_wake_is_lost_when_the_claimer_skips_futex_wake_for_a_spinning_waiter() {
        check(Variant::Sound);
    }

    #[test]
    #[should_panic(expected = "deadlock")]
    fn broken_without_the_fences_a_wake_is_lost() {
        check(Variant::NoFences);
    }

    #[test]
    #[should_panic(expected = "deadlock")]
    fn broken_reading_the_flag_before_claiming_loses_a_wake() {
        check(Variant::FlagBeforeClaim);
    }
}
