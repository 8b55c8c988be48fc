//! cspnet on OS processes: every CSP process is an OS process, every channel lives in shared memory.
//!
//! **Linux only.** It needs `memfd_create`, process-shared futexes, robust process-shared mutexes
//! and `/proc`. On every other target the crate is empty: it builds, so a
//! program that depends on it still compiles there, but it exports nothing.
//!
//! The same API as `cspnet-threads`, name for name: the types are `cspnet_core`'s, written once for
//! every backend, over this crate's engine [`Processes`] ([`Channel<T>`](Channel) is
//! `cspnet_core::Channel<Processes, T>`). Payloads and process results must also be
//! `Serialize + DeserializeOwned` (they cross address spaces). Use it through the facade
//! (`use cspnet::processes as csp;`) so that switching backend is a one-line change.
//!
//! ```
//! use cspnet_processes::{Channel, parallel, process};
//!
//! let numbers = Channel::<u64>::new();
//! let squares = Channel::<u64>::new();
//! let (nw, nr, sw, sr) = (numbers.writer(), numbers.reader(), squares.writer(), squares.reader());
//! let out = parallel([
//!     process(move || { for i in 1..=4 { nw.write(i)?; } Ok(0) }),
//!     process(move || { for n in nr { let n = n?; sw.write(n * n)?; } Ok(0) }),
//!     process(move || { let mut sum = 0; for s in sr { sum += s?; } Ok(sum) }),
//! ])
//! .unwrap();
//! assert_eq!(out[2], Ok(1 + 4 + 9 + 16));
//! ```
//!
//! # How it works, and what it costs
//!
//! - **One shared-memory segment** per program: a `memfd` (so the kernel frees it when the last
//!   process holding it exits, even after `SIGKILL`; nothing appears in `/dev/shm`), mapped
//!   `MAP_SHARED` on first use, before any fork. It is sparse: the default 256 MiB costs only the
//!   pages actually touched. Set the size with `CSPNET_SHM_SIZE` (bytes, or with a `k`/`m`/`g`
//!   suffix, at least `8k`; anything else is ignored with a warning on stderr naming the default
//!   used instead) or [`set_segment_size`] before the first channel. Its layout is in the crate's
//!   `README.md`.
//! - **Channels** are records in that segment. Reads, writes and alternations take one robust,
//!   process-shared mutex for a few hundred nanoseconds and sleep on a futex of their own, so a hop
//!   costs one futex wake and one wait between the two processes concerned, however large the
//!   network (no fixed pools, no notify-all). A process that dies holding the lock poisons only the
//!   channels it was changing (`EOWNERDEAD`).
//! - **Payloads** are encoded with bincode (serde) into a next-fit heap in the segment (`heap`); a
//!   `Vec<u8>` is copied straight, not encoded byte by byte. A value larger than the heap can ever
//!   hold fails at the writer with [`ChannelError::TooLarge`]; a full heap makes writers wait.
//! - **Results** travel back to the parent over ipc-channel, which also carries the bootstrap of
//!   re-executed children.
//! - **Channel ends travel**: `Channel`, `Reader` and `Writer` are `Serialize`/`Deserialize` here
//!   (core's `Mobile`), so they can be [`exec`] arguments or values sent over another channel.
//!   Serializing an end joins the channel on the receiver's behalf, who adopts that membership when
//!   it deserializes: deserialize each serialized end exactly once, in a process of the network.
//!
//! # What this crate is
//!
//! Only the engine: [`Processes`] implements core's `Backend` (a type-erased guard per channel
//! guard, and `select` as one run of the commit protocol), `Carries<T>` (a channel handle that is
//! a segment offset, a read or write as a one-guard operation, a process as a `fork` or an
//! [`exec`]) and `Mobile<T>`. Which guard order `select` uses, when a channel retires, what an
//! alternation with nothing left to wait for does, and how a process's ends leave when it ends are
//! core's rules, the same on every backend. What stays here is what only OS processes need: the
//! segment, the futexes, the census of ends across `fork`, crash recovery, and the
//! [`ExecOptions`] of a re-executed child.
//!
//! # Two ways to start a process
//!
//! **From a closure** ([`process`], then [`parallel`], [`spawn`] or [`sequence`]): the child is a
//! `fork` of the caller. It runs the closure as a CSP process, sends the outcome (or the panic) to
//! the parent, and leaves with `_exit`. The parent drops its own copy of the closure in *census*
//! mode: the ends it captured do not leave the channel (the child holds them now); they are recorded,
//! so if the child dies without reporting (killed, `exit` in the body) the parent poisons exactly
//! those channels, and `parallel` reports `Cause::Crashed("killed by signal 9 (SIGKILL)")` or
//! `Cause::Crashed("exited with status 3 before reporting")`. Each `parallel` waits only for its own
//! children (`waitpid` on their pids), so it is safe to use from many threads at once.
//!
//! **By re-executing the program** ([`exec`]): for programs that must not fork (many threads,
//! libraries holding locks, a simulator that must start fresh). Register the functions a child may
//! run and call [`Registry::init`] first thing in `main`; `exec("name", args)` gives a [`Process`]
//! whose arguments (channel ends among them) are serde-encoded, and whose command-line arguments,
//! environment, directory, stdout, stderr and start timeout you can set with [`ExecOptions`]. The
//! child is the running binary (`/proc/self/exe`, even after a rebuild replaced its file), the
//! types `exec::<A, R>` names are checked against the registered function's, and nothing the child
//! starts in turn inherits the shared segment or cspnet's variables:
//!
//! ```no_run
//! use cspnet_processes::{Channel, ExecOptions, Outcome, Reader, Registry, exec, parallel, process};
//!
//! fn simulate((steps, input): (u32, Reader<f64>)) -> Outcome<f64> {
//!     let mut total = 0.0;
//!     for _ in 0..steps { total += input.read()?; }
//!     Ok(total)
//! }
//!
//! fn main() {
//!     Registry::new().register("simulate", simulate).init();
//!     let ch = Channel::<f64>::new();
//!     let w = ch.writer();
//!     let out = parallel([
//!         exec::<_, f64>("simulate", (3u32, ch.reader())).arg("--quiet").env("OMP_NUM_THREADS", "1"),
//!         process(move || { for x in [1.0, 2.0, 3.0] { w.write(x)?; } Ok(0.0) }),
//!     ])
//!     .unwrap();
//!     assert_eq!(out[0], Ok(6.0));
//! }
//! ```
//!
//! # Fork after initialise
//!
//! Because a closure process is a `fork`, what the parent built before it is simply there in the
//! child, shared copy-on-write. [`forked`] makes a pattern of it (AthenaMP's): build the large,
//! read-only state once, fork `W` workers with hooks before and after the fork, hand them events,
//! merge their outputs, and read each process's RSS and PSS at one moment to see the memory saved.
//! Its docs say when to prefer it over [`exec`] or a fresh process per job.
//!
//! # Fork safety
//!
//! After `fork` only the forking thread exists in the child. A lock that another thread of the
//! parent held at that moment stays locked in the child forever. This crate keeps the common
//! cases safe: it holds std's `stdout` and `stderr` locks across the fork (so children print
//! while other threads of the parent print; a fork waits for a thread that holds
//! `stdout().lock()`, so do not hold that lock while waiting for a child), takes none of its own
//! locks across it otherwise (the segment lock lives in shared memory and is released by its
//! owner as usual), and initialises ipc-channel's lazy state before the first fork. What it cannot
//! make safe is a body that needs a lock some other thread held at the fork: a `Mutex` of the
//! program's, `std::env` while another thread changes the environment, a library's global mutex.
//!
//! So at each fork it looks for the program's other threads (`/proc/self/task`; the threads
//! cspnet runs itself do not count) and, if there are any, says once per program, on stderr:
//! `cspnet-processes: warning: a process is being forked while this program runs N other
//! thread(s) ...`, naming [`exec`] as the remedy: a re-executed child starts fresh, with no
//! inherited lock. Silence it with `CSPNET_FORK_WARNING=off` or [`set_fork_warning`]`(false)` in a
//! program whose threads hold no lock the children need. Test binaries are multi-threaded (the
//! harness runs tests on threads): the warning is written with `eprintln!`, so the harness
//! captures it with the test's output and shows it only for a failing test or with `--nocapture`.
//!
//! # No orphans
//!
//! No process a program starts, directly or not, outlives it, whether it returns from `main`,
//! exits, panics or is killed with `SIGKILL`. Before its first child, the program forks a
//! *watchdog*: it leads a process group of its own, closes every descriptor but the read end of a
//! pipe whose write end only the program holds (close-on-exec, and closed first thing in every
//! forked child), and waits, as a shell (`/bin/sh`, whose command line reads `cspnet-watchdog -c
//! ..`), so that it holds none of the program's memory. Every child joins that group, and
//! whatever a child starts (a `Command`, a shell and its jobs, a sub-network) is born into it.
//! When the program is killed, the pipe reads end-of-file and the watchdog sends `SIGKILL` to the
//! whole group; when it exits, `exit` kills the group itself and reaps the watchdog, so nothing it
//! started runs once `exit` returns. A child of the program survives the end of the thread that
//! started it (join it from any thread).
//!
//! A forked child that starts children of its own puts them in the same group (one watchdog per
//! program) and also has them die with the thread that forked them (`PR_SET_PDEATHSIG`), so a
//! sub-network ends with the process that started it; a child killed that way because its
//! starting thread ended is reported as such (see below). An [`exec`]'d child is a program of its
//! own: if it starts children, it gets its own watchdog. The limits:
//!
//! - A descendant that leaves the group (`setsid`, `setpgid`: a daemon does) is not killed.
//! - Children are not in the terminal's foreground process group. Ctrl-C and Ctrl-Z at a terminal
//!   reach the program, not its children: if Ctrl-C ends the program, the watchdog kills them
//!   (with `SIGKILL`, so they do not see a `SIGINT`); a program that handles `SIGINT` decides
//!   itself what happens to them. A child that reads the terminal is stopped by `SIGTTIN` (and one
//!   that writes to it under `stty tostop` by `SIGTTOU`).
//! - A program has one more OS process, the watchdog. If someone kills it, the next child starts
//!   a new one, but the children started before then are unguarded.
//! - What a forked child started with `Command` (not a cspnet process) outlives that child if it
//!   crashes, until the program ends.
//!
//! For children that must stay in the terminal's group, turn the guard off with
//! `CSPNET_ORPHAN_GUARD=off` or [`set_orphan_guard`]`(false)` before the first child. Children
//! then stay in the caller's group and get `PR_SET_PDEATHSIG`, which covers direct children only
//! (what they start can outlive the program) and kills a child when the *thread* that started it
//! ends. A child killed because that thread ended is reported as
//! `Cause::Crashed("killed by signal 9 (SIGKILL): the thread that started it (\"name\", tid N)
//! ended before it was joined; ...")`: join it from that thread.
//!
//! A payload type that is not `Serialize + DeserializeOwned + Send` is a compile error:
//!
//! ```compile_fail
//! let ch = cspnet_processes::Channel::<std::rc::Rc<u32>>::new();
//! ```
//!
//! A value whose `Serialize` fails at run time (a hand-written impl returning an error, a map
//! serde cannot size) is [`ChannelError::Unencodable`] from `write`, and from an alternation that
//! offers it, before any guard commits: the value is not sent, the writer does not panic, and
//! the channel works on (the other backends move values and never encode them).
//!
//! ```
//! use cspnet_processes::{Channel, ChannelError};
//!
//! struct Refuses;
//! impl serde::Serialize for Refuses {
//!     fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
//!         Err(serde::ser::Error::custom("not today"))
//!     }
//! }
//! # impl<'de> serde::Deserialize<'de> for Refuses {
//! #     fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> { Ok(Refuses) }
//! # }
//! let ch = Channel::<Refuses>::with_buffer(1);
//! let (w, _r) = (ch.writer(), ch.reader());
//! assert!(matches!(w.write(Refuses), Err(ChannelError::Unencodable(_))));
//! ```
//!
//! | | threads | processes |
//! | --- | --- | --- |
//! | payload bounds | `Send + 'static` | `Serialize + DeserializeOwned + Send + 'static` |
//! | a process is | a thread | a `fork` (or a re-executed program) |
//! | one hop | a crossbeam hand-off | a futex wake between two processes |
//! | a crash | a panic, reported | a panic, a signal or an early exit, reported; its channels poisoned |
#![warn(missing_docs)]

