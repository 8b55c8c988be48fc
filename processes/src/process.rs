//! The engine's processes: what a process is before it starts (a closure to fork, or a program to
//! re-execute), starting it, joining a group, and throwing away ones that never start.
//!
//! Core's `Process`, `parallel`, `sequence` and `spawn` are written over these; how a child is
//! forked or executed, reports and is reaped is in `children.rs`.

use crate::ThreadSlot;
use crate::children::{Body, Child, ExecSpec, Watched, exec_start, fork_start, watch};
use crate::codec;
use cspnet_core::{Cause, Ending, Outcome, ProcessContext, Report, discard_unstarted};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A process of the processes engine before it starts: a closure run in a `fork`, or a registered
/// function run by a re-executed copy of the program (`exec`).
pub struct Start<T>(pub(crate) Kind<T>);

pub(crate) enum Kind<T> {
    Closure(Body<T>),
    Exec(ExecSpec),
}

/// A started child, watched by a thread of this process until it is reaped.
pub(crate) type Running = Watched;

/// Starts the child and its watcher, which decodes the child's report as the body's outcome.
pub(crate) fn start<T: Serialize + DeserializeOwned + Send + 'static>(
    ctx: ProcessContext,
    start: Start<T>,
    report: Report<T>,
) -> Result<Running, Cause> {
    let on_crash = ctx.on_crash();
    let child: Child = match start.0 {
        Kind::Closure(body) => fork_start::<T>(ctx, body)?,
        Kind::Exec(spec) => exec_start(&ctx, spec)?,
    };
    watch(
        child,
        on_crash,
        Box::new(move |bytes, held, pid| {
            let outcome = bytes.and_then(|bytes| {
                codec::from_bytes::<Outcome<T>>(&bytes)
                    .map_err(|e| Cause::Crashed(format!("sent a result that does not decode: {e}")))
            });
            report(Ending {
                outcome,
                held,
                pid: Some(pid),
            });
        }),
    )
}

/// Processes that will never start: a closure's captured ends poison their channels, and so do the
/// ends serialized for a re-executed child (its `ExecSpec` does that when dropped).
pub(crate) fn discard<T>(starts: Vec<Start<T>>) {
    discard_unstarted::<ThreadSlot, _>(starts);
}
