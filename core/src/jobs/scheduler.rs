//! The scheduler: one CSP process that hands ready jobs to runner processes under caps and priority.
//!
//! The scheduler is the calling process: [`Scheduler::run`] alternates over the runners' results,
//! the supervisor's exits and the shutdown channel, and writes a runner a job only when the
//! runner is idle, the job's dependencies allow it, it is the highest-priority such job and its
//! resources are below their caps. Everything it decides is in this one loop, so a reader can
//! follow a run in one place.

use super::JobError;
use super::command::{self, Guard, Guardian, SignalCount, Verdict};
use super::graph::{Graph, Job, Needs};
use super::status::{Display, EventKind, JobEvent, JobOutcome, JobStatus, RunReport};
use crate::{Alternation, Carries, Channel, Exit, Outcome, ProcessId, Reader, Supervisor, Writer};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a [`Scheduler`]'s shutdown channel asks for (Ctrl-C does the same when handled).
///
/// ```
/// use cspnet_core::jobs::Shutdown;
/// assert_ne!(Shutdown::Stop, Shutdown::Kill);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shutdown {
    /// Start nothing more (jobs not yet started are cancelled); let running jobs finish.
    Stop,
    /// Stop, and kill every running job's process group (SIGTERM, then SIGKILL after the grace
    /// period).
    Kill,
}

/// What a runner tells the scheduler.
///
/// ```
/// use cspnet_core::jobs::{RunnerMsg, Verdict};
/// let m = RunnerMsg::Finished { job: 0, verdict: Verdict::Passed, attempts: 1 };
/// assert!(matches!(m, RunnerMsg::Finished { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RunnerMsg {
    /// The job's command started (its process group is `pgid`).
    Started {
        /// The job's index in the graph.
        job: u32,
        /// Which attempt, from 1.
        attempt: u32,
        /// The command's process group.
        pgid: i32,
    },
    /// The job has ended.
    Finished {
        /// The job's index in the graph.
        job: u32,
        /// How its last attempt ended.
        verdict: Verdict,
        /// How many attempts it took.
        attempts: u32,
    },
}

/// A backend that can run a job graph: it carries the messages of the scheduler's network. Every
/// backend is one; generic code states `B: JobBackend`.
///
/// ```
/// fn runs_jobs<B: cspnet_core::jobs::JobBackend>() {}
/// runs_jobs::<cspnet_threads::Threads>();
/// ```
pub trait JobBackend:
    Carries<u32>
    + Carries<RunnerMsg>
    + Carries<JobEvent>
    + Carries<Shutdown>
    + Carries<()>
    + Carries<Exit<()>>
{
}

impl<B> JobBackend for B where
    B: Carries<u32>
        + Carries<RunnerMsg>
        + Carries<JobEvent>
        + Carries<Shutdown>
        + Carries<()>
        + Carries<Exit<()>>
{
}

/// A function that gives each job its priority.
type Priority = Box<dyn Fn(&Job) -> i64>;

/// Runs a [`Graph`] of jobs: at most [`jobs`](Self::jobs) at a time, each resource under its cap,
/// the highest priority first, dependents of a failed job cancelled with the reason.
///
/// ```no_run
/// use cspnet_core::jobs::{Job, JobGraph, Scheduler};
/// use cspnet_threads::Threads;
///
/// let graph = JobGraph::new()
///     .job(Job::shell("build", "make"))
///     .jobs((0..20).map(|i| Job::new(format!("test-{i}"), "./test").args([i.to_string()]).needs(["build"])))
///     .job(Job::shell("merge", "./merge_coverage").needs_any((0..20).map(|i| format!("test-{i}"))))
///     .build()?;
/// let report = Scheduler::<Threads>::new(graph).jobs(4).display().handle_signals().run()?;
/// println!("{report}");
/// std::process::exit(report.exit_code());
/// # Ok::<(), cspnet_core::jobs::JobError>(())
/// ```
pub struct Scheduler<B: JobBackend> {
    graph: Arc<Graph>,
    jobs: usize,
    caps: HashMap<String, usize>,
    priority: Option<Priority>,
    signals: bool,
    grace: Duration,
    sinks: Vec<Writer<B, JobEvent>>,
    display: bool,
    shutdown: Option<Reader<B, Shutdown>>,
}

