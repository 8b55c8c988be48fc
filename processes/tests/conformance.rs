//! The conformance suite from cspnet-core, run on the processes backend (every process a fork).
use cspnet_processes as csp;
include!("../../core/src/suite/conformance.rs");
