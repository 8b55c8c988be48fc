//! The guard vocabulary every alternation shares: choice policy, fair rotation, Skip/Timeout fallback.

use crate::context::ContextSlot;
use crate::deadline::Deadline;
use std::panic::Location;

/// How an alternation chooses among several ready guards.
///
/// ```
/// use cspnet_core::Policy;
/// let p = Policy::Priority;
/// assert_eq!(p.order::<cspnet_core::ThreadSlot>(3), vec![0, 1, 2]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Any ready guard (`select`), each ready guard as likely as the others, as Go's `select`:
    /// the guards are tried in a fresh random order every time.
    Arbitrary,
    /// The first ready guard in the order given (`pri_select`).
    Priority,
    /// Rotates, per process and call site, so that a guard that stays ready is chosen within as many
    /// selects as there are guards (`fair_select`).
    Fair(&'static Location<'static>),
}

impl Policy {
    /// The order in which every engine tries `n` guards, and in which it registers them when it
    /// has to wait: the order given (`pri_select`), rotated past the guard this call site chose last
    /// time (`fair_select`), or a uniformly random permutation (`select`).
    ///
    /// ```
    /// use cspnet_core::{Policy, ThreadSlot};
    /// let fair = Policy::Fair(std::panic::Location::caller());
    /// assert_eq!(fair.order::<ThreadSlot>(3), vec![0, 1, 2]);
    /// fair.chose::<ThreadSlot>(3, 0);
    /// assert_eq!(fair.order::<ThreadSlot>(3), vec![1, 2, 0]);
    ///
    /// let mut any = Policy::Arbitrary.order::<ThreadSlot>(4);
    /// any.sort();
    /// assert_eq!(any, vec![0, 1, 2, 3]);
    /// ```
    pub fn order<S: ContextSlot>(self, n: usize) -> Vec<usize> {
        let start = match self {
            Policy::Fair(site) if n > 0 => S::with(|ctx| *ctx.rotation((*site, n))) % n,
            _ => 0,
        };
        let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        if self == Policy::Arbitrary {
            // A full shuffle, not a random rotation: with three guards of which two are ready, a
            // rotation would pick one of them twice as often as the other.
            fastrand::shuffle(&mut order);
        }
        order
    }

    /// Records that guard `chosen` (of `n`) was chosen, so a fair alternation starts after it next time.
    ///
    /// ```
    /// use cspnet_core::{Policy, ThreadSlot};
    /// let fair = Policy::Fair(std::panic::Location::caller());
    /// fair.chose::<ThreadSlot>(4, 2);
    /// assert_eq!(fair.order::<ThreadSlot>(4), vec![3, 0, 1, 2]);
    /// ```
    pub fn chose<S: ContextSlot>(self, n: usize, chosen: usize) {
        if let Policy::Fair(site) = self {
            S::with(|ctx| *ctx.rotation((*site, n)) = (chosen + 1) % n.max(1));
        }
    }
}

/// The Skip and Timeout guards of one alternation, merged: the earliest deadline's action runs when no
/// channel guard became ready before it (between equal deadlines, the first given).
///
/// ```
/// use cspnet_core::{Deadline, Fallback};
/// use std::time::Duration;
///
/// let mut fb = Fallback::new();
/// fb.add(Deadline::after(Duration::from_secs(5)), "timeout");
/// fb.add(Deadline::Now, "skip");
/// assert_eq!(fb.deadline(), Deadline::Now);
/// assert_eq!(fb.take_action(), Some("skip"));
/// ```
#[derive(Debug)]
pub struct Fallback<A> {
    deadline: Deadline,
    action: Option<A>,
}

impl<A> Default for Fallback<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> Fallback<A> {
    /// No Skip or Timeout: wait for a channel guard forever.
    ///
    /// ```
    /// let fb = cspnet_core::Fallback::<()>::new();
    /// assert_eq!(fb.deadline(), cspnet_core::Deadline::Never);
    /// ```
    pub fn new() -> Self {
        Fallback {
            deadline: Deadline::Never,
            action: None,
        }
    }

    /// Adds a Skip (`Deadline::Now`) or Timeout (`Deadline::At`) guard.
    ///
    /// ```
    /// use cspnet_core::{Deadline, Fallback};
    /// let mut fb = Fallback::new();
    /// fb.add(Deadline::Now, 1);
    /// fb.add(Deadline::Now, 2);
    /// assert_eq!(fb.take_action(), Some(1));
    /// ```
    pub fn add(&mut self, deadline: Deadline, action: A) {
        let earlier = match (self.action.is_some(), deadline, self.deadline) {
            (false, _, _) => true,
            (true, Deadline::Now, Deadline::Now) => false,
            (true, Deadline::Now, _) => true,
            (true, Deadline::At(a), Deadline::At(b)) => a < b,
            (true, Deadline::At(_), Deadline::Never) => true,
            (true, _, _) => false,
        };
        if earlier {
            self.deadline = deadline;
            self.action = Some(action);
        }
    }

    /// When the fallback fires.
    ///
    /// ```
    /// assert_eq!(cspnet_core::Fallback::<u8>::new().deadline(), cspnet_core::Deadline::Never);
    /// ```
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// The action to run when the deadline passes.
    ///
    /// ```
    /// let mut fb = cspnet_core::Fallback::<u8>::new();
    /// assert_eq!(fb.take_action(), None);
    /// ```
    pub fn take_action(&mut self) -> Option<A> {
        self.action.take()
    }
}
