//! The coordinator: the scheduler (a pure state machine), job storage, the
//! gRPC services, the in-process cluster behind `render`, and the demo.

pub mod bench;
pub mod bench_cluster;
pub mod check;
pub mod daemon;
pub mod demo;
pub mod local;
pub mod measure;
pub mod metrics;
pub mod metrics_http;
pub mod remote;
pub mod scheduler;
pub mod security;
pub mod server;
pub mod settings;
pub mod sqlite_store;
pub mod store;
