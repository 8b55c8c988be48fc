//! Farms, written once over [`Carries`]: W worker processes take jobs by ID and send back results as they finish.
//!
//! A [`Farm`] is a small CSP network a reader can follow:
//!
//! - the **dispatcher** is the process that runs the farm (its loop is [`FarmRun`]'s `next`). It
//!   knows which jobs each worker holds, hands a job to an idle worker over that worker's own
//!   channel (with one slot: while many jobs wait, a busy worker holds its next one there, so it
//!   never waits for the dispatcher), and waits in one [`Alternation`] on the results channel and on its
//!   [`Supervisor`]'s exits;
//! - each **worker** is a CSP process started under that supervisor ([`WorkerEnds::serve`]): it
//!   reads a job, runs the job function, writes `(worker, result)` to the shared results channel,
//!   and ends after `max_tasks_per_child` jobs (the farm then starts a fresh one);
//! - a worker that panics, crashes or is killed reaches the dispatcher as an [`Exit`]; the job it
//!   held is reported as a [`JobFailure`] naming the job and the cause (or tried again, up to
//!   [`Farm::retries`]), its channels retire rather than poison, so no other job's result is lost,
//!   and a fresh worker takes its place while jobs remain.
//!
//! How a worker process is made is pluggable ([`Farm::with_workers`]): the default forks (or
//! starts a thread or coroutine) from the job function; the processes backend supplies one that
//! re-executes the program, so each job can run in a fresh program with its own directory and
//! stdout/stderr files.

use crate::backend::Carries;
use crate::channel::{Reader, Writer};
use crate::context::ProcessId;
use crate::error::{Cause, ChannelError, Outcome};
use crate::process::{Process, process};
use crate::supervise::{Exit, Supervisor};
use crate::{Alternation, Channel};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The payloads a farm's channels carry, as one bound: `B: CarriesFarm<J, R>` for a farm of jobs
/// `J` with results `R` on the backend `B`.
///
/// ```
/// use cspnet_core::{CarriesFarm, Farm};
/// fn squares<B: CarriesFarm<u64, u64>>() -> u64 {
///     let report = Farm::<B, u64, u64>::new(|n, _| n * n).run((1..=3u64).map(|n| (n.to_string(), n))).unwrap();
///     report.results.values().sum()
/// }
/// assert_eq!(squares::<cspnet_threads::Threads>(), 14);
/// ```
pub trait CarriesFarm<J, R>:
    Carries<(JobContext, J)> + Carries<(u64, R)> + Carries<u64> + Carries<Exit<u64>>
{
}

impl<B, J, R> CarriesFarm<J, R> for B where
    B: Carries<(JobContext, J)> + Carries<(u64, R)> + Carries<u64> + Carries<Exit<u64>>
{
}

/// What a job knows about itself: its ID, which attempt this is, and its own directory (when the
/// farm has an [output directory](Farm::output_dir)).
///
/// A job on threads or coroutines shares its process's working directory with every other job,
/// so it writes into [`dir`](Self::dir) explicitly (or opens files with [`file`](Self::file));
/// a job run by an exec-made worker on the processes backend also has that directory as its
/// working directory.
///
/// ```
/// let ctx = cspnet_core::JobContext::new("fft-small", 1, None);
/// assert_eq!((ctx.id(), ctx.attempt(), ctx.dir()), ("fft-small", 1, None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    id: String,
    attempt: u32,
    dir: Option<PathBuf>,
}

impl JobContext {
    /// A context for job `id` on its `attempt`-th try (the first is 1), with its directory.
    ///
    /// ```
    /// let ctx = cspnet_core::JobContext::new("a", 2, Some("/tmp/out/a".into()));
    /// assert_eq!(ctx.attempt(), 2);
    /// ```
    pub fn new(id: &str, attempt: u32, dir: Option<PathBuf>) -> Self {
        JobContext {
            id: id.to_owned(),
            attempt,
            dir,
        }
    }