// Every module needs Linux: memfd, process-shared futexes, robust mutexes, prctl.
#[cfg(target_os = "linux")]
mod alternation;
#[cfg(target_os = "linux")]
mod channel;
#[cfg(target_os = "linux")]
mod children;
#[cfg(target_os = "linux")]
mod codec;
#[cfg(target_os = "linux")]
mod engine;
#[cfg(target_os = "linux")]
mod exec;
#[cfg(target_os = "linux")]
pub mod forked;
#[cfg(target_os = "linux")]
mod futex;
#[cfg(target_os = "linux")]
pub mod heap;
#[cfg(target_os = "linux")]
mod jobset;
#[cfg(target_os = "linux")]
mod ledger;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
mod shm;

/// Held by the unit tests that use this process's shared segment: they run as threads of one
/// process and share its heap, and one of them checks the heap's free bytes exactly.
#[cfg(all(test, target_os = "linux"))]
pub(crate) static SEGMENT_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(target_os = "linux")]
pub use exec::{ExecFn, ExecOptions, Registry, exec};
#[cfg(target_os = "linux")]
pub use jobset::{JobOutput, JobSet, JobSetArgs, JobSetError, exec_workers};

/// A forked child runs on the thread that forked it, so the process context lives in a thread-local.
#[cfg(target_os = "linux")]
use cspnet_core::ThreadSlot;
#[cfg(target_os = "linux")]
use cspnet_core::{Deadline, Leave, Mobile, ProcessContext, Report, Role};
#[cfg(target_os = "linux")]
use serde::de::DeserializeOwned;
#[cfg(target_os = "linux")]
use serde::{Deserializer, Serialize, Serializer};

