//! cspnet on OS threads: every CSP process is a thread, every channel a crossbeam channel.
//!
//! This is the backend to start with: payloads need only `Send + 'static`, a process may block on
//! anything, and a network of thousands of processes is fine. Use it through the facade
//! (`use cspnet::threads as csp;`) so that switching backend is a one-line change. The types are
//! `cspnet_core`'s, written once for every backend, over this crate's engine [`Threads`].
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

/// Threads keep the running process's context in a thread-local: a process never changes thread.
use cspnet_core::ThreadSlot;
use cspnet_core::{Deadline, Leave, ProcessContext, Report, Role};

/// The threads engine: crossbeam channels, crossbeam's select, one OS thread per process.
///
/// ```
/// use cspnet_threads::{Channel, Threads};
/// let ch: cspnet_core::Channel<Threads, u8> = Channel::<u8>::new();
/// # drop(ch);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Threads;

cspnet_core::backend_surface!(Threads, cspnet_threads);

impl Backend for Threads {
    const NAME: &'static str = "threads";
    const DETECTS_DEADLOCK: bool = true;
    type Slot = ThreadSlot;
    type Guard<'a> = alternation::Guard<'a>;

    fn select(
        guards: &mut [Self::Guard<'_>],
        order: &[usize],
        deadline: Deadline,
    ) -> Result<Option<usize>, ChannelError> {
        alternation::select(guards, order, deadline)
    }
}

impl<T: Send + 'static> Carries<T> for Threads {
    type Chan = channel::Raw<T>;
    type Start = process::Body<T>;
    type Running = process::Running;
    type Held = channel::Held;

    fn channel(name: Option<&str>, capacity: usize) -> Self::Chan {
        channel::Raw::new(name, capacity)
    }
    fn join(chan: &Self::Chan, role: Role) {
        chan.join(role);
    }
    fn leave(chan: &Self::Chan, role: Role, how: Leave) {
        chan.leave(role, how);
    }
    fn poison(chan: &Self::Chan) {
        chan.control.poison();
    }
    fn name(chan: &Self::Chan) -> Option<&str> {
        chan.name()
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
        running.is_finished()
    }
    fn reap(running: Self::Running) {
        process::reap(running);
    }
    fn discard(starts: Vec<Self::Start>) {
        cspnet_core::discard_unstarted::<ThreadSlot, _>(starts);
    }
}
