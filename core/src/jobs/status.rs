//! What a run tells its observers: status events, the live display, and the summary table.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::time::Duration;

/// One change in a job's status, as the scheduler sends it on the events channel.
///
/// ```
/// use cspnet_core::jobs::{EventKind, JobEvent};
/// let e = JobEvent { job: "build".into(), kind: EventKind::Passed, at: std::time::Duration::ZERO };
/// assert_eq!(e.to_string(), "build: passed");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job's name.
    pub job: String,
    /// What happened.
    pub kind: EventKind,
    /// When, since the run started.
    pub at: Duration,
}

/// What happened to a job.
///
/// ```
/// use cspnet_core::jobs::EventKind;
/// assert!(EventKind::Failed { reason: "exit status 1".into() }.is_end());
/// assert!(!EventKind::Started { attempt: 1 }.is_end());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// In the graph, waiting for its dependencies or a free slot.
    Queued,
    /// Its command started (attempt 1, or a retry).
    Started {
        /// Which attempt, from 1.
        attempt: u32,
    },
    /// It passed.
    Passed,
    /// It failed.
    Failed {
        /// Why (exit status, a log line, a timeout).
        reason: String,
    },
    /// It never ran.
    Cancelled {
        /// Why (a dependency failed, scheduling stopped).
        reason: String,
    },
    /// It was killed while running (kill-all on a second interrupt).
    Killed {
        /// Why.
        reason: String,
    },
}

impl EventKind {
    /// Whether this is a job's last event.
    ///
    /// ```
    /// assert!(cspnet_core::jobs::EventKind::Passed.is_end());
    /// ```
    pub fn is_end(&self) -> bool {
        !matches!(self, EventKind::Queued | EventKind::Started { .. })
    }
}

impl fmt::Display for JobEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EventKind::Queued => write!(f, "{}: queued", self.job),
            EventKind::Started { attempt: 1 } => write!(f, "{}: started", self.job),
            EventKind::Started { attempt } => {
                write!(f, "{}: started (attempt {attempt})", self.job)
            }
            EventKind::Passed => write!(f, "{}: passed", self.job),
            EventKind::Failed { reason } => write!(f, "{}: failed: {reason}", self.job),
            EventKind::Cancelled { reason } => write!(f, "{}: cancelled: {reason}", self.job),
            EventKind::Killed { reason } => write!(f, "{}: killed: {reason}", self.job),
        }
    }
}

/// How a job ended.
///
/// ```
/// use cspnet_core::jobs::JobStatus;
/// assert_eq!(JobStatus::Passed.to_string(), "passed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// It passed.
    Passed,
    /// It failed (including a timeout).
    Failed,
    /// It never ran.
    Cancelled,
    /// It was killed while running.
    Killed,
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobStatus::Passed => "passed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Killed => "killed",
        })
    }
}

/// One job's line in the [`RunReport`].
///
/// ```
/// use cspnet_core::jobs::{JobOutcome, JobStatus};
/// let o = JobOutcome { job: "t".into(), status: JobStatus::Passed, reason: None, attempts: 1, duration: Default::default() };
/// assert_eq!(o.status, JobStatus::Passed);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The job's name.
    pub job: String,
    /// How it ended.
    pub status: JobStatus,
    /// Why, unless it passed.
    pub reason: Option<String>,
    /// How many times its command was started.
    pub attempts: u32,
    /// From its first start to its end (zero if it never ran).
    pub duration: Duration,
}

/// What a run did: every job's outcome, in the order the jobs were added.
///
/// ```
/// use cspnet_core::jobs::{JobOutcome, JobStatus, RunReport};
/// let report = RunReport {
///     jobs: vec![JobOutcome { job: "t".into(), status: JobStatus::Failed, reason: Some("exit status 1".into()), attempts: 1, duration: Default::default() }],
///     elapsed: Default::default(),
///     interrupted: false,
/// };
/// assert_eq!(report.exit_code(), 1);
/// assert!(report.to_string().contains("exit status 1"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Every job's outcome.
    pub jobs: Vec<JobOutcome>,
    /// How long the run took.
    pub elapsed: Duration,
    /// Whether scheduling was stopped early (an interrupt, or [`Shutdown`](super::Shutdown)).
    pub interrupted: bool,
}

impl RunReport {
    /// How many jobs ended with `status`.
    ///
    /// ```
    /// use cspnet_core::jobs::{JobStatus, RunReport};
    /// let r = RunReport { jobs: vec![], elapsed: Default::default(), interrupted: false };
    /// assert_eq!(r.count(JobStatus::Passed), 0);
    /// ```
    pub fn count(&self, status: JobStatus) -> usize {
        self.jobs.iter().filter(|j| j.status == status).count()
    }

    /// Whether every job passed (and the run was not interrupted).
    ///
    /// ```
    /// use cspnet_core::jobs::RunReport;
    /// assert!(RunReport { jobs: vec![], elapsed: Default::default(), interrupted: false }.success());
    /// ```
    pub fn success(&self) -> bool {
        !self.interrupted && self.jobs.iter().all(|j| j.status == JobStatus::Passed)
    }