/// The processes engine: channel records and a commit protocol in one shared-memory segment, a
/// futex per waiting thread, one OS process per CSP process (a `fork`, or a re-executed program).
///
/// ```
/// use cspnet_processes::{Channel, Processes};
/// let ch: cspnet_core::Channel<Processes, u8> = Channel::<u8>::new();
/// # drop(ch);
/// ```
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Processes;

#[cfg(target_os = "linux")]
cspnet_core::backend_surface!(Processes, cspnet_processes);

#[cfg(target_os = "linux")]
impl Backend for Processes {
    const NAME: &'static str = "processes";
    type Slot = ThreadSlot;
    type Guard<'a> = alternation::Guard<'a>;

    fn select(
        guards: &mut [Self::Guard<'_>],
        order: &[usize],
        deadline: Deadline,
    ) -> Result<Option<usize>, ChannelError> {
        alternation::select(guards, order, deadline)
    }

    /// Ids come from a counter in the segment, so they are unique across the OS processes of the
    /// network (and mapping the segment here, before any fork, lets every child share it).
    fn next_id() -> ProcessId {
        ProcessId::new(shm::segment().next_id())
    }

    fn taking_census() -> bool {
        channel::taking_census()
    }
}

#[cfg(target_os = "linux")]
impl<T: Serialize + DeserializeOwned + Send + 'static> Carries<T> for Processes {
    type Chan = channel::Chan;
    type Start = process::Start<T>;
    type Running = process::Running;
    type Held = channel::Held;

