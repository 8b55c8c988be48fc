//! Communicating Sequential Processes for Rust: one channel/process API, three implementations.
//!
//! A CSP program is a network of *processes* that share nothing and talk only over *channels*.
//! cspnet gives Rust the API of [PyCSP] with its three interchangeable implementations, chosen by
//! which module you import:
//!
//! ```
//! use cspnet::threads as csp;       // every CSP process is an OS thread
//! // use cspnet::processes as csp;  // every CSP process is an OS process; channels in shared memory
//! // use cspnet::coroutines as csp; // every CSP process is a stackful coroutine
//! ```
//!
//! A program written against one compiles and behaves the same against the others: changing that
//! line is the whole switch. Each module is a cargo feature of this crate.
//!
//! [PyCSP]: https://github.com/runefriborg/pycsp
//!
//! # Channels and processes
//!
//! A channel is any-to-any: any number of processes hold its [reader] and [writer] ends. Unbuffered,
//! a write completes only when a reader has taken the value (a rendezvous). A process is a closure
//! returning [`Outcome<T>`]; [`parallel`] runs processes concurrently and gives back their results.
//!
//! [reader]: threads::Reader
//! [writer]: threads::Writer
//! [`parallel`]: threads::parallel
//!
//! ```
//! use cspnet::threads as csp;
//!
//! let ch = csp::Channel::<String>::new();
//! let (w, r) = (ch.writer(), ch.reader());
//! let out = csp::parallel([
//!     csp::process(move || {
//!         w.write("hello".to_string())?;
//!         w.write("world".to_string())?;
//!         Ok(String::new())
//!     }),
//!     csp::process(move || Ok(format!("{} {}", r.read()?, r.read()?))),
//! ])
//! .unwrap();
//! assert_eq!(out[1].as_deref(), Ok("hello world"));
//! ```
//!
//! # Retire: a stream ends when its writers leave
//!
//! Dropping an end (or calling `retire()`) leaves the channel. When the last writer has left, readers
//! get what is still buffered and then [`ChannelError::Retired`]; iterating over a reader simply
//! ends. No message is lost.
//!
//! ```
//! use cspnet::threads as csp;
//!
//! let ch = csp::Channel::<u32>::with_buffer(4);
//! let (w, r) = (ch.writer(), ch.reader());
//! let out = csp::parallel([
//!     csp::process(move || { for i in 1..=4 { w.write(i)?; } Ok(0) }), // w leaves at the end
//!     csp::process(move || { let mut sum = 0; for v in r { sum += v?; } Ok(sum) }),
//! ])
//! .unwrap();
//! assert_eq!(out[1], Ok(10));
//! ```
//!
//! # Poison: one call brings a whole network down
//!
//! Poisoning a channel makes every pending and later operation on it fail with
//! [`ChannelError::Poisoned`]. A process that passes the error on with `?` ends with it, and then
//! poisons every channel end it still holds, so the poison spreads through the network.
//!
//! ```
//! use cspnet::threads as csp;
//! use cspnet::ChannelError;
//!
//! let (a, b) = (csp::Channel::<u64>::new(), csp::Channel::<u64>::new());
//! let (aw, ar, bw, br) = (a.writer(), a.reader(), b.writer(), b.reader());
//! let out = csp::parallel([
//!     csp::process(move || { let mut i = 0; loop { aw.write(i)?; i += 1; } }), // counts forever
//!     csp::process(move || loop { bw.write(ar.read()? * 2)?; }),             // doubles forever
//!     csp::process(move || {
//!         let first = br.read()? + br.read()? + br.read()?;
//!         br.poison(); // enough: shut the network down
//!         Ok(first)
//!     }),
//! ])
//! .unwrap();
//! assert_eq!(out, vec![Err(ChannelError::Poisoned), Err(ChannelError::Poisoned), Ok(0 + 2 + 4)]);
//! ```
//!
//! # Alternation: wait for whichever is ready first
//!
//! An [`Alternation`](threads::Alternation) commits exactly one ready guard and runs its action.
//! Input and output guards mix freely; `skip` makes it non-blocking and `timeout` bounds the wait.
//! `select` takes any ready guard, `pri_select` the first in order, `fair_select` rotates.
//!
//! ```
//! use cspnet::threads as csp;
//! use std::time::Duration;
//!
//! let (jobs, stop) = (csp::Channel::<u32>::with_buffer(1), csp::Channel::<()>::new());
//! let (jw, jr, sr) = (jobs.writer(), jobs.reader(), stop.reader());
//! # let _sw = stop.writer();
//! jw.write(7).unwrap();
//! let what = csp::Alternation::new()
//!     .input(&sr, |()| "stop".to_string())
//!     .input(&jr, |job| format!("job {job}"))
//!     .timeout(Duration::from_millis(100), || "idle".to_string())
//!     .pri_select()
//!     .unwrap();
//! assert_eq!(what, "job 7");
//! ```
//!
//! # Channel ends as values (occam-π's mobile channels)
//!
//! A [reader] or [writer] end is itself a value that can travel over a channel, between OS
//! processes too, keeping its membership on the way: a client sends the writer of its private reply
//! channel with each request, and the server answers on it.
//!
//! ```
//! use cspnet::threads as csp;
//!
//! let requests = csp::Channel::<(u32, csp::Writer<u32>)>::new();
//! let (rw, rr) = (requests.writer(), requests.reader());
//! let out = csp::parallel([
//!     csp::process(move || { let (n, reply) = rr.read()?; reply.write(n * 2)?; Ok(0) }),
//!     csp::process(move || {
//!         let reply = csp::Channel::<u32>::new();
//!         rw.write((21, reply.writer()))?;
//!         reply.reader().read()
//!     }),
//! ])
//! .unwrap();
//! assert_eq!(out[1], Ok(42));
//! ```
//!
//! # Barriers: processes in lock-step (occam-π's `BARRIER`, JCSP's `Barrier`)
//!
//! A [`Barrier`](threads::Barrier) enrolls members ([`BarrierEnd`](threads::BarrierEnd)s, one per
//! process); `sync()` waits until every enrolled member has reached it. A member resigns by
//! `resign()` or by being dropped, and those waiting only for it go on; poison and a panicking
//! member fail every sync, as they would a channel. `examples/cellular_automaton.rs` runs a
//! lock-step simulation on one.
//!
//! ```
//! use cspnet::threads as csp;
//!
//! let barrier = csp::Barrier::new();
//! let procs: Vec<_> = (0..3)
//!     .map(|_| {
//!         let end = barrier.enroll();
//!         csp::process(move || {
//!             let mut phases = 0;
//!             for _ in 0..5 {
//!                 end.sync()?; // nobody starts phase k + 1 before all finished phase k
//!                 phases += 1;
//!             }
//!             Ok(phases)
//!         })
//!     })
//!     .collect();
//! drop(barrier);
//! assert_eq!(csp::parallel(procs).unwrap(), vec![Ok(5), Ok(5), Ok(5)]);
//! ```
//!
//! # Extended rendezvous: act before the writer goes on (occam-π's `??`, CHP's `extRead`)
//!
//! `read_extended(action)` takes a value and runs `action` *while its writer is still held*: the
//! writer's `write` completes only when the action ends. A process that forwards the value inside
//! the action is a buffer that adds no slack; `Alternation::input_extended` is the same as a guard.
//!
//! ```
//! use cspnet::threads as csp;
//!
//! let (a, b) = (csp::Channel::<u32>::new(), csp::Channel::<u32>::new());
//! let (aw, ar, bw, br) = (a.writer(), a.reader(), b.writer(), b.reader());
//! let out = csp::parallel([
//!     // This write completes only once the value has gone on to the consumer.
//!     csp::process(move || { aw.write(7)?; Ok(0) }),
//!     csp::process(move || ar.read_extended(|v| bw.write(v))?.map(|()| 0)),
//!     csp::process(move || br.read()),
//! ])
//! .unwrap();
//! assert_eq!(out, vec![Ok(0), Ok(0), Ok(7)]);
//! ```
//!
//! # Failures are never lost
//!
//! A panicking process poisons its channels (so the rest shuts down instead of hanging), and
//! `parallel` reports it by name once the others have finished.
//!
//! ```
//! use cspnet::threads as csp;
//!
//! let err = csp::parallel([
//!     csp::process(|| -> cspnet::Outcome<()> { panic!("out of cheese") }).named("wizard"),
//! ])
//! .unwrap_err();
//! assert_eq!(err.to_string(), "process 'wizard' panicked: out of cheese");
//! ```
//!
//! # Supervision: a crash as a value (Erlang's supervisors)
//!
//! Under a [`Supervisor`](generic::Supervisor) a crash poisons nothing: the crashed process's ends
//! retire, and its [`Exit`] arrives on a channel the moment it ends, so a farm drops that worker
//! and goes on.
//!
//! ```
//! use cspnet::threads as csp;
//!
//! let mut sup = csp::Supervisor::<u32>::new();
//! sup.start(csp::process(|| -> cspnet::Outcome<u32> { panic!("bad job") }).named("w1")).unwrap();
//! sup.start(csp::process(|| Ok(7)).named("w2")).unwrap();
//! let mut outcomes: Vec<String> = std::iter::from_fn(|| sup.next_exit()).map(|e| e.to_string()).collect();
//! outcomes.sort();
//! assert_eq!(outcomes, ["process 'w1' panicked: bad job", "process 'w2' ended"]);
//! ```
//!
//! # Farms: jobs by ID in, results by ID out
//!
//! A [`Farm`](generic::Farm) is a pool of W worker processes written once over the backend trait,
//! itself a CSP network: a dispatcher that knows which job each worker holds hands out jobs over
//! per-worker channels and waits in one alternation on the results channel and its
//! [`Supervisor`](generic::Supervisor)'s exits. Results come back by job ID as jobs finish (an
//! iterator from `start`, or all of them by ID from `run`); a job whose worker panics (or, on
//! processes, is killed) is a [`JobFailure`] naming the job and the cause while every other result
//! arrives; `retries`, `max_tasks_per_child`, `output_dir` (a directory per job, in its
//! [`JobContext`]) and `progress` (an indicatif bar, hidden when stderr is not a terminal) are
//! settings.
//!
//! ```
//! use cspnet::threads as csp;
//!
//! let farm = csp::Farm::new(|n: u64, _ctx| (1..=n).sum::<u64>()).workers(2);
//! let mut ids = Vec::new();
//! for r in farm.start((1..=4u64).map(|n| (format!("sum-{n}"), n))).unwrap() {
//!     ids.push(r.id); // in the order the jobs finished
//! }
//! ids.sort();
//! assert_eq!(ids, ["sum-1", "sum-2", "sum-3", "sum-4"]);
//! let report = farm.run([("ten", 10)]).unwrap();
//! assert_eq!(report.results["ten"], 55);
//! ```
//!
//! How each job should start, on the processes backend:
//!
//! - **fork** (a closure process, the default): cheapest; the job's code and data are simply
//!   there. The parent should be single-threaded when it forks.
//! - **fork after initialise** (`cspnet_processes::forked`): workers forked from a process that
//!   has already loaded a large read-only state, so they share its pages (AthenaMP's pattern).
//! - **exec, a fresh program per job**: `Farm::with_workers(processes::exec_workers(..))` with
//!   `max_tasks_per_child(1)`, or a whole program as a `processes::JobSet` (gem5's suite of
//!   simulations: `--list`, `--job ID`, `-j K`): for process-global state that must not outlive a
//!   job, a multi-threaded parent, or a per-job working directory, stdout/stderr, arguments and
//!   environment. Only OS processes can do this; on threads and coroutines
//!   `max_tasks_per_child(1)` gives each job a fresh thread or coroutine, and a job writes into
//!   [`JobContext::dir`] explicitly. `examples/simulations.rs` is such a program.
//!
//! # Fork after initialise (OS processes only)
//!
//! `cspnet::processes::forked` builds something large once, forks workers that share it copy-on-write
//! (AthenaMP's pattern), and reports the memory each really uses (RSS against PSS). Use it when
//! workers need the same expensive, read-only state; use `exec` when the program cannot be forked
//! safely or the state is cheap to rebuild, and a fresh process per job when jobs must not affect
//! each other. Its module docs say more; `cargo run --release --example events` shows it.
//!
//! # Code written once for every backend
//!
//! The API is one implementation over a backend trait, so a farm, a job graph or a library of your
//! own can be written once with [`generic`] and run on every backend: each type takes the engine as
//! its first parameter, and a [`Carries<T>`](generic::Carries) bound names each payload it sends.
//!
//! ```
//! use cspnet::generic::{self as csp, Carries};
//!
//! fn ping<B: Carries<u32>>() -> u32 {
//!     let ch = csp::Channel::<B, u32>::new();
//!     let (w, r) = (ch.writer(), ch.reader());
//!     let out = csp::parallel::<B, _, _>([
//!         csp::process(move || { w.write(7)?; Ok(0) }),
//!         csp::process(move || r.read()),
//!     ])
//!     .unwrap();
//!     out[1].unwrap()
//! }
//! assert_eq!(ping::<cspnet::threads::Engine>(), 7);
//! assert_eq!(ping::<cspnet::coroutines::Engine>(), 7);
//! ```
//!
//! # Choosing the backend at run time
//!
//! [`with_backend!`] compiles a block once per backend and runs the one named at run time; every
//! example program uses it for its `--backend` flag. Inside the block, `csp::Engine` names the
//! chosen engine, for generic code.
//!
//! | backend | a process is | payloads need | good for |
//! | --- | --- | --- | --- |
//! | `threads` | an OS thread | `Send + 'static` | thousands of processes; any blocking call |
//! | `processes` | an OS process (fork, or re-exec) | `Serialize + DeserializeOwned` | every core for CPU-bound work; isolation |
//! | `coroutines` | a stackful coroutine | `Send + 'static` | up to millions of processes; cheapest switch |
#![warn(missing_docs)]

