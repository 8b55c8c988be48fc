//! cspnet-coroutines: work in progress.
