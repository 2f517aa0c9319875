//! The stemforge gRPC API (`stemforge.v1`), generated from `stemforge/v1/stemforge.proto`.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("stemforge.v1");
}
