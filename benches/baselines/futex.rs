//! The physical floor of the processes backend: a token passed between OS processes through one
//! futex word per link, in a `MAP_SHARED | MAP_ANONYMOUS` mapping made before `fork`.
//!
//! A node sleeps in `FUTEX_WAIT` until its word holds the token, then stores the token in the next
//! node's word and `FUTEX_WAKE`s it: one store, one wake and one sleep per hop, no spinning, no
//! encoding. With `n = 2` it is the two-process ping-pong. The shared (not `_PRIVATE`) futex ops
//! are the ones that work across processes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const EMPTY: u32 = 0;
const STOP: u32 = u32::MAX;

/// One futex word on its own cache line.
#[repr(C, align(64))]
struct Slot(AtomicU32);

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT reads the aligned u32 behind a live reference; a null timeout waits until
    // woken. It returns at once (EAGAIN) if the word no longer holds `expected`; EINTR is retried by
    // the caller's loop.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address of the aligned u32 behind a live reference.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}

/// Takes the token from `word`, sleeping until there is one.
fn take(word: &AtomicU32) -> u32 {
    loop {
        let v = word.swap(EMPTY, Ordering::AcqRel);
        if v != EMPTY {
            return v;
        }
        futex_wait(word, EMPTY);
    }
}

fn put(word: &AtomicU32, v: u32) {
    word.store(v, Ordering::Release);
    futex_wake(word);
}

/// A ring of `n` OS processes passing one token `hops` hops (`n = 2`: a ping-pong); the time the
/// hops took, start-up excluded. Panics if the mapping or a fork fails.
pub(crate) fn ring(n: usize, hops: u64) -> Duration {
    assert!(n >= 2, "a ring needs two processes");
    let hops = hops.clamp(1, u64::from(STOP - 1)) as u32;
    let len = (n + 1) * size_of::<Slot>(); // slot n is where the last hop reports to the timer
    // SAFETY: a fresh anonymous shared mapping, no address hint; checked against MAP_FAILED below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(
        base,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the mapping is page-aligned, zero-filled (every word EMPTY, a valid AtomicU32) and
    // `len` bytes long; it stays mapped until the munmap at the end, after every child has exited.
    let slots: &[Slot] = unsafe { std::slice::from_raw_parts(base.cast::<Slot>(), n + 1) };
    let done = &slots[n].0;
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: the child runs only `node`, which touches the shared mapping through atomics and
        // makes futex syscalls (no allocation, no lock), then leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            node(&slots[i].0, &slots[(i + 1) % n].0, done);
        }
        children.push(pid);
    }
    let start = Instant::now();
    put(&slots[1 % n].0, hops); // the first hop
    while done.load(Ordering::Acquire) == EMPTY {
        futex_wait(done, EMPTY);
    }
    let elapsed = start.elapsed();
    for slot in &slots[..n] {
        put(&slot.0, STOP);
    }
    for pid in children {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    // SAFETY: every process that used the mapping has exited, and `slots` is not used past here.
    unsafe { libc::munmap(base, len) };
    elapsed
}

/// A ring node in a forked child: pass the token on until told to stop, then exit.
fn node(inp: &AtomicU32, out: &AtomicU32, done: &AtomicU32) -> ! {
    loop {
        match take(inp) {
            STOP => break,
            1 => put(done, 1),
            left => put(out, left - 1),
        }
    }
    // SAFETY: _exit ends the forked child without running the parent's atexit handlers or
    // destructors, which belong to the parent.
    unsafe { libc::_exit(0) }
}