    /// The job's ID.
    ///
    /// ```
    /// assert_eq!(cspnet_core::JobContext::new("a", 1, None).id(), "a");
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which try this is: 1 the first time, 2 after one retry, ...
    ///
    /// ```
    /// assert_eq!(cspnet_core::JobContext::new("a", 1, None).attempt(), 1);
    /// ```
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The job's own directory (`<output dir>/<job id>`, made by the farm), if the farm has an
    /// output directory.
    ///
    /// ```
    /// let ctx = cspnet_core::JobContext::new("a", 1, Some("/tmp/out/a".into()));
    /// assert_eq!(ctx.dir(), Some(std::path::Path::new("/tmp/out/a")));
    /// ```
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Creates (or truncates) the file `name` in the job's directory, or in the working directory
    /// when the job has none.
    ///
    /// ```
    /// use std::io::Write;
    /// let dir = std::env::temp_dir().join(format!("cspnet-ctx-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let ctx = cspnet_core::JobContext::new("a", 1, Some(dir.clone()));
    /// writeln!(ctx.file("stats.txt").unwrap(), "ok").unwrap();
    /// assert_eq!(std::fs::read_to_string(dir.join("stats.txt")).unwrap(), "ok\n");
    /// std::fs::remove_dir_all(dir).unwrap();
    /// ```
    pub fn file(&self, name: &str) -> std::io::Result<std::fs::File> {
        let path = match &self.dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        };
        std::fs::File::create(path)
    }
}

/// A job that did not produce a result: which job, which worker process ran it, and why.
///
/// ```
/// use cspnet_core::{Cause, JobFailure};
/// let f = JobFailure { id: "b".into(), worker: "farm-worker-2".into(), pid: None, cause: Cause::Panicked("bad input".into()) };
/// assert_eq!(f.to_string(), "job 'b' failed: worker 'farm-worker-2' panicked: bad input");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("job '{id}' failed: worker '{worker}' {cause}")]
pub struct JobFailure {
    /// The job's ID.
    pub id: String,
    /// The name of the worker process that held it.
    pub worker: String,
    /// That worker's OS process id, on the processes backend.
    pub pid: Option<u32>,
    /// Why it failed (the last try's cause, after retries).
    pub cause: Cause,
}

/// One finished job, as the farm reports it the moment it finishes: its ID, its result or
/// failure, and how many tries it took.
///
/// ```
/// let r = cspnet_core::JobResult { id: "a".into(), outcome: Ok(4u32), attempts: 1 };
/// assert_eq!(r.outcome, Ok(4));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult<R> {
    /// The job's ID.
    pub id: String,
    /// The job function's result, or why there is none.
    pub outcome: Result<R, JobFailure>,
    /// How many times the job was started (1 unless it was retried).
    pub attempts: u32,
}

/// Everything a farm run produced, by job ID: [`Farm::run`]'s answer.
///
/// ```
/// let report = cspnet_threads::Farm::new(|n: u32, _| n + 1).run([("a", 1), ("b", 2)]).unwrap();
/// assert_eq!(report.results["b"], 3);
/// assert!(report.failures.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmReport<R> {
    /// Each finished job's result, by ID.
    pub results: BTreeMap<String, R>,
    /// Each failed job's failure, by ID.
    pub failures: BTreeMap<String, JobFailure>,
}

/// Sorts results as they come, by ID, into results and failures (how [`Farm::run`] makes its
/// report from [`Farm::start`]'s stream).
///
/// ```
/// use cspnet_core::{FarmReport, JobResult};
/// let report: FarmReport<u32> =
///     [JobResult { id: "a".into(), outcome: Ok(7), attempts: 1 }].into_iter().collect();
/// assert_eq!(report.results["a"], 7);
/// ```
impl<R> FromIterator<JobResult<R>> for FarmReport<R> {
    fn from_iter<I: IntoIterator<Item = JobResult<R>>>(results: I) -> Self {
        let mut report = FarmReport {
            results: BTreeMap::new(),
            failures: BTreeMap::new(),
        };
        for r in results {
            match r.outcome {
                Ok(v) => {
                    report.results.insert(r.id, v);
                }
                Err(f) => {
                    report.failures.insert(r.id, f);
                }
            }
        }
        report
    }
}

/// Why a farm could not start: bad settings or bad jobs, found before any process starts.
///
/// ```
/// let err = cspnet_threads::Farm::new(|n: u32, _| n).workers(0).run([("a", 1)]).unwrap_err();
/// assert_eq!(err.to_string(), "a farm needs at least one worker");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FarmError {
    /// `workers(0)`.
    #[error("a farm needs at least one worker")]
    NoWorkers,
    /// `max_tasks_per_child(0)`.
    #[error("max_tasks_per_child must be at least 1")]
    NoTasksPerChild,
    /// Two jobs share an ID.
    #[error("two jobs have the ID '{0}'")]
    DuplicateId(String),
    /// A job ID that cannot name a directory (empty, `.`, `..`, or containing `/` or a NUL).
    #[error("the job ID {0:?} cannot name a directory")]
    BadId(String),
    /// The output directory or a job's directory could not be made.
    #[error("could not make the directory {path}: {source}")]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
}