impl<B: JobBackend> fmt::Debug for Scheduler<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("backend", &B::NAME)
            .field("jobs", &self.jobs)
            .field("caps", &self.caps)
            .field("graph", &self.graph.len())
            .finish()
    }
}

impl<B: JobBackend> Scheduler<B> {
    /// A scheduler for `graph`, running one job at a time until told otherwise.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph, Scheduler};
    /// let graph = JobGraph::new().job(Job::new("t", "true")).build().unwrap();
    /// let report = Scheduler::<cspnet_threads::Threads>::new(graph).run().unwrap();
    /// assert!(report.success());
    /// ```
    pub fn new(graph: Graph) -> Self {
        Scheduler {
            graph: Arc::new(graph),
            jobs: 1,
            caps: HashMap::new(),
            priority: None,
            signals: false,
            grace: Duration::from_secs(2),
            sinks: Vec::new(),
            display: false,
            shutdown: None,
        }
    }

    /// Runs at most `n` jobs at a time (at least 1): the global parallelism cap, `-j n`.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph, Scheduler};
    /// let graph = JobGraph::new().jobs((0..4).map(|i| Job::new(format!("t{i}"), "true"))).build().unwrap();
    /// assert_eq!(Scheduler::<cspnet_threads::Threads>::new(graph).jobs(2).run().unwrap().jobs.len(), 4);
    /// ```
    pub fn jobs(mut self, n: usize) -> Self {
        self.jobs = n.max(1);
        self
    }

    /// Runs at most `cap` jobs using `resource` at a time (a job uses a resource it names with
    /// [`Job::resource`]); a resource with no cap is unlimited.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph, Scheduler};
    /// let graph = JobGraph::new().jobs((0..3).map(|i| Job::new(format!("t{i}"), "true").resource("license-x"))).build().unwrap();
    /// let report = Scheduler::<cspnet_threads::Threads>::new(graph).jobs(3).resource_cap("license-x", 1).run().unwrap();
    /// assert!(report.success());
    /// ```
    pub fn resource_cap(mut self, resource: impl Into<String>, cap: usize) -> Self {
        self.caps.insert(resource.into(), cap.max(1));
        self
    }

