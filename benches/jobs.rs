//! Job graphs: the scheduler's overhead per job. 2,000 jobs of `true` with `-j 2`, run by the
//! job-graph scheduler on each backend, against the same 2,000 commands run 2 at a time by a
//! plain loop of `std::process::Command` (two threads, each spawning and waiting in turn, output
//! to `/dev/null` as the jobs' is when they have no log). The
//! throughput is in jobs per second; the ratio of the two is the scheduler's overhead.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cspnet::jobs::{Job, JobGraph, Scheduler};
use cspnet::{Backend, with_backend};
use std::process::{Command, Stdio};
use std::time::Duration;

const JOBS: usize = 2_000;
const PARALLEL: usize = 2;

fn graph() -> cspnet::jobs::Graph {
    JobGraph::new()
        .jobs((0..JOBS).map(|i| Job::new(format!("true-{i}"), "true")))
        .build()
        .unwrap()
}

fn scheduled(backend: Backend) {
    let report = with_backend!(backend, csp => {
        Scheduler::<csp::Engine>::new(graph()).jobs(PARALLEL).run().unwrap()
    })
    .unwrap();
    assert!(report.success());
}

fn plain_loop() {
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                for _ in 0..JOBS / PARALLEL {
                    let status = Command::new("true")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
            });
        }
    });
}

fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("jobs_true_2000_j2");
    g.throughput(Throughput::Elements(JOBS as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("std-process-Command-loop", |b| b.iter(plain_loop));
    for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
        g.bench_function(BenchmarkId::new("cspnet-jobs", backend), |b| {
            b.iter(|| scheduled(backend))
        });
    }
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
