//! The coordinator: the scheduler (a pure state machine), job storage, the
//! gRPC services, security and metrics, the coordinator and worker roles
//! (`daemon`), the in-process cluster behind `render` (`local`) and the
//! client calls (`remote`). The `stemforge` command line is its own crate.

pub mod catalog_dir;
pub mod daemon;
pub mod dashboard;
pub mod data_lock;
pub mod local;
pub mod metrics;
pub mod metrics_http;
pub mod ops;
pub mod remote;
pub mod sandbox;
pub mod scheduler;
pub mod schedules;
pub mod security;
pub mod server;
pub mod settings;
pub mod sqlite_store;
pub mod store;
pub mod watch;
pub mod webhooks;