    /// Computes each job's priority (higher starts first among ready jobs; ties in the order
    /// added) instead of taking [`Job::priority`].
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph, Scheduler};
    /// let graph = JobGraph::new().job(Job::new("short", "true")).build().unwrap();
    /// let s = Scheduler::<cspnet_threads::Threads>::new(graph).priority(|job| -(job.name().len() as i64));
    /// assert!(s.run().unwrap().success());
    /// ```
    pub fn priority(mut self, f: impl Fn(&Job) -> i64 + 'static) -> Self {
        self.priority = Some(Box::new(f));
        self
    }

    /// How long a job's process group has between SIGTERM and SIGKILL, on a timeout or a kill
    /// (default 2 s).
    ///
    /// ```
    /// use cspnet_core::jobs::{JobGraph, Scheduler};
    /// let s = Scheduler::<cspnet_threads::Threads>::new(JobGraph::new().build().unwrap())
    ///     .grace(std::time::Duration::from_millis(200));
    /// # let _ = s;
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sends every [`JobEvent`] of the run to `events` as well. Something must read it while the
    /// run goes on (a process of the caller's), or give it a buffer big enough for the whole run
    /// (three events per job, plus one per retry): the scheduler waits for room. The writer is
    /// dropped when the run ends, so a reader's loop ends then.
    ///
    /// ```
    /// use cspnet_core::jobs::{EventKind, Job, JobGraph, Scheduler};
    /// use cspnet_threads::{Channel, Threads};
    /// let events = Channel::<cspnet_core::jobs::JobEvent>::with_buffer(16);
    /// let graph = JobGraph::new().job(Job::new("t", "true")).build().unwrap();
    /// Scheduler::<Threads>::new(graph).events(events.writer()).run().unwrap();
    /// let kinds: Vec<EventKind> = events.reader().into_iter().map(|e| e.unwrap().kind).collect();
    /// assert_eq!(kinds, [EventKind::Queued, EventKind::Started { attempt: 1 }, EventKind::Passed]);
    /// ```
    pub fn events(mut self, events: Writer<B, JobEvent>) -> Self {
        self.sinks.push(events);
        self
    }

    /// Shows the run live on standard error while it goes (a [`Display`] in a process of its
    /// own): progress bars on a terminal, one line per finished job otherwise.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph, Scheduler};
    /// let graph = JobGraph::new().job(Job::new("t", "true")).build().unwrap();
    /// assert!(Scheduler::<cspnet_threads::Threads>::new(graph).display().run().unwrap().success());
    /// ```
    pub fn display(mut self) -> Self {
        self.display = true;
        self
    }

    /// Handles SIGINT and SIGTERM during the run: the first stops scheduling (jobs not started
    /// are cancelled, running jobs finish), the second kills every running job. Signals are
    /// process-wide, so this is opt-in; the handlers are removed when the run ends (they do not
    /// restore the default action, so a program should exit soon after).
    ///
    /// ```no_run
    /// use cspnet_core::jobs::{Job, JobGraph, Scheduler};
    /// let graph = JobGraph::new().job(Job::shell("long", "sleep 60")).build().unwrap();
    /// let report = Scheduler::<cspnet_threads::Threads>::new(graph).handle_signals().run().unwrap();
    /// std::process::exit(report.exit_code());
    /// ```
    pub fn handle_signals(mut self) -> Self {
        self.signals = true;
        self
    }

    /// A channel on which [`Shutdown::Stop`] or [`Shutdown::Kill`] ends the run early, as
    /// Ctrl-C does. Write to it from another process of the caller's while the run goes on.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph, JobStatus, Scheduler, Shutdown};
    /// use cspnet_threads::Threads;
    /// let graph = JobGraph::new()
    ///     .job(Job::new("long", "sleep").args(["30"]))
    ///     .job(Job::new("after", "true").needs(["long"]))
    ///     .build()
    ///     .unwrap();
    /// let mut s = Scheduler::<Threads>::new(graph);
    /// let stop = s.shutdown_channel();
    /// stop.write(Shutdown::Kill).unwrap(); // buffered: taken once `long` has been handed out
    /// let report = s.run().unwrap();
    /// assert_eq!(report.jobs[0].status, JobStatus::Killed);
    /// assert_eq!(report.jobs[1].status, JobStatus::Cancelled);
    /// ```
    pub fn shutdown_channel(&mut self) -> Writer<B, Shutdown> {
        let ch = Channel::<B, Shutdown>::named_with_buffer("job-shutdown", 2);
        self.shutdown = Some(ch.reader());
        ch.writer()
    }

    /// Runs the graph to the end and reports every job's outcome. The caller is the scheduler
    /// process; the runners (one per allowed job, supervised, so a crashed runner fails only its
    /// job and is replaced) and the display are processes of the backend. Fails only if the
    /// run could not be set up (the guardian, the signal handlers, a runner that cannot start) or
    /// a channel of its own was poisoned; every job's process group has been killed and reaped
    /// by the time it returns.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph, JobStatus, Scheduler};
    /// let graph = JobGraph::new()
    ///     .job(Job::new("build", "false"))
    ///     .job(Job::new("test", "true").needs(["build"]))
    ///     .build()
    ///     .unwrap();
    /// let report = Scheduler::<cspnet_threads::Threads>::new(graph).run().unwrap();
    /// assert_eq!(report.jobs[1].status, JobStatus::Cancelled);
    /// assert_eq!(report.jobs[1].reason.as_deref(), Some("needs 'build', which failed"));
    /// assert_eq!(report.exit_code(), 1);
    /// ```
    pub fn run(mut self) -> Result<RunReport, JobError> {
        let guardian = Guardian::start().map_err(|e| JobError::Guardian(e.to_string()))?;
        let signals = if self.signals {
            match SignalCount::register() {
                Ok(s) => Some(s),
                Err(e) => {
                    guardian.finish();
                    return Err(JobError::Signals(e.to_string()));
                }
            }
        } else {
            None
        };
        let mut sup = Supervisor::<B, ()>::new();
        let mut display = None;
        if self.display {
            let ch = Channel::<B, JobEvent>::named_with_buffer("job-display", 256);
            let (r, total) = (ch.reader(), self.graph.len());
            self.sinks.push(ch.writer());
            let shown = crate::process(move || -> Outcome<()> {
                let mut d = Display::new(total);
                for event in r {
                    let event = event?;
                    crate::io::<B, _>(|| d.show(&event));
                }
                crate::io::<B, _>(|| d.finish());
                Ok(())
            })
            .named("job-display");
            display = Some(
                sup.start(shown)
                    .map_err(|f| JobError::Start(f.to_string()))?,
            );
        }
        let mut run = Run::<B>::new(&self, &guardian, signals, display);
        let result = run.schedule(&mut sup);
        // Whatever happened, nothing is left running: every group killed (a no-op after a
        // normal run), every runner told to end, every process of ours joined.
        run.kill_running(libc::SIGKILL);
        let report = run.report();
        drop(run);
        self.sinks.clear();
        while sup.next_exit().is_some() {}
        drop(sup);
        guardian.finish();
        result.map(|()| report)
    }
}