    fn channel(name: Option<&str>, capacity: usize) -> Self::Chan {
        channel::Chan::new(name, capacity)
    }
    fn join(chan: &Self::Chan, role: Role) {
        chan.join(role);
    }
    fn leave(chan: &Self::Chan, role: Role, how: Leave) {
        chan.leave(role, how);
    }
    /// Records the drop instead while a forked child's census is taken (see `channel.rs`).
    fn dropped(chan: &Self::Chan, role: Role) {
        chan.dropped(role);
    }
    fn poison(chan: &Self::Chan) {
        chan.poison();
    }
    fn name(chan: &Self::Chan) -> Option<&str> {
        chan.name()
    }
    fn state(chan: &Self::Chan) -> Result<(), ChannelError> {
        chan.state()
    }
    #[inline]
    fn read(chan: &Self::Chan) -> Result<T, ChannelError> {
        chan.read()
    }
    #[inline]
    fn write(chan: &Self::Chan, value: T) -> Result<(), ChannelError> {
        chan.write(value)
    }
    fn input<'a>(chan: &'a Self::Chan, slot: &'a mut Option<T>) -> Self::Guard<'a> {
        alternation::input(chan.off, slot)
    }
    fn read_held(chan: &Self::Chan) -> Result<(T, Self::Held), ChannelError> {
        chan.read_held()
    }
    fn input_held<'a>(
        chan: &'a Self::Chan,
        slot: &'a mut Option<(T, Self::Held)>,
    ) -> Self::Guard<'a> {
        alternation::input_held(chan.off, slot)
    }
    fn output<'a>(chan: &'a Self::Chan, slot: &'a mut Option<T>) -> Self::Guard<'a> {
        alternation::output(chan.off, slot)
    }
    fn word(chan: &Self::Chan) -> &std::sync::atomic::AtomicU64 {
        &shm::segment().rec::<shm::ChanRec>(chan.off).word
    }
    fn wait_word(chan: &Self::Chan, done: &mut dyn FnMut(u64) -> bool) -> Result<(), ChannelError> {
        engine::wait_word(chan.off, done)
    }
    fn wake_word(chan: &Self::Chan) {
        engine::wake_word(chan.off);
    }
    fn closure<F>(body: F) -> Self::Start
    where
        F: FnOnce() -> Outcome<T> + Send + 'static,
    {
        process::Start(process::Kind::Closure(Box::new(body)))
    }
    fn start(
        ctx: ProcessContext,
        start: Self::Start,
        report: Report<T>,
    ) -> Result<Self::Running, Cause> {
        process::start(ctx, start, report)
    }
    fn finished(running: &Self::Running) -> bool {
        running.finished()
    }
    fn reap(running: Self::Running) {
        running.reap();
    }
    fn pid(running: &Self::Running) -> Option<u32> {
        Some(running.pid())
    }
    fn kill(running: &Self::Running) -> Result<(), KillError> {
        running.kill()
    }
    fn discard(starts: Vec<Self::Start>) {
        process::discard(starts);
    }
}

