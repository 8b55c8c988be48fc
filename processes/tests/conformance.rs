//! The conformance suite from cspnet-core, run on the processes backend (every process a fork).
cspnet_core::conformance_suite!(cspnet_processes);
