//! Fork-after-initialise workers (AthenaMP's pattern): build something large once, fork workers that share it copy-on-write, and report the memory they really use.
//!
//! A program initialises what every event needs (gigabytes of geometry, conditions, a lookup
//! table) once, in the parent. [`ForkWorkers`] then forks `W` workers: each is a copy of the
//! parent whose pages are shared with it copy-on-write, so the data built before the fork is simply
//! there in every worker (captured by the worker closure; nothing is serialized) and costs its
//! memory once, however many workers read it. Only what a worker writes becomes its own.
//!
//! ```
//! use cspnet_processes::forked::{Dispatch, ForkWorkers};
//! use std::io::Write;
//! use std::sync::Arc;
//!
//! // Initialise once, before the fork: 64 MiB that every worker reads.
//! let table: Arc<Vec<u64>> = Arc::new((0..8u64 << 20).collect());
//! let root = tempfile::tempdir().unwrap();
//! let run = ForkWorkers::new(4, root.path())
//!     .after_fork(|ctx| writeln!(std::fs::File::create("hello.txt")?, "rank {}", ctx.rank()))
//!     .dispatch(Dispatch::Chunks(16))
//!     .run(0..1000u64, move |ctx, event| {
//!         let sum: u64 = table.iter().skip(event as usize).step_by(4096).sum();
//!         writeln!(ctx, "{event} {sum}")
//!     })
//!     .unwrap();
//! assert!(run.is_complete());
//! let merged = root.path().join("merged.txt");
//! assert_eq!(run.merge_sorted_by_key(&merged, |line| line.split(' ').next().map(str::to_owned)).unwrap(), 1000);
//! println!("{}", run.memory().unwrap()); // RSS, PSS, shared and private per worker
//! ```
//!
//! # How a run goes
//!
//! It is a small CSP network of this backend's own processes and channels, so poison, crash
//! reports and clean-up are the backend's:
//!
//! 1. The parent makes one directory per worker, `root/worker-<rank>`, and opens (truncating) the
//!    worker's output file `root/worker-<rank>/worker-<rank>.txt`; then it runs the
//!    [`before_fork`](ForkWorkers::before_fork) hook once (flush or close what a child must not
//!    inherit half-written).
//! 2. It starts the workers under a [`Supervisor`]: each is a `fork` of the parent, named
//!    `worker-<rank>`. In the child the worker enters its directory (it becomes the working
//!    directory, so relative paths land there), runs the
//!    [`after_fork`](ForkWorkers::after_fork) hook with its [`WorkerCtx`] (reopen files, reseed a
//!    generator, pin a thread pool), then reads batches of events. `fastrand` is reseeded in every
//!    child already.
//! 3. The parent hands out the events as [`Dispatch`] says: from one shared queue (a worker takes
//!    the next event when it is free), round-robin (event `i` to worker `i % W`), or in chunks of
//!    `n` from the shared queue. The worker closure writes its results into its context
//!    ([`WorkerCtx`] is [`Write`]); after each batch the bytes are appended to the worker's output
//!    file and the worker tells the parent how far the file is *committed*.
//! 4. When a worker has run out of events it says so and waits. Once every worker has finished
//!    (or failed), the parent reads every finished worker's `/proc/PID/smaps_rollup`, its own and
//!    the orphan guard's watchdog's, at that one moment ([`MemoryReports`]): every worker has
//!    touched its data and none has exited, so each shared page is divided among all the
//!    processes that map it, which is what PSS means. Then it lets them go and collects their
//!    exits. (The watchdog has a row of its own so that the sums are of every process of the
//!    run; it is a small shell, so its row is a few hundred KiB whatever the shared state.)
//! 5. The [`Run`] names the output files, how many events each worker did, the memory, the
//!    workers that failed and the events that were lost; [`Run::merge_lines`] and
//!    [`Run::merge_sorted_by_key`] merge the outputs in the parent.
//!
//! # A worker that crashes
//!
//! A worker that panics (its closure or a hook returned an error, which is turned into a panic
//! naming the rank), is killed or exits early is reported in [`Run::failures`] by rank; the other
//! workers go on (the supervisor retires a crashed worker's channel ends instead of poisoning
//! them), and their outputs are intact. The events it had taken but not committed are listed in
//! [`Run::lost`], in order, and are not re-queued: run them again if they matter (in round-robin
//! mode the events that would have gone to it go to the next living worker). Its output file keeps
//! what it committed; anything it wrote after its last commit is ignored by the merge. A failed
//! worker has no memory report (it has gone when the others are sampled).
//!
//! # When to fork after initialising, exec, or start a fresh process per job
//!
//! - **Fork after initialise** (this module) when the workers need the same large, read-only
//!   state and building it is expensive: it is built once and shared copy-on-write, so `W` workers
//!   cost about one copy of it plus what each writes. The parent must be safe to fork: no other
//!   threads holding locks the children need (see the crate's *Fork safety*), no open connections
//!   the children would share by accident. Shared pages stay shared only while nobody writes
//!   them: a worker that writes into the table (or a garbage collector or reference count that
//!   touches every object) copies the pages it touches.
//! - **[`exec`](crate::exec())** when the parent cannot be forked safely (many threads, a library
//!   with global locks, a simulator that must start from a clean state) or the state is cheap to
//!   rebuild: each worker starts fresh, and shares nothing but its channels.
//! - **A fresh process per job** (a [`process`] per job, or an `exec` per job) when jobs must not
//!   affect each other (leaks, global state, crashes that corrupt memory), at the cost of a start
//!   per job (a fork is a few milliseconds).
//!
//! On the threads and coroutines backends every worker already shares the parent's memory
//! (there is nothing to copy and nothing to report per process), so this module exists on the
//! processes backend only: it is a documented difference, not part of the shared surface.

