//! Opaque page tokens for keyset paging by sequence number.
//!
//! A token is `base64url(fingerprint(8) ‖ u64be(cursor))`; the fingerprint is a hash of the
//! request's filter, so a token is only valid with the filter it was issued for. Tokens are
//! not secret and not signed: a forged cursor only moves the caller within their own team.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use tucdesk_proto::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_TOKEN_LEN};
use tucdesk_proto::v1::{PageRequest, PageResponse};

use crate::error::AuditError;

const FINGERPRINT_LEN: usize = 8;

/// A filter's fingerprint.
pub type Fingerprint = [u8; FINGERPRINT_LEN];

/// The page size a request asks for: 0 means the default, anything above the cap is capped.
pub fn page_size(page: Option<&PageRequest>) -> u32 {
    match page.map_or(0, |p| p.page_size) {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// A fingerprint of the filter fields, each length-prefixed so fields cannot run together.
pub fn fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut out = [0u8; FINGERPRINT_LEN];
    out.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    out
}

/// The cursor inside `page`'s token, or `None` for the first page.
pub fn cursor(page: Option<&PageRequest>, filter: &Fingerprint) -> Result<Option<u64>, AuditError> {
    let token = page.map_or("", |p| p.page_token.as_str());
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || AuditError::InvalidArgument("page_token is invalid for this request".into());
    if token.len() > MAX_PAGE_TOKEN_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    if bytes.len() != FINGERPRINT_LEN + 8 || bytes[..FINGERPRINT_LEN] != filter[..] {
        return Err(invalid());
    }
    let mut cursor = [0u8; 8];
    cursor.copy_from_slice(&bytes[FINGERPRINT_LEN..]);
    Ok(Some(u64::from_be_bytes(cursor)))
}

/// The response page: a token resuming after `last` when the page was full.
pub fn next_page(filter: &Fingerprint, last: Option<u64>) -> PageResponse {
    let next_page_token = last.map_or_else(String::new, |cursor| {
        let mut bytes = filter.to_vec();
        bytes.extend_from_slice(&cursor.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    });
    PageResponse { next_page_token }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_roundtrip_and_bind_to_their_filter() {
        let filter = fingerprint(&[b"auth.login"]);
        let page = next_page(&filter, Some(42));
        let request = PageRequest {
            page_size: 10,
            page_token: page.next_page_token,
        };
        assert_eq!(cursor(Some(&request), &filter).unwrap(), Some(42));
        assert!(cursor(Some(&request), &fingerprint(&[b"x"])).is_err());
        assert_eq!(next_page(&filter, None).next_page_token, "");
    }

    #[test]
    fn sizes_default_and_cap_and_junk_is_refused() {
        assert_eq!(page_size(None), DEFAULT_PAGE_SIZE);
        let huge = PageRequest {
            page_size: 10_000,
            page_token: "!!!".into(),
        };
        assert_eq!(page_size(Some(&huge)), MAX_PAGE_SIZE);
        assert!(cursor(Some(&huge), &fingerprint(&[])).is_err());
    }
}
