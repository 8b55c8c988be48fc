//! The conformance suite from cspnet-core, run on the coroutines backend.
use cspnet_coroutines as csp;
include!("../../core/src/suite/conformance.rs");
