//! The worker: decode stems, run the mastering graph, measure loudness, write
//! and verify files, and serve tasks leased from a coordinator.
//!
//! `dsp` knows nothing about files or gRPC; `tasks` knows nothing about gRPC;
//! only `service` talks to the coordinator.

pub mod bundle;
pub mod bwf;
pub mod cache;
pub mod decode;
pub mod dialogue;
/// The mastering graph, its own crate (`worker/dsp`): it depends on no async
/// runtime, gRPC, file or task code, and Cargo keeps it so.
pub use stemforge_dsp as dsp;
pub mod measure_file;
pub mod meter;
pub mod output;
pub mod preflight;
pub mod report;
pub mod service;
pub mod source;
pub mod tasks;
