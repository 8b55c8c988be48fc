//! cspnet on OS processes: every CSP process is an OS process, every channel lives in shared memory.
#![warn(missing_docs)]

mod alternation;
mod channel;
mod codec;
mod exec;
mod futex;
pub mod heap;
mod process;
mod shm;

pub use alternation::Alternation;
pub use channel::{Channel, IntoIter, Iter, Reader, Writer};
pub use cspnet_core::{ChannelError, Outcome, ProcessError, ProcessId};
pub use exec::{Registry, exec};
pub use process::{Process, Spawned, current_process_id, io, parallel, process, sequence, spawn};

/// A forked child runs on the thread that forked it, so the process context lives in a thread-local.
use cspnet_core::ThreadSlot;

/// Sets the size in bytes of the shared-memory segment, before the first channel is made (it
/// overrides `CSPNET_SHM_SIZE`; the default is 256 MiB, sparse). Returns `false` if the segment
/// already exists, in which case nothing changes.
///
/// ```
/// // Too late in a doctest that made no channel yet? No: this is the first use.
/// assert!(cspnet_processes::set_segment_size(64 << 20));
/// let _ch = cspnet_processes::Channel::<u8>::new();
/// assert!(!cspnet_processes::set_segment_size(128 << 20));
/// ```
pub fn set_segment_size(bytes: usize) -> bool {
    shm::request_size(bytes)
}

/// Test hook: takes the segment lock as an operation on `reader`'s channel would, runs `then`
/// (which is expected never to return: the fault tests kill the process inside it), and unlocks.
#[doc(hidden)]
pub fn __hold_segment_lock<T>(reader: &Reader<T>, then: impl FnOnce()) {
    let _lock = shm::segment().lock(&[reader.chan()]);
    then();
}
