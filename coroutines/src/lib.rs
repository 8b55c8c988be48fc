//! cspnet on may coroutines: every CSP process is a stackful coroutine, so a network can have a
//! million processes, and a channel hand-off costs about as much as a coroutine switch.
//!
//! The API is the threads backend's, name for name (use it through the facade,
//! `use cspnet::coroutines as csp;`, so switching backend is a one-line change): the types are
//! `cspnet_core`'s, written once for every backend, over this crate's engine [`Coroutines`].
//!
//! ```
//! use cspnet_coroutines::{Channel, parallel, process};
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
//! Payloads move between coroutines on different worker threads, so they must be `Send`; a channel
//! of `Rc` does not compile, since this backend does not carry it:
//!
//! ```compile_fail,E0277
//! let ch = cspnet_coroutines::Channel::<std::rc::Rc<u32>>::new(); // Rc is not Send
//! ```
//!
//! Nor does a process body that captures something tied to one thread:
//!
//! ```compile_fail,E0277
//! let shared = std::rc::Rc::new(5);
//! let p = cspnet_coroutines::process(move || Ok(*shared)); // the closure is not Send
//! ```
//!
//! Channel operations, alternations and `parallel`/`spawn`/`join` also work from a plain OS
//! thread such as `main` (it blocks; a coroutine parks instead), so a network can be driven from
//! outside:
//!
//! ```
//! use cspnet_coroutines::{Channel, process, spawn};
//!
//! let ch = Channel::<String>::new();
//! let w = ch.writer();
//! let handle = spawn([process(move || w.write("from a coroutine".to_string()))]);
//! assert_eq!(ch.reader().read().unwrap(), "from a coroutine");
//! handle.join().unwrap();
//! ```
//!
//! # How it works
//!
//! - **Processes** are may coroutines, run by a fixed set of worker threads; `parallel` and `join`
//!   park the calling coroutine (or block the calling thread) until the processes have ended
//!   (`process.rs`).
//! - **Channels** hand values over directly: a party that has to wait parks its coroutine (never
//!   its worker thread) with a small record on its own stack; the counterpart that arrives moves
//!   the value into or out of that record and makes the coroutine runnable again, as Go's runtime
//!   does. No zero-capacity channel of may is involved (it has none); see `channel.rs`.
//! - **Alternation** registers one waiter record on every guard's channel, in the order core's
//!   policy chose; whoever completes it first wins it with a single compare-and-swap, so exactly
//!   one guard commits (`alternation.rs`). It does not use may's `select!`/`cqueue`, which can lose
//!   a value one branch already received (may #102).
//! - **Poison and retirement** claim every waiter of the channel at once and unpark it: no polling,
//!   no timeouts.
//! - **`io`** runs a blocking call on a bounded pool of helper threads while the calling coroutine
//!   is parked (`io.rs`); a Timeout-only alternation parks the coroutine rather than its worker.
//!
//! The public types themselves (`Channel`, `Reader`, `Alternation`, `Process`, ...) are written
//! once in `cspnet_core`; this crate is the engine beneath them ([`Coroutines`], which implements
//! `cspnet_core::Backend` and `Carries<T>` for every `T: Send + 'static`).
//!
//! # Rules for code running in a process (how the safe API upholds may's `unsafe` spawn)
//!
//! may's `spawn` is `unsafe` because a coroutine can move between worker threads at every point
//! where it waits, and because its stack has a fixed size. `parallel`, `spawn` and `sequence` are
//! safe functions; this is how the contract is kept.
//!
//! What this crate guarantees:
//! - none of its own state lives in a thread-local across a wait: the running process's context is
//!   in may's coroutine-local storage (a thread-local only for plain threads, which never move);
//! - it never waits while holding a lock, so no lock guard of ours crosses a wait;
//! - every coroutine stack has a guard page below it (see *Stack size* below).
//!
//! What the code in a process must not do:
//! - **make a blocking OS call** (file or blocking socket I/O, `std::thread::sleep`, waiting on a
//!   `std::sync` lock or channel, a long computation without a channel operation) except inside
//!   [`io`]: it would stall every coroutine on that worker thread. [`io`] runs it on a helper
//!   thread while the coroutine is parked;
//! - **hold a `std::sync::MutexGuard` (or any lock guard) across a channel operation,
//!   alternation, `io`, `parallel` or `join`**: the coroutine may resume on another thread, and
//!   unlocking a mutex from a thread other than the one that locked it is undefined behaviour;
//!   another coroutine on the same worker blocking on that lock would deadlock the worker;
//! - **keep a reference into a `thread_local!` across such an operation** (`LOCAL.with(|v| ..)`
//!   around a `read()`): after the wait it would point at another thread's value.
//!
//! Values that merely are `!Send` do not get past the compiler: process bodies and payloads must be
//! `Send + 'static`, as on the threads backend.
//!
//! # Stack size
//!
//! Every process gets a fixed stack (default 64 KiB, [`DEFAULT_STACK_SIZE`]). The stack is
//! reserved address space: a process touches only the pages it uses (typically two 4 KiB pages),
//! which is what makes a million processes fit in memory. 64 KiB leaves room for a panic report
//! with a backtrace (`RUST_BACKTRACE=1`); deep recursion or large arrays on the stack need more:
//! raise it with `CSPNET_STACK_SIZE=256k` or [`configure`]`().stack_size(..)`. A smaller stack
//! saves no memory unless it is a single 4 KiB page (then a process costs one page instead of
//! two), which suits only processes that do little more than pass messages.
//!
//! A process that overflows its stack runs into an inaccessible guard page (may's stacks are
//! allocated by the `generator` crate with one `PROT_NONE` page below them; Rust's stack probes
//! make a frame larger than a page touch it too). generator's signal handler prints
//! `coroutine in thread '..' has overflowed its stack` on standard error and stops that coroutine;
//! `parallel`/`join` then report the process as crashed with "overflowed its coroutine stack".
//! Memory is never silently corrupted. Since the coroutine is stopped rather than unwound, the
//! channel ends it held are neither poisoned nor retired, so processes waiting on them keep
//! waiting: treat an overflow as a bug to fix by raising the stack size.
//!
//! Each process's stack is two memory mappings (the stack and its guard page), and Linux limits a
//! program to `vm.max_map_count` mappings (65530 by default), so about 28,000 processes can be
//! alive at once unless that limit is raised (`sysctl vm.max_map_count=4194304` for a million).
//! cspnet checks the limit before asking for a stack (running out of mappings would make every
//! later allocation fail too): a process beyond it is reported as "could not be started", naming
//! the limit, and its channel ends poison their channels, so the processes that did start shut
//! down instead of waiting.
//!
//! # Settings
//!
//! | setting | environment | code | default |
//! | --- | --- | --- | --- |
//! | worker threads | `CSPNET_WORKERS` | [`Config::workers`] | one per CPU |
//! | stack size (bytes, `k`/`m` suffixes) | `CSPNET_STACK_SIZE` | [`Config::stack_size`] | 64 KiB |
//! | most `io` helper threads | `CSPNET_IO_THREADS` | [`Config::io_threads`] | 256 |
//!
//! [`configure`] must run before the first process starts; later it returns a [`ConfigError`]:
//!
//! ```
//! let s = cspnet_coroutines::configure().workers(2).apply().unwrap();
//! assert_eq!(s.workers(), 2);
//! ```
//!
//! The settings are may's, which are global: a program that also starts may coroutines directly
//! should apply them before doing so.
#![warn(missing_docs)]