/// What a worker process is given: its end of its own job channel, its end of the shared results
/// channel, its key in the dispatcher's table, and how many jobs it may take before it ends.
///
/// It is serializable (where the backend's channel ends are, as on processes), so a worker made
/// by re-executing the program receives it as its argument and calls [`serve`](Self::serve).
///
/// ```
/// use cspnet_threads::{Farm, Threads};
/// // A worker maker that names its workers and runs the job function inside them.
/// let farm = Farm::<u32, u32>::with_workers(|ends: cspnet_core::WorkerEnds<Threads, u32, u32>, ctx| {
///     let name = format!("worker-for-{}", ctx.id());
///     cspnet_threads::process(move || ends.serve(|n, _| n * 2)).named(&name)
/// });
/// assert_eq!(farm.run([("a", 21)]).unwrap().results["a"], 42);
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "B: crate::Mobile<(JobContext, J)> + crate::Mobile<(u64, R)>",
    deserialize = "B: crate::Mobile<(JobContext, J)> + crate::Mobile<(u64, R)>"
))]
pub struct WorkerEnds<B, J, R>
where
    B: Carries<(JobContext, J)> + Carries<(u64, R)>,
{
    /// The worker's own job channel (the dispatcher writes a job when the worker is idle, and
    /// one ahead while many wait).
    pub jobs: Reader<B, (JobContext, J)>,
    /// The results channel every worker shares.
    pub results: Writer<B, (u64, R)>,
    /// The worker's key: it sends it with each result.
    pub key: u64,
    /// The jobs it may take before it ends; `None` for no limit.
    pub max_tasks: Option<u64>,
}

impl<B, J, R> WorkerEnds<B, J, R>
where
    B: Carries<(JobContext, J)> + Carries<(u64, R)>,
{
    /// A worker's loop: reads a job, runs `job` on it, writes the result; ends once it has taken
    /// `max_tasks` jobs or its job channel retires (the farm has no more work). Returns how many
    /// jobs it ran.
    ///
    /// ```
    /// use cspnet_core::{JobContext, WorkerEnds};
    /// use cspnet_threads::{Channel, Threads};
    /// let (jobs, results) = (Channel::<(JobContext, u32)>::with_buffer(1), Channel::<(u64, u32)>::with_buffer(1));
    /// let ends = WorkerEnds::<Threads, u32, u32> { jobs: jobs.reader(), results: results.writer(), key: 7, max_tasks: Some(1) };
    /// jobs.writer().write((JobContext::new("a", 1, None), 5)).unwrap();
    /// assert_eq!(ends.serve(|n, _| n + 1), Ok(1));
    /// assert_eq!(results.reader().read(), Ok((7, 6)));
    /// ```
    pub fn serve(self, job: impl Fn(J, &JobContext) -> R) -> Outcome<u64> {
        let mut done = 0;
        while self.max_tasks.is_none_or(|m| done < m) {
            let (ctx, j) = match self.jobs.read() {
                Ok(next) => next,
                Err(ChannelError::Retired) => break,
                Err(e) => return Err(e),
            };
            let r = job(j, &ctx);
            self.results.write((self.key, r))?;
            done += 1;
        }
        Ok(done)
    }
}

/// How a farm makes a worker process: given the worker's ends and the context of the first job
/// it will run (whose directory an exec-made worker takes as its working directory).
type Maker<B, J, R> = dyn Fn(WorkerEnds<B, J, R>, &JobContext) -> Process<B, u64> + Send + Sync;

