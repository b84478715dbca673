//! Strict parsing of OAuth request parameters (query strings and form bodies).
//!
//! RFC 6749 §3.1/§3.2: parameters sent without a value are treated as omitted, and a
//! parameter must not be sent more than once — a duplicate is refused rather than resolved,
//! so two components can never disagree on which value counted. Counts and lengths are
//! bounded before anything is kept.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};

/// Most parameters accepted in one request (the largest, the consent form, has 11).
pub const MAX_PARAMS: usize = 24;

/// Longest parameter value accepted; fields with tighter limits check them on use.
pub const MAX_VALUE_LEN: usize = 2048;

/// Longest parameter name accepted (ours are all shorter).
const MAX_NAME_LEN: usize = 64;

/// Media type of form bodies (RFC 6749 §4.1.3, HTML forms).
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Why a parameter set was refused; the message is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("too many parameters")]
    TooMany,
    #[error("parameter {0} is too long")]
    TooLong(String),
    #[error("parameter {0} is repeated")]
    Repeated(String),
    #[error("parameter {0} is required")]
    Missing(&'static str),
    #[error("the body must be {FORM_CONTENT_TYPE}")]
    ContentType,
}

/// Parsed parameters: unique names, non-empty values.
#[derive(Debug, Clone, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes (a query string or a body).
    pub fn parse(input: &[u8]) -> Result<Self, FormError> {
        let mut params = HashMap::new();
        for (count, (name, value)) in url::form_urlencoded::parse(input).enumerate() {
            if count >= MAX_PARAMS {
                return Err(FormError::TooMany);
            }
            if name.len() > MAX_NAME_LEN {
                return Err(FormError::TooLong(String::from("(name)")));
            }
            if value.len() > MAX_VALUE_LEN {
                return Err(FormError::TooLong(name.into_owned()));
            }
            if params.contains_key(name.as_ref()) {
                return Err(FormError::Repeated(name.into_owned()));
            }
            // Empty values are kept until the end so a later duplicate is still caught.
            params.insert(name.into_owned(), value.into_owned());
        }
        params.retain(|_, value| !value.is_empty());
        Ok(Self(params))
    }

    /// Parses a form body after checking its media type.
    pub fn from_form(headers: &HeaderMap, body: &[u8]) -> Result<Self, FormError> {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE));
        if !is_form {
            return Err(FormError::ContentType);
        }
        Self::parse(body)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A required parameter no longer than `max` bytes.
    pub fn required(&self, name: &'static str, max: usize) -> Result<&str, FormError> {
        let value = self.get(name).ok_or(FormError::Missing(name))?;
        if value.len() > max {
            return Err(FormError::TooLong(name.to_owned()));
        }
        Ok(value)
    }

    /// An optional parameter no longer than `max` bytes.
    pub fn optional(&self, name: &str, max: usize) -> Result<Option<&str>, FormError> {
        match self.get(name) {
            Some(value) if value.len() > max => Err(FormError::TooLong(name.to_owned())),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn duplicates_are_refused_and_empty_values_are_omitted() {
        let params = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c"), Some("x y"));
        assert_eq!(
            Params::parse(b"code=1&code=2").unwrap_err(),
            FormError::Repeated("code".into())
        );
        assert_eq!(
            Params::parse(b"code=&code=2").unwrap_err(),
            FormError::Repeated("code".into())
        );
    }

    #[test]
    fn counts_and_lengths_are_bounded() {
        let many: String = (0..=MAX_PARAMS).map(|i| format!("p{i}=1&")).collect();
        assert_eq!(
            Params::parse(many.as_bytes()).unwrap_err(),
            FormError::TooMany
        );
        let long = format!("v={}", "a".repeat(MAX_VALUE_LEN + 1));
        assert!(Params::parse(long.as_bytes()).is_err());
        let params = Params::parse(b"state=abcdef").unwrap();
        assert!(params.required("state", 3).is_err());
        assert_eq!(params.required("code", 3), Err(FormError::Missing("code")));
    }

    #[test]
    fn form_bodies_need_the_form_media_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            Params::from_form(&headers, b"a=1").unwrap_err(),
            FormError::ContentType
        );
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=UTF-8"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            Params::from_form(&headers, b"a=1").unwrap().get("a"),
            Some("1")
        );
    }
}