use crate::{Alternation, Channel, ChannelError, Exit, Reader, Supervisor, Writer, process};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the parent hands events to the workers.
///
/// ```
/// use cspnet_processes::forked::Dispatch;
/// assert_eq!(Dispatch::default(), Dispatch::Queue);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// One shared queue: whichever worker is free takes the next event (balances uneven events).
    #[default]
    Queue,
    /// Event `i` goes to worker `i % W` (skipping workers that have failed).
    RoundRobin,
    /// The shared queue, `n` events at a time (fewer hand-offs and commits for cheap events).
    Chunks(usize),
}

/// Why a run of fork-after-initialise workers could not be carried out.
///
/// A worker that fails during the run is not an error of the run: it is in [`Run::failures`].
///
/// ```
/// use cspnet_processes::forked::{ForkError, ForkWorkers};
/// let err = ForkWorkers::new(0, "/tmp").run(0..1u64, |_, _| Ok(())).unwrap_err();
/// assert!(matches!(err, ForkError::NoWorkers));
/// assert_eq!(err.to_string(), "fork-after-initialise workers need at least one worker");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForkError {
    /// `ForkWorkers::new(0, ..)`.
    #[error("fork-after-initialise workers need at least one worker")]
    NoWorkers,
    /// `Dispatch::Chunks(0)`.
    #[error("Dispatch::Chunks needs chunks of at least one event")]
    EmptyChunks,
    /// A worker's directory or output file could not be made.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The `before_fork` hook failed; no worker was started.
    #[error("the before_fork hook failed: {0}")]
    BeforeFork(#[source] io::Error),
    /// A worker could not be started (the fork was refused); the workers already started were
    /// stopped and waited for.
    #[error("cannot start worker {rank}: {reason}")]
    Start {
        /// Its rank.
        rank: usize,
        /// Why.
        reason: String,
    },
    /// The run's own channels were poisoned (a worker's body returned a poison error).
    #[error("the workers' channels failed: {0}")]
    Channel(#[from] ChannelError),
}

/// What a worker knows about itself, and where its output goes: the worker closure and the
/// `after_fork` hook get it. It is [`Write`]: what is written is appended to the worker's output
/// file when the batch of events ends (a *commit*).
///
/// ```
/// use cspnet_processes::forked::ForkWorkers;
/// use std::io::Write;
/// let root = tempfile::tempdir().unwrap();
/// let run = ForkWorkers::new(2, root.path())
///     .run(0..10u32, |ctx, event| writeln!(ctx, "{event} done by {}", ctx.rank()))
///     .unwrap();
/// assert_eq!(run.events_done().iter().sum::<u64>(), 10);
/// ```
#[derive(Debug)]
pub struct WorkerCtx {
    rank: usize,
    workers: usize,
    dir: PathBuf,
    file: File,
    pending: Vec<u8>,
    committed: u64,
}

impl WorkerCtx {
    /// This worker's rank, `0..workers`.
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// cspnet_processes::forked::ForkWorkers::new(3, root.path())
    ///     .run(0..3u8, |ctx, _| { assert!(ctx.rank() < 3); Ok(()) })
    ///     .unwrap();
    /// ```
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many workers the run has.
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// cspnet_processes::forked::ForkWorkers::new(3, root.path())
    ///     .run(0..3u8, |ctx, _| { assert_eq!(ctx.workers(), 3); Ok(()) })
    ///     .unwrap();
    /// ```
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// This worker's own directory, `root/worker-<rank>` (also its working directory).
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// cspnet_processes::forked::ForkWorkers::new(1, root.path())
    ///     .run(0..1u8, |ctx, _| { assert!(ctx.dir().ends_with("worker-0")); Ok(()) })
    ///     .unwrap();
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends what was written since the last commit to the output file.
    fn commit(&mut self) -> io::Result<u64> {
        if !self.pending.is_empty() {
            self.file.write_all(&self.pending)?;
            self.committed += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(self.committed)
    }
}

impl Write for WorkerCtx {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes, shown with a binary unit (`1.00 GiB`, `512.0 KiB`).
///
/// ```
/// use cspnet_processes::forked::Bytes;
/// assert_eq!(Bytes(3 << 30).to_string(), "3.00 GiB");
/// assert_eq!(Bytes(1536 << 10).to_string(), "1.50 MiB");
/// assert_eq!(Bytes(12).to_string(), "12 B");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        let (k, m, g) = (1024.0, 1024.0 * 1024.0, 1024.0 * 1024.0 * 1024.0);
        if b >= g {
            write!(f, "{:.2} GiB", b / g)
        } else if b >= m {
            write!(f, "{:.2} MiB", b / m)
        } else if b >= k {
            write!(f, "{:.1} KiB", b / k)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

/// Why a process's memory could not be read.
///
/// ```
/// use cspnet_processes::forked::MemoryReport;
/// let err = MemoryReport::read(u32::MAX).unwrap_err();
/// assert!(err.to_string().starts_with(&format!("cannot read /proc/{}/smaps_rollup", u32::MAX)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read /proc/{pid}/smaps_rollup: {reason}")]
pub struct MemoryError {
    /// The process.
    pub pid: u32,
    /// What went wrong (no such process, no permission, a kernel without `smaps_rollup`
    /// (before Linux 4.14), a field missing).
    pub reason: String,
}

/// The memory one process really uses, from `/proc/PID/smaps_rollup`, in bytes.
///
/// `rss` counts every resident page the process maps, so a page shared by five processes is
/// counted five times in the sum of their RSS; `pss` divides each page among the processes that
/// map it, so the sum of PSS is the memory the processes use together. `shared` and `private` split
/// `rss` into pages mapped by other processes too and pages mapped by this one only.
///
/// ```
/// use cspnet_processes::forked::MemoryReport;
/// let me = MemoryReport::read(std::process::id()).unwrap();
/// assert!(me.rss > 0 && me.pss <= me.rss);
/// assert_eq!(me.shared + me.private, me.rss);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReport {
    /// The OS process id.
    pub pid: u32,
    /// The worker's rank; `None` for the parent (or a process read with [`MemoryReport::read`]).
    pub rank: Option<usize>,
    /// Resident set size.
    pub rss: u64,
    /// Proportional set size: each resident page divided by the number of processes mapping it.
    pub pss: u64,
    /// Resident pages also mapped by other processes (`Shared_Clean + Shared_Dirty`).
    pub shared: u64,
    /// Resident pages mapped by this process only (`Private_Clean + Private_Dirty`).
    pub private: u64,
    /// Swapped out.
    pub swap: u64,
}

impl MemoryReport {
    /// Reads the memory of process `pid` now (through the `procfs` crate). Fails with a clear
    /// error, never a panic, if the file cannot be read or lacks a field.
    ///
    /// ```
    /// let me = cspnet_processes::forked::MemoryReport::read(std::process::id()).unwrap();
    /// assert_eq!(me.rank, None);
    /// ```
    pub fn read(pid: u32) -> Result<MemoryReport, MemoryError> {
        let fail = |reason: String| MemoryError { pid, reason };
        let id = i32::try_from(pid).map_err(|_| fail("not a process id".into()))?;
        let rollup = procfs::process::Process::new(id)
            .and_then(|p| p.smaps_rollup())
            .map_err(|e| fail(e.to_string()))?;
        let map = rollup
            .memory_map_rollup
            .0
            .first()
            .map(|m| &m.extension.map)
            .ok_or_else(|| fail("the file is empty (has the process exited?)".into()))?;
        let field = |name: &str| {
            map.get(name)
                .copied()
                .ok_or_else(|| fail(format!("no {name} field")))
        };
        Ok(MemoryReport {
            pid,
            rank: None,
            rss: field("Rss")?,
            pss: field("Pss")?,
            shared: field("Shared_Clean")? + field("Shared_Dirty")?,
            private: field("Private_Clean")? + field("Private_Dirty")?,
            swap: field("Swap")?,
        })
    }
}

/// The memory of a run's workers and parent, all read at one moment: after every worker had
/// processed its events and before any exited. Display prints it as a table.
///
/// ```
/// use cspnet_processes::forked::ForkWorkers;
/// let table = vec![7u64; 16 << 20]; // 128 MiB, built before the fork
/// let root = tempfile::tempdir().unwrap();
/// let run = ForkWorkers::new(4, root.path())
///     .after_fork(move |_| { assert_eq!(table.iter().sum::<u64>(), 7 << 24); Ok(()) })
///     .run(0..4u8, |_, _| Ok(()))
///     .unwrap();
/// let mem = run.memory().unwrap();
/// println!("{mem}");
/// assert!(mem.workers_rss() > 4 * (120 << 20)); // each worker maps the whole table...
/// assert!(mem.total_pss() < 2 * (128 << 20)); // ...but they use it once between them
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryReports {
    /// The parent's (the process that called [`ForkWorkers::run`]).
    pub parent: MemoryReport,
    /// The orphan guard's watchdog's (the crate docs' *No orphans*), when the workers run in its
    /// process group. It is a fork of the program made before its first child, so if the shared
    /// state was built before then, it maps those pages too and takes its share of their PSS.
    pub watchdog: Option<MemoryReport>,
    /// One per worker that finished, by rank.
    pub workers: Vec<MemoryReport>,
}

impl MemoryReports {
    /// The sum of the workers' RSS.
    ///
    /// ```
    /// use cspnet_processes::forked::{MemoryReport, MemoryReports};
    /// let r = |rss| MemoryReport { pid: 1, rank: None, rss, pss: rss / 2, shared: rss, private: 0, swap: 0 };
    /// let m = MemoryReports { parent: r(10), watchdog: None, workers: vec![r(10), r(10)] };
    /// assert_eq!((m.workers_rss(), m.total_rss()), (20, 30));
    /// ```
    pub fn workers_rss(&self) -> u64 {
        self.workers.iter().map(|w| w.rss).sum()
    }

    /// The sum of the workers' PSS.
    ///
    /// ```
    /// use cspnet_processes::forked::{MemoryReport, MemoryReports};
    /// let r = |pss| MemoryReport { pid: 1, rank: None, rss: 2 * pss, pss, shared: 0, private: 2 * pss, swap: 0 };
    /// let m = MemoryReports { parent: r(5), watchdog: None, workers: vec![r(5), r(5)] };
    /// assert_eq!((m.workers_pss(), m.total_pss()), (10, 15));
    /// ```
    pub fn workers_pss(&self) -> u64 {
        self.workers.iter().map(|w| w.pss).sum()
    }

    /// The sum of the RSS of the workers, the parent and the watchdog.
    ///
    /// ```
    /// use cspnet_processes::forked::{MemoryReport, MemoryReports};
    /// let r = MemoryReport { pid: 1, rank: None, rss: 4, pss: 1, shared: 4, private: 0, swap: 0 };
    /// assert_eq!(MemoryReports { parent: r, watchdog: Some(r), workers: vec![r; 3] }.total_rss(), 20);
    /// ```
    pub fn total_rss(&self) -> u64 {
        self.workers_rss() + self.others().map(|m| m.rss).sum::<u64>()
    }

    /// The sum of the PSS of the workers, the parent and the watchdog: the memory the whole run
    /// used.
    ///
    /// ```
    /// use cspnet_processes::forked::{MemoryReport, MemoryReports};
    /// let r = MemoryReport { pid: 1, rank: None, rss: 4, pss: 1, shared: 4, private: 0, swap: 0 };
    /// assert_eq!(MemoryReports { parent: r, watchdog: Some(r), workers: vec![r; 3] }.total_pss(), 5);
    /// ```
    pub fn total_pss(&self) -> u64 {
        self.workers_pss() + self.others().map(|m| m.pss).sum::<u64>()
    }

    /// The parent and the watchdog.
    fn others(&self) -> impl Iterator<Item = &MemoryReport> {
        std::iter::once(&self.parent).chain(&self.watchdog)
    }
}

impl fmt::Display for MemoryReports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, who: &str, pid: String, r: [u64; 5]| {
            writeln!(
                f,
                "{who:<14} {pid:>8} {:>11} {:>11} {:>11} {:>11} {:>11}",
                Bytes(r[0]).to_string(),
                Bytes(r[1]).to_string(),
                Bytes(r[2]).to_string(),
                Bytes(r[3]).to_string(),
                Bytes(r[4]).to_string(),
            )
        };
        writeln!(
            f,
            "{:<14} {:>8} {:>11} {:>11} {:>11} {:>11} {:>11}",
            "process", "pid", "RSS", "PSS", "shared", "private", "swap"
        )?;
        let fields = |m: &MemoryReport| [m.rss, m.pss, m.shared, m.private, m.swap];
        row(
            f,
            "parent",
            self.parent.pid.to_string(),
            fields(&self.parent),
        )?;
        if let Some(w) = &self.watchdog {
            row(f, "watchdog", w.pid.to_string(), fields(w))?;
        }
        for w in &self.workers {
            let who = format!("worker {}", w.rank.unwrap_or_default());
            row(f, &who, w.pid.to_string(), fields(w))?;
        }
        let sum = |it: &mut dyn Iterator<Item = &MemoryReport>| {
            it.fold([0u64; 5], |mut acc, m| {
                for (a, v) in acc.iter_mut().zip(fields(m)) {
                    *a += v;
                }
                acc
            })
        };
        row(
            f,
            "workers (sum)",
            String::new(),
            sum(&mut self.workers.iter()),
        )?;
        let all = sum(&mut self.workers.iter().chain(self.others()));
        write!(
            f,
            "{:<14} {:>8} {:>11} {:>11} {:>11} {:>11} {:>11}",
            "all (sum)",
            "",
            Bytes(all[0]).to_string(),
            Bytes(all[1]).to_string(),
            Bytes(all[2]).to_string(),
            Bytes(all[3]).to_string(),
            Bytes(all[4]).to_string(),
        )
    }
}

/// A worker that did not finish: panicked (its closure or a hook failed), was killed, or exited
/// early.
///
/// ```
/// use cspnet_processes::forked::WorkerFailure;
/// let f = WorkerFailure { rank: 2, reason: "process 'worker-2' panicked: boom".into() };
/// assert_eq!(f.to_string(), "worker 2 failed: process 'worker-2' panicked: boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFailure {
    /// The worker's rank.
    pub rank: usize,
    /// What the supervisor reported.
    pub reason: String,
}

