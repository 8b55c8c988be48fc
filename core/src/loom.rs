//! The atomics the claim protocol uses: std's, or loom's under `cfg(loom)` so it can be model-checked.
//!
//! Only what [`crate::claim`] needs switches; everything else in the crate keeps std's types, so
//! the crate builds the same under either cfg. This is tokio's `src/loom/` pattern, kept small.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(loom)]
pub(crate) use ::loom::sync::atomic::{AtomicU32, Ordering};
