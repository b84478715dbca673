//! "Fields can be added later, never renumbered": every field, enum value
//! and RPC of `tucdesk.v1` is recorded in `tests/wire_golden.txt`, and this
//! test fails when one of them disappears or changes number, type, label or
//! streaming mode.
//!
//! After *adding* fields, values or RPCs, record them with
//! `TUCDESK_BLESS_WIRE=1 cargo test -p tucdesk-proto --test wire_compat`.
//! Blessing refuses to run while a recorded line is missing, so it can never
//! hide a breaking change. Removing a field means replacing it with a
//! `reserved` statement in the .proto and editing the golden file by hand in
//! the same reviewed commit.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

const PACKAGE: &str = "tucdesk.v1";
const BLESS_VAR: &str = "TUCDESK_BLESS_WIRE";

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/wire_golden.txt")
}

fn type_name(t: Type) -> &'static str {
    match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Group => "group",
        Type::Message => "message",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Enum => "enum",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
    }
}

fn enum_lines(prefix: &str, e: &EnumDescriptorProto, out: &mut BTreeSet<String>) {
    let name = format!("{prefix}.{}", e.name());
    for v in &e.value {
        out.insert(format!("enum {name}.{} = {}", v.name(), v.number()));
    }
    for r in &e.reserved_range {
        out.insert(format!("enum {name} reserved {}..={}", r.start(), r.end()));
    }
    for r in &e.reserved_name {
        out.insert(format!("enum {name} reserved \"{r}\""));
    }
}

fn message_lines(prefix: &str, m: &DescriptorProto, out: &mut BTreeSet<String>) {
    let name = format!("{prefix}.{}", m.name());
    out.insert(format!("message {name}"));
    for f in &m.field {
        let ty = match f.r#type() {
            Type::Message | Type::Enum => f.type_name().trim_start_matches('.').to_owned(),
            t => type_name(t).to_owned(),
        };
        let label = match f.label() {
            Label::Repeated => "repeated",
            Label::Required => "required",
            Label::Optional if f.proto3_optional() => "optional",
            Label::Optional => "singular",
        };
        let oneof = match f.oneof_index {
            Some(i) if !f.proto3_optional() => {
                let oneof = m.oneof_decl.get(usize::try_from(i).expect("index fits"));
                format!(" oneof {}", oneof.map(|o| o.name()).unwrap_or("?"))
            }
            _ => String::new(),
        };
        out.insert(format!(
            "field {name}.{} = {} {label} {ty}{oneof}",
            f.name(),
            f.number()
        ));
    }
    for r in &m.reserved_range {
        // Descriptor ranges are end-exclusive for messages.
        out.insert(format!(
            "message {name} reserved {}..{}",
            r.start(),
            r.end()
        ));
    }
    for r in &m.reserved_name {
        out.insert(format!("message {name} reserved \"{r}\""));
    }
    for nested in &m.nested_type {
        message_lines(&name, nested, out);
    }
    for e in &m.enum_type {
        enum_lines(&name, e, out);
    }
}

fn current_lines() -> BTreeSet<String> {
    let set = FileDescriptorSet::decode(tucdesk_proto::FILE_DESCRIPTOR_SET)
        .expect("embedded descriptor set decodes");
    let mut out = BTreeSet::new();
    for file in set.file.iter().filter(|f| f.package() == PACKAGE) {
        for m in &file.message_type {
            message_lines(PACKAGE, m, &mut out);
        }
        for e in &file.enum_type {
            enum_lines(PACKAGE, e, &mut out);
        }
        for s in &file.service {
            for rpc in &s.method {
                let stream = |b: bool| if b { "stream " } else { "" };
                out.insert(format!(
                    "rpc /{PACKAGE}.{}/{} ({}{}) returns ({}{})",
                    s.name(),
                    rpc.name(),
                    stream(rpc.client_streaming()),
                    rpc.input_type().trim_start_matches('.'),
                    stream(rpc.server_streaming()),
                    rpc.output_type().trim_start_matches('.'),
                ));
            }
        }
    }
    out
}

fn golden_lines() -> BTreeSet<String> {
    match std::fs::read_to_string(golden_path()) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("cannot read {}: {e}", golden_path().display()),
    }
}

#[test]
fn no_field_enum_value_or_rpc_was_renumbered_retyped_or_removed() {
    let current = current_lines();
    let golden = golden_lines();
    let missing: Vec<&String> = golden.difference(&current).collect();
    assert!(
        missing.is_empty(),
        "wire contract broken: these recorded definitions are gone or changed \
         (never renumber or reuse; add a `reserved` line instead):\n{}",
        missing
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let added: Vec<&String> = current.difference(&golden).collect();
    if added.is_empty() {
        return;
    }
    if std::env::var_os(BLESS_VAR).is_some() {
        let mut text = String::from(
            "# tucdesk.v1 wire contract, checked by tests/wire_compat.rs.\n\
             # Lines may be added (TUCDESK_BLESS_WIRE=1), never changed or removed.\n",
        );
        for line in &current {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(golden_path(), text).expect("write golden file");
        return;
    }
    panic!(
        "{} new definitions are not recorded yet; run \
         `{BLESS_VAR}=1 cargo test -p tucdesk-proto --test wire_compat` and commit \
         tests/wire_golden.txt:\n{}",
        added.len(),
        added
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_enum_starts_with_unspecified_zero() {
    let set = FileDescriptorSet::decode(tucdesk_proto::FILE_DESCRIPTOR_SET).unwrap();
    fn check(e: &EnumDescriptorProto) {
        let first = e.value.first().expect("enum has values");
        assert_eq!(first.number(), 0, "{}: first value must be 0", e.name());
        assert!(
            first.name().ends_with("_UNSPECIFIED"),
            "{}: zero value must be *_UNSPECIFIED",
            e.name()
        );
    }
    fn walk(m: &DescriptorProto) {
        m.enum_type.iter().for_each(check);
        m.nested_type.iter().for_each(walk);
    }
    for file in set.file.iter().filter(|f| f.package() == PACKAGE) {
        file.enum_type.iter().for_each(check);
        file.message_type.iter().for_each(walk);
    }
}

#[test]
fn every_connect_message_carries_the_protocol_version_as_field_1() {
    let set = FileDescriptorSet::decode(tucdesk_proto::FILE_DESCRIPTOR_SET).unwrap();
    let connects = [
        "Register",
        "EnrollRequest",
        "LoginRequest",
        "RedeemSupportCodeRequest",
        "CreateSessionRequest",
        "RelayHello",
        "UploadStart",
        "Hello",
    ];
    for name in connects {
        let msg = set
            .file
            .iter()
            .filter(|f| f.package() == PACKAGE)
            .flat_map(|f| f.message_type.iter())
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("message {name} exists"));
        let field = msg
            .field
            .iter()
            .find(|f| f.number() == 1)
            .unwrap_or_else(|| panic!("{name} has field 1"));
        assert_eq!(field.name(), "protocol_version", "{name}: field 1");
        assert_eq!(field.r#type(), Type::Uint32, "{name}: field 1 type");
    }
}
