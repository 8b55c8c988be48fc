//! The second start mode, the public side: `exec` makes a process that re-executes the current
//! binary, [`ExecOptions`] sets its arguments, environment and directory, and `Registry` is what
//! the re-executed child runs.
//!
//! The parent's half (starting `current_exe()` with the bootstrap variables) is
//! `children::exec_start`. The child's [`Registry::init`] maps the segment, connects, receives its
//! job (function name, serde-encoded arguments, process id and name), runs the function as a CSP
//! process, reports over the same ipc-channel, and exits.

use crate::channel::recording_serialized;
use crate::children::{ExecSpec, Job, Msg, exec_child_setup, take_exec_bootstrap};
use crate::codec;
use crate::engine::release_waiter;
use crate::process::{Kind, Start};
use crate::shm::segment;
use crate::{Process, ThreadSlot};
use cspnet_core::{Cause, Outcome, ProcessContext, ProcessId, run_body};
use ipc_channel::ipc::{self, IpcSender};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ffi::OsStr;
use std::path::Path;

/// A process that runs the function registered as `func` in a fresh copy of this program, with
/// `args` (serde-encoded; channel ends may be among them). Set the child's extra command-line
/// arguments, environment and working directory with [`ExecOptions`] ([`arg`](ExecOptions::arg),
/// [`env`](ExecOptions::env), [`current_dir`](ExecOptions::current_dir)).
///
/// The program must call [`Registry::init`] at the top of `main`, with `func` registered.
///
/// ```no_run
/// use cspnet_processes::{Channel, ExecOptions, Outcome, Reader, Registry, exec, parallel};
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
    Process::from_start(Start(Kind::Exec(ExecSpec {
        func: func.to_owned(),
        args: bytes,
        held,
        argv: Vec::new(),
        env: Vec::new(),
        dir: None,
    })))
}

/// The start options of a process made by [`exec`]: its extra command-line arguments, environment
/// and working directory. A closure process is a `fork`, which shares the parent's, so these panic
/// on one.
///
/// `Process` is core's type, so the options are this trait's methods; import it with the names
/// you use:
///
/// ```
/// use cspnet_processes::{ExecOptions, exec};
/// let p = exec::<_, u32>("simulate", 3u32)
///     .arg("--fast")
///     .env("RUST_LOG", "debug")
///     .current_dir("/tmp");
/// # drop(p);
/// ```
pub trait ExecOptions: Sized {
    /// Adds a command-line argument for a re-executed child.
    ///
    /// # Panics
    ///
    /// On a closure process (it is a fork, with the parent's arguments).
    ///
    /// ```
    /// use cspnet_processes::ExecOptions;
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).arg("--fast");
    /// # drop(p);
    /// ```
    fn arg(self, arg: impl AsRef<OsStr>) -> Self;

    /// Sets an environment variable for a re-executed child.
    ///
    /// # Panics
    ///
    /// On a closure process.
    ///
    /// ```
    /// use cspnet_processes::ExecOptions;
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).env("RUST_LOG", "debug");
    /// # drop(p);
    /// ```
    fn env(self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self;

    /// Sets the working directory of a re-executed child.
    ///
    /// # Panics
    ///
    /// On a closure process.
    ///
    /// ```
    /// use cspnet_processes::ExecOptions;
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).current_dir("/tmp");
    /// # drop(p);
    /// ```
    ///
    /// ```should_panic
    /// use cspnet_processes::ExecOptions;
    /// let p = cspnet_processes::process(|| Ok(1u32)).current_dir("/tmp"); // a fork: panics
    /// # drop(p);
    /// ```
    fn current_dir(self, dir: impl AsRef<Path>) -> Self;
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ExecOptions for Process<T> {
    fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        exec_spec(&mut self, "arg")
            .argv
            .push(arg.as_ref().to_owned());
        self
    }

    fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        exec_spec(&mut self, "env")
            .env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        exec_spec(&mut self, "current_dir").dir = Some(dir.as_ref().to_owned());
        self
    }
}

/// The exec options of `p`, or the panic that explains why a closure process has none.
#[track_caller]
fn exec_spec<'p, T>(p: &'p mut Process<T>, what: &str) -> &'p mut ExecSpec
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    match &mut p.start_mut().0 {
        Kind::Exec(spec) => spec,
        Kind::Closure(_) => panic!(
            "ExecOptions::{what} applies to processes made by exec(..); a closure process is a \
             fork and shares the parent's arguments, environment and directory"
        ),
    }
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
                let outcome = run_body::<ThreadSlot, R>(ctx, move || f(a)).outcome?;
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
