//! Raw baselines: the benchmark networks written directly on what the backends build on.

pub(crate) mod crossbeam;
pub(crate) mod futex;
pub(crate) mod may;
