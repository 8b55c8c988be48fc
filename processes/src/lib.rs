//! cspnet on OS processes: every CSP process is an OS process, every channel lives in shared memory.
//!
//! **Linux only.** It needs `memfd_create`, process-shared futexes, robust process-shared mutexes
//! and `prctl(PR_SET_PDEATHSIG)`. On every other target the crate is empty: it builds, so a
//! program that depends on it still compiles there, but it exports nothing.
//!
//! The same API as `cspnet-threads`, name for name; payloads and process results must also be
//! `Serialize + DeserializeOwned` (they cross address spaces). Use it through the facade
//! (`use cspnet::processes as csp;`) so that switching backend is a one-line change.
//!
//! ```
//! use cspnet_processes::{Channel, parallel, process};
//!
//! let numbers = Channel::<u64>::new();
//! let squares = Channel::<u64>::new();
//! let (nw, nr, sw, sr) = (numbers.writer(), numbers.reader(), squares.writer(), squares.reader());
//! let out = parallel([
//!     process(move || { for i in 1..=4 { nw.write(i)?; } Ok(0) }),
//!     process(move || { for n in nr { let n = n?; sw.write(n * n)?; } Ok(0) }),
//!     process(move || { let mut sum = 0; for s in sr { sum += s?; } Ok(sum) }),
//! ])
//! .unwrap();
//! assert_eq!(out[2], Ok(1 + 4 + 9 + 16));
//! ```
//!
//! # How it works, and what it costs
//!
//! - **One shared-memory segment** per program: a `memfd` (so the kernel frees it when the last
//!   process holding it exits, even after `SIGKILL`; nothing appears in `/dev/shm`), mapped
//!   `MAP_SHARED` on first use, before any fork. It is sparse: the default 256 MiB costs only the
//!   pages actually touched. Set the size with `CSPNET_SHM_SIZE` (bytes, or with a `k`/`m`/`g`
//!   suffix) or [`set_segment_size`] before the first channel. Its layout is in the crate's
//!   `README.md`.
//! - **Channels** are records in that segment. Reads, writes and alternations take one robust,
//!   process-shared mutex for a few hundred nanoseconds and sleep on a futex of their own, so a hop
//!   costs one futex wake and one wait between the two processes concerned, however large the
//!   network (no fixed pools, no notify-all). A process that dies holding the lock poisons only the
//!   channels it was changing (`EOWNERDEAD`).
//! - **Payloads** are encoded with bincode (serde) into a next-fit heap in the segment (`heap`); a
//!   `Vec<u8>` is copied straight, not encoded byte by byte. A value larger than the heap can ever
//!   hold fails at the writer with [`ChannelError::TooLarge`]; a full heap makes writers wait.
//! - **Results** travel back to the parent over ipc-channel, which also carries the bootstrap of
//!   re-executed children.
//!
//! # Two ways to start a process
//!
//! **From a closure** ([`process`], then [`parallel`], [`spawn`] or [`sequence`]): the child is a
//! `fork` of the caller. It runs the closure as a CSP process, sends the outcome (or the panic) to
//! the parent, and leaves with `_exit`. The parent drops its own copy of the closure in *census*
//! mode: the ends it captured do not leave the channel (the child holds them now); they are recorded,
//! so if the child dies without reporting (killed, `exit` in the body) the parent poisons exactly
//! those channels, and `parallel` reports `Cause::Crashed("killed by signal 9 (SIGKILL)")` or
//! `Cause::Crashed("exited with status 3 before reporting")`. Each `parallel` waits only for its own
//! children (`waitpid` on their pids), so it is safe to use from many threads at once.
//!
//! **By re-executing the program** ([`exec`]): for programs that must not fork (many threads,
//! libraries holding locks, a simulator that must start fresh). Register the functions a child may
//! run and call [`Registry::init`] first thing in `main`; `exec("name", args)` gives a [`Process`]
//! whose arguments (channel ends among them) are serde-encoded, and whose command-line arguments,
//! environment and directory you can set:
//!
//! ```no_run
//! use cspnet_processes::{Channel, Outcome, Reader, Registry, exec, parallel, process};
//!
//! fn simulate((steps, input): (u32, Reader<f64>)) -> Outcome<f64> {
//!     let mut total = 0.0;
//!     for _ in 0..steps { total += input.read()?; }
//!     Ok(total)
//! }
//!
//! fn main() {
//!     Registry::new().register("simulate", simulate).init();
//!     let ch = Channel::<f64>::new();
//!     let w = ch.writer();
//!     let out = parallel([
//!         exec::<_, f64>("simulate", (3u32, ch.reader())).arg("--quiet").env("OMP_NUM_THREADS", "1"),
//!         process(move || { for x in [1.0, 2.0, 3.0] { w.write(x)?; } Ok(0.0) }),
//!     ])
//!     .unwrap();
//!     assert_eq!(out[0], Ok(6.0));
//! }
//! ```
//!
//! # Fork hazards
//!
//! After `fork` only the forking thread exists in the child. A lock that another thread of the
//! parent held at that moment stays locked in the child forever. glibc's `malloc` is fork-safe,
//! and this crate keeps the common case safe: it takes none of its own locks across the fork (the
//! segment lock lives in shared memory and is released by its owner as usual), flushes stdout and
//! stderr before forking and does not touch them when the child ends, initialises ipc-channel's lazy
//! state before the first fork, and sets `PR_SET_PDEATHSIG` so children die with the thread that
//! started them (join a [`Spawned`] from the thread that spawned it). What it cannot make safe is a
//! body that needs a lock some other thread held at the fork: `std::io::stdout()` while another
//! thread prints, `std::env` while another thread changes the environment, a library's global
//! mutex. In a program with such threads, start processes with [`exec`] instead.
//!
//! A payload that serde cannot encode is a compile error, not a surprise at run time:
//!
//! ```compile_fail
//! let ch = cspnet_processes::Channel::<std::rc::Rc<u32>>::new();
//! ```
//!
//! | | threads | processes |
//! | --- | --- | --- |
//! | payload bounds | `Send + 'static` | `Serialize + DeserializeOwned + Send + 'static` |
//! | a process is | a thread | a `fork` (or a re-executed program) |
//! | one hop | a crossbeam hand-off | a futex wake between two processes |
//! | a crash | a panic, reported | a panic, a signal or an early exit, reported; its channels poisoned |
#![warn(missing_docs)]

