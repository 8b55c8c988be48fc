//! The second start mode: re-execute the current binary and run a registered function in it.
//!
//! The parent starts `current_exe()` with the caller's arguments, environment and directory, plus
//! two variables: the name of an `IpcOneShotServer` (the bootstrap handshake) and the number of the
//! segment's memfd, whose `FD_CLOEXEC` flag is cleared in the child only. The child's
//! [`Registry::init`] maps the segment, connects, receives its job (function name, serde-encoded
//! arguments, process id and name), runs the function as a CSP process, reports over the same
//! ipc-channel, and exits.

use crate::ThreadSlot;
use crate::channel::{Role, leave_held, recording_serialized};
use crate::codec;
use crate::engine::release_waiter;
use crate::process::{Child, Msg, Process, child_setup, describe};
use crate::shm::{self, segment};
use cspnet_core::{Cause, Leave, Outcome, ProcessContext, ProcessId, run_body};
use ipc_channel::ipc::{self, IpcOneShotServer, IpcSender};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// Environment variable: the bootstrap server a re-executed child connects to.
const ENV_BOOT: &str = "CSPNET_EXEC_SERVER";

/// What a re-executed child is asked to run.
#[derive(Serialize, Deserialize)]
pub(crate) struct Job {
    func: String,
    args: Vec<u8>,
    id: u64,
    name: String,
}

/// A process to be started by re-executing the program.
pub(crate) struct ExecSpec {
    pub(crate) func: String,
    args: Vec<u8>,
    /// Channel handles serialized into `args` (joined on the child's behalf).
    held: Vec<(u64, Role)>,
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) dir: Option<PathBuf>,
}

impl ExecSpec {
    pub(crate) fn take_held(&mut self) -> Vec<(u64, Role)> {
        std::mem::take(&mut self.held)
    }
}

impl Drop for ExecSpec {
    fn drop(&mut self) {
        // Never started: the ends meant for the child poison their channels, like the ends of a
        // closure process that never ran.
        let held = self.take_held();
        if !held.is_empty() {
            leave_held(held, Leave::Poison);
        }
    }
}

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
        let Some(server) = std::env::var_os(ENV_BOOT) else {
            return;
        };
        // SAFETY: init runs first thing in main, before the program starts threads; the variable
        // must not leak into processes this child starts.
        unsafe { std::env::remove_var(ENV_BOOT) };
        std::process::exit(self.serve(server.to_string_lossy().into_owned()));
    }

    fn serve(self, server: String) -> i32 {
        // SAFETY: getppid has no preconditions.
        child_setup(unsafe { libc::getppid() });
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

/// Starts a re-executed child and hands it its job.
pub(crate) fn start(name: &str, id: u64, mut spec: ExecSpec) -> Result<Child, Cause> {
    let held = spec.take_held();
    let fail = |held: Vec<(u64, Role)>, why: String| {
        leave_held(held, Leave::Poison);
        Err(Cause::CouldNotStart(why))
    };
    let seg = segment();
    let (server, server_name) = match IpcOneShotServer::<Msg>::new() {
        Ok(s) => s,
        Err(e) => return fail(held, format!("no bootstrap server: {e}")),
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(held, format!("cannot find the current executable: {e}")),
    };
    let mut cmd = Command::new(exe);
    cmd.args(&spec.argv)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(ENV_BOOT, &server_name)
        .env(shm::ENV_FD, seg.fd().to_string());
    if let Some(dir) = &spec.dir {
        cmd.current_dir(dir);
    }
    let fd = seg.fd();
    // SAFETY: the hook runs in the forked child before exec and calls only async-signal-safe
    // functions (fcntl, prctl) on values copied in.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(held, format!("could not execute the program: {e}")),
    };
    let pid = child.id() as libc::pid_t;
    drop(child); // we reap by pid

    // Accept the child's hello without hanging if it dies before connecting.
    let (acc_tx, acc_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = acc_tx.send(server.accept());
    });
    let accepted = loop {
        match acc_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(r) => break Some(r),
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let mut status = 0;
                // SAFETY: waitpid on our own child's pid, without blocking.
                if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                    // Unblock the accepting thread, then report.
                    let _ = IpcSender::<Msg>::connect(server_name.clone());
                    return fail(
                        held,
                        format!(
                            "the program {} (did main call Registry::init?)",
                            describe(status).replace(" before reporting", " before connecting")
                        ),
                    );
                }
            }
        }
    };
    let (rx, job_tx) = match accepted {
        Some(Ok((rx, Msg::Hello { job }))) => (rx, job),
        _ => {
            crate::process::reap(pid);
            return fail(held, "the child's bootstrap handshake failed".into());
        }
    };
    let job = Job {
        func: std::mem::take(&mut spec.func),
        args: std::mem::take(&mut spec.args),
        id,
        name: name.to_owned(),
    };
    if job_tx.send(job).is_err() {
        // The child is gone; joining will reap it and report the crash.
    }
    Ok(Child { pid, rx, held })
}
