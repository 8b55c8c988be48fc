//! Job graphs and signals, on every backend: the first SIGINT stops scheduling and lets running jobs
//! finish, the second kills them, and `kill -9` of the scheduler leaves no job or grandchild running.
//!
//! Signals are process-wide, so each scheduler runs in a child: this test binary re-executed with
//! `CSPNET_JOBS_HELPER` set (the pattern of ipc-channel's `spawn_server`). The child prints every
//! job event on a line of its standard output; the test synchronises on those lines and on files
//! the jobs write, never on sleeps.
#![cfg(target_os = "linux")]

use cspnet::generic as g;
use cspnet::jobs::{Job, JobBackend, JobEvent, JobGraph, Scheduler};
use cspnet::{Backend, with_backend};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HELPER: &str = "CSPNET_JOBS_HELPER";
const DEADLINE: Duration = Duration::from_secs(20);

fn main() {
    if let Ok(spec) = std::env::var(HELPER) {
        helper(&spec);
        return;
    }
    for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
        first_interrupt_lets_running_jobs_finish(backend);
        println!("test first_interrupt_lets_running_jobs_finish ({backend}) ... ok");
        second_interrupt_kills_the_running_jobs(backend);
        println!("test second_interrupt_kills_the_running_jobs ({backend}) ... ok");
        kill_9_of_the_scheduler_leaves_no_process_behind(backend);
        println!("test kill_9_of_the_scheduler_leaves_no_process_behind ({backend}) ... ok");
    }
}

/// The child's side: runs the graph `mode` on `backend` in `dir`, printing each event as a line,
/// then the report, and exits with the report's exit code.
fn helper(spec: &str) {
    let mut parts = spec.splitn(3, ' ');
    let (mode, backend, dir) = (
        parts.next().unwrap(),
        parts.next().unwrap().parse::<Backend>().unwrap(),
        PathBuf::from(parts.next().unwrap()),
    );
    let graph = match mode {
        // Runs until the test creates `release`.
        "release" => Job::shell(
            "running",
            "touch started; while [ ! -e release ]; do sleep 0.02; done",
        ),
        // Never ends by itself; a grandchild too, whose pid it writes down.
        _ => Job::shell(
            "running",
            "sleep 1000 & echo $! > grandchild.tmp; mv grandchild.tmp grandchild.pid; \
             echo $$ > child.tmp; mv child.tmp child.pid; wait",
        ),
    };
    let graph = JobGraph::new()
        .job(graph.dir(&dir).priority(1))
        .job(Job::new("queued", "true"))
        .job(Job::new("after", "true").needs(["running"]))
        .build()
        .unwrap();
    let code = with_backend!(backend, csp => { run_printing::<csp::Engine>(graph) }).unwrap();
    std::process::exit(code);
}

fn run_printing<B: JobBackend>(graph: cspnet::jobs::Graph) -> i32 {
    let events = g::Channel::<B, JobEvent>::new();
    let r = events.reader();
    let printer = g::spawn::<B, (), _>([g::process(move || {
        for e in r {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", e?);
            let _ = out.flush();
        }
        Ok(())
    })]);
    let report = Scheduler::<B>::new(graph)
        .jobs(1)
        .grace(Duration::from_millis(300))
        .handle_signals()
        .events(events.writer())
        .run()
        .unwrap();
    drop(events);
    printer.join().unwrap();
    println!("exit code {}", report.exit_code());
    report.exit_code()
}

/// A helper child running graph `mode`, its stdout lines arriving on a channel.
struct Helper {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    dir: PathBuf,
}

impl Helper {
    /// The pid the job wrote to `file` in the helper's directory, once the file is there.
    fn pid(&self, file: &str) -> i32 {
        wait_for_file(&self.dir.join(file)).trim().parse().unwrap()
    }

    fn start(mode: &str, backend: Backend) -> Helper {
        let dir = std::env::temp_dir().join(format!(
            "cspnet-jobs-signals-{}-{mode}-{backend}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(HELPER, format!("{mode} {backend} {}", dir.display()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Helper {
            child,
            lines,
            seen: Vec::new(),
            dir,
        }
    }

    /// Waits for a line starting with `prefix`.
    fn expect_line(&mut self, prefix: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.seen.iter().any(|l| l.starts_with(prefix)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no line '{prefix}..' within {DEADLINE:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill takes plain integers; the child is ours and not yet reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the child to exit; its exit code, and every line it printed.
    fn finish(mut self) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the scheduler did not exit: {:?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            self.seen.push(line);
        }
        (status.code(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `path` exists and returns what it holds.
fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether process `pid` is gone (or a zombie waiting to be reaped by its new parent).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

fn assert_gone(pids: &[i32]) {
    let deadline = Instant::now() + DEADLINE;
    while !pids.iter().all(|&p| gone(p)) {
        assert!(
            Instant::now() < deadline,
            "processes {pids:?} outlived their scheduler"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn first_interrupt_lets_running_jobs_finish(backend: Backend) {
    let mut h = Helper::start("release", backend);
    wait_for_file(&h.dir.join("started"));
    h.expect_line("running: started");
    h.signal(libc::SIGINT);
    // Scheduling has stopped: the job that was waiting for a free slot is cancelled...
    h.expect_line("queued: cancelled: scheduling stopped by an interrupt");
    // ...while the running one is still running (it ends only once released).
    assert!(h.child.try_wait().unwrap().is_none());
    std::fs::write(h.dir.join("release"), "").unwrap();
    let (code, lines) = h.finish();
    assert!(lines.iter().any(|l| l == "running: passed"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "after: cancelled: scheduling stopped by an interrupt"),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("queued: started")),
        "{lines:?}"
    );
    assert_eq!(code, Some(1), "{lines:?}");
}

fn second_interrupt_kills_the_running_jobs(backend: Backend) {
    let mut h = Helper::start("hang", backend);
    let grandchild = h.pid("grandchild.pid");
    let child = h.pid("child.pid");
    h.signal(libc::SIGINT);
    h.expect_line("queued: cancelled");
    assert!(
        !gone(grandchild),
        "the first interrupt must not kill running jobs"
    );
    h.signal(libc::SIGINT);
    let (code, lines) = h.finish();
    assert!(
        lines.iter().any(|l| l.starts_with("running: killed")),
        "{lines:?}"
    );
    assert_eq!(code, Some(1), "{lines:?}");
    assert_gone(&[child, grandchild]);
}

fn kill_9_of_the_scheduler_leaves_no_process_behind(backend: Backend) {
    let mut h = Helper::start("hang", backend);
    let grandchild = h.pid("grandchild.pid");
    let child = h.pid("child.pid");
    h.signal(libc::SIGKILL);
    let _ = h.child.wait();
    assert_gone(&[child, grandchild]);
}
