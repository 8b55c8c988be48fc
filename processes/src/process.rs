//! The engine's processes: what a process is before it starts (a closure to fork, or a program to
//! re-execute), starting it, joining a group, and throwing away ones that never start.
//!
//! Core's `Process`, `parallel`, `sequence` and `spawn` are written over these; how a child is
//! forked or executed, reports and is reaped is in `children.rs`.

use crate::ThreadSlot;
use crate::children::{self, Body, Child, ExecSpec, exec_start, fork_start};
use crate::codec;
use cspnet_core::{Cause, Outcome, ProcessContext, discard_unstarted};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A process of the processes engine before it starts: a closure run in a `fork`, or a registered
/// function run by a re-executed copy of the program (`exec`).
pub struct Start<T>(pub(crate) Kind<T>);

pub(crate) enum Kind<T> {
    Closure(Body<T>),
    Exec(ExecSpec),
}

/// A started child, until it is joined.
pub(crate) type Running = Child;

pub(crate) fn start<T: Serialize + 'static>(
    ctx: ProcessContext,
    start: Start<T>,
) -> Result<Running, Cause> {
    match start.0 {
        Kind::Closure(body) => fork_start::<T>(ctx, body),
        Kind::Exec(spec) => exec_start(&ctx, spec),
    }
}

/// Waits for every child and decodes each report as the body's outcome.
pub(crate) fn join_all<T: DeserializeOwned>(
    running: Vec<Result<Running, Cause>>,
) -> Vec<Result<Outcome<T>, Cause>> {
    children::join_all(running)
        .into_iter()
        .map(|report| {
            report.and_then(|bytes| {
                codec::from_bytes::<Outcome<T>>(&bytes)
                    .map_err(|e| Cause::Crashed(format!("sent a result that does not decode: {e}")))
            })
        })
        .collect()
}

/// Processes that will never start: a closure's captured ends poison their channels, and so do the
/// ends serialized for a re-executed child (its `ExecSpec` does that when dropped).
pub(crate) fn discard<T>(starts: Vec<Start<T>>) {
    discard_unstarted::<ThreadSlot, _>(starts);
}
