//! The second start mode, the public side: `exec` makes a process that re-executes the current
//! binary, and `Registry` is what the re-executed child runs.
//!
//! The parent's half (starting `current_exe()` with the bootstrap variables) is
//! `children::exec_start`. The child's [`Registry::init`] maps the segment, connects, receives its
//! job (function name, serde-encoded arguments, process id and name), runs the function as a CSP
//! process, reports over the same ipc-channel, and exits.

use crate::ThreadSlot;
use crate::channel::recording_serialized;
use crate::children::{ExecSpec, Job, Msg, exec_child_setup, take_exec_bootstrap};
use crate::codec;
use crate::engine::release_waiter;
use crate::process::Process;
use crate::shm::segment;
use cspnet_core::{Cause, Outcome, ProcessContext, ProcessId, run_body};
use ipc_channel::ipc::{self, IpcSender};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A process that runs the function registered as `func` in a fresh copy of this program, with
/// `args` (serde-encoded; channel ends may be among them). Set the child's extra command-line
/// arguments, environment and working directory with [`Process::arg`], [`Process::env`] and
/// [`Process::current_dir`].
///
/// The program must call [`Registry::init`] at the top of `main`, with `func` registered.
///
/// ```no_run
/// use cspnet_processes::{Channel, Outcome, Reader, Registry, exec, parallel};
///
/// fn total(r: Reader<u64>) -> Outcome<u64> {
///     let mut sum = 0;
///     for v in &r { sum += v?; }
///     Ok(sum)
/// }
///
/// fn main() {
///     Registry::new().register("total", total).init();
///     let ch = Channel::<u64>::with_buffer(4);
///     let w = ch.writer();
///     let out = parallel([
///         exec::<_, u64>("total", ch.reader()).env("RUST_BACKTRACE", "1"),
///         cspnet_processes::process(move || { for i in 1..=4 { w.write(i)?; } Ok(0) }),
///     ]).unwrap();
///     assert_eq!(out[0], Ok(10));
/// }
/// ```
pub fn exec<A, R>(func: &str, args: A) -> Process<R>
where
    A: Serialize,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    let (bytes, held) = recording_serialized(|| codec::to_bytes(&args));
    let bytes = bytes.unwrap_or_else(|e| {
        panic!("cspnet-processes: the arguments of '{func}' could not be encoded: {e}")
    });
    Process::from_exec(ExecSpec {
        func: func.to_owned(),
        args: bytes,
        held,
        argv: Vec::new(),
        env: Vec::new(),
        dir: None,
    })
}

type Runner = Box<dyn Fn(&[u8], ProcessContext) -> Result<Vec<u8>, Cause>>;

/// The functions a re-executed child can run, by name.
///
/// Build it at the top of `main` and call [`init`](Self::init): in a child started by
/// [`exec`], `init` runs the requested function and exits; otherwise it returns at once.
///
/// ```
/// use cspnet_processes::{Outcome, Registry};
///
/// fn double(x: u32) -> Outcome<u32> {
///     Ok(2 * x)
/// }
///
/// let registry = Registry::new().register("double", double);
/// assert!(registry.contains("double"));
/// registry.init(); // not a child: returns
/// ```
#[derive(Default)]
pub struct Registry {
    entries: Vec<(String, Runner)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Registry")
            .field("functions", &names)
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    ///
    /// ```
    /// assert!(!cspnet_processes::Registry::new().contains("x"));
    /// ```
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers `f` under `name`: a child started by `exec(name, args)` decodes `args` as `A`
    /// and runs `f` as a CSP process; its outcome goes back to the parent encoded.
    ///
    /// ```
    /// use cspnet_processes::{Outcome, Registry};
    /// fn greet(who: String) -> Outcome<String> { Ok(format!("hello {who}")) }
    /// assert!(Registry::new().register("greet", greet).contains("greet"));
    /// ```
    pub fn register<A, R>(mut self, name: &str, f: fn(A) -> Outcome<R>) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let fname = name.to_owned();
        self.entries.push((
            name.to_owned(),
            Box::new(move |args, ctx| {
                let a: A = codec::from_bytes(args).map_err(|e| {
                    Cause::CouldNotStart(format!("the arguments of '{fname}' do not decode: {e}"))
                })?;
                let outcome = run_body::<ThreadSlot, R>(ctx, move || f(a))?;
                codec::to_bytes(&outcome)
                    .map_err(|e| Cause::Panicked(format!("the result could not be encoded: {e}")))
            }),
        ));
        self
    }

    /// Whether a function is registered under `name`.
    ///
    /// ```
    /// assert!(!cspnet_processes::Registry::new().contains("simulate"));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// In a child started by [`exec`]: runs the requested function and exits the process.
    /// Anywhere else: returns at once. Call it first thing in `main`.
    ///
    /// ```
    /// cspnet_processes::Registry::new().init(); // returns: this is not an exec child
    /// ```
    pub fn init(self) {
        let Some(server) = take_exec_bootstrap() else {
            return;
        };
        std::process::exit(self.serve(server));
    }

    fn serve(self, server: String) -> i32 {
        exec_child_setup();
        let _ = segment(); // attach the inherited memfd now
        let Ok(tx) = IpcSender::<Msg>::connect(server) else {
            return 102;
        };
        let Ok((job_tx, job_rx)) = ipc::channel::<Job>() else {
            return 103;
        };
        if tx.send(Msg::Hello { job: job_tx }).is_err() {
            return 104;
        }
        let Ok(job) = job_rx.recv() else {
            return 105;
        };
        let ctx = ProcessContext::new(ProcessId::new(job.id), job.name.into());
        let report = match self.entries.iter().find(|(n, _)| *n == job.func) {
            Some((_, run)) => run(&job.args, ctx),
            None => Err(Cause::CouldNotStart(format!(
                "no function is registered as '{}' in this program (call Registry::register before \
                 Registry::init)",
                job.func
            ))),
        };
        let sent = tx.send(Msg::Report(report)).is_ok();
        release_waiter();
        if sent { 0 } else { 106 }
    }
}
