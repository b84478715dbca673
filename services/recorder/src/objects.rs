//! The object store and the keys recordings live under.
//!
//! ```text
//! tenants/{team_id}/recordings/{yyyy}/{mm}/{dd}/{session_id}.cast.age      the age file
//! tenants/{team_id}/recordings/{yyyy}/{mm}/{dd}/{session_id}.manifest.pb   SignedRecordingManifest
//! uploads/{team_id}/{session_id}/{sha256 hex}/{offset:020}-{call}.part     staged parts
//! uploads/{team_id}/{session_id}/{sha256 hex}/assembled-{call}             the parts joined
//! ```
//!
//! The date is the UTC date of the manifest's `started_at_ms`. Final objects are only ever
//! created, never replaced (`PutMode::Create`, copy-if-not-exists).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::config::{RecorderConfig, StoreUrl};
use crate::error::{RecorderError, StartError};

/// The shared handle of the configured store.
pub type Store = Arc<dyn ObjectStore>;

/// Longest team id used in a key.
const MAX_TEAM_ID_LEN: usize = 128;

/// Refuses an S3 endpoint that would send credentials and data in clear to another machine:
/// `https://` anywhere, `http://` only to a loopback address.
pub fn check_endpoint(endpoint: &str) -> Result<(), StartError> {
    let url = url::Url::parse(endpoint)
        .map_err(|_| StartError::Config(format!("invalid S3 endpoint {endpoint}")))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(StartError::Config(
            "plain http:// S3 endpoints are allowed only on loopback; use https://".into(),
        )),
        _ => Err(StartError::Config(
            "the S3 endpoint must be https://".into(),
        )),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Opens the store `--store` names. A directory is created if missing; an S3 bucket must
/// exist (checked by the readiness probe, not here, so a replica can start before S3).
pub fn open(config: &RecorderConfig) -> Result<Store, StartError> {
    match config.store_url()? {
        StoreUrl::Dir(dir) => {
            std::fs::create_dir_all(&dir).map_err(|err| {
                StartError::Config(format!(
                    "creating the store directory {}: {err}",
                    dir.display()
                ))
            })?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(&dir)?))
        }
        StoreUrl::S3 { bucket } => {
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&config.s3_region)
                // Never replace an object: conditional put (If-None-Match) for the manifest,
                // a multipart copy completed with If-None-Match for the recording.
                .with_conditional_put(S3ConditionalPut::ETagMatch)
                .with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
            if let Some(endpoint) = &config.s3_endpoint {
                check_endpoint(endpoint)?;
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let (Some(id), Some(secret)) =
                (&config.s3_access_key_id, &config.s3_secret_access_key)
            {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = &config.s3_session_token {
                    builder = builder.with_token(token);
                }
            }
            Ok(Arc::new(builder.build()?))
        }
    }
}

/// A team id safe as one key segment.
fn check_team(team_id: &str) -> Result<(), RecorderError> {
    let ok = !team_id.is_empty()
        && team_id.len() <= MAX_TEAM_ID_LEN
        && team_id != "."
        && team_id != ".."
        && team_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(RecorderError::InvalidArgument(
            "team_id cannot be used in an object key".into(),
        ))
    }
}

/// `tenants/{team}/recordings/{yyyy}/{mm}/{dd}/{session}.cast.age`.
pub fn recording_key(
    team_id: &str,
    session_id: &str,
    started_at_ms: u64,
) -> Result<String, RecorderError> {
    check_team(team_id)?;
    tucdesk_proto::validate::uuid("session_id", session_id).map_err(RecorderError::invalid)?;
    let (year, month, day, ..) = tucdesk_recording::keys::utc_datetime(started_at_ms / 1000);
    Ok(format!(
        "tenants/{team_id}/recordings/{year:04}/{month:02}/{day:02}/{session_id}.cast.age"
    ))
}

/// The signed manifest beside a recording: `….manifest.pb`.
pub fn manifest_key(recording_key: &str) -> String {
    let stem = recording_key
        .strip_suffix(".cast.age")
        .unwrap_or(recording_key);
    format!("{stem}.manifest.pb")
}

/// The staging prefix of one upload.
pub fn upload_prefix(team_id: &str, session_id: &str, sha256: &[u8]) -> String {
    format!("uploads/{team_id}/{session_id}/{}", hex::encode(sha256))
}

pub fn part_key(prefix: &str, offset: u64, call: &str) -> String {
    format!("{prefix}/{offset:020}-{call}.part")
}

pub fn assembled_key(prefix: &str, call: &str) -> String {
    format!("{prefix}/assembled-{call}")
}

/// A key as an object store path.
pub fn path(key: &str) -> Result<Path, RecorderError> {
    Path::parse(key).map_err(|err| RecorderError::internal("invalid object key", err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_tenant_prefixed_and_dated_in_utc() {
        let key = recording_key(
            "team-1",
            "0190a5c1-7e2b-7cc0-8000-000000000001",
            1_735_775_999_000, // 2025-01-01T23:59:59Z
        )
        .unwrap_or_default();
        assert_eq!(
            key,
            "tenants/team-1/recordings/2025/01/01/0190a5c1-7e2b-7cc0-8000-000000000001.cast.age"
        );
        assert_eq!(
            manifest_key(&key),
            "tenants/team-1/recordings/2025/01/01/0190a5c1-7e2b-7cc0-8000-000000000001.manifest.pb"
        );
        for team in ["", "..", "a/b", "x y"] {
            assert!(recording_key(team, "0190a5c1-7e2b-7cc0-8000-000000000001", 0).is_err());
        }
        assert!(recording_key("t", "../../etc", 0).is_err());
    }

    #[test]
    fn plain_http_endpoints_only_on_loopback() {
        assert!(check_endpoint("https://s3.eu-west-1.amazonaws.com").is_ok());
        assert!(check_endpoint("http://127.0.0.1:9000").is_ok());
        assert!(check_endpoint("http://[::1]:9000").is_ok());
        assert!(check_endpoint("http://localhost:9000").is_ok());
        assert!(check_endpoint("http://minio.internal:9000").is_err());
        assert!(check_endpoint("http://10.0.0.1:9000").is_err());
        assert!(check_endpoint("ftp://127.0.0.1").is_err());
    }
}