/// A farm (a pool) of worker processes: jobs with IDs in, results by ID out as they finish, in any
/// order; a crashed job reported with its ID and cause while every other result arrives.
///
/// Written once over the backend trait, so it runs on threads, processes and coroutines. Settings:
/// [`workers`](Self::workers) (W, default 2), [`max_tasks_per_child`](Self::max_tasks_per_child)
/// (1 = a fresh process per job), [`retries`](Self::retries), [`output_dir`](Self::output_dir) (a
/// directory per job), [`progress`](Self::progress) (a progress bar on standard error).
///
/// ```
/// use cspnet_threads::Farm;
///
/// let farm = Farm::new(|n: u64, _ctx| (1..=n).product::<u64>()).workers(3);
/// let report = farm.run((1..=10u64).map(|n| (format!("fact-{n}"), n))).unwrap();
/// assert_eq!(report.results["fact-5"], 120);
/// assert_eq!(report.results.len(), 10);
/// ```
///
/// Results stream back as they finish with [`start`](Self::start); a job whose worker panics is a
/// failure naming the job, and the others go on:
///
/// ```
/// use cspnet_threads::Farm;
///
/// let farm = Farm::new(|n: u32, _| if n == 3 { panic!("three is unlucky") } else { n * 10 });
/// let mut failed = Vec::new();
/// let mut total = 0;
/// for r in farm.start((1..=5u32).map(|n| (n.to_string(), n))).unwrap() {
///     match r.outcome {
///         Ok(v) => total += v,
///         Err(f) => failed.push(f.id),
///     }
/// }
/// assert_eq!((total, failed), (10 + 20 + 40 + 50, vec!["3".to_string()]));
/// ```
pub struct Farm<B, J, R>
where
    B: CarriesFarm<J, R>,
{
    make: Arc<Maker<B, J, R>>,
    workers: usize,
    max_tasks: Option<u64>,
    retries: u32,
    out: Option<PathBuf>,
    progress: bool,
    name: String,
}

