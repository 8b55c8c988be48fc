//! What the example programs share: the `--backend` flag, error exits, and the compute kernels.
#![allow(dead_code)] // each example uses its own part of this module

pub(crate) mod farm;
pub(crate) mod kernels;

use cspnet::{BackendError, ProcessError};
use std::time::Duration;

/// Unwraps a network's result, or explains what went wrong and exits (2 for a backend that is not
/// available, 1 for a failed process).
pub(crate) fn finish<T>(result: Result<Result<T, ProcessError>, BackendError>) -> T {
    match result {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// Exits with a clear message when an argument is out of range.
pub(crate) fn usage_error(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2);
}

/// Nanoseconds per event, for printing.
pub(crate) fn per(elapsed: Duration, events: u64) -> f64 {
    elapsed.as_nanos() as f64 / events.max(1) as f64
}
