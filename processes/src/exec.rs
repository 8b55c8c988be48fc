//! The second start mode, the public side: `exec` makes a process that re-executes the running
//! binary, [`ExecOptions`] sets its arguments, environment, directory, stdio and start timeout,
//! and `Registry` is what the re-executed child runs.
//!
//! The parent's half (starting `/proc/self/exe` with the bootstrap variables) is
//! `children::exec_start`. The child's [`Registry::init`] takes the bootstrap variables out of its
//! environment, maps the segment (and marks its fd close-on-exec again), connects, receives its
//! job (function name, the argument and result types `exec` was called with, serde-encoded
//! arguments, process id and name), checks the types against the registered function's, runs it
//! as a CSP process, reports over the same ipc-channel, and exits.

use crate::channel::recording_serialized;
use crate::children::{
    Bootstrap, DEFAULT_START_TIMEOUT, EnvOp, ExecSpec, Job, Msg, exec_child_setup,
    take_exec_bootstrap,
};
use crate::codec;
use crate::engine::release_waiter;
use crate::process::{Kind, Start};
use crate::shm;
use crate::{Process, ThreadSlot};
use cspnet_core::{Cause, Outcome, ProcessContext, ProcessId, run_body};
use ipc_channel::ipc::{self, IpcSender};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::type_name;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A process that runs the function registered as `func` in a fresh copy of this program, with
/// `args` (serde-encoded; channel ends may be among them). Set the child's extra command-line
/// arguments, environment, working directory, stdout and stderr, and how long it may take to
/// start, with [`ExecOptions`].
///
/// The program must call [`Registry::init`] at the top of `main`, with `func` registered. The
/// copy is the running binary (`/proc/self/exe`), even if its file has been rebuilt or deleted
/// since it started.
///
/// `A` and `R` must be the registered function's argument and result types (a reference `&T`
/// counts as `T`, and `&str` as `String`): otherwise the process does not run and fails with
/// `Cause::CouldNotStart` naming the function and both signatures, e.g. "function 'double' takes
/// u32 and returns u32, but exec was called with String -> u32". So does an unregistered `func`.
/// Channel ends sent to a process that did not run are poisoned. To have the compiler check the
/// types instead, start it through an [`ExecFn`].
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
        arg_type: type_name::<A>(),
        result_type: type_name::<R>(),
        args: bytes,
        held,
        argv: Vec::new(),
        env: Vec::new(),
        dir: None,
        stdout: None,
        stderr: None,
        start_timeout: DEFAULT_START_TIMEOUT,
    })))
}

