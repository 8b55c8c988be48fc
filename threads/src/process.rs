//! The threads engine's processes: each CSP process is an OS thread, joined in order.

use crate::ThreadSlot;
use cspnet_core::{Cause, Outcome, ProcessContext, discard_unstarted, run_body};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// A process body, ready to run on its own thread.
pub(crate) type Body<T> = Box<dyn FnOnce() -> Outcome<T> + Send + 'static>;

/// A running process thread, with the report it will give.
pub(crate) type Running<T> = JoinHandle<Result<Outcome<T>, Cause>>;

/// A body that has not run yet. If it is dropped without running (its thread could not be started),
/// the channel ends it captured poison their channels, so the processes that did start shut down
/// instead of waiting forever.
struct Pending<T>(Option<Body<T>>);

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        if let Some(body) = self.0.take() {
            discard_unstarted::<ThreadSlot, _>(vec![body]);
        }
    }
}

/// Process threads alive now, counted against the kernel's mapping limit.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Mappings one thread takes: its stack and guard page, its signal stack and guard page.
const MAPPINGS_PER_THREAD: usize = 4;
/// Mappings left for everything else the program maps (heap arenas, libraries, files).
const SPARE_MAPPINGS: usize = 8192;

/// Counts a thread about to start, unless it would take the program past the kernel's mapping
/// limit: there std aborts the whole program when the thread cannot get its signal stack.
fn reserve_thread() -> Result<LiveThread, Cause> {
    let live = LIVE.fetch_add(1, Ordering::AcqRel);
    let reservation = LiveThread;
    match cspnet_core::max_map_count() {
        Some(max) if live >= max.saturating_sub(SPARE_MAPPINGS) / MAPPINGS_PER_THREAD => {
            Err(Cause::CouldNotStart(format!(
                "{live} process threads are running, and one more would take the program near \
                 the kernel's limit of {max} memory mappings (each thread takes \
                 {MAPPINGS_PER_THREAD}); raise it (`sysctl vm.max_map_count=..`), or use the \
                 coroutines backend for networks this large"
            )))
        }
        _ => Ok(reservation),
    }
}

/// One counted process thread; dropping it (when the thread ends, or was never started) uncounts it.
struct LiveThread;

impl Drop for LiveThread {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn start<T: Send + 'static>(
    ctx: ProcessContext,
    body: Body<T>,
) -> Result<Running<T>, Cause> {
    let mut pending = Pending(Some(body));
    // On refusal, dropping `pending` poisons the channels its ends held, so the started processes end.
    let live = reserve_thread()?;
    std::thread::Builder::new()
        .name(ctx.name().to_owned())
        .spawn(move || {
            let _live = live;
            let body = pending.0.take().expect("a process body runs once");
            run_body::<ThreadSlot, T>(ctx, body)
        })
        .map_err(|e| Cause::CouldNotStart(format!("the OS refused a thread: {e}")))
}

pub(crate) fn join_all<T>(
    running: Vec<Result<Running<T>, Cause>>,
) -> Vec<Result<Outcome<T>, Cause>> {
    running
        .into_iter()
        .map(|started| {
            started.and_then(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Err(Cause::Panicked("the process runner itself panicked".into()))
                })
            })
        })
        .collect()
}
