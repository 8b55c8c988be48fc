//! The job graph: jobs, their dependencies ("needs all" or "needs any"), and its validation.
//!
//! A [`JobGraph`] is built from [`Job`]s naming their dependencies by name; [`JobGraph::build`]
//! checks it once (unknown or duplicate names, cycles, bad log patterns) and gives a [`Graph`],
//! which a [`Scheduler`](super::Scheduler) runs. Cycles are found with petgraph's strongly
//! connected components, and the error names one cycle, job by job.

use super::JobError;
use petgraph::graph::{DiGraph, NodeIndex};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// How a job's dependencies must end before it runs.
///
/// ```
/// use cspnet_core::jobs::{Job, Needs};
/// let merge = Job::shell("merge", "true").needs_any(["test-1", "test-2"]);
/// assert_eq!(merge.needs_kind(), Needs::Any);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Needs {
    /// Runs once every dependency has passed; cancelled as soon as one fails or is cancelled.
    #[default]
    All,
    /// Runs once every dependency has ended and at least one of them passed; cancelled when
    /// they have all ended and none passed (a coverage merge that needs any passing test, as
    /// DVSim's `needs_all_dependencies_passing: false`).
    Any,
}

/// One job: an external command run as an OS process in its own process group, with the
/// dependencies, limits and checks that decide when it runs and whether it passed.
///
/// Build it with the methods below, or read it from a description file (it is `Deserialize`: every
/// field but `name` and `program` may be left out; `timeout` is in seconds).
///
/// ```
/// use cspnet_core::jobs::Job;
/// use std::time::Duration;
///
/// let job = Job::new("test-3", "./run_test")
///     .args(["--seed", "3"])
///     .needs(["build"])
///     .dir("/tmp")
///     .env("SEED", "3")
///     .log("/tmp/test-3.log")
///     .timeout(Duration::from_secs(60))
///     .retries(1)
///     .fail_pattern("^UVM_ERROR")
///     .pass_pattern("TEST PASSED")
///     .resource("license-x")
///     .priority(5);
/// assert_eq!(job.name(), "test-3");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub(crate) name: String,
    pub(crate) program: String,
    #[serde(default)]
    pub(crate) args: Vec<String>,
    #[serde(default)]
    pub(crate) needs: Vec<String>,
    #[serde(default)]
    pub(crate) needs_kind: Needs,
    #[serde(default)]
    pub(crate) dir: Option<PathBuf>,
    #[serde(default)]
    pub(crate) env: Vec<(String, String)>,
    #[serde(default)]
    pub(crate) log: Option<PathBuf>,
    /// Seconds.
    #[serde(default)]
    pub(crate) timeout: Option<f64>,
    #[serde(default)]
    pub(crate) retries: u32,
    #[serde(default)]
    pub(crate) pass_patterns: Vec<String>,
    #[serde(default)]
    pub(crate) fail_patterns: Vec<String>,
    #[serde(default)]
    pub(crate) resources: Vec<String>,
    #[serde(default)]
    pub(crate) priority: i64,
}

impl Job {
    /// A job that runs `program` (looked up on `PATH`) with no arguments.
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::new("hello", "echo").args(["hello"]);
    /// assert_eq!(job.command_line(), "echo hello");
    /// ```
    pub fn new(name: impl Into<String>, program: impl Into<String>) -> Job {
        Job {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            needs: Vec::new(),
            needs_kind: Needs::All,
            dir: None,
            env: Vec::new(),
            log: None,
            timeout: None,
            retries: 0,
            pass_patterns: Vec::new(),
            fail_patterns: Vec::new(),
            resources: Vec::new(),
            priority: 0,
        }
    }

    /// A job that runs `script` with `sh -c`.
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::shell("build", "make -j4 && echo done");
    /// assert_eq!(job.command_line(), "sh -c 'make -j4 && echo done'");
    /// ```
    pub fn shell(name: impl Into<String>, script: impl Into<String>) -> Job {
        Job::new(name, "sh").args(["-c".to_string(), script.into()])
    }