/// Where one job is in the run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Waiting for `left` dependencies (to pass, for `All`; to end, for `Any`).
    Waiting {
        left: usize,
    },
    Ready,
    Running {
        runner: usize,
        pgid: Option<i32>,
    },
    Done,
}

/// One runner process, as the scheduler sees it.
struct Slot<B: JobBackend> {
    id: ProcessId,
    work: Writer<B, u32>,
    job: Option<usize>,
    alive: bool,
}

/// What one turn of the scheduler's alternation took.
enum Turn {
    Runner(RunnerMsg),
    Exit(Exit<()>),
    Shutdown(Shutdown),
    Tick,
}

/// The scheduler's state during one run.
struct Run<'s, B: JobBackend> {
    graph: Arc<Graph>,
    caps: &'s HashMap<String, usize>,
    sinks: &'s [Writer<B, JobEvent>],
    shutdown: Option<&'s Reader<B, Shutdown>>,
    priorities: Vec<i64>,
    guard: Guard,
    grace: Duration,
    signals: Option<SignalCount>,
    display: Option<ProcessId>,
    results: Reader<B, RunnerMsg>,
    results_in: Writer<B, RunnerMsg>,
    start: Instant,
    state: Vec<State>,
    outcomes: Vec<Option<JobOutcome>>,
    first_start: Vec<Option<Instant>>,
    attempts: Vec<u32>,
    /// Whether any dependency of each job has passed (what `Needs::Any` asks).
    some_passed: Vec<bool>,
    ready: BinaryHeap<(i64, Reverse<usize>)>,
    used: HashMap<String, usize>,
    slots: Vec<Slot<B>>,
    wanted: usize,
    unfinished: usize,
    stopping: bool,
    /// When the running jobs were sent SIGTERM, and whether SIGKILL has followed.
    killing: Option<(Instant, bool)>,
    interrupted: bool,
}

