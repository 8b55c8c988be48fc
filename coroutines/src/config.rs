//! Worker count, coroutine stack size and io() helper pool size: from the environment or from code.

use std::fmt;
use std::sync::OnceLock;

/// Default coroutine stack: 64 KiB of address space, of which a process touches only the pages it
/// uses (two 4 KiB pages for a typical CSP process).
///
/// ```
/// assert_eq!(cspnet_coroutines::DEFAULT_STACK_SIZE, 64 * 1024);
/// ```
pub const DEFAULT_STACK_SIZE: usize = 64 * 1024;
/// Default bound on io() helper threads.
///
/// ```
/// assert!(cspnet_coroutines::DEFAULT_IO_THREADS >= 100);
/// ```
pub const DEFAULT_IO_THREADS: usize = 256;
/// The smallest stack accepted: one page (may cannot use less).
const MIN_STACK_SIZE: usize = 4096;

/// The settings the coroutine runtime runs with.
///
/// ```
/// let s = cspnet_coroutines::settings();
/// assert!(s.workers() >= 1);
/// assert!(s.stack_size() >= 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    workers: usize,
    stack_size: usize,
    io_threads: usize,
}

impl Settings {
    /// How many OS worker threads run the coroutines.
    ///
    /// ```
    /// assert!(cspnet_coroutines::settings().workers() >= 1);
    /// ```
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The stack size of every CSP process, in bytes.
    ///
    /// ```
    /// assert!(cspnet_coroutines::settings().stack_size() >= 4096);
    /// ```
    pub fn stack_size(&self) -> usize {
        self.stack_size
    }

    /// The most helper threads [`io`](crate::io) runs blocking calls on at once.
    ///
    /// ```
    /// assert!(cspnet_coroutines::settings().io_threads() >= 1);
    /// ```
    pub fn io_threads(&self) -> usize {
        self.io_threads
    }

    fn from_env() -> Settings {
        Settings {
            workers: env_size("CSPNET_WORKERS", 1, may::config().get_workers()),
            stack_size: env_size("CSPNET_STACK_SIZE", MIN_STACK_SIZE, DEFAULT_STACK_SIZE),
            io_threads: env_size("CSPNET_IO_THREADS", 1, DEFAULT_IO_THREADS),
        }
    }
}

/// Reads a size from the environment (core's rule: a number with an optional `k`/`m`/`g`
/// suffix; anything else, or less than `min`, is ignored with a warning naming what is used).
fn env_size(var: &str, min: usize, default: usize) -> usize {
    cspnet_core::env_size("cspnet-coroutines", var, min, default)
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The settings in force, fixing them (from the environment) if no process has started yet.
///
/// ```
/// let s = cspnet_coroutines::settings();
/// assert_eq!(s, cspnet_coroutines::settings());
/// ```
pub fn settings() -> Settings {
    *SETTINGS.get_or_init(|| install(Settings::from_env()))
}

/// Hands the settings to may. Runs once, before the first coroutine starts.
fn install(s: Settings) -> Settings {
    may::config()
        .set_workers(s.workers)
        .set_stack_size(s.stack_size / std::mem::size_of::<usize>());
    s
}

/// Starts configuring the runtime: each setting starts from its environment variable
/// (`CSPNET_WORKERS`, `CSPNET_STACK_SIZE`, `CSPNET_IO_THREADS`) or default.
///
/// Call [`Config::apply`] before the first process starts; later it returns
/// [`ConfigError`] (unless the settings asked for are the ones already in force).
///
/// ```
/// use cspnet_coroutines::{configure, parallel, process};
///
/// // Before the first process starts: the doctest is its own program.
/// configure().workers(2).stack_size(128 * 1024).apply().unwrap();
/// parallel([process(|| Ok(1))]).unwrap();
/// let late = configure().workers(1).apply();
/// assert!(late.unwrap_err().to_string().contains("before the first process starts"));
/// ```
pub fn configure() -> Config {
    Config {
        wanted: Settings::from_env(),
    }
}

/// Settings to apply before the first process starts; see [`configure`].
///
/// ```
/// let c = cspnet_coroutines::configure().workers(2);
/// # let _ = c;
/// ```
#[derive(Debug, Clone)]
#[must_use = "settings take effect only when applied"]
pub struct Config {
    wanted: Settings,
}

impl Config {
    /// The number of OS worker threads (at least 1; default: one per CPU).
    ///
    /// ```
    /// let c = cspnet_coroutines::configure().workers(4);
    /// # let _ = c;
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.wanted.workers = n.max(1);
        self
    }

    /// The stack size of every CSP process in bytes (at least 4096; default 64 KiB). A process
    /// that needs more overflows into a guard page and is reported, never silently corrupting
    /// memory; see the crate docs.
    ///
    /// ```
    /// let c = cspnet_coroutines::configure().stack_size(256 * 1024);
    /// # let _ = c;
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.wanted.stack_size = bytes.max(MIN_STACK_SIZE);
        self
    }

    /// The most helper threads that run [`io`](crate::io) calls at once (at least 1; default 256).
    ///
    /// ```
    /// let c = cspnet_coroutines::configure().io_threads(16);
    /// # let _ = c;
    /// ```
    pub fn io_threads(mut self, n: usize) -> Self {
        self.wanted.io_threads = n.max(1);
        self
    }

    /// Applies the settings. Fails if processes have already started with different settings.
    ///
    /// ```
    /// let s = cspnet_coroutines::configure().workers(3).apply().unwrap();
    /// assert_eq!(s.workers(), 3);
    /// ```
    pub fn apply(self) -> Result<Settings, ConfigError> {
        let wanted = self.wanted;
        let mut fresh = false;
        let current = *SETTINGS.get_or_init(|| {
            fresh = true;
            install(wanted)
        });
        if fresh || current == wanted {
            Ok(current)
        } else {
            Err(ConfigError { current, wanted })
        }
    }
}

/// [`Config::apply`] was called after the runtime had started with other settings.
///
/// ```
/// cspnet_coroutines::configure().workers(2).apply().unwrap();
/// let e = cspnet_coroutines::configure().workers(1).apply().unwrap_err();
/// assert_eq!(e.current().workers(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    current: Settings,
    wanted: Settings,
}

impl ConfigError {
    /// The settings the runtime is running with.
    ///
    /// ```
    /// cspnet_coroutines::configure().workers(2).apply().unwrap();
    /// let e = cspnet_coroutines::configure().workers(5).apply().unwrap_err();
    /// assert_eq!(e.current().workers(), 2);
    /// ```
    pub fn current(&self) -> Settings {
        self.current
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cspnet-coroutines is already running with {:?}, so {:?} cannot take effect: call \
             configure() before the first process starts (or set CSPNET_WORKERS, \
             CSPNET_STACK_SIZE, CSPNET_IO_THREADS)",
            self.current, self.wanted
        )
    }
}

impl std::error::Error for ConfigError {}
