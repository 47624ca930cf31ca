//! Compile `protocol/control.proto` (the local control socket's messages) with protox (a
//! .proto compiler in Rust: no `protoc` binary needed) into prost types.

const PROTO_DIR: &str = "../../protocol";
const PROTO: &str = "control.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_DIR}/{PROTO}");
    let fds = protox::compile([PROTO], [PROTO_DIR])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