impl<'s, B: JobBackend> Run<'s, B> {
    fn new(
        s: &'s Scheduler<B>,
        guardian: &Guardian,
        signals: Option<SignalCount>,
        display: Option<ProcessId>,
    ) -> Self {
        let g = Arc::clone(&s.graph);
        let priorities = g
            .jobs
            .iter()
            .map(|j| s.priority.as_ref().map_or(j.priority, |f| f(j)))
            .collect();
        let results = Channel::<B, RunnerMsg>::named_with_buffer("job-results", 2 * s.jobs);
        let n = g.len();
        Run {
            caps: &s.caps,
            sinks: &s.sinks,
            shutdown: s.shutdown.as_ref(),
            priorities,
            guard: guardian.handle(),
            grace: s.grace,
            signals,
            display,
            results: results.reader(),
            results_in: results.writer(),
            start: Instant::now(),
            state: g
                .deps
                .iter()
                .map(|d| State::Waiting { left: d.len() })
                .collect(),
            outcomes: vec![None; n],
            first_start: vec![None; n],
            attempts: vec![0; n],
            some_passed: vec![false; n],
            ready: BinaryHeap::new(),
            used: HashMap::new(),
            slots: Vec::new(),
            wanted: s.jobs.min(n),
            unfinished: n,
            stopping: false,
            killing: None,
            interrupted: false,
            graph: g,
        }
    }

    fn emit(&self, job: usize, kind: EventKind) {
        let event = JobEvent {
            job: self.graph.jobs[job].name.clone(),
            kind,
            at: self.start.elapsed(),
        };
        for sink in self.sinks {
            // An observer that has gone (or crashed) is not the run's business.
            let _ = sink.write(event.clone());
        }
    }

    /// Starts the runner of slot `i` (again, if it crashed).
    fn start_runner(&mut self, sup: &mut Supervisor<B, ()>, i: usize) -> Result<(), JobError> {
        let work = Channel::<B, u32>::named_with_buffer(&format!("job-work-{i}"), 1);
        let (jobs, results) = (work.reader(), self.results_in.clone());
        let (graph, guard, grace) = (Arc::clone(&self.graph), self.guard, self.grace);
        let p = crate::process(move || runner::<B>(&graph, jobs, results, guard, grace))
            .named(&format!("job-runner-{i}"));
        let id = sup.start(p).map_err(|f| JobError::Start(f.to_string()))?;
        let slot = Slot {
            id,
            work: work.writer(),
            job: None,
            alive: true,
        };
        if i < self.slots.len() {
            self.slots[i] = slot;
        } else {
            self.slots.push(slot);
        }
        Ok(())
    }

    fn schedule(&mut self, sup: &mut Supervisor<B, ()>) -> Result<(), JobError> {
        for i in 0..self.graph.len() {
            self.emit(i, EventKind::Queued);
        }
        for i in 0..self.graph.len() {
            if self.graph.deps[i].is_empty() {
                self.make_ready(i);
            }
        }
        for i in 0..self.wanted {
            self.start_runner(sup, i)?;
        }
        while self.unfinished > 0 {
            self.check_signals();
            if !self.stopping {
                self.dispatch();
            }
            let tick = self.tick();
            let turn = {
                let mut alt = Alternation::<B, Turn>::new()
                    .input(&self.results, Turn::Runner)
                    .input(sup.exits(), Turn::Exit);
                if let Some(r) = self.shutdown {
                    alt = alt.input(r, Turn::Shutdown);
                }
                if let Some(t) = tick {
                    alt = alt.timeout(t, || Turn::Tick);
                }
                alt.pri_select().map_err(JobError::Channel)?
            };
            match turn {
                Turn::Runner(RunnerMsg::Started { job, attempt, pgid }) => {
                    self.started(job as usize, attempt, pgid)
                }
                Turn::Runner(RunnerMsg::Finished {
                    job,
                    verdict,
                    attempts,
                }) => self.finished(job as usize, verdict, attempts),
                Turn::Exit(exit) => self.exited(sup, exit)?,
                Turn::Shutdown(Shutdown::Stop) => self.stop("scheduling stopped"),
                Turn::Shutdown(Shutdown::Kill) => self.kill("killed by a shutdown request"),
                Turn::Tick => {}
            }
            self.escalate();
        }
        Ok(())
    }

