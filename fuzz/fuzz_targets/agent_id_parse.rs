//! Agent ids and raw public keys as they arrive in requests
//! (`GetAgentRequest.agent_id`, `RegistrationProof.agent_pubkey`, …).
//!
//! First byte 0: the rest is an `agent_id` string; 1: raw key bytes.
//! Parsing never panics and agrees with an independent check (strict
//! unpadded base64url of 32 bytes, a valid Ed25519 point that is not of
//! small order); every key has exactly one `agent_id`.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use ed25519_dalek::VerifyingKey;
use libfuzzer_sys::fuzz_target;
use tucdesk_crypto::PublicKey;
use tucdesk_proto::limits::{AGENT_ID_LEN, ED25519_PUBLIC_KEY_LEN};

/// The acceptance rule for raw key bytes, from ed25519-dalek directly.
fn key_acceptable(bytes: &[u8]) -> bool {
    <[u8; ED25519_PUBLIC_KEY_LEN]>::try_from(bytes)
        .ok()
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .is_some_and(|k| !k.is_weak())
}

fn check_key(key: &PublicKey) {
    let id = key.agent_id();
    assert_eq!(id.len(), AGENT_ID_LEN);
    assert_eq!(PublicKey::from_agent_id(&id).ok().as_ref(), Some(key));
    assert_eq!(
        PublicKey::from_slice(key.as_bytes()).ok().as_ref(),
        Some(key)
    );
    let fp = key.fingerprint();
    let digest = fp.strip_prefix("SHA256:").expect("fingerprint prefix");
    assert_eq!(STANDARD_NO_PAD.decode(digest).map(|d| d.len()), Ok(32));
    let thumb = key.jwk_thumbprint();
    assert_eq!(URL_SAFE_NO_PAD.decode(&thumb).map(|d| d.len()), Ok(32));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(body) else {
            return;
        };
        let parsed = PublicKey::from_agent_id(text);
        let expected = text.len() == AGENT_ID_LEN
            && URL_SAFE_NO_PAD
                .decode(text)
                .is_ok_and(|b| key_acceptable(&b));
        assert_eq!(parsed.is_ok(), expected, "agent_id {text:?}");
        if let Ok(key) = parsed {
            // Canonical: no second spelling of the same key is accepted.
            assert_eq!(key.agent_id(), text);
            check_key(&key);
        }
    } else {
        let parsed = PublicKey::from_slice(body);
        assert_eq!(parsed.is_ok(), key_acceptable(body));
        if let Ok(key) = parsed {
            assert_eq!(key.as_bytes().as_slice(), body);
            check_key(&key);
        }
    }
});