impl fmt::Display for WorkerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {} failed: {}", self.rank, self.reason)
    }
}

/// What a run of fork-after-initialise workers left: per-worker outputs and directories, how many
/// events each did, the memory report, the failures and the lost events, and the merge step.
///
/// ```
/// use cspnet_processes::forked::ForkWorkers;
/// use std::io::Write;
/// let root = tempfile::tempdir().unwrap();
/// let run = ForkWorkers::new(2, root.path())
///     .run(0..100u32, |ctx, e| writeln!(ctx, "{e}"))
///     .unwrap();
/// assert!(run.failures().is_empty() && run.lost().is_empty());
/// assert_eq!(run.merge_lines(&root.path().join("all.txt")).unwrap(), 100);
/// ```
#[derive(Debug)]
pub struct Run<E> {
    dirs: Vec<PathBuf>,
    outputs: Vec<PathBuf>,
    committed: Vec<u64>,
    events_done: Vec<u64>,
    memory: Result<MemoryReports, MemoryError>,
    failures: Vec<WorkerFailure>,
    lost: Vec<E>,
}

impl<E> Run<E> {
    /// Each worker's directory, by rank (made absolute).
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(2, root.path()).run(0..2u8, |_, _| Ok(())).unwrap();
    /// assert_eq!(run.dirs()[1], root.path().canonicalize().unwrap().join("worker-1"));
    /// ```
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Each worker's output file, by rank (`root/worker-<rank>/worker-<rank>.txt`).
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(2, root.path()).run(0..2u8, |_, _| Ok(())).unwrap();
    /// assert!(run.outputs()[0].ends_with("worker-0/worker-0.txt"));
    /// ```
    pub fn outputs(&self) -> &[PathBuf] {
        &self.outputs
    }