    /// Adds arguments to the command.
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::new("ls", "ls").args(["-l", "/"]);
    /// assert_eq!(job.command_line(), "ls -l /");
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Job
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs only once every job named here has passed ([`Needs::All`]).
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::shell("test", "true").needs(["build"]);
    /// assert_eq!(job.dependencies(), ["build"]);
    /// ```
    pub fn needs<I, S>(mut self, jobs: I) -> Job
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.needs.extend(jobs.into_iter().map(Into::into));
        self.needs_kind = Needs::All;
        self
    }

    /// Runs once every job named here has ended, if any of them passed ([`Needs::Any`]).
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, Needs};
    /// let job = Job::shell("merge", "true").needs_any(["t1", "t2"]);
    /// assert_eq!((job.dependencies(), job.needs_kind()), (&["t1".to_string(), "t2".to_string()][..], Needs::Any));
    /// ```
    pub fn needs_any<I, S>(mut self, jobs: I) -> Job
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.needs.extend(jobs.into_iter().map(Into::into));
        self.needs_kind = Needs::Any;
        self
    }

    /// The working directory of the command (default: the scheduler's).
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::new("pwd", "pwd").dir("/tmp");
    /// # let _ = job;
    /// ```
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Job {
        self.dir = Some(dir.into());
        self
    }

    /// Sets an environment variable for the command (on top of the scheduler's environment).
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::shell("seed", "echo $SEED").env("SEED", "7");
    /// # let _ = job;
    /// ```
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Job {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Where the command's standard output and error go (created or truncated at each attempt);
    /// needed for log patterns. Without one they go to `/dev/null`.
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::shell("t", "echo hi").log("/tmp/t.log");
    /// # let _ = job;
    /// ```
    pub fn log(mut self, path: impl Into<PathBuf>) -> Job {
        self.log = Some(path.into());
        self
    }

    /// Kills the command's whole process group (SIGTERM, then SIGKILL after the scheduler's grace
    /// period) once it has run this long; the job is then reported as killed.
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::shell("t", "sleep 5").timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(job.time_limit(), Some(std::time::Duration::from_secs(1)));
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Job {
        self.timeout = Some(limit.as_secs_f64());
        self
    }

    /// Runs a failed or timed-out command again, up to `n` more times.
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::shell("flaky", "true").retries(2);
    /// # let _ = job;
    /// ```
    pub fn retries(mut self, n: u32) -> Job {
        self.retries = n;
        self
    }

    /// A regular expression that, matching any line of the log, makes the job pass only if it
    /// also meets the rest; every pass pattern must match some line. Needs a [`log`](Self::log).
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::shell("t", "echo PASSED").log("/tmp/t.log").pass_pattern("PASSED");
    /// # let _ = job;
    /// ```
    pub fn pass_pattern(mut self, regex: impl Into<String>) -> Job {
        self.pass_patterns.push(regex.into());
        self
    }

    /// A regular expression that, matching any line of the log, fails the job whatever its exit
    /// status and pass patterns say (fail patterns beat pass patterns). Needs a [`log`](Self::log).
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::shell("t", "echo ok").log("/tmp/t.log").fail_pattern("^ERROR");
    /// # let _ = job;
    /// ```
    pub fn fail_pattern(mut self, regex: impl Into<String>) -> Job {
        self.fail_patterns.push(regex.into());
        self
    }

    /// Uses one unit of a named resource while it runs (see
    /// [`Scheduler::resource_cap`](super::Scheduler::resource_cap)).
    ///
    /// ```
    /// let job = cspnet_core::jobs::Job::shell("sim", "true").resource("license-x");
    /// assert_eq!(job.resources(), ["license-x"]);
    /// ```
    pub fn resource(mut self, name: impl Into<String>) -> Job {
        self.resources.push(name.into());
        self
    }

    /// The job's priority: among the jobs ready to run, a higher one starts first (ties go in
    /// the order the jobs were added). A scheduler's [`priority`](super::Scheduler::priority)
    /// function may compute it instead.
    ///
    /// ```
    /// assert_eq!(cspnet_core::jobs::Job::shell("t", "true").priority(3).get_priority(), 3);
    /// ```
    pub fn priority(mut self, priority: i64) -> Job {
        self.priority = priority;
        self
    }

    /// The job's name.
    ///
    /// ```
    /// assert_eq!(cspnet_core::jobs::Job::shell("t", "true").name(), "t");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names of the jobs it needs.
    ///
    /// ```
    /// assert!(cspnet_core::jobs::Job::shell("t", "true").dependencies().is_empty());
    /// ```
    pub fn dependencies(&self) -> &[String] {
        &self.needs
    }

    /// Whether it needs all or any of its dependencies.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, Needs};
    /// assert_eq!(Job::shell("t", "true").needs_kind(), Needs::All);
    /// ```
    pub fn needs_kind(&self) -> Needs {
        self.needs_kind
    }

    /// The resources it uses.
    ///
    /// ```
    /// assert!(cspnet_core::jobs::Job::shell("t", "true").resources().is_empty());
    /// ```
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The priority given with [`priority`](Self::priority) (0 by default).
    ///
    /// ```
    /// assert_eq!(cspnet_core::jobs::Job::shell("t", "true").get_priority(), 0);
    /// ```
    pub fn get_priority(&self) -> i64 {
        self.priority
    }

    /// The time limit, if any.
    ///
    /// ```
    /// assert_eq!(cspnet_core::jobs::Job::shell("t", "true").time_limit(), None);
    /// ```
    pub fn time_limit(&self) -> Option<Duration> {
        self.timeout
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    }

    /// The command as a line of text (for messages).
    ///
    /// ```
    /// assert_eq!(cspnet_core::jobs::Job::new("t", "true").command_line(), "true");
    /// ```
    pub fn command_line(&self) -> String {
        let mut line = self.program.clone();
        for a in &self.args {
            line.push(' ');
            if a.contains(char::is_whitespace) || a.is_empty() {
                line.push_str(&format!("'{a}'"));
            } else {
                line.push_str(a);
            }
        }
        line
    }
}