/// The start options of a process made by [`exec`]: its extra command-line arguments, environment,
/// working directory, stdout and stderr, and start timeout. A closure process is a `fork`, which
/// shares the parent's, so these panic on one.
///
/// Whatever the options, the child gets the two variables cspnet needs to start it
/// (`CSPNET_EXEC_SERVER`, `CSPNET_SHM_FD`) and the shared segment's descriptor; [`Registry::init`]
/// removes both variables and marks the descriptor close-on-exec, so programs the child starts in
/// turn inherit neither.
///
/// `Process` is core's type, so the options are this trait's methods; import it with the names
/// you use:
///
/// ```
/// use cspnet_processes::{ExecOptions, exec};
/// use std::process::Stdio;
/// use std::time::Duration;
/// let p = exec::<_, u32>("simulate", 3u32)
///     .arg("--fast")
///     .env_clear()
///     .env("RUST_LOG", "debug")
///     .current_dir("/tmp")
///     .stdout(Stdio::null())
///     .start_timeout(Duration::from_secs(5));
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

    /// Removes an environment variable (inherited, or set by an earlier [`env`](Self::env)) from
    /// a re-executed child's environment.
    ///
    /// # Panics
    ///
    /// On a closure process.
    ///
    /// ```
    /// use cspnet_processes::ExecOptions;
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).env_remove("RUST_LOG");
    /// # drop(p);
    /// ```
    fn env_remove(self, key: impl AsRef<OsStr>) -> Self;

    /// Starts a re-executed child with an empty environment but for the variables set by
    /// [`env`](Self::env) after this call (and the ones cspnet needs to start it, which
    /// [`Registry::init`] removes again).
    ///
    /// # Panics
    ///
    /// On a closure process.
    ///
    /// ```
    /// use cspnet_processes::ExecOptions;
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).env_clear().env("ONLY", "1");
    /// # drop(p);
    /// ```
    fn env_clear(self) -> Self;

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

    /// Where a re-executed child's standard output goes: a `File` (or `Stdio::from(file)`),
    /// `Stdio::null()`, the writing end of a `std::io::pipe()`. By default it is the parent's.
    /// (`Stdio::piped()` is no use here: nothing hands you the other end, so the child's writes
    /// fail.)
    ///
    /// # Panics
    ///
    /// On a closure process.
    ///
    /// ```
    /// use cspnet_processes::ExecOptions;
    /// let log = tempfile::tempfile().unwrap();
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).stdout(log);
    /// # drop(p);
    /// ```
    fn stdout(self, out: impl Into<Stdio>) -> Self;

    /// Where a re-executed child's standard error goes, like [`stdout`](Self::stdout). By default
    /// it is the parent's.
    ///
    /// # Panics
    ///
    /// On a closure process.
    ///
    /// ```
    /// use cspnet_processes::ExecOptions;
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).stderr(std::process::Stdio::null());
    /// # drop(p);
    /// ```
    fn stderr(self, err: impl Into<Stdio>) -> Self;

    /// How long a re-executed child may take to start: from its launch until its
    /// [`Registry::init`] has connected back. A child still not connected then (hung, or never
    /// calling `init`) is killed and reaped, and the process fails with `Cause::CouldNotStart`
    /// naming the timeout. The default is 60 seconds. Once started, the child runs as long as it
    /// likes.
    ///
    /// # Panics
    ///
    /// On a closure process.
    ///
    /// ```
    /// use cspnet_processes::ExecOptions;
    /// use std::time::Duration;
    /// let p = cspnet_processes::exec::<_, u32>("simulate", 3u32).start_timeout(Duration::from_secs(5));
    /// # drop(p);
    /// ```
    fn start_timeout(self, timeout: Duration) -> Self;
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ExecOptions for Process<T> {
    fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        exec_spec(&mut self, "arg")
            .argv
            .push(arg.as_ref().to_owned());
        self
    }

    fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        exec_spec(&mut self, "env").env.push(EnvOp::Set(
            key.as_ref().to_owned(),
            value.as_ref().to_owned(),
        ));
        self
    }

    fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        exec_spec(&mut self, "env_remove")
            .env
            .push(EnvOp::Remove(key.as_ref().to_owned()));
        self
    }

    fn env_clear(mut self) -> Self {
        exec_spec(&mut self, "env_clear").env.push(EnvOp::Clear);
        self
    }

    fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        exec_spec(&mut self, "current_dir").dir = Some(dir.as_ref().to_owned());
        self
    }

    fn stdout(mut self, out: impl Into<Stdio>) -> Self {
        exec_spec(&mut self, "stdout").stdout = Some(out.into());
        self
    }

    fn stderr(mut self, err: impl Into<Stdio>) -> Self {
        exec_spec(&mut self, "stderr").stderr = Some(err.into());
        self
    }

    fn start_timeout(mut self, timeout: Duration) -> Self {
        exec_spec(&mut self, "start_timeout").start_timeout = timeout;
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
             fork and shares the parent's arguments, environment, directory and stdio"
        ),
    }
}

/// A function for [`exec`] together with its name and types, made once as a `const`: registering
/// it with [`Registry::register_fn`] and starting it with [`ExecFn::exec`] cannot disagree on the
/// name, and a wrong argument type is a compile error rather than a start that fails.
///
/// ```no_run
/// use cspnet_processes::{ExecFn, Outcome, Registry, sequence};
///
/// fn double(x: u32) -> Outcome<u32> {
///     Ok(2 * x)
/// }
/// const DOUBLE: ExecFn<u32, u32> = ExecFn::new("double", double);
///
/// fn main() {
///     Registry::new().register_fn(DOUBLE).init();
///     let out = sequence([DOUBLE.exec(21)]).unwrap();
///     assert_eq!(out[0], Ok(42));
/// }
/// ```
pub struct ExecFn<A, R> {
    name: &'static str,
    f: fn(A) -> Outcome<R>,
}