    /// How many events each worker processed and committed, by rank.
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(2, root.path()).run(0..9u8, |_, _| Ok(())).unwrap();
    /// assert_eq!(run.events_done().iter().sum::<u64>(), 9);
    /// ```
    pub fn events_done(&self) -> &[u64] {
        &self.events_done
    }

    /// The memory of every finished worker and of the parent, read at one moment; an error if
    /// `/proc/PID/smaps_rollup` could not be read.
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(2, root.path()).run(0..2u8, |_, _| Ok(())).unwrap();
    /// assert_eq!(run.memory().unwrap().workers.len(), 2);
    /// ```
    pub fn memory(&self) -> Result<&MemoryReports, &MemoryError> {
        self.memory.as_ref()
    }

    /// The workers that failed, by rank.
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(2, root.path())
    ///     .after_fork(|ctx| if ctx.rank() == 1 { Err(std::io::Error::other("no")) } else { Ok(()) })
    ///     .run(0..4u8, |_, _| Ok(()))
    ///     .unwrap();
    /// assert_eq!(run.failures()[0].rank, 1);
    /// assert!(run.lost().is_empty()); // worker 0 took them all
    /// ```
    pub fn failures(&self) -> &[WorkerFailure] {
        &self.failures
    }

    /// The events that were not processed: taken by a worker that failed before committing them,
    /// or never handed out because no worker was left. In the order they were given.
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(1, root.path())
    ///     .run(0..4u8, |_, e| if e == 2 { Err(std::io::Error::other("bad event")) } else { Ok(()) })
    ///     .unwrap();
    /// assert_eq!(run.lost(), [2, 3]);
    /// ```
    pub fn lost(&self) -> &[E] {
        &self.lost
    }

