//! Process-shared futex wait and wake on a word in the shared segment (no `FUTEX_PRIVATE_FLAG`).

use cspnet_core::Deadline;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The longest one futex sleep lasts before its caller looks at the word again. A waker is a
/// process that can be killed (SIGKILL) after it changed the word (shared memory, so the change
/// stays) and before its `FUTEX_WAKE` (which was to come from it alone): then nobody knows to wake
/// the sleeper, which would sleep forever although its word says it can go on. Capping each sleep
/// bounds such a lost wake-up to this delay; a sleeper whose word is unchanged sleeps again (one
/// syscall per period while blocked).
const RECHECK: Duration = Duration::from_millis(100);

/// Sleeps while `*word == expected`, until woken or `deadline` passes. Returns `false` only when
/// the deadline passed; a `true` return may be spurious (at the latest after [`RECHECK`]), so
/// callers re-check the word in a loop.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Deadline) -> bool {
    // Past a capped sleep the caller's own deadline has not passed: report it as a wake.
    let (left, capped) = match deadline.remaining() {
        None => (RECHECK, true),
        Some(left) if left.is_zero() => return false,
        Some(left) => (left.min(RECHECK), left > RECHECK),
    };
    let ts = libc::timespec {
        tv_sec: left.as_secs() as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
    };
    let timeout: *const libc::timespec = &ts;
    if word.load(Ordering::Acquire) != expected {
        return true;
    }
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call (it lives in the mapped
    // segment, which is never unmapped); FUTEX_WAIT only reads it. `timeout` points to
    // `ts`, which outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timeout,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    capped || !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes up to `n` processes sleeping on `word`.
pub(crate) fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; FUTEX_WAKE does not
    // access its memory at all: the kernel only uses the address (and the backing memfd page) as
    // the key of its wait queue.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}
