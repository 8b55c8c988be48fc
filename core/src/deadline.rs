//! One deadline type behind every blocking call: `Skip` is `Now`, `Timeout(d)` is `At(now + d)`.

use std::time::{Duration, Instant};

/// How long a blocking operation may wait.
///
/// ```
/// use cspnet_core::Deadline;
/// use std::time::Duration;
///
/// let d = Deadline::after(Duration::from_millis(5));
/// assert!(matches!(d, Deadline::At(_)));
/// assert_eq!(Deadline::Never.earliest(Deadline::Now), Deadline::Now);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Do not wait at all (a `Skip` guard).
    Now,
    /// Wait until this instant (a `Timeout` guard).
    At(Instant),
    /// Wait for as long as it takes.
    Never,
}

impl Deadline {
    /// The deadline `d` from now; a duration too large to represent waits forever.
    ///
    /// ```
    /// use cspnet_core::Deadline;
    /// use std::time::Duration;
    /// assert_eq!(Deadline::after(Duration::MAX), Deadline::Never);
    /// ```
    pub fn after(d: Duration) -> Self {
        match Instant::now().checked_add(d) {
            Some(at) => Deadline::At(at),
            None => Deadline::Never,
        }
    }

    /// The earlier of two deadlines.
    ///
    /// ```
    /// use cspnet_core::Deadline;
    /// use std::time::{Duration, Instant};
    /// let now = Instant::now();
    /// let a = Deadline::At(now);
    /// let b = Deadline::At(now + Duration::from_secs(1));
    /// assert_eq!(a.earliest(b), a);
    /// assert_eq!(Deadline::Never.earliest(b), b);
    /// ```
    #[inline]
    pub fn earliest(self, other: Deadline) -> Deadline {
        match (self, other) {
            (Deadline::Now, _) | (_, Deadline::Now) => Deadline::Now,
            (Deadline::Never, d) | (d, Deadline::Never) => d,
            (Deadline::At(a), Deadline::At(b)) => Deadline::At(a.min(b)),
        }
    }

    /// Time left until the deadline: `Some(ZERO)` once passed, `None` for [`Deadline::Never`].
    ///
    /// ```
    /// use cspnet_core::Deadline;
    /// use std::time::Duration;
    /// assert_eq!(Deadline::Now.remaining(), Some(Duration::ZERO));
    /// assert_eq!(Deadline::Never.remaining(), None);
    /// ```
    #[inline]
    pub fn remaining(&self) -> Option<Duration> {
        match self {
            Deadline::Now => Some(Duration::ZERO),
            Deadline::At(at) => Some(at.saturating_duration_since(Instant::now())),
            Deadline::Never => None,
        }
    }

    /// Whether the deadline has passed (always for `Now`, never for `Never`).
    ///
    /// ```
    /// use cspnet_core::Deadline;
    /// assert!(Deadline::Now.has_passed());
    /// assert!(!Deadline::Never.has_passed());
    /// ```
    #[inline]
    pub fn has_passed(&self) -> bool {
        match self {
            Deadline::Now => true,
            Deadline::At(at) => Instant::now() >= *at,
            Deadline::Never => false,
        }
    }
}