    /// Whether every worker finished and every event was processed.
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(2, root.path()).run(0..4u8, |_, _| Ok(())).unwrap();
    /// assert!(run.is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty() && self.lost.is_empty()
    }

    /// The committed part of worker `rank`'s output: what it wrote for the events it finished
    /// (a failed worker's file may hold more, written after its last commit; that is left out).
    ///
    /// ```
    /// # use std::io::Write;
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(1, root.path())
    ///     .run(0..2u8, |ctx, e| writeln!(ctx, "{e}")).unwrap();
    /// assert_eq!(run.read_output(0).unwrap(), "0\n1\n");
    /// ```
    pub fn read_output(&self, rank: usize) -> io::Result<String> {
        let mut text = String::new();
        File::open(&self.outputs[rank])?
            .take(self.committed[rank])
            .read_to_string(&mut text)?;
        Ok(text)
    }

    /// Merges the committed outputs, rank by rank, into `dest`; returns how many lines it wrote.
    ///
    /// ```
    /// # use std::io::Write;
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(2, root.path())
    ///     .run(0..5u8, |ctx, e| writeln!(ctx, "{e}")).unwrap();
    /// assert_eq!(run.merge_lines(&root.path().join("all.txt")).unwrap(), 5);
    /// ```
    pub fn merge_lines(&self, dest: &Path) -> io::Result<u64> {
        let mut out = io::BufWriter::new(File::create(dest)?);
        let mut lines = 0;
        for rank in 0..self.outputs.len() {
            for line in self.committed_lines(rank)? {
                writeln!(out, "{}", line?)?;
                lines += 1;
            }
        }
        out.flush()?;
        Ok(lines)
    }

    /// Merges the committed outputs into `dest`, sorted by `key` (lines with equal keys keep the
    /// rank order); returns how many lines it wrote. The lines are held in memory to sort them.
    ///
    /// ```
    /// # use std::io::Write;
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(3, root.path())
    ///     .run(0..12u32, |ctx, e| writeln!(ctx, "{e} {}", e * e)).unwrap();
    /// let merged = root.path().join("all.txt");
    /// run.merge_sorted_by_key(&merged, |line| line.split(' ').next().and_then(|id| id.parse::<u32>().ok()))
    ///     .unwrap();
    /// assert!(std::fs::read_to_string(&merged).unwrap().starts_with("0 0\n1 1\n2 4\n"));
    /// ```
    pub fn merge_sorted_by_key<K: Ord>(
        &self,
        dest: &Path,
        mut key: impl FnMut(&str) -> K,
    ) -> io::Result<u64> {
        let mut all = Vec::new();
        for rank in 0..self.outputs.len() {
            for line in self.committed_lines(rank)? {
                all.push(line?);
            }
        }
        all.sort_by_cached_key(|l| key(l));
        let mut out = io::BufWriter::new(File::create(dest)?);
        for line in &all {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        Ok(all.len() as u64)
    }

    fn committed_lines(&self, rank: usize) -> io::Result<io::Lines<BufReader<io::Take<File>>>> {
        let file = File::open(&self.outputs[rank])?;
        Ok(BufReader::new(file.take(self.committed[rank])).lines())
    }
}

/// A numbered batch of events, as it travels to a worker.
type Batch<E> = (u64, Vec<E>);
type BeforeFork = Box<dyn FnOnce() -> io::Result<()>>;
type Progress = Box<dyn FnMut(u64)>;
type AfterFork = Arc<dyn Fn(&mut WorkerCtx) -> io::Result<()> + Send + Sync>;

/// Fork-after-initialise workers: build the shared state, then
/// `ForkWorkers::new(workers, root)`, optional hooks and [`Dispatch`], and
/// [`run`](ForkWorkers::run) over the events. See the [module docs](self) for how a run goes.
///
/// ```
/// use cspnet_processes::forked::{Dispatch, ForkWorkers};
/// use std::io::Write;
/// let geometry = vec![1.5f64; 1 << 20]; // expensive to build; read by every event
/// let root = tempfile::tempdir().unwrap();
/// let run = ForkWorkers::new(2, root.path())
///     .before_fork(|| { std::io::stdout().flush() })
///     .after_fork(|ctx| std::fs::write("rank", ctx.rank().to_string()))
///     .dispatch(Dispatch::RoundRobin)
///     .run(0..10usize, move |ctx, e| writeln!(ctx, "{e} {}", geometry[e] * e as f64))
///     .unwrap();
/// assert!(run.is_complete());
/// ```
pub struct ForkWorkers {
    workers: usize,
    root: PathBuf,
    dispatch: Dispatch,
    before_fork: Option<BeforeFork>,
    after_fork: Option<AfterFork>,
    progress: Option<Progress>,
}

impl fmt::Debug for ForkWorkers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForkWorkers")
            .field("workers", &self.workers)
            .field("root", &self.root)
            .field("dispatch", &self.dispatch)
            .finish_non_exhaustive()
    }
}

