//! Moving a 1 MiB `Vec<u8>` between two processes: our channel, a plain memcpy, ipc-channel bytes.
//!
//! `cargo run --release -p cspnet-processes --example processes_payload -- [MiB] [messages]`
//! (defaults: 1 MiB, 500 messages). Times are per message, from the receiver's first to last
//! receive, so process start-up is not counted. Both senders produce a fresh `Vec` per message
//! (a channel write takes ownership of its value, so that is what a producer does with ours).
//!
//! Next fit spreads allocations over the whole heap, so the first pass of its rover through the
//! segment pays a page fault for every fresh page. The example uses a 64 MiB segment and sends
//! `WARM_UP` untimed messages first, so it measures the steady state; the first pass through a
//! large segment costs about a page fault per 4 KiB on top.
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
    use cspnet_processes::{Channel, parallel, process};
    use std::hint::black_box;
    use std::time::Instant;

    /// Untimed messages before the clock starts: enough for the heap's rover to wrap around once.
    const WARM_UP: u32 = 100;

    fn ours(size: usize, count: u32) -> f64 {
        let c = Channel::<Vec<u8>>::new();
        let (r, w) = (c.reader(), c.writer());
        let out = parallel([
            process(move || {
                for i in 0..count + WARM_UP {
                    w.write(vec![i as u8; size])?;
                }
                Ok(0u64)
            }),
            process(move || {
                for _ in 0..WARM_UP {
                    black_box(r.read()?);
                }
                let start = Instant::now();
                for _ in 0..count {
                    let v = r.read()?;
                    assert_eq!(v.len(), size);
                    black_box(v);
                }
                Ok(start.elapsed().as_nanos() as u64)
            }),
        ])
        .expect("both processes ran");
        *out[1].as_ref().unwrap() as f64 / count as f64
    }

    fn memcpy(size: usize, count: u32) -> f64 {
        let src = vec![7u8; size];
        let mut dst = vec![0u8; size];
        dst.copy_from_slice(&src);
        let start = Instant::now();
        for _ in 0..count {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }
        start.elapsed().as_nanos() as f64 / count as f64
    }

    fn ipc_bytes(size: usize, count: u32) -> f64 {
        let (tx, rx) = ipc_channel::ipc::bytes_channel().expect("an ipc bytes channel");
        // SAFETY: the child only sends and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            for i in 0..count + WARM_UP {
                let data = vec![i as u8; size]; // a fresh value each time, as on our channel
                tx.send(&data).expect("send");
            }
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(0) };
        }
        drop(tx);
        for _ in 0..WARM_UP {
            black_box(rx.recv().expect("warm-up"));
        }
        let start = Instant::now();
        for _ in 0..count {
            let v = rx.recv().expect("recv");
            assert_eq!(v.len(), size);
            black_box(v);
        }
        let ns = start.elapsed().as_nanos() as f64 / count as f64;
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        ns
    }

    pub(crate) fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mib: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
        let count: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(500);
        let size = mib << 20;
        cspnet_processes::set_segment_size((64usize << 20).max(8 * size));
        let ours = ours(size, count);
        let copy = memcpy(size, count);
        let ipc = ipc_bytes(size, count);
        println!("{mib} MiB Vec<u8>, {count} messages, ns per message:");
        println!(
            "  cspnet-processes channel: {ours:>10.0}  ({:.2}x memcpy)",
            ours / copy
        );
        println!("  memcpy in one process:    {copy:>10.0}");
        println!(
            "  ipc-channel bytes:        {ipc:>10.0}  ({:.2}x memcpy)",
            ipc / copy
        );
    }
}
