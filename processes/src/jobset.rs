//! A fresh program per job: [`exec_workers`] makes a farm's workers by re-executing the program, and [`JobSet`] is gem5's suite-of-simulations pattern.
//!
//! gem5's multiprocessing wrapper runs a suite of simulations, each in a *fresh* process (the
//! simulator has process-global state, so one process runs one simulation: Python's
//! `maxtasksperchild=1`), started by re-executing the simulator binary; at most K at a time; each
//! job with an ID, its own output directory and its own stdout/stderr files; results back to the
//! parent by ID; the same program lists its jobs or runs one by ID. [`JobSet`] is that program:
//! a core [`Farm`](crate::Farm) with `max_tasks_per_child(1)` and [`exec_workers`].

use crate::{ExecOptions, Farm, FarmRun, Outcome, Process, Registry, WorkerEnds, exec};
use cspnet_core::{FarmError, FarmReport, JobContext};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A worker maker for [`Farm::with_workers`](cspnet_core::Farm::with_workers): each worker
/// re-executes this program and runs the function registered (with [`Registry::register`]) as
/// `func`, which takes its [`WorkerEnds`] and calls [`WorkerEnds::serve`](cspnet_core::WorkerEnds::serve).
///
/// The worker's working directory is the directory of the first job it runs (when the farm has an
/// [output directory](cspnet_core::Farm::output_dir)), its stdout and stderr are the files
/// `stdout.txt` and `stderr.txt` there, its environment has `CSPNET_JOB_ID` (and `CSPNET_JOB_DIR`)
/// of that job, and its command line ends with `--job <id>` (for `ps`; [`Registry::init`] runs the
/// worker before the program parses anything). With
/// [`max_tasks_per_child(1)`](cspnet_core::Farm::max_tasks_per_child) that makes every job a
/// fresh program in its own directory with its own output files.
///
/// ```no_run
/// use cspnet_processes::{Farm, Outcome, Registry, WorkerEnds, exec_workers};
///
/// fn simulate(steps: u64, _: &cspnet_core::JobContext) -> u64 {
///     (0..steps).map(|i| i % 7).sum()
/// }
/// fn worker(ends: WorkerEnds<u64, u64>) -> Outcome<u64> {
///     ends.serve(simulate)
/// }
///
/// fn main() {
///     Registry::new().register("worker", worker).init();
///     let farm = Farm::<u64, u64>::with_workers(exec_workers("worker"))
///         .workers(2)
///         .max_tasks_per_child(1)
///         .output_dir("runs");
///     let report = farm.run([("short", 1_000), ("long", 1_000_000)]).unwrap();
///     assert_eq!(report.results.len(), 2);
/// }
/// ```
pub fn exec_workers<J, R>(
    func: &str,
) -> impl Fn(WorkerEnds<J, R>, &JobContext) -> Process<u64> + Send + Sync + 'static
where
    J: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    let func = func.to_owned();
    move |ends, first| {
        let mut p = exec::<_, u64>(&func, ends)
            .arg("--job")
            .arg(first.id())
            .env("CSPNET_JOB_ID", first.id());
        if let Some(dir) = first.dir() {
            p = p.current_dir(dir).env("CSPNET_JOB_DIR", dir);
            // A file that cannot be made leaves the parent's stream: the job still runs.
            if let Ok(out) = File::create(dir.join("stdout.txt")) {
                p = p.stdout(out);
            }
            if let Ok(err) = File::create(dir.join("stderr.txt")) {
                p = p.stderr(err);
            }
        }
        p
    }
}

/// What a [`JobSet`] job returns: a line that says how it went, or why it failed.
pub type JobOutput = Result<String, String>;

type JobFn = Arc<dyn Fn(&JobContext) -> JobOutput + Send + Sync>;

/// The job table of the program's [`JobSet`], for the re-executed workers to find.
static TABLE: OnceLock<Vec<(String, JobFn)>> = OnceLock::new();

/// The name the job set's worker function is registered under.
const WORKER: &str = "cspnet-jobset-worker";

/// The worker function of every job set: runs the jobs it is given by ID from the program's table.
fn jobset_worker(ends: WorkerEnds<String, JobOutput>) -> Outcome<u64> {
    let table = TABLE.get();
    ends.serve(
        |id, ctx| match table.and_then(|t| t.iter().find(|(name, _)| *name == id)) {
            Some((_, job)) => job(ctx),
            None => Err(format!("no job '{id}' in this program's job set")),
        },
    )
}

