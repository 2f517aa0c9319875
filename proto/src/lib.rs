//! The stemforge gRPC API (`stemforge.v1`), generated from `stemforge/v1/stemforge.proto`.

pub mod client;
pub mod states;

#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("stemforge.v1");

    /// The encoded `FileDescriptorSet` of this API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("stemforge_descriptor");
}