/// Jobs being collected into a graph; [`build`](Self::build) checks them and gives a [`Graph`].
///
/// ```
/// use cspnet_core::jobs::{Job, JobGraph};
///
/// let graph = JobGraph::new()
///     .job(Job::shell("build", "true"))
///     .job(Job::shell("test", "true").needs(["build"]))
///     .build()
///     .unwrap();
/// assert_eq!(graph.len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct JobGraph {
    jobs: Vec<Job>,
}

impl JobGraph {
    /// An empty graph.
    ///
    /// ```
    /// assert_eq!(cspnet_core::jobs::JobGraph::new().build().unwrap().len(), 0);
    /// ```
    pub fn new() -> JobGraph {
        JobGraph::default()
    }

    /// Adds a job.
    ///
    /// ```
    /// let g = cspnet_core::jobs::JobGraph::new().job(cspnet_core::jobs::Job::shell("a", "true"));
    /// assert_eq!(g.build().unwrap().len(), 1);
    /// ```
    pub fn job(mut self, job: Job) -> JobGraph {
        self.jobs.push(job);
        self
    }

    /// Adds jobs.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph};
    /// let g = JobGraph::new().jobs((0..3).map(|i| Job::new(format!("t{i}"), "true")));
    /// assert_eq!(g.build().unwrap().len(), 3);
    /// ```
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = Job>) -> JobGraph {
        self.jobs.extend(jobs);
        self
    }

    /// Checks the graph: every name unique, every dependency a job of the graph, no cycle, every
    /// log pattern a valid regular expression (compiled here, once) with a log to read.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobError, JobGraph};
    /// let err = JobGraph::new()
    ///     .job(Job::shell("a", "true").needs(["b"]))
    ///     .job(Job::shell("b", "true").needs(["a"]))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, JobError::Cycle { .. }));
    /// assert_eq!(err.to_string(), "the job graph has a cycle: a -> b -> a");
    /// ```
    pub fn build(self) -> Result<Graph, JobError> {
        let mut index = HashMap::new();
        for (i, job) in self.jobs.iter().enumerate() {
            if index.insert(job.name.clone(), i).is_some() {
                return Err(JobError::DuplicateJob(job.name.clone()));
            }
        }
        let mut g = DiGraph::<usize, ()>::with_capacity(self.jobs.len(), self.jobs.len());
        let nodes: Vec<NodeIndex> = (0..self.jobs.len()).map(|i| g.add_node(i)).collect();
        let mut deps = Vec::with_capacity(self.jobs.len());
        let mut dependents = vec![Vec::new(); self.jobs.len()];
        for (i, job) in self.jobs.iter().enumerate() {
            let mut mine = Vec::with_capacity(job.needs.len());
            for need in &job.needs {
                let &d = index.get(need).ok_or_else(|| JobError::UnknownDependency {
                    job: job.name.clone(),
                    needs: need.clone(),
                })?;
                if !mine.contains(&d) {
                    mine.push(d);
                    dependents[d].push(i);
                    g.add_edge(nodes[d], nodes[i], ());
                }
            }
            deps.push(mine);
        }
        if let Some(cycle) = find_cycle(&g) {
            let names = cycle
                .iter()
                .map(|&n| self.jobs[g[n]].name.clone())
                .collect();
            return Err(JobError::Cycle { cycle: names });
        }
        let mut checks = Vec::with_capacity(self.jobs.len());
        for job in &self.jobs {
            checks.push(Checks::compile(job)?);
        }
        Ok(Graph {
            jobs: self.jobs,
            deps,
            dependents,
            checks,
        })
    }
}