// Every module needs Linux: memfd, process-shared futexes, robust mutexes, prctl.
#[cfg(target_os = "linux")]
mod alternation;
#[cfg(target_os = "linux")]
mod channel;
#[cfg(target_os = "linux")]
mod children;
#[cfg(target_os = "linux")]
mod codec;
#[cfg(target_os = "linux")]
mod engine;
#[cfg(target_os = "linux")]
mod exec;
#[cfg(target_os = "linux")]
mod futex;
#[cfg(target_os = "linux")]
pub mod heap;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
mod shm;

#[cfg(target_os = "linux")]
pub use alternation::Alternation;
#[cfg(target_os = "linux")]
pub use channel::{Channel, IntoIter, Iter, Reader, Writer};
#[cfg(target_os = "linux")]
pub use cspnet_core::{ChannelError, Outcome, ProcessError, ProcessId};
#[cfg(target_os = "linux")]
pub use exec::{Registry, exec};
#[cfg(target_os = "linux")]
pub use process::{Process, Spawned, current_process_id, io, parallel, process, sequence, spawn};

/// A forked child runs on the thread that forked it, so the process context lives in a thread-local.
#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
pub fn set_segment_size(bytes: usize) -> bool {
    shm::request_size(bytes)
}

/// Test hook: takes the segment lock as an operation on `reader`'s channel would, runs `then`
/// (which is expected never to return: the fault tests kill the process inside it), and unlocks.
#[doc(hidden)]
#[cfg(target_os = "linux")]
pub fn __hold_segment_lock<T>(reader: &Reader<T>, then: impl FnOnce()) {
    let _lock = engine::lock(&[reader.chan()]);
    then();
}