/// Channel ends travel as `exec` arguments and over channels: serializing joins on the receiver's
/// behalf (and is recorded as an `exec` child's census); deserializing checks the offset lies in
/// the segment and adopts the membership.
#[cfg(target_os = "linux")]
impl<T: Serialize + DeserializeOwned + Send + 'static> Mobile<T> for Processes {
    fn serialize_handle<S: Serializer>(
        chan: &Self::Chan,
        role: Role,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        channel::serialize_handle(chan, role, s)
    }

    fn deserialize_handle<'de, D: Deserializer<'de>>(
        d: D,
        role: Role,
    ) -> Result<Self::Chan, D::Error> {
        channel::deserialize_handle(d, role)
    }
}

/// Sets the size in bytes of the shared-memory segment, before the first channel is made (it
/// overrides `CSPNET_SHM_SIZE`; the default is 256 MiB, sparse). A size below 8 KiB (the header
/// and one page of heap) is raised to 8 KiB. Returns `false` if the segment already exists, in
/// which case nothing changes.
///
/// ```
/// // Too late in a doctest that made no channel yet? No: this is the first use.
/// assert!(cspnet_processes::set_segment_size(64 << 20));
/// let _ch = cspnet_processes::Channel::<u8>::new();
/// assert!(!cspnet_processes::set_segment_size(128 << 20));
/// ```
#[cfg(target_os = "linux")]
pub fn set_segment_size(bytes: usize) -> bool {
    shm::request_size(bytes)
}