mod backend;

pub use backend::{Backend, BackendError};
pub use cspnet_core::{
    Blocked, BufferError, Cause, ChannelError, Deadlock, ErrorText, Exit, Failure, FarmError,
    FarmReport, HeldEnd, JobContext, JobFailure, JobResult, KillError, Outcome, ProcessError,
    ProcessId, Wait, deadlock_delay, set_deadlock_delay,
};

/// The same API, generic over the backend: for code written once that runs on every backend (a
/// farm, a job graph, a library of your own).
///
/// Every type takes the backend as its first parameter (`Channel<B, T>`, `Reader<B, T>`,
/// `Alternation<'a, B, R>`, ...), where `B` is an engine type such as `cspnet::threads::Engine`.
/// State the payloads your code sends, and the results its processes return, as
/// [`Carries`](generic::Carries) bounds: `B: Carries<u64>`, or `B: Carries<T>` for a generic `T`
/// (threads and coroutines carry any `Send + 'static` value; processes also need
/// `Serialize + DeserializeOwned`). Name the backend once where nothing else pins it, as on
/// `parallel` below.
///
/// ```
/// use cspnet::generic::{self as csp, Carries};
///
/// /// A farm: `workers` processes square the numbers a source hands out; a collector sums them
/// /// and stops when every worker has retired.
/// fn sum_of_squares<B: Carries<u64>>(n: u64, workers: usize) -> u64 {
///     let (jobs, results) = (csp::Channel::<B, u64>::new(), csp::Channel::<B, u64>::new());
///     let mut procs = vec![csp::process({
///         let w = jobs.writer();
///         move || { for i in 1..=n { w.write(i)?; } Ok(0) }
///     })];
///     for _ in 0..workers {
///         let (r, w) = (jobs.reader(), results.writer());
///         procs.push(csp::process(move || { for i in r { w.write(i? * i?)?; } Ok(0) }));
///     }
///     let r = results.reader();
///     procs.push(csp::process(move || { let mut s = 0; for v in r { s += v?; } Ok(s) }));
///     drop((jobs, results));
///     let out = csp::parallel::<B, _, _>(procs).unwrap();
///     out.last().unwrap().unwrap()
/// }
///
/// assert_eq!(sum_of_squares::<cspnet::threads::Engine>(4, 2), 1 + 4 + 9 + 16);
/// assert_eq!(sum_of_squares::<cspnet::coroutines::Engine>(4, 2), 1 + 4 + 9 + 16);
/// # #[cfg(target_os = "linux")]
/// assert_eq!(sum_of_squares::<cspnet::processes::Engine>(4, 2), 1 + 4 + 9 + 16);
/// ```
pub mod generic {
    #[doc(inline)]
    pub use cspnet_core::{
        Alternation, Backend, Barrier, BarrierEnd, Barriers, Carries, CarriesFarm, Channel, Farm,
        FarmError, FarmReport, FarmRun, IntoIter, Iter, JobContext, JobFailure, JobResult, Mobile,
        Process, Reader, Spawned, Supervisor, WorkerEnds, Writer, current_process_id, io, parallel,
        process, sequence, spawn,
    };
    #[doc(inline)]
    pub use cspnet_core::{
        Blocked, BufferError, Cause, ChannelError, Deadlock, ErrorText, Exit, Failure, HeldEnd,
        KillError, Outcome, ProcessError, ProcessId, Wait, deadlock_delay, set_deadlock_delay,
    };
}

