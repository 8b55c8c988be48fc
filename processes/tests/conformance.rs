//! The conformance suite from cspnet-core, run on the processes backend (every process a fork).
//! Linux only, like the processes backend itself.
#![cfg(target_os = "linux")]

use cspnet_processes as csp;
include!("../../core/src/suite/conformance.rs");
