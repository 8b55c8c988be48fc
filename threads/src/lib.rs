//! cspnet on OS threads: every CSP process is a thread, every channel a pair of crossbeam channels.
//!
//! This is the backend to start with: payloads need only `Send + 'static`, a process may block on
//! anything, and a network of thousands of processes is fine. Use it through the facade
//! (`use cspnet::threads as csp;`) so that switching backend is a one-line change.
//!
//! ```
//! use cspnet_threads::{Channel, parallel, process};
//!
//! let numbers = Channel::<u64>::new();
//! let squares = Channel::<u64>::new();
//! let (nw, nr, sw, sr) = (numbers.writer(), numbers.reader(), squares.writer(), squares.reader());
//! let out = parallel([
//!     process(move || { for i in 1..=4 { nw.write(i)?; } Ok(0) }),
//!     process(move || { for n in nr { sw.write(n? * n?)?; } Ok(0) }),
//!     process(move || { let mut sum = 0; for s in sr { sum += s?; } Ok(sum) }),
//! ])
//! .unwrap();
//! assert_eq!(out[2], Ok(1 + 4 + 9 + 16));
//! ```
//!
//! Payloads cross threads, so they must be `Send`; a channel of `Rc` does not compile:
//!
//! ```compile_fail
//! let ch = cspnet_threads::Channel::<std::rc::Rc<u32>>::new(); // Rc is not Send
//! ```
#![warn(missing_docs)]

mod alternation;
mod channel;
mod process;

pub use alternation::Alternation;
pub use channel::{Channel, IntoIter, Iter, Reader, Writer};
pub use cspnet_core::{ChannelError, Outcome, ProcessError, ProcessId};
pub use process::{Process, Spawned, current_process_id, io, parallel, process, sequence, spawn};

/// Threads keep the running process's context in a thread-local: a process never changes thread.
use cspnet_core::ThreadSlot;
