//! What every cspnet backend shares: errors, deadlines, the guard vocabulary, the life of a process,
//! the waiter's claim-once state, the budget against the kernel's mapping limit, and the
//! conformance suite that defines "behaves the same".
//!
//! Users do not depend on this crate directly: the `cspnet` facade and each backend re-export what
//! they need from it.
//!
//! ```
//! use cspnet_core::{ChannelError, Deadline};
//! assert!(ChannelError::Poisoned.is_poisoned());
//! assert_eq!(Deadline::Now.earliest(Deadline::Never), Deadline::Now);
//! ```
#![warn(missing_docs)]

mod budget;
mod claim;
mod deadline;
mod error;
mod guard;
mod loom;
mod process;
pub mod suite;

pub use budget::{MappingBudget, Reservation, max_map_count};
pub use claim::{Claim, ClaimWord};
pub use deadline::Deadline;
pub use error::{
    Cause, ChannelError, Failure, Outcome, ProcessError, next_in_stream, panic_message,
};
pub use guard::{Fallback, Policy};
pub use process::{
    ContextSlot, Leave, LeavingEnd, ProcessContext, ProcessId, ThreadSlot, discard_unstarted,
    end_dropped, flush_dropped_ends, run_body,
};
