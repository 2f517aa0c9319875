//! The mastering graph. Knows nothing about gRPC, files or tasks: blocks in,
//! blocks out (this crate depends on none of them).

pub mod automation;
pub mod band_limit;
pub mod block;
pub mod chain;
pub mod dither;
pub mod dynamics;
pub mod eq;
pub mod graph;
pub mod limiter;
pub mod math;
pub mod node;
pub mod nodes;
#[cfg(test)]
pub(crate) mod previous;
pub mod resample;
pub mod surround;
pub mod true_peak;

pub use block::Block;
pub use graph::{MixGraph, MixHead, StemBank};
pub use node::{Node, db_to_gain, gain_to_db};
