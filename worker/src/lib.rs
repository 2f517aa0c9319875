//! The worker: decode stems, run the mastering graph, measure loudness, write
//! and verify files, and serve tasks leased from a coordinator.
//!
//! `dsp` knows nothing about files or gRPC; `tasks` knows nothing about gRPC;
//! only `service` talks to the coordinator.

pub mod decode;
pub mod dsp;
pub mod meter;
pub mod output;
pub mod service;
pub mod source;
pub mod tasks;
