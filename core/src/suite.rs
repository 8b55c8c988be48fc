//! The conformance suite: one set of tests, run on every backend.
//!
//! The tests live in `core/src/suite/conformance.rs`, which each backend's `tests/conformance.rs`
//! pulls in after naming the backend `csp`:
//!
//! ```ignore
//! use cspnet_threads as csp;
//! include!("../../core/src/suite/conformance.rs");
//! ```
//!
//! `include!` rather than a macro that pastes the tests: a failing assertion inside an included
//! file reports that file and its own line, while one inside a macro's expansion reports only the
//! line of the macro call.
//!
//! The backend must export `Channel`, `Reader`, `Writer`, `Alternation`, `Process`, `Spawned`,
//! `process`, `parallel`, `sequence`, `spawn`, `io`, `current_process_id`, and re-export
//! `ChannelError`, `ProcessError` and `Outcome` from this crate.
//!
//! The suite is the definition of "behaves the same". It runs unchanged on OS processes, so a test
//! observes outcomes only through channels and process return values, never through shared memory,
//! and its payloads are plain serializable types.
//!
//! The topology tests are named after PyCSP's (`One2One`, `Any2One`, ..., `Any_Alting2Any_Alting`),
//! from PyCSP's `test/` directory (MIT licence, Copyright (c) 2009 John Markus Bjørndalen, Brian
//! Vinter, Rune M. Friborg).

/// How much to scale message counts in stress tests: `CSPNET_STRESS` (default 1).
///
/// ```
/// assert!(cspnet_core::suite::stress() >= 1);
/// ```
pub fn stress() -> u32 {
    std::env::var("CSPNET_STRESS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

// The tests are compiled only where a backend includes them. The module is declared, under a cfg
// that is never set, so that `cargo fmt` formats the file with the rest of the crate.
#[cfg(any())]
mod conformance;