mod alternation;
mod channel;
mod config;
mod io;
mod process;
mod timer;

pub use config::{
    Config, ConfigError, DEFAULT_IO_THREADS, DEFAULT_STACK_SIZE, Settings, configure, settings,
};

use cspnet_core::{Deadline, Leave, ProcessContext, Report, Role};
use std::sync::Arc;
use std::time::Duration;

/// The coroutines engine: channels that hand values over directly between parked coroutines, an
/// alternation that registers one waiter on all its channels, one may coroutine per process.
///
/// ```
/// use cspnet_coroutines::{Channel, Coroutines};
/// let ch: cspnet_core::Channel<Coroutines, u8> = Channel::<u8>::new();
/// # drop(ch);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Coroutines;

cspnet_core::backend_surface!(Coroutines, cspnet_coroutines);

impl Backend for Coroutines {
    const NAME: &'static str = "coroutines";
    const DETECTS_DEADLOCK: bool = true;
    type Slot = CoSlot;
    type Guard<'a> = alternation::Guard<'a>;

    fn select(
        guards: &mut [Self::Guard<'_>],
        order: &[usize],
        deadline: Deadline,
    ) -> Result<Option<usize>, ChannelError> {
        alternation::select(guards, order, deadline)
    }

    /// Parks a coroutine (its worker runs other coroutines meanwhile); sleeps a plain thread.
    fn sleep(duration: Duration) {
        may::coroutine::sleep(duration);
    }

    /// Runs `f` on a helper thread while the coroutine is parked (see `io.rs`).
    fn io<R>(f: impl FnOnce() -> R) -> R {
        io::run(f)
    }

    /// Skips the lookup of the coroutine-local context while no dropped end is pending anywhere.
    #[inline]
    fn flush() {
        channel::flush();
    }
}

impl<T: Send + 'static> Carries<T> for Coroutines {
    type Chan = Arc<channel::Chan<T>>;
    type Start = process::Body<T>;
    type Running = process::Running<T>;
    type Held = channel::Held;