/// Why a [`JobSet`] could not do what was asked.
///
/// ```
/// let set = cspnet_processes::JobSet::new("sims").job("a", |_| Ok("done".into()));
/// let err = set.run_one("b", None).unwrap_err();
/// assert_eq!(err.to_string(), "no job 'b' in sims (--list shows its 1 jobs)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobSetError {
    /// An ID that is not in the set.
    #[error("no job '{id}' in {set} (--list shows its {known} jobs)")]
    UnknownJob {
        /// The ID asked for.
        id: String,
        /// The set's name.
        set: String,
        /// How many jobs it has.
        known: usize,
    },
    /// Two jobs with one ID.
    #[error("two jobs of {set} have the ID '{id}'")]
    DuplicateJob {
        /// The ID.
        id: String,
        /// The set's name.
        set: String,
    },
    /// [`JobSet::start`] before [`JobSet::init`]: a re-executed worker would find no jobs.
    #[error("JobSet::init must run (first thing in main) before jobs run in fresh processes")]
    NotInitialised,
    /// A second job set in one program.
    #[error("a program has one job set; '{0}' came second")]
    SecondSet(String),
    /// The farm refused the jobs (a bad ID, an output directory that cannot be made).
    #[error(transparent)]
    Farm(#[from] FarmError),
}

/// How a [`JobSet`] program was asked to run, from its command line (a clap `Args`, so a program
/// with flags of its own can flatten it into its parser).
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     set: cspnet_processes::JobSetArgs,
/// }
/// let cli = Cli::parse_from(["sims", "-j", "3", "--out", "runs"]);
/// assert_eq!((cli.set.jobs, cli.set.out.to_str()), (Some(3), Some("runs")));
/// ```
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JobSetArgs {
    /// List the job IDs and exit.
    #[arg(long, conflicts_with = "job")]
    pub list: bool,
    /// Run only this job, in this process.
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,
    /// Run at most K jobs at a time (default: one per core).
    #[arg(short = 'j', long = "jobs", value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Where each job's directory goes.
    #[arg(long, value_name = "DIR", default_value = "jobs-out")]
    pub out: PathBuf,
}

/// A set of named jobs that one program runs all of (each in a fresh process, K at a time), lists,
/// or runs one of by ID: gem5's suite of simulations.
///
/// Build it first thing in `main` and call [`main`](Self::main) (or [`init`](Self::init) and then
/// your own handling): in a re-executed worker that runs the requested job and exits. The program
/// then takes `--list`, `--job ID`, `-j K` and `--out DIR`; run with none, it runs every job in a
/// fresh copy of itself, at most K at a time, each in `DIR/<id>` with its own `stdout.txt` and
/// `stderr.txt`, and prints each result by ID.
///
/// ```no_run
/// use cspnet_processes::JobSet;
///
/// fn main() {
///     let mut set = JobSet::new("sims");
///     for size in [10u64, 20, 40] {
///         set = set.job(&format!("sum-{size}"), move |ctx| {
///             let total: u64 = (0..size).sum();
///             std::fs::write(ctx.dir().unwrap().join("total"), total.to_string())
///                 .map_err(|e| e.to_string())?;
///             Ok(format!("sum {total}"))
///         });
///     }
///     set.main(); // `sims --list`, `sims --job sum-10`, `sims -j 2 --out runs`
/// }
/// ```
#[derive(Clone)]
pub struct JobSet {
    name: String,
    jobs: Vec<(String, JobFn)>,
}