impl<B, J, R> Farm<B, J, R>
where
    B: CarriesFarm<J, R>,
    J: Clone + Send + 'static,
    R: Send + 'static,
{
    /// A farm whose workers run `job` on each job: a closure process per worker (a thread, a
    /// coroutine, or on processes a fork of the running program).
    ///
    /// ```
    /// let farm = cspnet_threads::Farm::new(|s: String, _| s.len());
    /// assert_eq!(farm.run([("x", "four".to_string())]).unwrap().results["x"], 4);
    /// ```
    pub fn new<F>(job: F) -> Self
    where
        F: Fn(J, &JobContext) -> R + Send + Sync + 'static,
    {
        let job = Arc::new(job);
        Self::with_workers(move |ends, _| {
            let job = Arc::clone(&job);
            process(move || ends.serve(|j, ctx| job(j, ctx)))
        })
    }

    /// A farm whose worker processes `make` makes (the processes backend's exec workers, say):
    /// each is given its [`WorkerEnds`] and the first job it will run, and must call
    /// [`WorkerEnds::serve`].
    ///
    /// ```
    /// use cspnet_threads::{Farm, process};
    /// let farm = Farm::<u8, u8>::with_workers(|ends, _| process(move || ends.serve(|n, _| n + 1)));
    /// assert_eq!(farm.run([("a", 1)]).unwrap().results["a"], 2);
    /// ```
    pub fn with_workers<M>(make: M) -> Self
    where
        M: Fn(WorkerEnds<B, J, R>, &JobContext) -> Process<B, u64> + Send + Sync + 'static,
    {
        Farm {
            make: Arc::new(make),
            workers: 2,
            max_tasks: None,
            retries: 0,
            out: None,
            progress: false,
            name: "farm".into(),
        }
    }

    /// How many workers run at once (default 2); 0 is an error when the farm starts.
    ///
    /// ```
    /// let farm = cspnet_threads::Farm::new(|n: u8, _| n).workers(4);
    /// assert_eq!(farm.run([("a", 1)]).unwrap().results.len(), 1);
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// How many jobs a worker process runs before it ends and a fresh one takes its place
    /// (Python's `maxtasksperchild`); 1 runs every job in a fresh process. Default: no limit.
    ///
    /// ```
    /// use cspnet_threads::{Farm, current_process_id};
    /// let farm = Farm::new(|_: u8, _| current_process_id()).max_tasks_per_child(1);
    /// let report = farm.run([("a", 1), ("b", 2)]).unwrap();
    /// assert_ne!(report.results["a"], report.results["b"]);
    /// ```
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// How many times a job whose worker failed is tried again, in a fresh worker (default 0).
    ///
    /// ```
    /// let farm = cspnet_threads::Farm::new(|n: u8, ctx| if ctx.attempt() < 2 { panic!("flaky") } else { n })
    ///     .retries(1);
    /// let report = farm.run([("a", 5)]).unwrap();
    /// assert_eq!(report.results["a"], 5);
    /// ```
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Gives each job its own directory, `dir/<job id>`, made before the job starts (job IDs must
    /// then be usable as directory names).
    ///
    /// ```
    /// let out = std::env::temp_dir().join(format!("cspnet-farm-doc-{}", std::process::id()));
    /// let farm = cspnet_threads::Farm::new(|_: u8, ctx| ctx.dir().unwrap().is_dir()).output_dir(&out);
    /// assert!(farm.run([("a", 1)]).unwrap().results["a"]);
    /// std::fs::remove_dir_all(out).unwrap();
    /// ```
    pub fn output_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.out = Some(dir.as_ref().to_owned());
        self
    }

    /// Shows a progress bar on standard error (done, failed and running jobs, and an estimate of
    /// the time left) while it is a terminal (hidden when it is not), and prints one summary line
    /// there at the end either way. Default: off.
    ///
    /// ```
    /// let farm = cspnet_threads::Farm::new(|n: u8, _| n).progress(true).named("doc");
    /// assert_eq!(farm.run([("a", 1)]).unwrap().results["a"], 1);
    /// ```
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Names the farm: its workers are `<name>-worker-<n>`, and the progress bar says it.
    ///
    /// ```
    /// let farm = cspnet_threads::Farm::new(|n: u8, _| -> u8 { panic!("no") }).named("sims");
    /// let report = farm.run([("a", 1)]).unwrap();
    /// assert!(report.failures["a"].worker.starts_with("sims-worker-"));
    /// ```
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Starts the farm on `jobs` (each an ID and its input) and returns the iterator of results
    /// as they finish. The dispatcher runs inside the iterator: it hands out jobs while it is
    /// read. Dropping it early stops handing out jobs and waits for the running ones.
    ///
    /// ```
    /// let farm = cspnet_threads::Farm::new(|n: u32, _| n * n);
    /// let mut got: Vec<(String, u32)> = farm
    ///     .start([("a", 2), ("b", 3)])
    ///     .unwrap()
    ///     .map(|r| (r.id, r.outcome.unwrap()))
    ///     .collect();
    /// got.sort();
    /// assert_eq!(got, [("a".to_string(), 4), ("b".to_string(), 9)]);
    /// ```
    pub fn start<I, S>(&self, jobs: I) -> Result<FarmRun<B, J, R>, FarmError>
    where
        I: IntoIterator<Item = (S, J)>,
        S: Into<String>,
    {
        if self.workers == 0 {
            return Err(FarmError::NoWorkers);
        }
        if self.max_tasks == Some(0) {
            return Err(FarmError::NoTasksPerChild);
        }
        let mut seen = HashSet::new();
        let mut queue = VecDeque::new();
        for (id, job) in jobs {
            let id: String = id.into();
            if self.out.is_some() && !usable_as_dir(&id) {
                return Err(FarmError::BadId(id));
            }
            if !seen.insert(id.clone()) {
                return Err(FarmError::DuplicateId(id));
            }
            queue.push_back(Pending {
                id,
                job,
                attempts: 0,
            });
        }
        if let Some(out) = &self.out {
            std::fs::create_dir_all(out).map_err(|source| FarmError::OutputDir {
                path: out.clone(),
                source,
            })?;
        }
        let total = queue.len() as u64;
        let bar = self.progress.then(|| progress_bar(&self.name, total));
        let results = Channel::<B, (u64, R)>::named_with_buffer(
            &format!("{}-results", self.name),
            self.workers,
        );
        Ok(FarmRun {
            make: Arc::clone(&self.make),
            max_workers: self.workers,
            max_tasks: self.max_tasks,
            retries: self.retries,
            out: self.out.clone(),
            name: self.name.clone(),
            results_r: results.reader(),
            results: results.writer(),
            queue,
            workers: Vec::new(),
            sup: Supervisor::new(),
            ready: VecDeque::new(),
            next_key: 0,
            done: 0,
            failed: 0,
            total,
            bar,
            started: Instant::now(),
            summarised: false,
        })
    }

    /// Runs every job and collects the results and failures by ID.
    ///
    /// ```
    /// let farm = cspnet_threads::Farm::new(|n: u32, _| n + 1).workers(2);
    /// let report = farm.run((0..20u32).map(|n| (format!("{n:02}"), n))).unwrap();
    /// assert_eq!(report.results.len(), 20);
    /// assert_eq!(report.results["07"], 8);
    /// ```
    pub fn run<I, S>(&self, jobs: I) -> Result<FarmReport<R>, FarmError>
    where
        I: IntoIterator<Item = (S, J)>,
        S: Into<String>,
    {
        Ok(self.start(jobs)?.collect())
    }
}

