//! The worker: decode stems, run the mastering graph, measure loudness, write
//! and verify files, and serve tasks leased from a coordinator.
//!
//! `dsp` knows nothing about files or gRPC; `tasks` knows nothing about gRPC;
//! only `service` talks to the coordinator.

pub mod bwf;
pub mod decode;
pub mod dialogue;
pub mod dsp;
pub mod measure_file;
pub mod meter;
pub mod output;
pub mod preflight;
pub mod report;
pub mod service;
pub mod source;
pub mod tasks;
