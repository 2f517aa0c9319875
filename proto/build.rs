fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc: a fresh machine needs nothing installed.
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // The encoded descriptors back the server reflection service.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("stemforge_descriptor.bin"))
        .compile_with_config(config, &["stemforge/v1/stemforge.proto"], &["."])?;
    println!("cargo:rerun-if-changed=stemforge/v1/stemforge.proto");
    Ok(())
}
