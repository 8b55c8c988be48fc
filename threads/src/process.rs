//! The threads engine's processes: each CSP process is an OS thread, joined in order.

use crate::ThreadSlot;
use cspnet_core::{
    Cause, MappingBudget, Outcome, ProcessContext, Report, discard_unstarted, run_body,
};
use std::thread::JoinHandle;

/// A process body, ready to run on its own thread.
pub(crate) type Body<T> = Box<dyn FnOnce() -> Outcome<T> + Send + 'static>;

/// A running process thread; it reports its ending itself, just before it ends.
pub(crate) type Running = JoinHandle<()>;

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

/// Process threads alive now, counted against the kernel's mapping limit: past it std aborts the
/// whole program when a thread cannot get its signal stack. A thread takes four mappings: its
/// stack and guard page, its signal stack and guard page.
static BUDGET: MappingBudget = MappingBudget::new(
    4,
    "process threads",
    "For networks this large, the coroutines backend takes a fraction of the mappings.",
);

pub(crate) fn start<T: Send + 'static>(
    ctx: ProcessContext,
    body: Body<T>,
    report: Report<T>,
) -> Result<Running, Cause> {
    let mut pending = Pending(Some(body));
    // On refusal, dropping `pending` poisons the channels its ends held, so the started processes end.
    let live = BUDGET.reserve()?;
    std::thread::Builder::new()
        .name(ctx.name().to_owned())
        .spawn(move || {
            let _live = live;
            let body = pending.0.take().expect("a process body runs once");
            report(run_body::<ThreadSlot, T>(ctx, body));
        })
        .map_err(|e| Cause::CouldNotStart(format!("the OS refused a thread: {e}")))
}

/// Waits for the thread; it has reported by the time it ends.
pub(crate) fn reap(running: Running) {
    // run_body catches the body's panics, so only a panicking report could get here, and a
    // report does not panic.
    let _ = running.join();
}
