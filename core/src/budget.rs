//! One count of live processes against the kernel's limit on memory mappings, for every backend.
//!
//! Each thread stack or coroutine stack takes a few memory mappings, and the kernel caps how many
//! one program may have (Linux `vm.max_map_count`, 65530 by default). So that cap, not memory,
//! bounds how many processes a threads or coroutines network can run; past it the OS fails
//! allocations, and std aborts the whole program when a thread cannot get its signal stack. A
//! backend keeps one [`MappingBudget`] in a `static`, reserves a place before it starts each
//! process, and refuses the process with a clear [`Cause::CouldNotStart`] when no place is left.

use crate::error::Cause;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The kernel's limit on one program's memory mappings (Linux `vm.max_map_count`, 65530 by
/// default), if the platform has one; read once. [`MappingBudget`] counts processes against it.
///
/// ```
/// if let Some(limit) = cspnet_core::max_map_count() {
///     assert!(limit > 0);
/// }
/// ```
pub fn max_map_count() -> Option<usize> {
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

/// The processes of one backend alive now, counted against [`max_map_count`].
///
/// Made with a `const fn`, so a backend keeps it in a `static`; [`MappingBudget::reserve`] counts
/// one more process, or refuses it when it would take the program within
/// [`MappingBudget::SPARE`] mappings of the kernel's limit.
///
/// ```
/// use cspnet_core::MappingBudget;
///
/// static STACKS: MappingBudget = MappingBudget::new(
///     2,
///     "coroutines",
///     "Or run fewer processes at once.",
/// );
///
/// let place = STACKS.reserve().expect("one process is far below any limit");
/// assert_eq!(STACKS.live(), 1);
/// drop(place); // the process ended
/// assert_eq!(STACKS.live(), 0);
/// ```
pub struct MappingBudget {
    live: AtomicUsize,
    per_process: usize,
    what: &'static str,
    advice: &'static str,
}

impl MappingBudget {
    /// Mappings kept free for everything else the program maps: heap arenas, libraries, files,
    /// the runtime's own threads, and may's cache of finished coroutine stacks.
    ///
    /// ```
    /// assert_eq!(cspnet_core::MappingBudget::SPARE, 8192);
    /// ```
    pub const SPARE: usize = 8192;

    /// A budget for processes that take `per_process` mappings each. `what` names them in the
    /// plural for the error message ("process threads"), and `advice` is a sentence the message
    /// ends with (what else the user can do), or `""`.
    ///
    /// # Panics
    ///
    /// If `per_process` is zero (at compile time, in a `static`).
    ///
    /// ```
    /// use cspnet_core::MappingBudget;
    /// static THREADS: MappingBudget = MappingBudget::new(
    ///     4, // stack, its guard page, signal stack, its guard page
    ///     "process threads",
    ///     "Or use the coroutines backend for networks this large.",
    /// );
    /// assert_eq!(THREADS.per_process(), 4);
    /// ```
    pub const fn new(per_process: usize, what: &'static str, advice: &'static str) -> Self {
        assert!(per_process > 0, "a process takes at least one mapping");
        MappingBudget {
            live: AtomicUsize::new(0),
            per_process,
            what,
            advice,
        }
    }

    /// Counts one more process, unless one more would not fit under the kernel's limit: then
    /// [`Cause::CouldNotStart`], naming how many run, the limit, the mappings per process and how
    /// to raise the limit. Dropping the [`Reservation`] (when the process ends, or was never
    /// started) uncounts it. Without a known limit, every process is counted and let through.
    ///
    /// ```
    /// use cspnet_core::MappingBudget;
    /// static THREADS: MappingBudget = MappingBudget::new(4, "process threads", "");
    /// let place = THREADS.reserve().unwrap();
    /// std::thread::spawn(move || {
    ///     let _place = place; // held while the process runs
    /// })
    /// .join()
    /// .unwrap();
    /// assert_eq!(THREADS.live(), 0);
    /// ```
    pub fn reserve(&'static self) -> Result<Reservation, Cause> {
        self.reserve_under(max_map_count())
    }

    /// [`MappingBudget::reserve`] against the limit `max` (the tests' way in).
    fn reserve_under(&'static self, max: Option<usize>) -> Result<Reservation, Cause> {
        let live = self.live.fetch_add(1, Ordering::AcqRel);
        // Counted from here on: dropping it on refusal uncounts it again.
        let place = Reservation { budget: self };
        match max {
            Some(max) if live >= self.limit(max) => Err(self.refusal(live, max)),
            _ => Ok(place),
        }
    }

    fn refusal(&self, live: usize, max: usize) -> Cause {
        let per = self.per_process;
        let spare = Self::SPARE;
        let fit = self.limit(max);
        // Enough for twice as many processes as fit now (at least a thousand).
        let room = (2 * fit).max(1000);
        let raised = room.saturating_mul(per).saturating_add(spare);
        let mut message = format!(
            "{live} {what} are running, and one more would take the program past the kernel's \
             limit of {max} memory mappings (vm.max_map_count): each takes {per}, and {spare} are \
             kept for the rest of the program, so at most {fit} fit. Raise the limit, e.g. \
             `sudo sysctl -w vm.max_map_count={raised}` for {room} of them.",
            what = self.what,
        );
        if !self.advice.is_empty() {
            message.push(' ');
            message.push_str(self.advice);
        }
        Cause::CouldNotStart(message)
    }

    /// How many processes fit under a kernel limit of `max_map_count` mappings:
    /// `(max_map_count - SPARE) / per_process`, and none when the limit is below the spare.
    ///
    /// ```
    /// use cspnet_core::MappingBudget;
    /// static B: MappingBudget = MappingBudget::new(2, "coroutines", "");
    /// assert_eq!(B.limit(65530), (65530 - MappingBudget::SPARE) / 2);
    /// assert_eq!(B.limit(100), 0);
    /// ```
    pub const fn limit(&self, max_map_count: usize) -> usize {
        max_map_count.saturating_sub(Self::SPARE) / self.per_process
    }

    /// How many processes are counted now.
    ///
    /// ```
    /// static B: cspnet_core::MappingBudget = cspnet_core::MappingBudget::new(2, "coroutines", "");
    /// assert_eq!(B.live(), 0);
    /// ```
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// The mappings one process takes.
    ///
    /// ```
    /// static B: cspnet_core::MappingBudget = cspnet_core::MappingBudget::new(2, "coroutines", "");
    /// assert_eq!(B.per_process(), 2);
    /// ```
    pub const fn per_process(&self) -> usize {
        self.per_process
    }
}

impl fmt::Debug for MappingBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappingBudget")
            .field("what", &self.what)
            .field("live", &self.live())
            .field("per_process", &self.per_process)
            .finish()
    }
}

