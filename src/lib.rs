//! The `heimweg` and `heimweg-wg` binaries: argument handling, wiring, signals and shutdown.
//!
//! Library crates do the work; this crate only resolves what the operator asked for, starts the
//! data plane and its UAPI socket, connects the service's reconciler to it, and stops them
//! cleanly.

pub mod files;
pub mod gateway;
pub mod live;
pub mod metrics;
pub mod sink;
pub mod status;
