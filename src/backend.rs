//! Choosing a backend at run time: the [`Backend`] names and the [`with_backend!`](crate::with_backend) macro.

use std::fmt;
use std::str::FromStr;

/// The three implementations of the cspnet API.
///
/// ```
/// use cspnet::Backend;
/// let b: Backend = "threads".parse().unwrap();
/// assert_eq!(b, Backend::Threads);
/// assert_eq!(b.to_string(), "threads");
/// assert!(Backend::Threads.is_available());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Every CSP process is an OS thread (`cspnet::threads`).
    Threads,
    /// Every CSP process is an OS process; channels live in shared memory (`cspnet::processes`).
    Processes,
    /// Every CSP process is a stackful coroutine (`cspnet::coroutines`).
    Coroutines,
}

impl Backend {
    /// All three, in the order the docs list them.
    ///
    /// ```
    /// assert_eq!(cspnet::Backend::ALL.len(), 3);
    /// ```
    pub const ALL: [Backend; 3] = [Backend::Threads, Backend::Processes, Backend::Coroutines];

    /// The name used on command lines and in `use cspnet::<name> as csp;`.
    ///
    /// ```
    /// assert_eq!(cspnet::Backend::Coroutines.name(), "coroutines");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Threads => "threads",
            Backend::Processes => "processes",
            Backend::Coroutines => "coroutines",
        }
    }

    /// Whether this build of cspnet includes the backend (each is a cargo feature of `cspnet`).
    ///
    /// ```
    /// let built: Vec<_> = cspnet::Backend::ALL.into_iter().filter(|b| b.is_available()).collect();
    /// assert!(!built.is_empty());
    /// ```
    pub const fn is_available(self) -> bool {
        match self {
            Backend::Threads => cfg!(feature = "threads"),
            Backend::Processes => cfg!(all(feature = "processes", target_os = "linux")),
            Backend::Coroutines => cfg!(feature = "coroutines"),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, BackendError> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| BackendError::Unknown(s.to_owned()))
    }
}

/// A backend that cannot be used: an unknown name, or one this build of cspnet does not include.
///
/// ```
/// use cspnet::{Backend, BackendError};
/// let e = "fibers".parse::<Backend>().unwrap_err();
/// assert!(matches!(e, BackendError::Unknown(_)));
/// assert!(e.to_string().contains("threads, processes, coroutines"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Not one of `threads`, `processes`, `coroutines`.
    #[error("unknown backend '{0}': choose one of threads, processes, coroutines")]
    Unknown(String),
    /// The backend exists but this build does not include it.
    #[error(
        "the '{0}' backend is not built into this program: enable cspnet's '{0}' cargo feature \
         (it is on by default), or choose another backend"
    )]
    NotBuilt(Backend),
    /// The backend cannot run on this platform (the processes backend needs Linux: memfd,
    /// futexes, robust process-shared mutexes).
    #[error("the '{0}' backend runs only on Linux; choose threads or coroutines here")]
    Unsupported(Backend),
}

/// Runs a block against the backend chosen at run time, with `csp` standing for its module.
///
/// The block is compiled once per backend built into cspnet, so it must type-check against each of
/// them (which code written to the shared API does). Evaluates to `Ok(value of the block)`, or
/// `Err(BackendError::NotBuilt(..))` when the chosen backend is not part of this build.
///
/// ```
/// use cspnet::{Backend, with_backend};
///
/// let backend: Backend = "threads".parse().unwrap();
/// let sum = with_backend!(backend, csp => {
///     let ch = csp::Channel::<u64>::new();
///     let (r, w) = (ch.reader(), ch.writer());
///     let out = csp::parallel([
///         csp::process(move || { for i in 1..=10 { w.write(i)?; } Ok(0) }),
///         csp::process(move || { let mut s = 0; for v in r { s += v?; } Ok(s) }),
///     ]).unwrap();
///     out[1]
/// });
/// assert_eq!(sum, Ok(Ok(55)));
/// ```
#[macro_export]
macro_rules! with_backend {
    ($backend:expr, $csp:ident => $body:block) => {
        match $backend {
            $crate::Backend::Threads => $crate::__cspnet_threads!($csp, $body),
            $crate::Backend::Processes => $crate::__cspnet_processes!($csp, $body),
            $crate::Backend::Coroutines => $crate::__cspnet_coroutines!($csp, $body),
        }
    };
}

#[cfg(feature = "threads")]
#[doc(hidden)]
#[macro_export]
macro_rules! __cspnet_threads {
    ($csp:ident, $body:block) => {
        ::core::result::Result::<_, $crate::BackendError>::Ok({
            #[allow(unused_imports)]
            use $crate::threads as $csp;
            $body
        })
    };
}

#[cfg(not(feature = "threads"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __cspnet_threads {
    ($csp:ident, $body:block) => {
        ::core::result::Result::Err($crate::BackendError::NotBuilt($crate::Backend::Threads))
    };
}

#[cfg(all(feature = "processes", target_os = "linux"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __cspnet_processes {
    ($csp:ident, $body:block) => {
        ::core::result::Result::<_, $crate::BackendError>::Ok({
            #[allow(unused_imports)]
            use $crate::processes as $csp;
            $body
        })
    };
}

#[cfg(not(feature = "processes"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __cspnet_processes {
    ($csp:ident, $body:block) => {
        ::core::result::Result::Err($crate::BackendError::NotBuilt($crate::Backend::Processes))
    };
}

#[cfg(all(feature = "processes", not(target_os = "linux")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __cspnet_processes {
    ($csp:ident, $body:block) => {
        ::core::result::Result::Err($crate::BackendError::Unsupported(
            $crate::Backend::Processes,
        ))
    };
}

#[cfg(feature = "coroutines")]
#[doc(hidden)]
#[macro_export]
macro_rules! __cspnet_coroutines {
    ($csp:ident, $body:block) => {
        ::core::result::Result::<_, $crate::BackendError>::Ok({
            #[allow(unused_imports)]
            use $crate::coroutines as $csp;
            $body
        })
    };
}

#[cfg(not(feature = "coroutines"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __cspnet_coroutines {
    ($csp:ident, $body:block) => {
        ::core::result::Result::Err($crate::BackendError::NotBuilt($crate::Backend::Coroutines))
    };
}
