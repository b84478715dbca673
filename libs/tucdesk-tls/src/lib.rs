//! TLS client settings for TucDesk's clients of TLS servers (`wss://` relays, syslog over TLS):
//! the platform's trusted roots, plus an optional extra CA file (a private PKI, or a test
//! certificate). The crypto provider is ring, the same one every TucDesk server uses.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// Largest CA file read.
pub const MAX_CA_FILE_LEN: u64 = 1024 * 1024;

/// Why the TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("reading the CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("no trusted root certificates: the platform store is empty and no CA file was given")]
    NoRoots,
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A rustls client configuration trusting the platform roots and `extra_ca` (PEM).
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    // Unreadable platform certificates are skipped: one bad file must not disable TLS.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let shown = path.display().to_string();
        let ca_err = |message: String| TlsSetupError::CaFile {
            path: shown.clone(),
            message,
        };
        let len = std::fs::metadata(path)
            .map_err(|err| ca_err(err.to_string()))?
            .len();
        if len > MAX_CA_FILE_LEN {
            return Err(ca_err(format!("larger than {MAX_CA_FILE_LEN} bytes")));
        }
        let pem = std::fs::read(path).map_err(|err| ca_err(err.to_string()))?;
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|err| ca_err(err.to_string()))?;
            roots
                .add(cert)
                .map_err(|err| ca_err(format!("not a usable CA certificate: {err}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_err("no PEM certificate in it".into()));
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsSetupError::Config(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let missing = client_config(Some(Path::new("/nonexistent/ca.pem")));
        assert!(matches!(missing, Err(TlsSetupError::CaFile { .. })));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }
}
