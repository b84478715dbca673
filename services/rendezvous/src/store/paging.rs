//! Opaque page tokens for keyset paging.
//!
//! A token is `base64url(fingerprint(8) ‖ cursor)`, where the fingerprint is a hash of the
//! request's filter: a token is only valid with the filter it was issued for (a changed filter
//! would otherwise resume at a meaningless position). Tokens are not secret and not signed;
//! a forged cursor only moves the caller within their own team's rows.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use tucdesk_proto::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_TOKEN_LEN};
use tucdesk_proto::v1::{PageRequest, PageResponse};

use crate::error::RendezvousError;

const FINGERPRINT_LEN: usize = 8;

/// The page size a request asks for: 0 means the default, anything above the cap is capped.
pub fn page_size(page: Option<&PageRequest>) -> u32 {
    match page.map_or(0, |p| p.page_size) {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// A fingerprint of the filter fields, each length-prefixed so that fields cannot run into
/// each other.
pub fn fingerprint(parts: &[&[u8]]) -> [u8; FINGERPRINT_LEN] {
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
pub fn cursor(
    page: Option<&PageRequest>,
    filter: &[u8; FINGERPRINT_LEN],
) -> Result<Option<Vec<String>>, RendezvousError> {
    let token = page.map_or("", |p| p.page_token.as_str());
    if token.is_empty() {
        return Ok(None);
    }
    let invalid =
        || RendezvousError::InvalidArgument("page_token is invalid for this request".into());
    if token.len() > MAX_PAGE_TOKEN_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    if bytes.len() < FINGERPRINT_LEN || bytes[..FINGERPRINT_LEN] != filter[..] {
        return Err(invalid());
    }
    let text = std::str::from_utf8(&bytes[FINGERPRINT_LEN..]).map_err(|_| invalid())?;
    Ok(Some(text.split('\0').map(str::to_owned).collect()))
}

/// The response page for a cursor (`None`: no more results).
pub fn next_page(filter: &[u8; FINGERPRINT_LEN], cursor: Option<&[&str]>) -> PageResponse {
    let next_page_token = cursor.map_or_else(String::new, |parts| {
        let mut bytes = filter.to_vec();
        bytes.extend_from_slice(parts.join("\0").as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    });
    PageResponse { next_page_token }
}

/// The response page after `rows` ordered by (created_at_ms, id): a full page may have more
/// after its last row, a short one is the end.
pub fn created_page<T>(
    filter: &[u8; FINGERPRINT_LEN],
    rows: &[T],
    size: u32,
    key: impl Fn(&T) -> (i64, &str),
) -> PageResponse {
    let last = (rows.len() == size as usize)
        .then(|| rows.last())
        .flatten()
        .map(|row| {
            let (ms, id) = key(row);
            (ms.to_string(), id.to_owned())
        });
    next_page(
        filter,
        last.as_ref()
            .map(|(ms, id)| [ms.as_str(), id.as_str()])
            .as_ref()
            .map(|parts| &parts[..]),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roundtrip_and_bind_to_their_filter() {
        let filter = fingerprint(&[b"tag:prod"]);
        let page = next_page(&filter, Some(&["web-1", "AAAA"]));
        let request = PageRequest {
            page_size: 10,
            page_token: page.next_page_token,
        };
        assert_eq!(
            cursor(Some(&request), &filter).unwrap(),
            Some(vec!["web-1".to_owned(), "AAAA".to_owned()])
        );
        let other = fingerprint(&[b"tag:dev"]);
        assert!(cursor(Some(&request), &other).is_err());
    }

    #[test]
    fn sizes_default_and_cap() {
        assert_eq!(page_size(None), DEFAULT_PAGE_SIZE);
        let huge = PageRequest {
            page_size: 10_000,
            page_token: String::new(),
        };
        assert_eq!(page_size(Some(&huge)), MAX_PAGE_SIZE);
    }

    #[test]
    fn junk_tokens_are_invalid_arguments() {
        let filter = fingerprint(&[]);
        for token in ["!!!", "AA", &"A".repeat(MAX_PAGE_TOKEN_LEN + 1)] {
            let request = PageRequest {
                page_size: 0,
                page_token: token.to_owned(),
            };
            assert!(cursor(Some(&request), &filter).is_err(), "{token}");
        }
    }
}
