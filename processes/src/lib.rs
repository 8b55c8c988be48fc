//! cspnet-processes: work in progress.
pub mod heap;
