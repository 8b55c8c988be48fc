//! The public API of cspnet written once over a backend trait, and what every backend shares.
//!
//! Users do not depend on this crate directly: each backend (`cspnet_threads`, `cspnet_processes`,
//! `cspnet_coroutines`) re-exports these types under its own engine, and the `cspnet` facade
//! re-exports the backends. What lives here:
//!
//! - **the seam**: [`Backend`] and [`Carries`], which each backend implements with its engine
//!   (see [`backend`] for what an engine must provide);
//! - **the surface**, once: [`Channel`], [`Reader`], [`Writer`], [`Iter`], [`IntoIter`],
//!   [`Alternation`], [`Barrier`], [`BarrierEnd`], [`Process`], [`Spawned`], [`process`], [`parallel`], [`sequence`],
//!   [`spawn`], [`io`], [`current_process_id`], and [`backend_surface!`] that names them for a
//!   backend;
//! - **the rules**: the order guards are tried in ([`Policy`]), when a channel retires
//!   ([`Membership`], [`ChannelState`]), when an alternation has nothing left to wait for
//!   ([`live_guards`]), how a process's ends leave when it ends ([`run_body`]);
//! - what engines share beneath the surface: the waiter's claim-once state ([`Claim`],
//!   [`ClaimWord`], model-checked with loom) and the budget against the kernel's mapping limit
//!   ([`MappingBudget`]);
//! - the layers above the channels, made of CSP processes and channels: [`Supervisor`] and
//!   [`Farm`] (a pool of workers, results by job ID, crashes as failures naming the job), and
//!   [`jobs`] (job graphs of external commands, the DVSim scheduler pattern; Linux only);
//! - deadlock detection: a network whose every process is blocked with no deadline is ended and
//!   reported as a [`Deadlock`] (engines call [`blocking`] just before they sleep);
//! - errors, the [`Deadline`] behind Skip and Timeout, and the [`suite`] that defines "behaves the
//!   same".
//!
//! Code generic over backends names the trait and the payloads it needs, and names the backend
//! once where nothing else pins it (here, on `parallel`):
//!
//! ```
//! use cspnet_core::{Carries, Channel, parallel, process};
//!
//! fn squares<B: Carries<u64>>(n: u64) -> u64 {
//!     let ch = Channel::<B, u64>::new();
//!     let (w, r) = (ch.writer(), ch.reader());
//!     let out = parallel::<B, _, _>([
//!         process(move || { for i in 1..=n { w.write(i * i)?; } Ok(0) }),
//!         process(move || { let mut s = 0; for v in r { s += v?; } Ok(s) }),
//!     ])
//!     .unwrap();
//!     out[1].unwrap()
//! }
//! assert_eq!(squares::<cspnet_threads::Threads>(3), 1 + 4 + 9);
//! ```
#![warn(missing_docs)]

mod alternation;
pub mod backend;
mod barrier;
mod budget;
mod channel;
mod claim;
mod context;
mod deadline;
mod deadlock;
mod env;
mod error;
mod farm;
mod guard;
#[cfg(target_os = "linux")]
pub mod jobs;
mod loom;
mod process;
pub mod suite;
mod supervise;
mod surface;

pub use alternation::Alternation;
pub use backend::{
    Backend, Carries, ChannelState, GuardStatus, Membership, Report, Role, live_guards,
};
pub use barrier::{Barrier, BarrierEnd, Barriers, resign_if_barrier};
pub use budget::{MappingBudget, Reservation, max_map_count};
pub use channel::{Channel, IntoIter, Iter, Mobile, Reader, Writer};
pub use claim::{Claim, ClaimWord};
pub use context::{
    ContextSlot, Ending, HeldEnd, Leave, LeavingEnd, ProcessContext, ProcessId, ThreadSlot,
    discard_unstarted, end_dropped, flush_dropped_ends, run_body,
};
pub use deadline::Deadline;
pub use deadlock::{
    Blocked, Deadlock, GuardWait, OnChannel, OnGuards, Wait, Waiting, blocking, blocking_raw,
    deadlock_delay, set_deadlock_delay,
};
pub use env::{env_size, parse_size};
pub use error::{
    BufferError, Cause, ChannelError, ErrorText, Failure, KillError, Outcome, ProcessError,
    next_in_stream, panic_message,
};
pub use farm::{
    CarriesFarm, Farm, FarmError, FarmReport, FarmRun, JobContext, JobFailure, JobResult,
    WorkerEnds,
};
pub use guard::{Fallback, Policy};
pub use process::{Process, Spawned, current_process_id, io, parallel, process, sequence, spawn};
pub use supervise::{Exit, Supervisor};
