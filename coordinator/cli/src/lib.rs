//! The commands of the `stemforge` binary that are more than a call into
//! the coordinator or worker crates: the benchmarks, `check`, `measure`, `pack`
//! and the spec `render DIR` writes.
//! `main.rs` parses the arguments once and dispatches.

pub mod bench;
pub mod bench_cluster;
pub mod bench_pack;
pub mod cache_cmd;
pub use stemforge_coordinator::catalog_dir;
pub mod check;
pub mod measure;
pub mod pack;