impl<B: CarriesFarm<J, R>, J, R> fmt::Debug for Farm<B, J, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Farm")
            .field("backend", &<B as crate::Backend>::NAME)
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("max_tasks_per_child", &self.max_tasks)
            .field("retries", &self.retries)
            .field("output_dir", &self.out)
            .finish()
    }
}

/// Whether `id` can name a directory of its own under the output directory.
fn usable_as_dir(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\0'])
}

fn progress_bar(name: &str, total: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    let style = ProgressStyle::with_template("{prefix} [{bar:20}] {pos}/{len} {msg}, ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(name.to_owned());
    bar.set_message("starting");
    bar
}

/// A job waiting for a worker, or held by one.
struct Pending<J> {
    id: String,
    job: J,
    /// Tries so far.
    attempts: u32,
}

/// One worker process as the dispatcher sees it.
struct Worker<B: Carries<(JobContext, J)>, J> {
    key: u64,
    pid: ProcessId,
    name: String,
    os_pid: Option<u32>,
    /// Its job channel; `None` once a write to it failed (the worker is gone).
    jobs: Option<Writer<B, (JobContext, J)>>,
    /// The job it is running, then the one waiting in its channel's buffer (see [`PREFETCH`]).
    holding: VecDeque<Pending<J>>,
    /// Jobs it has been given.
    given: u64,
}

/// While more than this many jobs per worker wait, each worker is given a second job to hold in
/// its channel's buffer, so it goes on without waiting for the dispatcher's round trip; near the
/// end of the queue it is not, so no job waits behind a running one while another worker is idle.
const PREFETCH: usize = 2;

/// What the dispatcher's alternation took.
enum Event<R> {
    Result((u64, R)),
    Exit(Exit<u64>),
}

/// A running farm: an iterator over [`JobResult`]s as jobs finish. Its `next` is the dispatcher:
/// it hands jobs to idle workers, starts workers (fresh ones in place of those that ended), and
/// waits for a result or a worker's exit.
///
/// ```
/// let run = cspnet_threads::Farm::new(|n: u8, _| n).start([("a", 1)]).unwrap();
/// assert_eq!(run.count(), 1);
/// ```
pub struct FarmRun<B, J, R>
where
    B: CarriesFarm<J, R>,
{
    make: Arc<Maker<B, J, R>>,
    max_workers: usize,
    max_tasks: Option<u64>,
    retries: u32,
    out: Option<PathBuf>,
    name: String,
    /// Kept to give each new worker a clone, and so that the channel never retires: a worker that
    /// ends (or crashes) while it holds the only other writer would otherwise retire it.
    results: Writer<B, (u64, R)>,
    results_r: Reader<B, (u64, R)>,
    queue: VecDeque<Pending<J>>,
    workers: Vec<Worker<B, J>>,
    sup: Supervisor<B, u64>,
    ready: VecDeque<JobResult<R>>,
    next_key: u64,
    done: u64,
    failed: u64,
    total: u64,
    bar: Option<ProgressBar>,
    started: Instant,
    summarised: bool,
}

impl<B, J, R> FarmRun<B, J, R>
where
    B: CarriesFarm<J, R>,
    J: Clone + Send + 'static,
    R: Send + 'static,
{
    /// How many jobs are running now.
    ///
    /// ```
    /// let mut run = cspnet_threads::Farm::new(|n: u8, _| n).start([("a", 1)]).unwrap();
    /// assert_eq!(run.running(), 0); // nothing is handed out before the first `next`
    /// assert!(run.next().is_some());
    /// ```
    pub fn running(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| !w.holding.is_empty())
            .count()
    }

    /// The OS process id of the worker running job `id`, on the processes backend.
    ///
    /// ```
    /// let run = cspnet_threads::Farm::new(|n: u8, _| n).start([("a", 1)]).unwrap();
    /// assert_eq!(run.pid_of("a"), None);
    /// ```
    pub fn pid_of(&self, id: &str) -> Option<u32> {
        self.workers
            .iter()
            .find(|w| w.holding.front().is_some_and(|p| p.id == id))
            .and_then(|w| w.os_pid)
    }

    fn context(&self, p: &Pending<J>) -> Result<JobContext, std::io::Error> {
        let dir = match &self.out {
            Some(out) => {
                let dir = out.join(&p.id);
                std::fs::create_dir_all(&dir)?;
                Some(dir)
            }
            None => None,
        };
        Ok(JobContext::new(&p.id, p.attempts, dir))
    }

    /// Hands `p` to the worker at `w`; if the worker is gone, it keeps the job, whose failure
    /// its exit then explains.
    fn give(&mut self, w: usize, mut p: Pending<J>) {
        p.attempts += 1;
        let ctx = match self.context(&p) {
            Ok(ctx) => ctx,
            Err(e) => {
                let cause = Cause::CouldNotStart(format!("its directory: {e}"));
                return self.fail_or_retry(p, "", None, cause);
            }
        };
        let worker = &mut self.workers[w];
        worker.given += 1;
        if let Some(jobs) = &worker.jobs
            && jobs.write((ctx, p.job.clone())).is_err()
        {
            worker.jobs = None;
        }
        worker.holding.push_back(p);
    }

    /// Starts a worker for `p` and hands it `p`.
    fn start_worker(&mut self, p: Pending<J>) {
        let key = self.next_key;
        self.next_key += 1;
        // A slot for the job given ahead (see PREFETCH).
        let jobs = Channel::<B, (JobContext, J)>::named_with_buffer(
            &format!("{}-jobs-{key}", self.name),
            1,
        );
        let ends = WorkerEnds {
            jobs: jobs.reader(),
            results: self.results.clone(),
            key,
            max_tasks: self.max_tasks,
        };
        let name = format!("{}-worker-{key}", self.name);
        let first = JobContext::new(
            &p.id,
            p.attempts + 1,
            self.out.as_ref().map(|o| o.join(&p.id)),
        );
        if let Some(dir) = first.dir() {
            // An exec-made worker starts in it, so it must exist before the worker does.
            if let Err(e) = std::fs::create_dir_all(dir) {
                let cause = Cause::CouldNotStart(format!("its directory: {e}"));
                return self.fail_or_retry(p, &name, None, cause);
            }
        }
        let proc = (self.make)(ends, &first).named(&name);
        match self.sup.start(proc) {
            Ok(pid) => {
                let os_pid = self.sup.pid(pid);
                self.workers.push(Worker {
                    key,
                    pid,
                    name,
                    os_pid,
                    jobs: Some(jobs.writer()),
                    holding: VecDeque::new(),
                    given: 0,
                });
                drop(jobs);
                let w = self.workers.len() - 1;
                self.give(w, p);
            }
            Err(f) => {
                let mut p = p;
                p.attempts += 1;
                self.fail_or_retry(p, &name, None, f.cause().clone());
            }
        }
    }

    /// Whether worker `w` can take another job.
    fn can_take(&self, w: &Worker<B, J>) -> bool {
        w.jobs.is_some() && self.max_tasks.is_none_or(|m| w.given < m)
    }

    /// Hands queued jobs to idle workers, starts workers for the rest up to the limit, and,
    /// while plenty wait, gives each busy worker one more to hold.
    fn dispatch(&mut self) {
        self.hand_out(1);
        loop {
            // A worker that has ended its last job is on its way out and does not count.
            let live = self
                .workers
                .iter()
                .filter(|w| !w.holding.is_empty() || self.can_take(w))
                .count();
            if live >= self.max_workers {
                break;
            }
            let Some(p) = self.queue.pop_front() else {
                return;
            };
            self.start_worker(p);
        }
        if self.queue.len() > PREFETCH * self.max_workers {
            self.hand_out(PREFETCH);
        }
    }

    /// Gives a queued job to each worker that holds fewer than `up_to` and can take one.
    fn hand_out(&mut self, up_to: usize) {
        for w in 0..self.workers.len() {
            if self.queue.is_empty() {
                return;
            }
            if self.workers[w].holding.len() < up_to && self.can_take(&self.workers[w]) {
                let p = self.queue.pop_front().expect("not empty");
                self.give(w, p);
            }
        }
    }

    /// Reports `p` as failed, or queues it again if it has tries left.
    fn fail_or_retry(&mut self, p: Pending<J>, worker: &str, pid: Option<u32>, cause: Cause) {
        if p.attempts <= self.retries {
            self.queue.push_front(p);
        } else {
            self.fail(p, worker, pid, cause);
        }
    }

    /// Reports `p` as failed.
    fn fail(&mut self, p: Pending<J>, worker: &str, pid: Option<u32>, cause: Cause) {
        self.failed += 1;
        self.ready.push_back(JobResult {
            outcome: Err(JobFailure {
                id: p.id.clone(),
                worker: worker.to_owned(),
                pid,
                cause,
            }),
            id: p.id,
            attempts: p.attempts,
        });
    }

    fn take_result(&mut self, key: u64, r: R) {
        let Some(w) = self.workers.iter_mut().find(|w| w.key == key) else {
            return;
        };
        if let Some(p) = w.holding.pop_front() {
            self.done += 1;
            self.ready.push_back(JobResult {
                id: p.id,
                outcome: Ok(r),
                attempts: p.attempts,
            });
        }
    }

    fn take_exit(&mut self, exit: Exit<u64>) {
        // A result written before the worker ended is in the channel already: take it first, so
        // a finished job is never blamed for its worker's later end.
        while let Ok(Some((key, r))) = Alternation::new()
            .input(&self.results_r, Some)
            .skip(|| None)
            .pri_select()
        {
            self.take_result(key, r);
        }
        let Some(w) = self.workers.iter().position(|w| w.pid == exit.id) else {
            return;
        };
        let mut worker = self.workers.remove(w);
        // Jobs behind the one it was running never started: they go back to the queue, untried.
        while worker.holding.len() > 1 {
            let mut p = worker.holding.pop_back().expect("more than one");
            p.attempts -= 1;
            self.queue.push_front(p);
        }
        if let Some(p) = worker.holding.pop_front() {
            let cause = match exit.outcome {
                Err(cause) => cause,
                Ok(Ok(_)) => Cause::Crashed("the worker ended without a result".into()),
                Ok(Err(e)) => Cause::Crashed(format!("the worker ended: {e}")),
            };
            self.fail_or_retry(p, &worker.name, exit.pid.or(worker.os_pid), cause);
        }
    }

    fn draw(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.done + self.failed);
            bar.set_message(format!(
                "done {} failed {} running {}",
                self.done,
                self.failed,
                self.running()
            ));
        }
    }

    fn summarise(&mut self) {
        if self.summarised {
            return;
        }
        self.summarised = true;
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            eprintln!(
                "{}: {} jobs, {} done, {} failed in {:.1?}",
                self.name,
                self.total,
                self.done,
                self.failed,
                self.started.elapsed()
            );
        }
    }
}

