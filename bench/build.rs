//! Generates the `inference.GRPCInferenceService` client (and a server, used by
//! the tests' stub) from the runtime's proto file.

fn main() -> std::io::Result<()> {
    tonic_prost_build::configure()
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .generate_default_stubs(true)
        .compile_protos(
            &["../runtime/proto/grpc_service.proto"],
            &["../runtime/proto"],
        )
}