/// One process's place in a [`MappingBudget`]; dropping it gives the place back.
///
/// Move it into the process (its thread or coroutine) so the place is held exactly as long as the
/// process runs.
///
/// ```
/// static B: cspnet_core::MappingBudget = cspnet_core::MappingBudget::new(4, "process threads", "");
/// let place = B.reserve().unwrap();
/// assert_eq!(B.live(), 1);
/// drop(place);
/// assert_eq!(B.live(), 0);
/// ```
#[must_use = "dropping the reservation gives the place back at once"]
pub struct Reservation {
    budget: &'static MappingBudget,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("what", &self.budget.what)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{MappingBudget, Reservation};
    use crate::error::Cause;

    #[test]
    fn the_limit_leaves_the_spare_and_divides_the_rest() {
        static THREADS: MappingBudget = MappingBudget::new(4, "process threads", "");
        static COROUTINES: MappingBudget = MappingBudget::new(2, "processes", "");
        assert_eq!(THREADS.limit(65530), 14334);
        assert_eq!(COROUTINES.limit(65530), 28669);
        assert_eq!(COROUTINES.limit(4_194_304), 2_093_056);
        assert_eq!(THREADS.limit(MappingBudget::SPARE + 7), 1);
        assert_eq!(THREADS.limit(MappingBudget::SPARE), 0);
        assert_eq!(THREADS.limit(0), 0);
        assert_eq!(THREADS.limit(usize::MAX), (usize::MAX - 8192) / 4);
    }

    #[test]
    fn places_are_given_up_to_the_limit_and_back_on_drop() {
        static B: MappingBudget = MappingBudget::new(4, "process threads", "");
        let max = Some(MappingBudget::SPARE + 3 * 4 + 2); // room for three
        let held: Vec<Reservation> = (0..3).map(|_| B.reserve_under(max).unwrap()).collect();
        assert_eq!(B.live(), 3);
        assert!(B.reserve_under(max).is_err());
        assert_eq!(B.live(), 3, "a refusal is not counted");
        drop(held);
        assert_eq!(B.live(), 0);
        let again = B.reserve_under(max).expect("the places came back");
        assert_eq!(B.live(), 1);
        drop(again);
        assert_eq!(B.live(), 0);
    }

    #[test]
    fn without_a_known_limit_everything_is_counted_and_let_through() {
        static B: MappingBudget = MappingBudget::new(2, "processes", "");
        let held: Vec<Reservation> = (0..100).map(|_| B.reserve_under(None).unwrap()).collect();
        assert_eq!(B.live(), 100);
        drop(held);
        assert_eq!(B.live(), 0);
    }

    #[test]
    fn a_limit_below_the_spare_refuses_the_first_process() {
        static B: MappingBudget = MappingBudget::new(2, "processes", "");
        assert!(B.reserve_under(Some(100)).is_err());
        assert_eq!(B.live(), 0);
    }

    #[test]
    fn the_refusal_says_how_many_the_limit_the_cost_and_the_fix() {
        static B: MappingBudget = MappingBudget::new(
            4,
            "process threads",
            "Or use the coroutines backend for networks this large.",
        );
        let max = Some(MappingBudget::SPARE + 2 * 4); // room for two
        let held: Vec<Reservation> = (0..2).map(|_| B.reserve_under(max).unwrap()).collect();
        let Err(Cause::CouldNotStart(message)) = B.reserve_under(max) else {
            panic!("the third process fits under a limit with room for two");
        };
        drop(held);
        for part in [
            "2 process threads are running",
            "limit of 8200 memory mappings",
            "each takes 4",
            "8192 are kept",
            "at most 2 fit",
            "`sudo sysctl -w vm.max_map_count=12192` for 1000 of them",
            "Or use the coroutines backend",
        ] {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
    }

    #[test]
    fn reservations_from_many_threads_all_come_back() {
        static B: MappingBudget = MappingBudget::new(2, "processes", "");
        let max = Some(MappingBudget::SPARE + 2 * 1000);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        let _place = B.reserve_under(max).expect("at most 4 held at once");
                    }
                });
            }
        });
        assert_eq!(B.live(), 0);
    }
}
