//! cspnet: Communicating Sequential Processes for Rust.
#![warn(missing_docs)]
pub use cspnet_core as core;