/// Silences (`false`) or restores (`true`) the warning this crate gives, once per program, when it
/// forks a process while the program runs other threads (threads cspnet runs itself do not count).
/// Setting `CSPNET_FORK_WARNING=off` in the environment silences it too.
///
/// Silence it only in a program whose threads hold no lock the forked children need; otherwise
/// start the children with [`exec`], which re-executes the program instead of forking it. The
/// test harness runs tests on threads, so a test that forks is warned; the harness captures the
/// warning like any test output and shows it only with a failure (or `--nocapture`).
///
/// ```
/// cspnet_processes::set_fork_warning(false);
/// let worker = std::thread::spawn(|| std::thread::park());
/// let out = cspnet_processes::parallel([cspnet_processes::process(|| Ok(1u8))]).unwrap();
/// assert_eq!(out, vec![Ok(1)]); // forked without a word on stderr
/// # drop(worker);
/// ```
#[cfg(target_os = "linux")]
pub fn set_fork_warning(on: bool) {
    children::set_fork_warning(on);
}

/// Turns the orphan guard on (`true`, the default) or off, before the first child starts (it
/// overrides `CSPNET_ORPHAN_GUARD=off`). Returns `false` if the other choice was already made, in
/// which case nothing changes.
///
/// With the guard on, no process a program starts, directly or not, outlives it: its children run
/// in the process group of a watchdog process (forked before the first child), which kills the
/// whole group when the program ends, normally or by `SIGKILL`. Turn it off for children that must
/// stay in the terminal's foreground process group (one that reads the terminal, or should get
/// its Ctrl-C itself); they then die with the *thread* that started them (`PR_SET_PDEATHSIG`), and
/// what they start themselves can outlive the program. The crate docs have the details.
///
/// ```
/// assert!(cspnet_processes::set_orphan_guard(false));
/// let out = cspnet_processes::parallel([cspnet_processes::process(|| Ok(2u8))]).unwrap();
/// assert_eq!(out, vec![Ok(2)]);
/// assert!(!cspnet_processes::set_orphan_guard(true)); // decided when the child started
/// ```
#[cfg(target_os = "linux")]
pub fn set_orphan_guard(on: bool) -> bool {
    children::set_orphan_guard(on)
}

/// Registers the calling thread as one of cspnet's own, which the fork warning does not count
/// (for cspnet's own threads in other crates, and the tests).
#[doc(hidden)]
#[cfg(target_os = "linux")]
pub fn __register_own_thread() {
    children::register_own_thread();
}

/// Test hook: takes the segment lock as an operation on `reader`'s channel would, runs `then`
/// (which is expected never to return: the fault tests kill the process inside it), and unlocks.
#[doc(hidden)]
#[cfg(target_os = "linux")]
pub fn __hold_segment_lock<T>(reader: &Reader<T>, then: impl FnOnce())
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let _lock = engine::lock(&[reader.raw().off]);
    then();
}
