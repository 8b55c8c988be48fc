//! Token ring on cspnet-processes (ns per hop) next to a futex ping-pong between two processes.
//!
//! `cargo run --release -p cspnet-processes --example processes_ring -- [processes] [rounds]`
//! (defaults: 64 processes, 2000 rounds). Each hop of the ring is one rendezvous between two OS
//! processes; the ping-pong is the physical floor: one process-shared futex wake and wait per hop.
//! A raw futex ring of the same size is printed too: on a machine with fewer cores than processes
//! every hop also switches address space, which the two-process ping-pong never does.
//!
//! Linux only, like the processes backend itself: elsewhere it only says so.

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("the processes backend is Linux-only");
}

#[cfg(target_os = "linux")]
mod linux {
    use cspnet_processes::{Channel, ChannelError, Outcome, parallel, process};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    fn ring(n: usize, rounds: u64) -> f64 {
        let chans: Vec<Channel<u64>> = (0..n).map(|_| Channel::new()).collect();
        let mut procs = Vec::new();
        // Process 0 injects the token and times `rounds` trips around the ring.
        let (first_w, last_r) = (chans[0].writer(), chans[n - 1].reader());
        procs.push(process(move || -> Outcome<u64> {
            first_w.write(0)?; // warm-up trip
            last_r.read()?;
            let start = Instant::now();
            for r in 0..rounds {
                first_w.write(r)?;
                last_r.read()?;
            }
            let ns = start.elapsed().as_nanos() as u64;
            first_w.poison();
            Ok(ns)
        }));
        for i in 1..n {
            let (r, w) = (chans[i - 1].reader(), chans[i].writer());
            procs.push(process(move || {
                loop {
                    match r.read() {
                        Ok(v) => w.write(v)?,
                        Err(ChannelError::Poisoned) => return Ok(0),
                        Err(e) => return Err(e),
                    }
                }
            }));
        }
        drop(chans);
        let out = parallel(procs).expect("the ring ran");
        let ns = *out[0].as_ref().expect("the timer process ended normally");
        ns as f64 / (rounds as f64 * n as f64)
    }

    fn futex(word: &AtomicU32, op: i32, val: u32) {
        // SAFETY: `word` lives in a MAP_SHARED mapping that both processes keep mapped.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                op,
                val,
                std::ptr::null::<libc::timespec>(),
            );
        }
    }

    /// Two processes hand a turn back and forth through one shared word: ns per one-way hand-off.
    fn futex_ping_pong(hops: u64) -> f64 {
        // SAFETY: an anonymous shared mapping of one page, inherited by the forked child.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        // SAFETY: the page is zeroed, aligned, and lives until both processes exit.
        let turn: &AtomicU32 = unsafe { &*(page as *const AtomicU32) };
        let play = |me: u32, other: u32| {
            for _ in 0..hops / 2 {
                while turn.load(Ordering::Acquire) != me {
                    futex(turn, libc::FUTEX_WAIT, other);
                }
                turn.store(other, Ordering::Release);
                futex(turn, libc::FUTEX_WAKE, 1);
            }
        };
        // SAFETY: the child only plays its half and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            play(1, 0);
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(0) };
        }
        let start = Instant::now();
        play(0, 1);
        let ns = start.elapsed().as_nanos() as f64;
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        ns / hops as f64
    }

    /// The same ring with raw futexes: `n` processes, each waiting on its own word in one shared
    /// page and passing the token by setting and waking the next word. It pays the address-space
    /// switch of every hop that the two-process ping-pong (one process per CPU) never does.
    fn futex_ring(n: usize, rounds: u64) -> f64 {
        assert!(n * 64 <= 4096, "one cache line per process in one page");
        // SAFETY: an anonymous shared mapping of one page, inherited by the forked children.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let word = |i: usize| -> &'static AtomicU32 {
            // SAFETY: the page is zeroed, aligned and never unmapped; word i sits at byte 64 * i.
            unsafe { &*((page as *mut u8).add(64 * i) as *const AtomicU32) }
        };
        // Word i counts the tokens process i has been handed.
        let pass = |i: usize, k: u32| {
            while word(i).load(Ordering::Acquire) < k {
                futex(word(i), libc::FUTEX_WAIT, k - 1);
            }
            let next = word((i + 1) % n);
            next.fetch_add(1, Ordering::Release);
            futex(next, libc::FUTEX_WAKE, 1);
        };
        let mut pids = Vec::new();
        for i in 1..n {
            // SAFETY: the child only passes tokens and leaves with _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                for k in 1..=rounds as u32 + 1 {
                    pass(i, k);
                }
                // SAFETY: leaving the forked child.
                unsafe { libc::_exit(0) };
            }
            pids.push(pid);
        }
        let inject = |k: u32| {
            word(1 % n).fetch_add(1, Ordering::Release);
            futex(word(1 % n), libc::FUTEX_WAKE, 1);
            while word(0).load(Ordering::Acquire) < k {
                futex(word(0), libc::FUTEX_WAIT, k - 1);
            }
        };
        inject(1); // warm-up trip
        let start = Instant::now();
        for k in 2..=rounds as u32 + 1 {
            inject(k);
        }
        let ns = start.elapsed().as_nanos() as f64;
        for pid in pids {
            let mut status = 0;
            // SAFETY: reaping our own children.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        ns / (rounds as f64 * n as f64)
    }

    pub(crate) fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(64);
        let rounds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
        let hop = ring(n, rounds);
        let floor = futex_ping_pong(200_000);
        let raw_ring = futex_ring(n, rounds);
        println!("token ring, {n} processes, {rounds} rounds: {hop:.0} ns per hop");
        println!("futex ping-pong between two processes:   {floor:.0} ns per hop");
        println!("raw futex ring of {n} processes:          {raw_ring:.0} ns per hop");
        println!(
            "ratio: {:.2}x the ping-pong, {:.2}x the raw futex ring",
            hop / floor,
            hop / raw_ring
        );
    }
}
