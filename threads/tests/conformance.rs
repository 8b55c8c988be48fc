//! The conformance suite from cspnet-core, run on the threads backend.
use cspnet_threads as csp;
include!("../../core/src/suite/conformance.rs");
