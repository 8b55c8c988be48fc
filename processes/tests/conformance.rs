//! The conformance suite from cspnet-core, run on the processes backend (every process a fork).
//! Linux only, like the processes backend itself.
#![cfg(target_os = "linux")]

cspnet_core::conformance_suite!(cspnet_processes);
