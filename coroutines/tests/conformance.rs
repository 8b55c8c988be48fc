//! The conformance suite from cspnet-core, run on the coroutines backend.
cspnet_core::conformance_suite!(cspnet_coroutines);
