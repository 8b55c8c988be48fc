//! cspnet-processes: work in progress.