/// What a worker tells the parent.
#[derive(Debug, Serialize, Deserialize)]
enum Note {
    /// Batch `batch` is processed and its output committed: the file is `committed` bytes long.
    Done {
        rank: usize,
        batch: u64,
        committed: u64,
    },
    /// No more events: the worker waits to be sampled and released.
    Finished {
        rank: usize,
        pid: u32,
        committed: u64,
    },
}

/// What one turn of the parent's alternation did.
enum Turn {
    Sent,
    Note(Note),
    Exit(Exit<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Finished(u32),
    Failed,
}

impl ForkWorkers {
    /// `workers` workers, each with its directory `root/worker-<rank>` (created if missing; `root`
    /// too).
    ///
    /// ```
    /// let w = cspnet_processes::forked::ForkWorkers::new(4, "/tmp/run");
    /// assert!(format!("{w:?}").contains("workers: 4"));
    /// ```
    pub fn new(workers: usize, root: impl Into<PathBuf>) -> Self {
        ForkWorkers {
            workers,
            root: root.into(),
            dispatch: Dispatch::Queue,
            before_fork: None,
            after_fork: None,
            progress: None,
        }
    }

    /// How events are handed out (default [`Dispatch::Queue`]).
    ///
    /// ```
    /// use cspnet_processes::forked::{Dispatch, ForkWorkers};
    /// let w = ForkWorkers::new(4, "/tmp/run").dispatch(Dispatch::Chunks(100));
    /// assert!(format!("{w:?}").contains("Chunks(100)"));
    /// ```
    pub fn dispatch(mut self, dispatch: Dispatch) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// A hook run once in the parent, after the workers' directories are made and just before
    /// the first fork (flush buffers, close what the children must not share). If it fails, no
    /// worker is started and [`run`](Self::run) returns [`ForkError::BeforeFork`].
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// use std::io::Write;
    /// let err = cspnet_processes::forked::ForkWorkers::new(2, root.path())
    ///     .before_fork(|| Err(std::io::Error::other("database still open")))
    ///     .run(0..2u8, |_, _| Ok(()))
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("database still open"));
    /// ```
    pub fn before_fork(mut self, hook: impl FnOnce() -> io::Result<()> + 'static) -> Self {
        self.before_fork = Some(Box::new(hook));
        self
    }

    /// A hook run in each worker right after the fork, in its own directory (its working
    /// directory), before its first event: reopen files, reseed, set up per-worker state. It may
    /// write output through the context. If it fails, that worker fails (reported by rank in
    /// [`Run::failures`]) and the others go on.
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = cspnet_processes::forked::ForkWorkers::new(2, root.path())
    ///     .after_fork(|ctx| std::fs::write("log.txt", format!("worker {} starts", ctx.rank())))
    ///     .run(0..2u8, |_, _| Ok(()))
    ///     .unwrap();
    /// assert!(run.dirs()[1].join("log.txt").exists());
    /// ```
    pub fn after_fork(
        mut self,
        hook: impl Fn(&mut WorkerCtx) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.after_fork = Some(Arc::new(hook));
        self
    }

    /// A callback run in the parent each time a worker commits a batch, with how many events
    /// have been processed so far (to drive a progress bar).
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let mut seen = Vec::new();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// cspnet_processes::forked::ForkWorkers::new(2, root.path())
    ///     .progress(move |done| tx.send(done).unwrap())
    ///     .run(0..5u8, |_, _| Ok(()))
    ///     .unwrap();
    /// seen.extend(rx.try_iter());
    /// assert_eq!(seen.last(), Some(&5));
    /// ```
    pub fn progress(mut self, report: impl FnMut(u64) + 'static) -> Self {
        self.progress = Some(Box::new(report));
        self
    }

