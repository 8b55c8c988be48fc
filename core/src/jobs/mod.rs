//! Job graphs: external commands run as OS processes under a dependency graph, caps and priority.
//!
//! The pattern of a regression scheduler such as lowRISC's DVSim: thousands of jobs (compile, run
//! tests, merge coverage), each an external tool run as an OS process, arranged in a dependency
//! graph, scheduled under limits, watched live, and killed cleanly. This layer is built from CSP
//! processes and channels, written once over the backend trait, so it runs on every backend: the
//! caller is the **scheduler** process, **runner** processes (one per job allowed to run at once,
//! under a [`Supervisor`](crate::Supervisor), so a crashed runner fails only its job) each start a
//! job's command and wait for it, and **events** flow on a channel to observers.
//!
//! The network of a run:
//!
//! ```text
//!                 work (one buffered channel per runner: a job's index)
//!   scheduler ───────────────────────────────────────────────▶ runner 1..n ──▶ OS process group
//!      ▲  ▲  ▲                                                    │              (the job's command)
//!      │  │  └──── results: Started { pgid } / Finished { verdict } ◀─┘
//!      │  └─────── exits: a runner that crashed (the runners are supervised)
//!      └────────── shutdown: Stop / Kill (and Ctrl-C, when handled)
//!   scheduler ──▶ events ──▶ observers (the live display, the user's own reader)
//! ```
//!
//! The scheduler writes a runner a job only when the runner is idle, the job's dependencies
//! allow it, it is the highest-priority such job and its resources are below their caps; all it
//! decides is in one loop (`Run::schedule` in `scheduler.rs`), so a reader can follow a run in
//! one place.
//!
//! Users reach it as `cspnet::jobs` (the facade re-exports this module) and name the backend once,
//! on [`Scheduler`]: `Scheduler::<csp::Engine>::new(graph)`.
//!
//! # A tour
//!
//! **The graph.** [`Job`]s name their dependencies: [`Job::needs`] (every one must pass) or
//! [`Job::needs_any`] (once they have all ended, one passing is enough: a coverage merge).
//! [`JobGraph::build`] checks names, finds cycles (and names one), and compiles log patterns once.
//!
//! ```
//! use cspnet_core::jobs::{Job, JobError, JobGraph};
//! let err = JobGraph::new()
//!     .job(Job::shell("build", "true").needs(["merge"]))
//!     .job(Job::shell("test", "true").needs(["build"]))
//!     .job(Job::shell("merge", "true").needs_any(["test"]))
//!     .build()
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "the job graph has a cycle: build -> test -> merge -> build");
//! ```
//!
//! **A run.** A [`Scheduler`] runs at most [`jobs`](Scheduler::jobs) commands at once, each
//! resource under its [cap](Scheduler::resource_cap), the highest [priority](Scheduler::priority)
//! first. A job whose dependency failed is cancelled with the reason; the [`RunReport`] has every
//! job's outcome and prints as a summary table.
//!
//! ```
//! use cspnet_core::jobs::{Job, JobGraph, JobStatus, Scheduler};
//! use cspnet_threads::Threads;
//!
//! let graph = JobGraph::new()
//!     .job(Job::shell("build", "true"))
//!     .jobs((0..4).map(|i| Job::shell(format!("test-{i}"), format!("exit $(({i} % 2))")).needs(["build"])))
//!     .job(Job::shell("merge", "true").needs_any((0..4).map(|i| format!("test-{i}"))))
//!     .job(Job::shell("report", "true").needs(["test-1"]))
//!     .build()
//!     .unwrap();
//! let report = Scheduler::<Threads>::new(graph).jobs(2).run().unwrap();
//! assert_eq!(report.get("test-1").unwrap().status, JobStatus::Failed);
//! assert_eq!(report.get("merge").unwrap().status, JobStatus::Passed); // tests 0 and 2 passed
//! assert_eq!(report.get("report").unwrap().reason.as_deref(), Some("needs 'test-1', which failed"));
//! assert_eq!(report.exit_code(), 1);
//! ```
//!
//! **Commands.** Each attempt runs in its own process group with its own directory,
//! environment and log file ([`Job`]'s builder methods); a time limit kills the whole group
//! (SIGTERM, then SIGKILL after the [grace period](Scheduler::grace)); a fail pattern matching a
//! log line fails the job whatever its exit status, and every pass pattern must match. What a
//! job leaves running in its group when it ends is killed, and a guardian kills every group if
//! the scheduler itself is killed (even by `kill -9`): see `command.rs`.
//!
//! **Observers.** [`Scheduler::events`] sends every [`JobEvent`] to a channel of the caller's;
//! [`Scheduler::display`] shows the run live ([`Display`]: progress bars on a terminal, plain lines
//! otherwise).
//!
//! **Shutdown.** With [`Scheduler::handle_signals`] the first Ctrl-C (or SIGTERM) stops scheduling
//! and lets running jobs finish, the second kills them; [`Scheduler::shutdown_channel`] does the
//! same from a program.
//!
//! Linux only: process groups, `pidfd`, and the guardian's `sh`.

mod command;
mod graph;
mod scheduler;
mod status;

pub use command::Verdict;
pub use graph::{Graph, Job, JobGraph, Needs};
pub use scheduler::{JobBackend, RunnerMsg, Scheduler, Shutdown};
pub use status::{Display, EventKind, JobEvent, JobOutcome, JobStatus, RunReport};

/// Why a job graph could not be built or run.
///
/// ```
/// use cspnet_core::jobs::{Job, JobError, JobGraph};
/// let err = JobGraph::new().job(Job::shell("a", "true").needs(["nope"])).build().unwrap_err();
/// assert_eq!(err, JobError::UnknownDependency { job: "a".into(), needs: "nope".into() });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The dependencies form a cycle; the jobs on it, the first repeated at the end.
    #[error("the job graph has a cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The jobs of the cycle, in order, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A job needs a job that is not in the graph.
    #[error("job '{job}' needs '{needs}', which is not in the graph")]
    UnknownDependency {
        /// The job.
        job: String,
        /// The name it needs.
        needs: String,
    },
    /// Two jobs have the same name.
    #[error("two jobs are called '{0}'")]
    DuplicateJob(String),
    /// A log pattern is not a valid regular expression.
    #[error("job '{job}': pattern '{pattern}' is not a valid regular expression: {error}")]
    BadPattern {
        /// The job.
        job: String,
        /// The pattern.
        pattern: String,
        /// What the regex compiler said.
        error: String,
    },
    /// A job has log patterns but no log file to read them in.
    #[error("job '{0}' has pass or fail patterns but no log file")]
    PatternsWithoutLog(String),
    /// The guardian (which kills every job if the scheduler dies) could not be started.
    #[error("could not start the job guardian (/bin/sh): {0}")]
    Guardian(String),
    /// The signal handlers could not be installed.
    #[error("could not handle SIGINT/SIGTERM: {0}")]
    Signals(String),
    /// A runner or the display could not be started.
    #[error("could not start a process of the scheduler: {0}")]
    Start(String),
    /// A channel of the scheduler's own network failed (it was poisoned).
    #[error("the scheduler's network failed: {0}")]
    Channel(crate::ChannelError),
}