impl<B, J, R> Iterator for FarmRun<B, J, R>
where
    B: CarriesFarm<J, R>,
    J: Clone + Send + 'static,
    R: Send + 'static,
{
    type Item = JobResult<R>;

    fn next(&mut self) -> Option<JobResult<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                self.draw();
                return Some(r);
            }
            self.dispatch();
            self.draw();
            if !self.ready.is_empty() {
                continue;
            }
            if self.queue.is_empty() && self.running() == 0 {
                // Idle workers see their job channels retire and end.
                self.workers.clear();
                self.summarise();
                return None;
            }
            let event = Alternation::new()
                .input(&self.results_r, Event::Result)
                .input(self.sup.exits(), Event::Exit)
                .pri_select();
            match event {
                Ok(Event::Result((key, r))) => self.take_result(key, r),
                Ok(Event::Exit(exit)) => self.take_exit(exit),
                // The dispatcher holds a writer of both channels, so neither retires; only a
                // worker's deliberate poison gets here, and then no result can come back.
                Err(e) => {
                    for w in std::mem::take(&mut self.workers) {
                        for p in w.holding {
                            let cause = Cause::Crashed(format!("the farm's channels failed: {e}"));
                            self.fail(p, &w.name, w.os_pid, cause);
                        }
                    }
                    let cause = Cause::CouldNotStart(format!("the farm's channels failed: {e}"));
                    while let Some(p) = self.queue.pop_front() {
                        self.fail(p, "", None, cause.clone());
                    }
                }
            }
        }
    }
}

impl<B, J, R> Drop for FarmRun<B, J, R>
where
    B: CarriesFarm<J, R>,
{
    fn drop(&mut self) {
        // Idle workers see their job channel retire and end; busy ones finish their job, write
        // its result into the buffer (a slot per worker) and end. The supervisor, dropped after,
        // waits for them all.
        self.workers.clear();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl<B: CarriesFarm<J, R>, J, R> fmt::Debug for FarmRun<B, J, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FarmRun")
            .field("name", &self.name)
            .field("queued", &self.queue.len())
            .field("workers", &self.workers.len())
            .field("done", &self.done)
            .field("failed", &self.failed)
            .finish()
    }
}