    /// The exit code for a program that ran this: 0 when every job passed, else 1.
    ///
    /// ```
    /// use cspnet_core::jobs::RunReport;
    /// assert_eq!(RunReport { jobs: vec![], elapsed: Default::default(), interrupted: true }.exit_code(), 1);
    /// ```
    pub fn exit_code(&self) -> i32 {
        if self.success() { 0 } else { 1 }
    }

    /// The outcome of the job named `job`.
    ///
    /// ```
    /// use cspnet_core::jobs::RunReport;
    /// assert!(RunReport { jobs: vec![], elapsed: Default::default(), interrupted: false }.get("x").is_none());
    /// ```
    pub fn get(&self, job: &str) -> Option<&JobOutcome> {
        self.jobs.iter().find(|j| j.job == job)
    }

    /// The one-line tally: `20 jobs: 15 passed, 3 failed, 1 cancelled, 1 killed in 2.3s`.
    ///
    /// ```
    /// use cspnet_core::jobs::RunReport;
    /// let r = RunReport { jobs: vec![], elapsed: Default::default(), interrupted: false };
    /// assert_eq!(r.tally(), "0 jobs: 0 passed, 0 failed, 0 cancelled, 0 killed in 0.0s");
    /// ```
    pub fn tally(&self) -> String {
        format!(
            "{} jobs: {} passed, {} failed, {} cancelled, {} killed in {:.1}s",
            self.jobs.len(),
            self.count(JobStatus::Passed),
            self.count(JobStatus::Failed),
            self.count(JobStatus::Cancelled),
            self.count(JobStatus::Killed),
            self.elapsed.as_secs_f64()
        )
    }
}

/// The summary table: one row per job (name, status, attempts, time, reason), then the tally.
impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .jobs
            .iter()
            .map(|j| j.job.len())
            .max()
            .unwrap_or(3)
            .max(3);
        writeln!(
            f,
            "{:<width$}  {:<9}  {:>3}  {:>7}  reason",
            "job", "status", "try", "time"
        )?;
        for j in &self.jobs {
            writeln!(
                f,
                "{:<width$}  {:<9}  {:>3}  {:>6.2}s  {}",
                j.job,
                j.status.to_string(),
                j.attempts,
                j.duration.as_secs_f64(),
                j.reason.as_deref().unwrap_or("")
            )?;
        }
        write!(f, "{}", self.tally())
    }
}

/// The live status display: turns the event stream into progress bars (indicatif's
/// `MultiProgress`: one overall bar, one line per running job) when standard error is a terminal,
/// and into one plain line per finished job otherwise.
///
/// ```
/// use cspnet_core::jobs::{Display, EventKind, JobEvent};
/// let mut display = Display::new(1);
/// display.show(&JobEvent { job: "t".into(), kind: EventKind::Passed, at: Default::default() });
/// display.finish();
/// ```
pub struct Display {
    total: usize,
    done: usize,
    bars: Option<(indicatif::MultiProgress, indicatif::ProgressBar)>,
    running: HashMap<String, indicatif::ProgressBar>,
}

impl Display {
    /// A display for a run of `total` jobs.
    ///
    /// ```
    /// let d = cspnet_core::jobs::Display::new(3);
    /// d.finish();
    /// ```
    pub fn new(total: usize) -> Display {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = indicatif::MultiProgress::new();
            let overall = multi.add(indicatif::ProgressBar::new(total as u64));
            overall.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} jobs {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            (multi, overall)
        });
        Display {
            total,
            done: 0,
            bars,
            running: HashMap::new(),
        }
    }

    /// Shows one event.
    ///
    /// ```
    /// use cspnet_core::jobs::{Display, EventKind, JobEvent};
    /// let mut d = Display::new(1);
    /// d.show(&JobEvent { job: "t".into(), kind: EventKind::Started { attempt: 1 }, at: Default::default() });
    /// d.finish();
    /// ```
    pub fn show(&mut self, event: &JobEvent) {
        if event.kind.is_end() {
            self.done += 1;
        }
        match &mut self.bars {
            None => {
                if event.kind.is_end() {
                    eprintln!("[{:>5}/{}] {event}", self.done, self.total);
                }
            }
            Some((multi, overall)) => match &event.kind {
                EventKind::Queued => {}
                EventKind::Started { .. } => {
                    let bar = multi.add(indicatif::ProgressBar::new_spinner());
                    bar.set_message(event.to_string());
                    if let Some(old) = self.running.insert(event.job.clone(), bar) {
                        old.finish_and_clear();
                    }
                }
                _ => {
                    if let Some(bar) = self.running.remove(&event.job) {
                        bar.finish_and_clear();
                    }
                    if !matches!(event.kind, EventKind::Passed) {
                        let _ = multi.println(event.to_string());
                    }
                    overall.inc(1);
                }
            },
        }
    }

    /// Clears the bars.
    ///
    /// ```
    /// cspnet_core::jobs::Display::new(0).finish();
    /// ```
    pub fn finish(self) {
        if let Some((_, overall)) = &self.bars {
            for bar in self.running.values() {
                bar.finish_and_clear();
            }
            overall.finish_and_clear();
        }
    }
}

impl fmt::Debug for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Display")
            .field("total", &self.total)
            .field("done", &self.done)
            .field("terminal", &self.bars.is_some())
            .finish()
    }
}
