//! The coroutines engine's processes: each CSP process is a may coroutine, joined in order.

use crate::CoSlot;
use cspnet_core::{
    Cause, Ending, MappingBudget, Outcome, ProcessContext, Report, discard_unstarted, run_body,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

/// A process body, ready to run as a coroutine.
pub(crate) type Body<T> = Box<dyn FnOnce() -> Outcome<T> + Send + 'static>;

/// A running process coroutine, and its report until the coroutine makes it (a coroutine stopped
/// by a stack overflow never does, so reaping makes it instead).
pub struct Running<T> {
    handle: may::coroutine::JoinHandle<()>,
    report: Arc<Mutex<Option<Report<T>>>>,
}

/// Process coroutines alive now, counted against the kernel's mapping limit: past it may's spawn
/// panics when mmap fails, and so does every later allocation that needs a new mapping. A
/// coroutine's stack takes two mappings: the stack and its guard page.
static BUDGET: MappingBudget = MappingBudget::new(2, "processes", "");

/// The engine's `Carries::start`: the process as a coroutine with the configured stack.
pub(crate) fn start<T: Send + 'static>(
    ctx: ProcessContext,
    body: Body<T>,
    report: Report<T>,
) -> Result<Running<T>, Cause> {
    let report = Arc::new(Mutex::new(Some(report)));
    let in_coroutine = Arc::clone(&report);
    // Applies the settings before the first coroutine starts may's scheduler.
    let stack = crate::config::settings().stack_size();
    let place = match BUDGET.reserve() {
        Ok(place) => place,
        Err(cause) => {
            // The ends it captured poison their channels, so the processes that did start end.
            discard_unstarted::<CoSlot, _>(vec![body]);
            return Err(cause);
        }
    };
    // may allocates the stack inside spawn and panics if it cannot (for instance when the
    // kernel's limit on memory mappings is reached). Unwinding drops the body, whose ends then
    // poison their channels, so the processes that did start shut down, and the place with it.
    let started = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: may's spawn is unsafe because a coroutine (1) must not keep a thread-local
        // reference across a yield, since it may resume on another worker thread, and (2) must
        // not overflow its fixed-size stack. (1): our code keeps nothing in a thread-local across
        // a yield: the process context lives in may's coroutine-local storage, and every park
        // happens outside any lock or thread-local borrow. User bodies are bound by the rules in
        // the crate docs. (2): the stack has a guard page; an overflow stops the coroutine with a
        // report (see the crate docs) instead of corrupting memory.
        unsafe {
            may::coroutine::Builder::new()
                .stack_size(stack / std::mem::size_of::<usize>())
                .spawn(move || {
                    let ending = run_body::<CoSlot, T>(ctx, body);
                    drop(place);
                    if let Some(report) = take(&in_coroutine) {
                        report(ending);
                    }
                    // A parked coroutine that is unparked just as it parks is resumed by may
                    // from inside the park's own bookkeeping (`Park::subscribe`). Were it to
                    // finish there, may would free its park while that bookkeeping still runs
                    // and spin forever (`Park::drop` waits for `wait_kernel`). Yielding once
                    // more makes the coroutine always finish from the run queue instead.
                    may::coroutine::yield_now();
                })
        }
    }));
    match started {
        Ok(Ok(handle)) => Ok(Running { handle, report }),
        Ok(Err(e)) => Err(Cause::CouldNotStart(format!(
            "may refused a coroutine: {e}"
        ))),
        Err(payload) => Err(Cause::CouldNotStart(format!(
            "no coroutine stack could be allocated ({}); with many processes, raise the \
             kernel's vm.max_map_count (two mappings per process)",
            cspnet_core::panic_message(payload.as_ref())
        ))),
    }
}

fn take<T>(report: &Mutex<Option<Report<T>>>) -> Option<Report<T>> {
    report.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The engine's `Carries::finished`.
pub(crate) fn finished<T>(running: &Running<T>) -> bool {
    running.handle.is_done()
}

/// The engine's `Carries::reap`: parks the calling coroutine (or blocks the calling thread) until
/// the process has ended.
pub(crate) fn reap<T>(running: Running<T>) {
    // run_body catches every panic of the body, so a coroutine that ends without reporting was
    // stopped by may itself: its stack overflowed into the guard page.
    if running.handle.join().is_err()
        && let Some(report) = take(&running.report)
    {
        report(Ending::new(Err(Cause::Crashed(format!(
            "overflowed its coroutine stack of {} bytes; raise CSPNET_STACK_SIZE or \
             configure().stack_size(..) (the channel ends it held were not released)",
            crate::config::settings().stack_size()
        )))));
    }
}

#[cfg(test)]
mod tests {
    use super::BUDGET;

    #[test]
    fn the_mapping_limit_leaves_room_for_the_rest_of_the_program() {
        assert_eq!(BUDGET.limit(65_530), 28_669);
        assert!(BUDGET.limit(4_194_304) > 2_000_000);
        assert_eq!(BUDGET.limit(100), 0);
    }
}