impl std::fmt::Debug for JobSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSet")
            .field("name", &self.name)
            .field("jobs", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

impl JobSet {
    /// An empty set called `name` (the program's name in its `--help` and summary).
    ///
    /// ```
    /// assert_eq!(cspnet_processes::JobSet::new("sims").ids().count(), 0);
    /// ```
    pub fn new(name: &str) -> Self {
        JobSet {
            name: name.to_owned(),
            jobs: Vec::new(),
        }
    }

    /// Adds the job `id`. It gets a [`JobContext`] (its ID, its directory) and returns a line
    /// saying how it went, or why it failed; a panic is a failure too.
    ///
    /// ```
    /// let set = cspnet_processes::JobSet::new("sims").job("a", |ctx| Ok(format!("ran {}", ctx.id())));
    /// assert_eq!(set.run_one("a", None).unwrap(), Ok("ran a".to_string()));
    /// ```
    pub fn job<F>(mut self, id: &str, f: F) -> Self
    where
        F: Fn(&JobContext) -> JobOutput + Send + Sync + 'static,
    {
        self.jobs.push((id.to_owned(), Arc::new(f)));
        self
    }

    /// The job IDs, in the order added.
    ///
    /// ```
    /// let set = cspnet_processes::JobSet::new("s").job("a", |_| Ok(String::new())).job("b", |_| Ok(String::new()));
    /// assert_eq!(set.ids().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.jobs.iter().map(|(id, _)| id.as_str())
    }

    /// Checks the IDs (distinct, and each usable as a directory name), makes the set the
    /// program's, and registers its worker: in a re-executed worker this runs the job it is
    /// given and exits; anywhere else it returns. Call it first thing in `main` (or call
    /// [`main`](Self::main), which does).
    ///
    /// ```
    /// use cspnet_processes::JobSet;
    /// let bad = JobSet::new("doc-bad").job("a/b", |_| Ok(String::new()));
    /// assert_eq!(bad.init().unwrap_err().to_string(), "the job ID \"a/b\" cannot name a directory");
    /// let twice = JobSet::new("doc-twice").job("a", |_| Ok(String::new())).job("a", |_| Ok(String::new()));
    /// assert_eq!(twice.init().unwrap_err().to_string(), "two jobs of doc-twice have the ID 'a'");
    /// let set = JobSet::new("doc-init").job("a", |_| Ok(String::new()));
    /// set.init().unwrap(); // not a worker: returns
    /// ```
    pub fn init(&self) -> Result<(), JobSetError> {
        let mut seen = BTreeSet::new();
        for id in self.ids() {
            // Each job gets the directory `<out>/<id>`.
            if id.is_empty() || id == "." || id == ".." || id.contains(['/', '\0']) {
                return Err(FarmError::BadId(id.to_owned()).into());
            }
            if !seen.insert(id) {
                return Err(JobSetError::DuplicateJob {
                    id: id.to_owned(),
                    set: self.name.clone(),
                });
            }
        }
        if TABLE.set(self.jobs.clone()).is_err() {
            return Err(JobSetError::SecondSet(self.name.clone()));
        }
        Registry::new().register(WORKER, jobset_worker).init();
        Ok(())
    }

    /// Starts the jobs `only` (every job for `None`), each in a fresh copy of the program, at
    /// most `workers` at a time, each in `out/<id>`; results stream back as they finish.
    ///
    /// ```no_run
    /// let set = cspnet_processes::JobSet::new("sims").job("a", |_| Ok("ok".into()));
    /// set.init().unwrap();
    /// for r in set.start(None, 2, "runs".as_ref()).unwrap() {
    ///     println!("{}: {:?}", r.id, r.outcome);
    /// }
    /// ```
    pub fn start(
        &self,
        only: Option<&[&str]>,
        workers: usize,
        out: &Path,
    ) -> Result<FarmRun<String, JobOutput>, JobSetError> {
        if TABLE.get().is_none() {
            return Err(JobSetError::NotInitialised);
        }
        let ids: Vec<String> = match only {
            None => self.ids().map(str::to_owned).collect(),
            Some(only) => {
                for id in only {
                    self.find(id)?;
                }
                only.iter().map(|s| (*s).to_owned()).collect()
            }
        };
        let farm = Farm::with_workers(exec_workers(WORKER))
            .workers(workers)
            .max_tasks_per_child(1)
            .output_dir(out)
            .progress(true)
            .named(&self.name);
        Ok(farm.start(ids.into_iter().map(|id| (id.clone(), id)))?)
    }

    /// Runs the jobs `only` (every job for `None`) as [`start`](Self::start) does and collects
    /// the results by ID.
    ///
    /// ```no_run
    /// let set = cspnet_processes::JobSet::new("sims").job("a", |_| Ok("ok".into()));
    /// set.init().unwrap();
    /// let report = set.run(None, 2, "runs".as_ref()).unwrap();
    /// assert_eq!(report.results["a"], Ok("ok".to_string()));
    /// ```
    pub fn run(
        &self,
        only: Option<&[&str]>,
        workers: usize,
        out: &Path,
    ) -> Result<FarmReport<JobOutput>, JobSetError> {
        Ok(self.start(only, workers, out)?.collect())
    }

    /// Runs job `id` here, in this process, in `out/<id>` (made if need be) or in the working
    /// directory for `None`.
    ///
    /// ```
    /// let set = cspnet_processes::JobSet::new("s").job("a", |_| Err("no input".into()));
    /// assert_eq!(set.run_one("a", None).unwrap(), Err("no input".to_string()));
    /// ```
    pub fn run_one(&self, id: &str, out: Option<&Path>) -> Result<JobOutput, JobSetError> {
        let job = self.find(id)?;
        let dir = match out {
            Some(out) => {
                let dir = out.join(id);
                std::fs::create_dir_all(&dir).map_err(|source| FarmError::OutputDir {
                    path: dir.clone(),
                    source,
                })?;
                Some(dir)
            }
            None => None,
        };
        Ok(job(&JobContext::new(id, 1, dir)))
    }

    fn find(&self, id: &str) -> Result<&JobFn, JobSetError> {
        self.jobs
            .iter()
            .find(|(name, _)| name == id)
            .map(|(_, f)| f)
            .ok_or_else(|| JobSetError::UnknownJob {
                id: id.to_owned(),
                set: self.name.clone(),
                known: self.jobs.len(),
            })
    }

    /// Does what `args` asks: lists the jobs, runs one here, or runs them all in fresh processes
    /// and prints each result by ID and a summary line. Returns the exit code: 0 if every job
    /// ran, 1 if one failed, 2 for an unknown ID or bad settings.
    ///
    /// ```no_run
    /// let set = cspnet_processes::JobSet::new("sims").job("a", |_| Ok("ok".into()));
    /// set.init().unwrap();
    /// let code = set.execute(&cspnet_processes::JobSetArgs { list: true, ..Default::default() });
    /// assert_eq!(code, 0);
    /// ```
    pub fn execute(&self, args: &JobSetArgs) -> i32 {
        if args.list {
            for id in self.ids() {
                println!("{id}");
            }
            return 0;
        }
        if let Some(id) = &args.job {
            return match self.run_one(id, Some(&args.out)) {
                Ok(Ok(line)) => {
                    println!("{id}: {line}");
                    0
                }
                Ok(Err(why)) => {
                    eprintln!("{id}: failed: {why}");
                    1
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    2
                }
            };
        }
        let workers = args.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |k| k as usize,
        );
        let report = match self.run(None, workers, &args.out) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let mut failed = report.failures.len();
        for (id, r) in &report.results {
            match r {
                Ok(line) => println!("  {id}: {line}"),
                Err(why) => {
                    failed += 1;
                    println!("  {id}: FAILED: {why}");
                }
            }
        }
        for f in report.failures.values() {
            println!("  {}: FAILED: {f}", f.id);
        }
        println!(
            "{}: {} jobs on {} workers, {} done, {} failed, each in {}/<id>",
            self.name,
            self.jobs.len(),
            workers,
            self.jobs.len() - failed,
            failed,
            args.out.display()
        );
        i32::from(failed > 0)
    }

    /// The whole program: [`init`](Self::init) (a re-executed worker runs its job and exits
    /// here), then the command line (`--list`, `--job ID`, `-j K`, `--out DIR`, `--help`), then
    /// [`execute`](Self::execute); exits with its code.
    ///
    /// ```no_run
    /// // First thing in `main`:
    /// cspnet_processes::JobSet::new("sims").job("a", |_| Ok("ok".into())).main();
    /// ```
    pub fn main(self) -> ! {
        use clap::{Args, FromArgMatches};
        if let Err(e) = self.init() {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        let about = format!(
            "Runs the {} jobs of {}, each in a fresh process, at most K at a time",
            self.jobs.len(),
            self.name
        );
        // clap's names are `&'static str` (without its `string` feature); this runs once per
        // program, which then exits.
        let name: &'static str = Box::leak(self.name.clone().into_boxed_str());
        // After augment_args, which would otherwise give the program JobSetArgs' own doc comment.
        let cmd = JobSetArgs::augment_args(clap::Command::new(name))
            .about(about)
            .long_about(None::<&str>);
        let args = JobSetArgs::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
        std::process::exit(self.execute(&args));
    }
}