    /// Forks the workers, hands them `events`, waits for them all, reads their memory at one
    /// moment, and returns the [`Run`]. `work` runs in the workers, once per event; whatever it
    /// captured (the state built before the fork) is shared copy-on-write. An error it returns
    /// fails that worker (see [`Run::failures`] and [`Run::lost`]).
    ///
    /// ```
    /// use std::io::Write;
    /// # let root = tempfile::tempdir().unwrap();
    /// let lookup: Vec<u64> = (0..1_000_000).map(|i| i * 3).collect();
    /// let run = cspnet_processes::forked::ForkWorkers::new(2, root.path())
    ///     .run((0..1000u64).step_by(7), move |ctx, e| writeln!(ctx, "{e} {}", lookup[e as usize]))
    ///     .unwrap();
    /// assert_eq!(run.events_done().iter().sum::<u64>(), 143);
    /// ```
    pub fn run<E, I, F>(self, events: I, work: F) -> Result<Run<E>, ForkError>
    where
        E: Serialize + DeserializeOwned + Clone + Send + 'static,
        I: IntoIterator<Item = E>,
        F: Fn(&mut WorkerCtx, E) -> io::Result<()> + Send + Sync + 'static,
    {
        let w = self.workers;
        if w == 0 {
            return Err(ForkError::NoWorkers);
        }
        let (batch_size, queues) = match self.dispatch {
            Dispatch::Queue => (1, 1),
            Dispatch::RoundRobin => (1, w),
            Dispatch::Chunks(0) => return Err(ForkError::EmptyChunks),
            Dispatch::Chunks(n) => (n, 1),
        };
        let mut dirs = Vec::with_capacity(w);
        let mut outputs = Vec::with_capacity(w);
        let mut files = Vec::with_capacity(w);
        for (dir, out, file) in prepare(&self.root, w)? {
            dirs.push(dir);
            outputs.push(out);
            files.push(file);
        }
        // Made first so that it is dropped last: if the parent unwinds, the channel ends below go
        // first (a panicking thread poisons them), which ends every worker, and then the
        // supervisor waits for them.
        let mut sup = Supervisor::<u64>::new();

        // Every end joins before any worker starts: a channel retires when its last reader or
        // writer leaves, and a worker that ended early must not retire it for the others.
        let queue_chans: Vec<Channel<Batch<E>>> = (0..queues)
            .map(|q| Channel::named_with_buffer(&format!("forked-events-{q}"), w.max(2)))
            .collect();
        let notes = Channel::<Note>::named_with_buffer("forked-notes", 2 * w + 2);
        let release = Channel::<()>::named("forked-release");
        let writers: Vec<Writer<Batch<E>>> = queue_chans.iter().map(|c| c.writer()).collect();
        let notes_in = notes.reader();
        let release_out = release.writer();
        let mut bodies = Vec::with_capacity(w);
        for (rank, (dir, file)) in dirs.iter().zip(files).enumerate() {
            let queue = queue_chans[rank % queues].reader();
            let (note, released) = (notes.writer(), release.reader());
            let after = self.after_fork.clone();
            let ctx = WorkerCtx {
                rank,
                workers: w,
                dir: dir.clone(),
                file,
                pending: Vec::new(),
                committed: 0,
            };
            bodies.push((rank, ctx, queue, note, released, after));
        }
        drop((queue_chans, notes, release));

        if let Some(hook) = self.before_fork {
            hook().map_err(ForkError::BeforeFork)?;
        }

        let work = Arc::new(work);
        let mut progress = self.progress;
        let mut rank_of = HashMap::new();
        for (rank, ctx, queue, note, released, after) in bodies {
            let work = Arc::clone(&work);
            let body = move || worker(ctx, after, &*work, queue, note, released);
            match sup.start(process(body).named(&format!("worker-{rank}"))) {
                Ok(id) => {
                    rank_of.insert(id, rank);
                }
                Err(failure) => {
                    // Let the workers already started go (their event queues and the release
                    // retire), and wait for them: the supervisor's drop does.
                    drop((writers, release_out, notes_in));
                    drop(sup);
                    return Err(ForkError::Start {
                        rank,
                        reason: failure.to_string(),
                    });
                }
            }
        }

        let mut failures = Vec::new();
        let mut batches = Batches {
            events: events.into_iter(),
            size: batch_size,
            next: 0,
        };
        let mut next = batches.next();
        let mut writers: Vec<Option<Writer<Batch<E>>>> = writers.into_iter().map(Some).collect();
        let mut turn_rank = 0;
        let mut book = Book {
            state: vec![State::Running; w],
            committed: vec![0; w],
            events_done: vec![0; w],
            taken: BTreeMap::new(),
        };
        let result: Result<(), ChannelError> = (|| {
            while book.state.contains(&State::Running) {
                // Which queue the next batch goes to: the shared one, or the next living
                // worker's in round-robin.
                let target = match (&next, queues) {
                    (None, _) => None,
                    (Some(_), 1) => Some(0),
                    (Some(_), _) => (0..w)
                        .map(|i| (turn_rank + i) % w)
                        .find(|&r| book.state[r] == State::Running),
                };
                if next.is_some() && target.is_none() {
                    break; // nobody left to take events
                }
                if next.is_none() {
                    // Every event is handed out: retiring the queues ends each worker's loop.
                    writers.iter_mut().for_each(|w| drop(w.take()));
                }
                let mut alt = Alternation::new()
                    .input(&notes_in, Turn::Note)
                    .input(sup.exits(), Turn::Exit);
                if let (Some(batch), Some(q)) = (&next, target) {
                    if let Some(writer) = &writers[q] {
                        alt = alt.output(writer, batch.clone(), || Turn::Sent);
                    }
                }
                match alt.select()? {
                    Turn::Sent => {
                        let (number, events) = next.take().expect("a batch was offered");
                        book.taken.insert(number, events);
                        next = batches.next();
                        if let Some(q) = target {
                            turn_rank = (q + 1) % w;
                        }
                    }
                    Turn::Note(n) => {
                        book.note(n);
                        if let Some(report) = progress.as_mut() {
                            report(book.events_done.iter().sum());
                        }
                    }
                    Turn::Exit(exit) => {
                        let rank = rank_of[&exit.id];
                        if let Some(reason) = failure_of(&exit) {
                            book.state[rank] = State::Failed;
                            failures.push(WorkerFailure { rank, reason });
                            if queues > 1 {
                                // What sits in its queue would never be taken.
                                drop(writers[rank].take());
                            }
                        }
                    }
                }
            }
            Ok(())
        })();
        drop(writers);

        // A failed worker's notes written before it died are still buffered: take them all (the
        // others are all waiting, their last note sent).
        while let Ok(Some(n)) = Alternation::new()
            .input(&notes_in, Some)
            .skip(|| None)
            .pri_select()
        {
            book.note(n);
            if let Some(report) = progress.as_mut() {
                report(book.events_done.iter().sum());
            }
        }

        // Every living worker waits now: read them all at this one moment, then let them go.
        let memory = sample(&book.state);
        drop(release_out);
        while let Some(exit) = sup.next_exit() {
            let rank = rank_of[&exit.id];
            if let Some(reason) = failure_of(&exit) {
                if book.state[rank] != State::Failed {
                    book.state[rank] = State::Failed;
                    failures.push(WorkerFailure { rank, reason });
                }
            }
        }
        result?;
        failures.sort_by_key(|f| f.rank);
        let mut lost: Vec<E> = book.taken.into_values().flatten().collect();
        lost.extend(next.into_iter().flat_map(|(_, events)| events));
        lost.extend(batches.events);
        Ok(Run {
            dirs,
            outputs,
            committed: book.committed,
            events_done: book.events_done,
            memory,
            failures,
            lost,
        })
    }
}