/// Job graphs: external commands run as OS processes under a dependency graph, with caps,
/// priority, live status and clean shutdown (the DVSim scheduler pattern), on any backend; see
/// [`jobs::Scheduler`]. Name the backend once: `jobs::Scheduler::<csp::Engine>::new(graph)`.
///
/// ```
/// use cspnet::jobs::{Job, JobGraph, Scheduler};
/// use cspnet::threads as csp;
///
/// let graph = JobGraph::new()
///     .job(Job::new("build", "true"))
///     .job(Job::new("test", "true").needs(["build"]))
///     .build()
///     .unwrap();
/// let report = Scheduler::<csp::Engine>::new(graph).jobs(2).run().unwrap();
/// assert_eq!(report.exit_code(), 0);
/// ```
#[cfg(target_os = "linux")]
#[doc(inline)]
pub use cspnet_core::jobs;

/// Every CSP process is an OS thread; channels on crossbeam-channel.
#[cfg(feature = "threads")]
#[doc(inline)]
pub use cspnet_threads as threads;

/// Every CSP process is an OS process; channels and payloads live in shared memory (Linux only).
#[cfg(all(feature = "processes", target_os = "linux"))]
#[doc(inline)]
pub use cspnet_processes as processes;

/// Every CSP process is a stackful coroutine on `may`; `io(..)` moves blocking calls off the workers.
#[cfg(feature = "coroutines")]
#[doc(inline)]
pub use cspnet_coroutines as coroutines;

// The README's examples are compiled as doctests, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
