//! `io(..)`: runs a blocking call on a pool of helper threads while the calling coroutine is parked.
//!
//! The pool starts empty and grows by one thread whenever a call arrives and no helper is idle, up
//! to [`Settings::io_threads`](crate::Settings::io_threads) (default 256, or `CSPNET_IO_THREADS`);
//! beyond that, calls queue until a helper is free. A helper that has had nothing to do for
//! [`IDLE_EXIT`] exits, so an idle program keeps no helper threads.

use crate::channel::park;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long an idle helper thread waits for work before it exits.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

struct PoolState {
    queue: VecDeque<Job>,
    idle: usize,
    threads: usize,
}

static POOL: Pool = Pool {
    state: Mutex::new(PoolState {
        queue: VecDeque::new(),
        idle: 0,
        threads: 0,
    }),
    work: Condvar::new(),
};

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job for a helper, starting one if none is idle. Gives the job back if there is
    /// no helper at all and the OS refuses to start one.
    fn submit(&'static self, job: Job) -> Result<(), Job> {
        let mut state = self.lock();
        let limit = crate::config::settings().io_threads();
        if state.queue.len() >= state.idle && state.threads < limit {
            let started = std::thread::Builder::new()
                .name("cspnet-io".into())
                .spawn(move || self.helper());
            match started {
                Ok(_) => state.threads += 1,
                Err(_) if state.threads == 0 => return Err(job),
                // Otherwise the call waits for one of the busy helpers.
                Err(_) => {}
            }
        }
        state.queue.push_back(job);
        drop(state);
        self.work.notify_one();
        Ok(())
    }

    fn helper(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                job(); // never unwinds: `io` wraps the call in catch_unwind
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (next, waited) = self
                .work
                .wait_timeout(state, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

/// How a helper tells the parked caller that its call has finished.
struct Done {
    finished: AtomicBool,
    caller: may::coroutine::Coroutine,
}

/// The engine's `Backend::io`: runs a blocking call without blocking the coroutine worker threads.
///
/// Called from a process (a coroutine), `f` runs on a helper thread while the calling coroutine
/// is parked, so the other coroutines keep running; the result (or `f`'s panic) comes back to the
/// caller. Called from a plain thread (such as `main`), it just calls `f`.
///
/// `f` runs as if the coroutine had moved to the helper thread for the call: the rules for
/// coroutines apply to it too (no reliance on the calling thread's thread-locals or locks).
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> R {
    if !may::coroutine::is_coroutine() {
        return f();
    }
    let done = Arc::new(Done {
        finished: AtomicBool::new(false),
        caller: may::coroutine::current(),
    });
    let mut result: Option<std::thread::Result<R>> = None;
    let result_ptr = SendPtr(&mut result as *mut Option<std::thread::Result<R>>);
    let signal = Arc::clone(&done);
    let job = move || {
        let outcome = catch_unwind(AssertUnwindSafe(f));
        let ptr = result_ptr;
        // SAFETY: the caller stays parked until `finished` is set below, so its frame (and
        // `result` in it) is alive, and nobody else touches `result` meanwhile.
        unsafe { *ptr.0 = Some(outcome) };
        signal.finished.store(true, Ordering::Release);
        signal.caller.unpark();
    };
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(AssertSend(job).into_inner());
    // SAFETY: the job borrows the caller's frame (`f`'s captures and `result`). The caller does
    // not return before the job has set `finished`, which is its last access to that frame, so
    // the borrow outlives every use; erasing the lifetime only lets the pool hold it meanwhile.
    // Sending `f` to another thread is what a coroutine does anyway at every yield (it may resume
    // on another worker); the crate docs state the rules that make that sound.
    let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
    if let Err(job) = POOL.submit(job) {
        job(); // no helper thread at all: better to block this worker than to fail
    }
    while !done.finished.load(Ordering::Acquire) {
        park(None);
    }
    match result.take().expect("the helper left a result") {
        Ok(r) => r,
        Err(panic) => resume_unwind(panic),
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: the pointer is only used by the helper while the caller waits (see `run`).
unsafe impl<T> Send for SendPtr<T> {}

/// Makes `io`'s job `Send`: see the SAFETY note in [`run`].
struct AssertSend<F>(F);
// SAFETY: see `run`: the closure moves to a helper thread exactly as the coroutine that owns it
// may move between worker threads at any yield, under the same documented rules.
unsafe impl<F> Send for AssertSend<F> {}

impl<F: FnOnce()> AssertSend<F> {
    fn into_inner(self) -> impl FnOnce() + Send {
        // `this.call()` moves the whole wrapper into the closure (not just its field).
        let this = self;
        move || this.call()
    }

    fn call(self) {
        (self.0)()
    }
}
