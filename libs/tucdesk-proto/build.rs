//! Compiles `proto/tucdesk/v1/*.proto` into Rust (prost messages, tonic
//! clients and servers) and writes the file descriptor set next to them.
//!
//! Needs `protoc` (Debian/Ubuntu: `apt-get install protobuf-compiler`), found
//! through `$PROTOC` or on `PATH`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::{env, io};

/// The protos, relative to the include root. Listed explicitly so that a
/// stray file in the directory never becomes part of the wire contract.
const PROTO_FILES: &[&str] = &[
    "tucdesk/v1/common.proto",
    "tucdesk/v1/session.proto",
    "tucdesk/v1/auth.proto",
    "tucdesk/v1/rendezvous.proto",
    "tucdesk/v1/relay.proto",
    "tucdesk/v1/audit.proto",
    "tucdesk/v1/recorder.proto",
];

/// File name of the encoded `FileDescriptorSet` in `OUT_DIR`.
const DESCRIPTOR_FILE: &str = "tucdesk_v1_descriptor.bin";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Cargo prints build-script stderr on failure; keep it readable.
            eprintln!("error: tucdesk-proto build failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or("CARGO_MANIFEST_DIR is not set (run through cargo)")?;
    let out_dir = env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .ok_or("OUT_DIR is not set (run through cargo)")?;
    let proto_root = manifest_dir.join("../../proto");
    let proto_root = proto_root
        .canonicalize()
        .map_err(|e| format!("proto directory {} not found: {e}", proto_root.display()))?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }

    check_protoc()?;

    let protos: Vec<PathBuf> = PROTO_FILES.iter().map(|f| proto_root.join(f)).collect();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Methods a service has not implemented answer UNIMPLEMENTED instead of needing
        // hand-written stubs, so services grow method by method.
        .generate_default_stubs(true)
        // No generated `XClient::connect(url)` helper: AgentLink has an RPC
        // named `Connect`, which would clash with it. Callers build a
        // `tonic::transport::Channel` (with their TLS, timeouts and message
        // limits) and use `XClient::new(channel)`.
        .build_transport(false)
        // BTreeMap for every map field: encoding is then deterministic, so a
        // decoded message re-encodes to the same bytes (HashMap order varies
        // per process).
        .btree_map(".")
        // Small initial stream buffers (see src/codec.rs): tens of thousands of agent streams
        // per rendezvous replica.
        .codec_path("crate::codec::CompactCodec")
        .file_descriptor_set_path(out_dir.join(DESCRIPTOR_FILE))
        .compile_protos(&protos, std::slice::from_ref(&proto_root))
        .map_err(|e| format!("protoc/prost code generation failed: {e}"))?;
    Ok(())
}

/// Fails with an actionable message when `protoc` cannot be run, instead of
/// prost-build's generic "Could not find `protoc`".
fn check_protoc() -> Result<(), String> {
    let protoc = env::var_os("PROTOC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("protoc"));
    match Command::new(&protoc).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{} --version` exited with {}: {}",
            protoc.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "`{}` not found. Install the Protocol Buffers compiler \
             (Debian/Ubuntu: `apt-get install protobuf-compiler`; macOS: \
             `brew install protobuf`) or set PROTOC to its path.",
            protoc.display()
        )),
        Err(e) => Err(format!("cannot run `{}`: {e}", protoc.display())),
    }
}