/// Makes each worker's directory, `root/worker-<rank>`, and creates (truncating) its output file.
/// Returns, by rank, the directory, the output file's path and the open output file.
fn prepare(root: &Path, w: usize) -> Result<Vec<(PathBuf, PathBuf, File)>, ForkError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ForkError::Io { path, source }
    };
    let mut prepared = Vec::with_capacity(w);
    for rank in 0..w {
        let dir = root.join(format!("worker-{rank}"));
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // Absolute, so the worker's directory means the same after it changes directory.
        let dir = std::fs::canonicalize(&dir).map_err(io_err(&dir))?;
        let out = dir.join(format!("worker-{rank}.txt"));
        let file = File::create(&out).map_err(io_err(&out))?;
        prepared.push((dir, out, file));
    }
    Ok(prepared)
}

/// Why a worker failed, if it did: it panicked, crashed or was killed, or its body ended with a
/// channel error (poison) instead of its count.
fn failure_of(exit: &Exit<u64>) -> Option<String> {
    match &exit.outcome {
        Err(_) => exit.failure().map(|f| f.to_string()),
        Ok(Err(e)) => Some(format!("process '{}' ended: {e}", exit.name)),
        Ok(Ok(_)) => None,
    }
}

/// Reads the memory of the parent, every finished worker (each waits to be released, so all are
/// read while all are alive) and the watchdog.
fn sample(state: &[State]) -> Result<MemoryReports, MemoryError> {
    let parent = MemoryReport::read(std::process::id())?;
    let mut workers = Vec::new();
    for (rank, s) in state.iter().enumerate() {
        if let State::Finished(pid) = *s {
            workers.push(MemoryReport {
                rank: Some(rank),
                ..MemoryReport::read(pid)?
            });
        }
    }
    let watchdog = match workers.first().and_then(|w| watchdog_of(w.pid)) {
        Some(pid) => Some(MemoryReport::read(pid)?),
        None => None,
    };
    Ok(MemoryReports {
        parent,
        watchdog,
        workers,
    })
}

/// The watchdog whose process group the worker `pid` runs in: the group's leader, if that is
/// neither this process's group nor the worker itself (with the orphan guard off, workers stay in
/// the caller's group).
fn watchdog_of(pid: u32) -> Option<u32> {
    let group = |pid: u32| {
        let stat = procfs::process::Process::new(i32::try_from(pid).ok()?)
            .and_then(|p| p.stat())
            .ok()?;
        u32::try_from(stat.pgrp).ok()
    };
    let leader = group(pid)?;
    (leader != pid && Some(leader) != group(std::process::id())).then_some(leader)
}

/// The parent's account of the run, kept from the workers' notes.
struct Book<E> {
    state: Vec<State>,
    /// How long each worker's output file is, as far as it committed it.
    committed: Vec<u64>,
    events_done: Vec<u64>,
    /// Batches handed out and not yet committed, by number: what a failed worker loses.
    taken: BTreeMap<u64, Vec<E>>,
}

impl<E> Book<E> {
    fn note(&mut self, note: Note) {
        match note {
            Note::Done {
                rank,
                batch,
                committed,
            } => {
                if let Some(b) = self.taken.remove(&batch) {
                    self.events_done[rank] += b.len() as u64;
                }
                self.committed[rank] = self.committed[rank].max(committed);
            }
            Note::Finished {
                rank,
                pid,
                committed,
            } => {
                self.committed[rank] = self.committed[rank].max(committed);
                if self.state[rank] == State::Running {
                    self.state[rank] = State::Finished(pid);
                }
            }
        }
    }
}

/// The events, numbered in batches of `size`.
struct Batches<I> {
    events: I,
    size: usize,
    next: u64,
}

impl<E, I: Iterator<Item = E>> Iterator for Batches<I> {
    type Item = Batch<E>;

    fn next(&mut self) -> Option<Batch<E>> {
        let batch: Vec<E> = self.events.by_ref().take(self.size).collect();
        if batch.is_empty() {
            return None;
        }
        self.next += 1;
        Some((self.next - 1, batch))
    }
}

/// One worker, in its forked child: enter its directory, run the hook, process batches until the
/// queue retires, report, and wait to be sampled.
fn worker<E, F>(
    mut ctx: WorkerCtx,
    after: Option<AfterFork>,
    work: &F,
    queue: Reader<Batch<E>>,
    note: Writer<Note>,
    released: Reader<()>,
) -> Result<u64, ChannelError>
where
    E: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(&mut WorkerCtx, E) -> io::Result<()>,
{
    let rank = ctx.rank;
    if let Err(e) = std::env::set_current_dir(&ctx.dir) {
        panic!("worker {rank} cannot enter {}: {e}", ctx.dir.display());
    }
    if let Some(hook) = after {
        if let Err(e) = hook(&mut ctx) {
            panic!("worker {rank}: the after_fork hook failed: {e}");
        }
    }
    let mut done = 0;
    for batch in queue {
        let (number, events) = batch?;
        for event in events {
            if let Err(e) = work(&mut ctx, event) {
                panic!("worker {rank}: an event failed: {e}");
            }
            done += 1;
        }
        let committed = commit(&mut ctx);
        note.write(Note::Done {
            rank,
            batch: number,
            committed,
        })?;
    }
    let committed = commit(&mut ctx);
    note.write(Note::Finished {
        rank,
        pid: std::process::id(),
        committed,
    })?;
    // The parent reads every worker's memory now, and then retires this channel.
    match released.read() {
        Ok(()) | Err(ChannelError::Retired) => Ok(done),
        Err(e) => Err(e),
    }
}

fn commit(ctx: &mut WorkerCtx) -> u64 {
    match ctx.commit() {
        Ok(c) => c,
        Err(e) => panic!(
            "worker {} cannot write its output {}: {e}",
            ctx.rank,
            ctx.dir.display()
        ),
    }
}