    fn channel(name: Option<&str>, capacity: usize) -> Self::Chan {
        Arc::new(channel::Chan::new(name, capacity))
    }
    fn join(chan: &Self::Chan, role: Role) {
        chan.control.join(role);
    }
    fn leave(chan: &Self::Chan, role: Role, how: Leave) {
        chan.control.leave(role, how);
    }
    /// As core's default, but counts the ends on their way out, for [`Backend::flush`].
    fn dropped(chan: &Self::Chan, role: Role) {
        channel::dropped(chan, role);
    }
    fn poison(chan: &Self::Chan) {
        chan.control.poison();
    }
    fn name(chan: &Self::Chan) -> Option<&str> {
        chan.control.name()
    }
    fn state(chan: &Self::Chan) -> Result<(), ChannelError> {
        chan.control.state().check()
    }
    #[inline]
    fn read(chan: &Self::Chan) -> Result<T, ChannelError> {
        chan.read()
    }
    #[inline]
    fn write(chan: &Self::Chan, value: T) -> Result<(), ChannelError> {
        chan.write(value)
    }
    fn input<'a>(chan: &'a Self::Chan, slot: &'a mut Option<T>) -> Self::Guard<'a> {
        alternation::input(chan, slot)
    }
    fn read_held(chan: &Self::Chan) -> Result<(T, Self::Held), ChannelError> {
        chan.read_held()
    }
    fn input_held<'a>(
        chan: &'a Self::Chan,
        slot: &'a mut Option<(T, Self::Held)>,
    ) -> Self::Guard<'a> {
        alternation::input_held(chan, slot)
    }
    fn output<'a>(chan: &'a Self::Chan, slot: &'a mut Option<T>) -> Self::Guard<'a> {
        alternation::output(chan, slot)
    }
    fn word(chan: &Self::Chan) -> &std::sync::atomic::AtomicU64 {
        &chan.control.word
    }
    fn wait_word(chan: &Self::Chan, done: &mut dyn FnMut(u64) -> bool) -> Result<(), ChannelError> {
        chan.control.wait_word(done)
    }
    fn wake_word(chan: &Self::Chan) {
        chan.control.wake_word();
    }
    fn closure<F>(body: F) -> Self::Start
    where
        F: FnOnce() -> Outcome<T> + Send + 'static,
    {
        Box::new(body)
    }
    fn start(
        ctx: ProcessContext,
        start: Self::Start,
        report: Report<T>,
    ) -> Result<Self::Running, Cause> {
        process::start(ctx, start, report)
    }
    fn finished(running: &Self::Running) -> bool {
        process::finished(running)
    }
    fn reap(running: Self::Running) {
        process::reap(running);
    }
    fn discard(starts: Vec<Self::Start>) {
        cspnet_core::discard_unstarted::<CoSlot, _>(starts);
    }
}

pub(crate) use slot::CoSlot;

mod slot {
    use cspnet_core::{ContextSlot, ProcessContext};
    use std::cell::RefCell;

    may::coroutine_local!(static CONTEXT: RefCell<Option<ProcessContext>> = RefCell::new(None));

    /// Keeps the running process's context in may's coroutine-local storage: a coroutine can move
    /// between worker threads, so a thread-local would be wrong. On a plain thread, may falls back
    /// to a thread-local itself.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct CoSlot;

    impl ContextSlot for CoSlot {
        fn with<R>(f: impl FnOnce(&mut ProcessContext) -> R) -> R {
            CONTEXT.with(|cell| {
                let mut slot = cell.borrow_mut();
                f(slot.get_or_insert_with(ProcessContext::outside))
            })
        }

        fn swap(ctx: Option<ProcessContext>) -> Option<ProcessContext> {
            CONTEXT.with(|cell| std::mem::replace(&mut *cell.borrow_mut(), ctx))
        }
    }
}
