//! Raw baselines: the benchmark networks written directly on the libraries the backends build on.
#![allow(dead_code)] // each bench uses its own part of this module

pub(crate) mod crossbeam;
