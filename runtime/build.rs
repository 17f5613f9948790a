//! Compiles the gRPC protocol and makes the binary find and keep libtorch by itself.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/grpc_service.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Tensor contents as `Bytes`: slices of the request buffer, no copies.
        .bytes(".inference")
        .compile_protos(&["proto/grpc_service.proto"], &["proto"])?;
    link_libtorch();
    Ok(())
}

/// Adds an rpath to the libtorch directory torch-sys linked against, and keeps
/// `libtorch_cuda.so` in the dynamic section.
///
/// Nothing in the binary references a symbol of `libtorch_cuda.so`, so the linker's
/// default `--as-needed` drops it and libtorch then never registers its CUDA backend:
/// `tch::Cuda::is_available()` is false even on a GPU. The library loads fine on a
/// machine without a GPU (CUDA itself is opened lazily).
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB is unset: no rpath to libtorch");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
