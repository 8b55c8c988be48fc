//! The conformance suite from cspnet-core, run on the threads backend.
cspnet_core::conformance_suite!(cspnet_threads);
