//! Redirect URIs: what registration accepts and how an authorization request must match.
//!
//! Accepted at registration (public clients only, so the redirect URI is what keeps a code
//! from reaching an attacker):
//! - `https://…` — matched exactly (RFC 6749 §3.1.2, simple string comparison);
//! - loopback `http://127.0.0.1:{port}/…`, `http://[::1]:{port}/…` and, for the MCP clients
//!   that use it, `http://localhost:{port}/…` (RFC 8252 §7.3). Native apps get an ephemeral
//!   port per run, so the port is ignored when matching; scheme, host, path and query must be
//!   identical. RFC 8252 §8.3 discourages `localhost` (it is a name, not an address); PKCE is
//!   what makes that acceptable: a code caught by whatever else listens on the port is
//!   useless without the client's verifier.
//!
//! Everything else (plain `http` to other hosts, custom schemes, fragments, user info) is
//! refused, and so is a URI not in canonical form, so the string compared is the string
//! redirected to.

use url::Url;

/// Longest redirect URI accepted (`tucdesk_proto::limits::MAX_URL_LEN`).
pub const MAX_REDIRECT_URI_LEN: usize = tucdesk_proto::limits::MAX_URL_LEN;

/// Loopback host names a native client may listen on.
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "[::1]", "localhost"];

/// Why a redirect URI is refused at registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URI is longer than {MAX_REDIRECT_URI_LEN} bytes")]
    TooLong,
    #[error("redirect URI is not an absolute URI")]
    Malformed,
    #[error("redirect URI must be in canonical form: {0}")]
    NotCanonical(String),
    #[error("redirect URI must not have a fragment or user info")]
    FragmentOrUserInfo,
    #[error(
        "redirect URI must be https:// or a loopback http://127.0.0.1:<port>/, \
         http://[::1]:<port>/ or http://localhost:<port>/ URI"
    )]
    Scheme,
}

/// Checks a redirect URI offered at registration.
pub fn validate(uri: &str) -> Result<(), RedirectUriError> {
    let parsed = parse_canonical(uri)?;
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        _ => Err(RedirectUriError::Scheme),
    }
}

fn parse_canonical(uri: &str) -> Result<Url, RedirectUriError> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err(RedirectUriError::TooLong);
    }
    let parsed = Url::parse(uri).map_err(|_| RedirectUriError::Malformed)?;
    if parsed.as_str() != uri {
        return Err(RedirectUriError::NotCanonical(parsed.as_str().to_owned()));
    }
    if parsed.fragment().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RedirectUriError::FragmentOrUserInfo);
    }
    Ok(parsed)
}

fn is_loopback(url: &Url) -> bool {
    url.host_str()
        .is_some_and(|host| LOOPBACK_HOSTS.contains(&host))
}

/// Whether `requested` (from an authorization request) matches one registered URI: exactly,
/// or for a loopback URI with any port.
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(registered), Ok(requested)) = (parse_canonical(registered), parse_canonical(requested))
    else {
        return false;
    };
    registered.scheme() == "http"
        && is_loopback(&registered)
        && requested.scheme() == "http"
        && requested.host_str() == registered.host_str()
        && requested.path() == registered.path()
        && requested.query() == registered.query()
}

/// The redirect target: `uri` with `params` appended to its query.
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut url = Url::parse(uri).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    Some(url.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registration_accepts_https_and_loopback_only() {
        for good in [
            "https://agent.example/callback",
            "https://agent.example:8443/cb?x=1",
            "http://127.0.0.1:33418/callback",
            "http://127.0.0.1/callback",
            "http://[::1]:5000/cb",
            "http://localhost:6274/oauth/callback",
        ] {
            assert_eq!(validate(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("http://agent.example/cb", RedirectUriError::Scheme),
            ("http://127.0.0.2/cb", RedirectUriError::Scheme),
            ("com.example.app:/cb", RedirectUriError::Scheme),
            ("javascript:alert(1)", RedirectUriError::Scheme),
            (
                "https://agent.example/cb#frag",
                RedirectUriError::FragmentOrUserInfo,
            ),
            (
                "https://user@agent.example/cb",
                RedirectUriError::FragmentOrUserInfo,
            ),
            ("/relative", RedirectUriError::Malformed),
        ] {
            assert_eq!(validate(bad), Err(why), "{bad}");
        }
        assert!(matches!(
            validate("HTTPS://Agent.example/cb"),
            Err(RedirectUriError::NotCanonical(_))
        ));
        let long = format!("https://agent.example/{}", "a".repeat(MAX_REDIRECT_URI_LEN));
        assert_eq!(validate(&long), Err(RedirectUriError::TooLong));
    }

    #[test]
    fn loopback_uris_match_on_any_port_and_nothing_else_varies() {
        let registered = "http://127.0.0.1:1234/callback";
        assert!(matches(registered, "http://127.0.0.1:55555/callback"));
        assert!(matches(registered, "http://127.0.0.1/callback"));
        assert!(!matches(registered, "http://127.0.0.1:1234/other"));
        assert!(!matches(registered, "http://[::1]:1234/callback"));
        assert!(!matches(registered, "http://127.0.0.1:1234/callback?x=1"));
        assert!(!matches(registered, "https://127.0.0.1:1234/callback"));
        assert!(!matches(registered, "http://127.0.0.1:1234/callback#x"));
    }

    #[test]
    fn https_uris_match_exactly() {
        let registered = "https://agent.example/cb";
        assert!(matches(registered, registered));
        assert!(!matches(registered, "https://agent.example:443/cb"));
        assert!(!matches(registered, "https://agent.example/cb/"));
        assert!(!matches(registered, "https://agent.example/cb?x=1"));
        assert!(!matches(registered, "https://agent.example:8443/cb"));
    }

    #[test]
    fn redirect_parameters_are_appended_and_encoded() {
        assert_eq!(
            with_params(
                "https://a.example/cb?x=1",
                &[("code", "c"), ("state", "a b&c")]
            )
            .as_deref(),
            Some("https://a.example/cb?x=1&code=c&state=a+b%26c")
        );
    }
}
