//! Fork-after-initialise workers share what the parent built copy-on-write: the memory report
//! shows it (summed RSS counts the table once per process, summed PSS about once in all).
//!
//! Alone in its test binary: the parent's memory is the test process's, and tests running beside
//! it on other threads (their channels' pages in the shared segment, their allocations) would be
//! counted in the parent and, shared at the fork, in every worker. Linux only, like the backend.
#![cfg(target_os = "linux")]

mod common;
use common::assert_gone;

use cspnet_processes::forked::ForkWorkers;
use std::io::Write;
use std::sync::Arc;

/// The point of forking after initialising: 4 workers that each read a 128 MiB table built before
/// the fork map it all (each worker's RSS counts it, so the RSS sum is over 3.5 tables; it would be
/// at least 4), but share its pages with the parent and each other, so the PSS of all five
/// processes together stays under 1.5 tables. Without sharing it would be at least 5 tables (each
/// worker's copy plus the parent's); with it, one table plus each process's own pages (a few MiB
/// each), which leaves about 64 MiB of margin.
#[test]
fn workers_share_the_table_copy_on_write_summed_pss_stays_near_one_table() {
    const TABLE: u64 = 128 << 20;
    let table: Arc<Vec<u64>> = Arc::new((0..TABLE / 8).map(|i| i ^ 0x5555).collect());
    let want: u64 = table.iter().fold(0, |a, &v| a.wrapping_add(v));
    let root = tempfile::tempdir().unwrap();
    let t = Arc::clone(&table);
    let run = ForkWorkers::new(4, root.path())
        .after_fork(move |ctx| {
            // One full pass: the worker touches every page of the table.
            let sum = t.iter().fold(0, |a: u64, &v| a.wrapping_add(v));
            writeln!(ctx, "{} {sum}", ctx.rank())
        })
        .run(0..4u64, |_, _| Ok(()))
        .unwrap();
    assert!(run.is_complete());
    for rank in 0..4 {
        assert_eq!(run.read_output(rank).unwrap(), format!("{rank} {want}\n"));
    }
    let mem = run.memory().unwrap();
    println!("{mem}");
    assert_eq!(mem.workers.len(), 4);
    for w in &mem.workers {
        assert!(
            w.shared >= TABLE * 9 / 10,
            "worker {:?} shares {}",
            w.rank,
            w.shared
        );
        assert!(
            w.private < TABLE / 4,
            "worker {:?} owns {}",
            w.rank,
            w.private
        );
    }
    assert!(
        mem.workers_rss() > TABLE * 7 / 2,
        "summed RSS {} is not over 3.5 tables",
        mem.workers_rss()
    );
    assert!(
        mem.total_pss() < TABLE * 3 / 2,
        "summed PSS {} is not under 1.5 tables",
        mem.total_pss()
    );
    drop(table);
    mem.workers.iter().for_each(|m| assert_gone(m.pid));
}
