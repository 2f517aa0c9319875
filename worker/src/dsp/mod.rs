//! The mastering graph. Knows nothing about gRPC, files or tasks: blocks in, blocks out.

pub mod block;
pub mod chain;
pub mod graph;
pub mod math;
pub mod node;
pub mod nodes;

pub use block::Block;
pub use graph::MixGraph;
pub use node::{Node, db_to_gain, gain_to_db};
