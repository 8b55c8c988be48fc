//! The coroutines engine's processes: each CSP process is a may coroutine, joined in order.

use crate::CoSlot;
use cspnet_core::{Cause, MappingBudget, Outcome, ProcessContext, discard_unstarted, run_body};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A process body, ready to run as a coroutine.
pub(crate) type Body<T> = Box<dyn FnOnce() -> Outcome<T> + Send + 'static>;

/// A running process coroutine, with the report it will give.
pub(crate) type Running<T> = may::coroutine::JoinHandle<Result<Outcome<T>, Cause>>;

/// Process coroutines alive now, counted against the kernel's mapping limit: past it may's spawn
/// panics when mmap fails, and so does every later allocation that needs a new mapping. A
/// coroutine's stack takes two mappings: the stack and its guard page.
static BUDGET: MappingBudget = MappingBudget::new(2, "processes", "");

/// The engine's `Carries::start`: the process as a coroutine with the configured stack.
pub(crate) fn start<T: Send + 'static>(
    ctx: ProcessContext,
    body: Body<T>,
) -> Result<Running<T>, Cause> {
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
                    let result = run_body::<CoSlot, T>(ctx, body);
                    drop(place);
                    // A parked coroutine that is unparked just as it parks is resumed by may
                    // from inside the park's own bookkeeping (`Park::subscribe`). Were it to
                    // finish there, may would free its park while that bookkeeping still runs
                    // and spin forever (`Park::drop` waits for `wait_kernel`). Yielding once
                    // more makes the coroutine always finish from the run queue instead.
                    may::coroutine::yield_now();
                    result
                })
        }
    }));
    match started {
        Ok(Ok(handle)) => Ok(handle),
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

/// The engine's `Carries::join_all`: parks the calling coroutine (or blocks the calling thread)
/// until each process has ended, in order.
pub(crate) fn join_all<T>(
    running: Vec<Result<Running<T>, Cause>>,
) -> Vec<Result<Outcome<T>, Cause>> {
    running
        .into_iter()
        .map(|started| {
            started.and_then(|handle| {
                // run_body catches every panic of the body, so a coroutine that ends without a
                // result was stopped by may itself: its stack overflowed into the guard page.
                handle.join().unwrap_or_else(|_| {
                    Err(Cause::Crashed(format!(
                        "overflowed its coroutine stack of {} bytes; raise CSPNET_STACK_SIZE or \
                         configure().stack_size(..) (the channel ends it held were not released)",
                        crate::config::settings().stack_size()
                    )))
                })
            })
        })
        .collect()
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