impl<A, R> Clone for ExecFn<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for ExecFn<A, R> {}

impl<A, R> std::fmt::Debug for ExecFn<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ExecFn({:?}: {} -> {})",
            self.name,
            short_type(type_name::<A>()),
            short_type(type_name::<R>())
        )
    }
}

impl<A, R> ExecFn<A, R> {
    /// The function `f`, to be registered and started under `name`.
    ///
    /// ```
    /// use cspnet_processes::{ExecFn, Outcome};
    /// fn greet(who: String) -> Outcome<String> { Ok(format!("hello {who}")) }
    /// const GREET: ExecFn<String, String> = ExecFn::new("greet", greet);
    /// assert_eq!(GREET.name(), "greet");
    /// ```
    pub const fn new(name: &'static str, f: fn(A) -> Outcome<R>) -> Self {
        ExecFn { name, f }
    }

    /// The name it is registered and started under.
    ///
    /// ```
    /// use cspnet_processes::{ExecFn, Outcome};
    /// fn one(_: ()) -> Outcome<u8> { Ok(1) }
    /// assert_eq!(ExecFn::new("one", one).name(), "one");
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<A, R> ExecFn<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    /// A process that runs this function in a fresh copy of the program: [`exec`] with the types
    /// fixed, so an argument of another type does not compile.
    ///
    /// ```
    /// use cspnet_processes::{ExecFn, ExecOptions, Outcome};
    /// fn double(x: u32) -> Outcome<u32> { Ok(2 * x) }
    /// const DOUBLE: ExecFn<u32, u32> = ExecFn::new("double", double);
    /// let p = DOUBLE.exec(21).arg("--fast"); // not started: a doctest has no Registry::init
    /// # drop(p);
    /// ```
    ///
    /// ```compile_fail
    /// use cspnet_processes::{ExecFn, Outcome};
    /// fn double(x: u32) -> Outcome<u32> { Ok(2 * x) }
    /// const DOUBLE: ExecFn<u32, u32> = ExecFn::new("double", double);
    /// let p = DOUBLE.exec("ten".to_string()); // a String for a u32: does not compile
    /// ```
    pub fn exec(&self, args: A) -> Process<R> {
        exec::<A, R>(self.name, args)
    }
}

/// Decodes the arguments, adopts the ledger (after decoding: the parent counted the ends sent in
/// it already), and runs the function.
type Runner = Box<dyn Fn(&[u8], Option<u64>, ProcessContext) -> Result<Vec<u8>, Cause>>;