/// One cycle of `g`, as its nodes in order with the first repeated at the end, if there is one.
fn find_cycle(g: &DiGraph<usize, ()>) -> Option<Vec<NodeIndex>> {
    // A cycle lies within one strongly connected component of more than one node (or a node
    // with an edge to itself); a walk inside it from any node finds the way back.
    for scc in petgraph::algo::tarjan_scc(g) {
        let start = scc[0];
        if scc.len() == 1 && !g.contains_edge(start, start) {
            continue;
        }
        let inside: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
        // Depth-first search for a path start -> .. -> start within the component.
        let mut path = vec![start];
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![g.neighbors(start).collect::<Vec<_>>()];
        while let Some(next) = stack.last_mut() {
            match next.pop() {
                Some(n) if n == start => {
                    // Start the cycle at the job added first, so the message does not depend on
                    // the order petgraph visits the component in.
                    let first = (0..path.len()).min_by_key(|&i| g[path[i]]).unwrap_or(0);
                    path.rotate_left(first);
                    path.push(path[0]);
                    return Some(path);
                }
                Some(n) if inside.contains(&n) && seen.insert(n) => {
                    path.push(n);
                    stack.push(g.neighbors(n).collect());
                }
                Some(_) => {}
                None => {
                    stack.pop();
                    path.pop();
                }
            }
        }
    }
    None
}

/// A job's log patterns, compiled once.
#[derive(Debug, Clone)]
pub(crate) struct Checks {
    pub(crate) pass: Vec<Regex>,
    pub(crate) fail: Vec<Regex>,
}

impl Checks {
    fn compile(job: &Job) -> Result<Checks, JobError> {
        let compile = |patterns: &[String]| -> Result<Vec<Regex>, JobError> {
            patterns
                .iter()
                .map(|p| {
                    Regex::new(p).map_err(|e| JobError::BadPattern {
                        job: job.name.clone(),
                        pattern: p.clone(),
                        error: e.to_string(),
                    })
                })
                .collect()
        };
        let checks = Checks {
            pass: compile(&job.pass_patterns)?,
            fail: compile(&job.fail_patterns)?,
        };
        if job.log.is_none() && !(checks.pass.is_empty() && checks.fail.is_empty()) {
            return Err(JobError::PatternsWithoutLog(job.name.clone()));
        }
        Ok(checks)
    }
}

/// A checked job graph, ready for a [`Scheduler`](super::Scheduler): made by [`JobGraph::build`].
///
/// ```
/// use cspnet_core::jobs::{Job, JobGraph};
/// let g = JobGraph::new().job(Job::shell("a", "true")).build().unwrap();
/// assert_eq!(g.job(0).name(), "a");
/// ```
#[derive(Debug, Clone)]
pub struct Graph {
    pub(crate) jobs: Vec<Job>,
    /// Each job's dependencies, by index.
    pub(crate) deps: Vec<Vec<usize>>,
    /// The jobs that depend on each job, by index.
    pub(crate) dependents: Vec<Vec<usize>>,
    pub(crate) checks: Vec<Checks>,
}

impl Graph {
    /// How many jobs it has.
    ///
    /// ```
    /// assert_eq!(cspnet_core::jobs::JobGraph::new().build().unwrap().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether it has no jobs.
    ///
    /// ```
    /// assert!(cspnet_core::jobs::JobGraph::new().build().unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The job at `index` (in the order added). Panics if out of range.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph};
    /// let g = JobGraph::new().job(Job::shell("a", "true")).build().unwrap();
    /// assert_eq!(g.job(0).name(), "a");
    /// ```
    pub fn job(&self, index: usize) -> &Job {
        &self.jobs[index]
    }

    /// Every job, in the order added.
    ///
    /// ```
    /// use cspnet_core::jobs::{Job, JobGraph};
    /// let g = JobGraph::new().job(Job::shell("a", "true")).build().unwrap();
    /// assert_eq!(g.jobs().len(), 1);
    /// ```
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }
}
