fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc: a fresh machine needs nothing installed.
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["stemforge/v1/stemforge.proto"],
        &["."],
    )?;
    println!("cargo:rerun-if-changed=stemforge/v1/stemforge.proto");
    Ok(())
}