/// A registered function: its name, its argument and result types (`type_name`), how to run it.
struct Entry {
    name: String,
    arg_type: &'static str,
    result_type: &'static str,
    run: Runner,
}

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
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
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

    /// Registers `f` under `name`: a child started by `exec::<A, R>(name, args)` decodes `args`
    /// as `A` and runs `f` as a CSP process; its outcome goes back to the parent encoded. The
    /// types are recorded, and an `exec` of `name` with other types fails to start, saying so.
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
        self.entries.push(Entry {
            name: name.to_owned(),
            arg_type: type_name::<A>(),
            result_type: type_name::<R>(),
            run: Box::new(move |args, ledger, ctx| {
                let a: A = codec::from_bytes(args).map_err(|e| {
                    Cause::CouldNotStart(format!("the arguments of '{fname}' do not decode: {e}"))
                })?;
                crate::ledger::adopt(ledger);
                let outcome = run_body::<ThreadSlot, R>(ctx, move || f(a)).outcome?;
                codec::to_bytes(&outcome)
                    .map_err(|e| Cause::Panicked(format!("the result could not be encoded: {e}")))
            }),
        });
        self
    }

    /// Registers the typed function `f` (see [`ExecFn`]): the same as
    /// [`register`](Self::register) with its name and function.
    ///
    /// ```
    /// use cspnet_processes::{ExecFn, Outcome, Registry};
    /// fn double(x: u32) -> Outcome<u32> { Ok(2 * x) }
    /// const DOUBLE: ExecFn<u32, u32> = ExecFn::new("double", double);
    /// assert!(Registry::new().register_fn(DOUBLE).contains("double"));
    /// ```
    pub fn register_fn<A, R>(self, f: ExecFn<A, R>) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.register(f.name, f.f)
    }

    /// Whether a function is registered under `name`.
    ///
    /// ```
    /// assert!(!cspnet_processes::Registry::new().contains("simulate"));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.name == name)
    }

    /// In a child started by [`exec`]: runs the requested function and exits the process.
    /// Anywhere else: returns at once. Call it first thing in `main`.
    ///
    /// ```
    /// cspnet_processes::Registry::new().init(); // returns: this is not an exec child
    /// ```
    pub fn init(self) {
        let Some(boot) = take_exec_bootstrap() else {
            return;
        };
        std::process::exit(self.serve(boot));
    }

    fn serve(self, boot: Bootstrap) -> i32 {
        // Before the setup, which makes this process's waiter record in the segment (a child
        // that could not attach makes none: it only reports why it cannot run).
        let attached = boot.fd.is_some_and(shm::attach_inherited);
        if attached {
            exec_child_setup();
        }
        let Ok(tx) = IpcSender::<Msg>::connect(boot.server) else {
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
        let report = match self.entries.iter().find(|e| e.name == job.func) {
            _ if !attached => Err(Cause::CouldNotStart(format!(
                "the child could not map the parent's shared segment (fd {:?})",
                boot.fd
            ))),
            None => Err(Cause::CouldNotStart(format!(
                "no function is registered as '{}' in this program (call Registry::register before \
                 Registry::init)",
                job.func
            ))),
            Some(e)
                if !same_arg_type(e.arg_type, &job.arg_type)
                    || e.result_type != job.result_type =>
            {
                Err(Cause::CouldNotStart(format!(
                    "function '{}' takes {} and returns {}, but exec was called with {} -> {}",
                    e.name,
                    short_type(e.arg_type),
                    short_type(e.result_type),
                    short_type(&job.arg_type),
                    short_type(&job.result_type)
                )))
            }
            Some(e) => (e.run)(&job.args, job.ledger, ctx),
        };
        let sent = tx.send(Msg::Report(report)).is_ok();
        release_waiter();
        if sent { 0 } else { 106 }
    }
}

/// Whether `exec`'s argument type `sent` encodes as the registered `registered` does: the same
/// type, or a reference to it (`&T` serializes as `T`), with `&str` standing for `String`.
fn same_arg_type(registered: &str, sent: &str) -> bool {
    fn owned(name: &str) -> &str {
        let mut name = name;
        while let Some(rest) = name.strip_prefix('&') {
            name = rest.strip_prefix("mut ").unwrap_or(rest);
        }
        if name == "str" {
            type_name::<String>()
        } else {
            name
        }
    }
    owned(registered) == owned(sent)
}

/// A type name without its module paths, for messages: `cspnet_core::channel::Reader<u64>` reads
/// `Reader<u64>`.
fn short_type(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut path = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            path.push(c);
        } else {
            out.push_str(path.rsplit("::").next().unwrap_or_default());
            path.clear();
            out.push(c);
        }
    }
    out.push_str(path.rsplit("::").next().unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::{same_arg_type, short_type};
    use std::any::type_name;

    #[test]
    fn type_names_read_without_paths() {
        assert_eq!(short_type(type_name::<String>()), "String");
        assert_eq!(
            short_type(type_name::<(Vec<String>, Option<u32>)>()),
            "(Vec<String>, Option<u32>)"
        );
        assert_eq!(
            short_type(type_name::<crate::Reader<u64>>()),
            "Reader<Processes, u64>"
        );
    }

    #[test]
    fn a_reference_matches_what_it_refers_to() {
        let string = type_name::<String>();
        assert!(same_arg_type(string, type_name::<&str>()));
        assert!(same_arg_type(string, type_name::<&String>()));
        assert!(same_arg_type(string, type_name::<&mut String>()));
        assert!(!same_arg_type(string, type_name::<u32>()));
        assert!(!same_arg_type(type_name::<u32>(), type_name::<u64>()));
    }
}