    /// How long the alternation may wait before the loop must look at something that does not
    /// arrive on a channel (a signal count, the end of a kill's grace period).
    fn tick(&self) -> Option<Duration> {
        let grace_left = match self.killing {
            Some((at, false)) => Some((at + self.grace).saturating_duration_since(Instant::now())),
            _ => None,
        };
        let signal_tick = self.signals.as_ref().map(|_| Duration::from_millis(50));
        match (grace_left, signal_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check_signals(&mut self) {
        let n = self.signals.as_ref().map_or(0, SignalCount::count);
        if n >= 1 && !self.stopping {
            self.stop("scheduling stopped by an interrupt");
        }
        if n >= 2 && self.killing.is_none() {
            self.kill("killed by a second interrupt");
        }
    }

    fn make_ready(&mut self, job: usize) {
        self.state[job] = State::Ready;
        self.ready.push((self.priorities[job], Reverse(job)));
    }

    fn fits(&self, job: usize) -> bool {
        self.graph.jobs[job].resources.iter().all(|r| {
            self.caps
                .get(r)
                .is_none_or(|&cap| self.used.get(r).copied().unwrap_or(0) < cap)
        })
    }

    /// Gives ready jobs to idle runners: the highest priority first, skipping (for now) a job
    /// whose resources are at their caps.
    fn dispatch(&mut self) {
        while let Some(slot) = self.slots.iter().position(|s| s.alive && s.job.is_none()) {
            let mut skipped = Vec::new();
            let mut chosen = None;
            while let Some((p, Reverse(job))) = self.ready.pop() {
                if self.fits(job) {
                    chosen = Some(job);
                    break;
                }
                skipped.push((p, Reverse(job)));
            }
            self.ready.extend(skipped);
            let Some(job) = chosen else { return };
            // An idle runner's buffer is empty, so this does not wait; it fails only if the
            // runner has just crashed (its exit will follow): the job goes back to the queue.
            if self.slots[slot].work.write(job as u32).is_err() {
                self.slots[slot].alive = false;
                self.ready.push((self.priorities[job], Reverse(job)));
                continue;
            }
            for r in &self.graph.jobs[job].resources {
                *self.used.entry(r.clone()).or_default() += 1;
            }
            self.slots[slot].job = Some(job);
            self.state[job] = State::Running {
                runner: slot,
                pgid: None,
            };
        }
    }

    fn started(&mut self, job: usize, attempt: u32, pgid: i32) {
        if let State::Running { runner, .. } = self.state[job] {
            self.state[job] = State::Running {
                runner,
                pgid: Some(pgid),
            };
        }
        self.first_start[job].get_or_insert_with(Instant::now);
        self.attempts[job] = attempt;
        self.emit(job, EventKind::Started { attempt });
        if let Some((_, escalated)) = self.killing {
            command::signal_group(
                pgid,
                if escalated {
                    libc::SIGKILL
                } else {
                    libc::SIGTERM
                },
            );
        }
    }

    fn finished(&mut self, job: usize, verdict: Verdict, attempts: u32) {
        let State::Running { runner, .. } = self.state[job] else {
            return;
        };
        self.release(job, runner);
        self.attempts[job] = attempts;
        let (status, reason) = match verdict {
            Verdict::Passed => (JobStatus::Passed, None),
            Verdict::Failed(r) => (JobStatus::Failed, Some(r)),
            Verdict::TimedOut(r) => (JobStatus::Killed, Some(r)),
            Verdict::Killed(r) => match self.killing {
                Some(_) => (
                    JobStatus::Killed,
                    Some("killed by the scheduler".to_string()),
                ),
                None => (JobStatus::Killed, Some(r)),
            },
        };
        self.end(job, status, reason);
    }

    /// Frees what a running job held.
    fn release(&mut self, job: usize, runner: usize) {
        if let Some(slot) = self.slots.get_mut(runner) {
            slot.job = None;
        }
        for r in &self.graph.jobs[job].resources {
            if let Some(n) = self.used.get_mut(r) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// A supervised process ended: a runner that crashed fails its job and is replaced.
    fn exited(&mut self, sup: &mut Supervisor<B, ()>, exit: Exit<()>) -> Result<(), JobError> {
        if Some(exit.id) == self.display {
            return Ok(());
        }
        let Some(i) = self.slots.iter().position(|s| s.id == exit.id) else {
            return Ok(());
        };
        self.slots[i].alive = false;
        // Its last messages, if any, are already in the results channel: take them first.
        while let Ok(Some(msg)) = Alternation::<B, Option<RunnerMsg>>::new()
            .input(&self.results, Some)
            .skip(|| None)
            .pri_select()
        {
            match msg {
                RunnerMsg::Started { job, attempt, pgid } => {
                    self.started(job as usize, attempt, pgid)
                }
                RunnerMsg::Finished {
                    job,
                    verdict,
                    attempts,
                } => self.finished(job as usize, verdict, attempts),
            }
        }
        if let Some(job) = self.slots[i].job {
            if let State::Running {
                pgid: Some(pgid), ..
            } = self.state[job]
            {
                command::signal_group(pgid, libc::SIGKILL);
                command::release(self.guard, pgid);
            }
            self.release(job, i);
            let why = match exit.failure() {
                Some(f) => f.to_string(),
                None => format!("runner '{}' ended", exit.name),
            };
            self.end(
                job,
                JobStatus::Failed,
                Some(format!("its runner failed: {why}")),
            );
        }
        if self.unfinished > 0 && !self.stopping {
            self.start_runner(sup, i)?;
        }
        Ok(())
    }

    /// A job has ended: record it, tell the observers, and decide its dependents (cancelling,
    /// with the reason, those that can no longer run).
    fn end(&mut self, job: usize, status: JobStatus, reason: Option<String>) {
        let mut todo = vec![(job, status, reason)];
        while let Some((job, status, reason)) = todo.pop() {
            if self.state[job] == State::Done {
                continue;
            }
            self.state[job] = State::Done;
            self.unfinished -= 1;
            let kind = match (status, reason.clone()) {
                (JobStatus::Passed, _) => EventKind::Passed,
                (JobStatus::Failed, r) => EventKind::Failed {
                    reason: r.unwrap_or_default(),
                },
                (JobStatus::Cancelled, r) => EventKind::Cancelled {
                    reason: r.unwrap_or_default(),
                },
                (JobStatus::Killed, r) => EventKind::Killed {
                    reason: r.unwrap_or_default(),
                },
            };
            self.emit(job, kind);
            self.outcomes[job] = Some(JobOutcome {
                job: self.graph.jobs[job].name.clone(),
                status,
                reason,
                attempts: self.attempts[job],
                duration: self.first_start[job].map_or(Duration::ZERO, |t| t.elapsed()),
            });
            let passed = status == JobStatus::Passed;
            let graph = Arc::clone(&self.graph);
            let name = &graph.jobs[job].name;
            for &d in &graph.dependents[job] {
                let State::Waiting { left } = self.state[d] else {
                    continue;
                };
                let left = left.saturating_sub(1);
                self.some_passed[d] |= passed;
                match (graph.jobs[d].needs_kind, passed) {
                    (Needs::All, true) if left == 0 => self.make_ready(d),
                    (Needs::Any, _) if left == 0 && self.some_passed[d] => self.make_ready(d),
                    (Needs::All, false) => todo.push((
                        d,
                        JobStatus::Cancelled,
                        Some(format!("needs '{name}', which {}", status_word(status))),
                    )),
                    (Needs::Any, _) if left == 0 => todo.push((
                        d,
                        JobStatus::Cancelled,
                        Some(format!(
                            "needs any of {} jobs, and none passed (the last, '{name}', {})",
                            graph.deps[d].len(),
                            status_word(status)
                        )),
                    )),
                    _ => self.state[d] = State::Waiting { left },
                }
            }
        }
    }

    /// Starts nothing more: every job not yet running is cancelled.
    fn stop(&mut self, why: &str) {
        self.stopping = true;
        self.interrupted = true;
        self.ready.clear();
        for job in 0..self.state.len() {
            if matches!(self.state[job], State::Waiting { .. } | State::Ready) {
                self.end(job, JobStatus::Cancelled, Some(why.to_string()));
            }
        }
    }

    /// Stops, and sends SIGTERM to every running job's group (SIGKILL follows after the grace).
    fn kill(&mut self, why: &str) {
        self.stop(why);
        self.killing = Some((Instant::now(), false));
        self.kill_running(libc::SIGTERM);
    }

    /// SIGKILL for what is still running once the grace period of a kill has passed.
    fn escalate(&mut self) {
        if let Some((at, false)) = self.killing
            && at.elapsed() >= self.grace
        {
            self.killing = Some((at, true));
            self.kill_running(libc::SIGKILL);
        }
    }

    fn kill_running(&self, signal: i32) {
        for s in &self.state {
            if let State::Running { pgid: Some(p), .. } = s {
                command::signal_group(*p, signal);
            }
        }
    }

    fn report(&self) -> RunReport {
        let jobs = self
            .outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| {
                o.clone().unwrap_or_else(|| JobOutcome {
                    job: self.graph.jobs[i].name.clone(),
                    status: JobStatus::Cancelled,
                    reason: Some("the run ended early".into()),
                    attempts: self.attempts[i],
                    duration: Duration::ZERO,
                })
            })
            .collect();
        RunReport {
            jobs,
            elapsed: self.start.elapsed(),
            interrupted: self.interrupted,
        }
    }
}

fn status_word(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Passed => "passed",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "was cancelled",
        JobStatus::Killed => "was killed",
    }
}

/// A runner process: takes job indices from `work`, runs each job's command (with retries), and
/// reports its start and its verdict.
///
/// Each attempt is one `io` call (coroutines must not block a worker): the command's start, the
/// message that it started, and the wait for it. On coroutines the message is then written from
/// the helper thread, which channels allow (a plain thread may use any channel), and which halves
/// the hand-offs per job; elsewhere `io` runs in place.
fn runner<B: JobBackend>(
    graph: &Graph,
    work: Reader<B, u32>,
    results: Writer<B, RunnerMsg>,
    guard: Guard,
    grace: Duration,
) -> Outcome<()> {
    for job in work {
        let job = job?;
        let (j, checks) = (&graph.jobs[job as usize], &graph.checks[job as usize]);
        let mut attempts = 0;
        let verdict = loop {
            attempts += 1;
            let attempt = crate::io::<B, _>(|| -> Outcome<Attempt> {
                let child = match command::spawn(j, guard) {
                    Ok(c) => c,
                    Err(e) => {
                        let why = format!("could not start '{}': {e}", j.program);
                        return Ok(Attempt::NotStarted(why));
                    }
                };
                let pgid = child.id() as i32;
                let started = RunnerMsg::Started {
                    job,
                    attempt: attempts,
                    pgid,
                };
                if let Err(e) = results.write(started) {
                    // The scheduler is gone: leave nothing behind.
                    command::signal_group(pgid, libc::SIGKILL);
                    let _ = command::wait(child, None, grace, guard);
                    return Err(e);
                }
                let (status, timed_out) = command::wait(child, j.time_limit(), grace, guard);
                Ok(Attempt::Ended(command::judge(j, checks, status, timed_out)))
            })?;
            match attempt {
                Attempt::NotStarted(why) => break Verdict::Failed(why),
                Attempt::Ended(Verdict::Failed(_) | Verdict::TimedOut(_))
                    if attempts <= j.retries =>
                {
                    continue;
                }
                Attempt::Ended(v) => break v,
            }
        };
        results.write(RunnerMsg::Finished {
            job,
            verdict,
            attempts,
        })?;
    }
    Ok(())
}

/// How one attempt of a command went, as its runner sees it.
enum Attempt {
    /// The command could not be started (not retried: it would fail the same way).
    NotStarted(String),
    /// It ran and ended so.
    Ended(Verdict),
}
