//! The server-rendered login + consent page and the error page of `/oauth/authorize`.
//!
//! No template engine: the pages are a few `format!`s, and every value that came from a
//! request or a registration goes through [`escape_html`] — into text or a double-quoted
//! attribute, never into a script, style or URL context. The responses forbid framing
//! (clickjacking), caching and referrers, and the CSP allows nothing but the one inline
//! stylesheet (by hash): no script runs on the page even if escaping were ever missed.
//! `form-action` is deliberately not set: browsers apply it to the redirect that follows the
//! form submission, which goes to the client's own (loopback or https) redirect URI.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::scope::Scopes;

/// The page's only stylesheet; the CSP allows it by hash.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;\
padding:0 1rem;color:#1b1b1b}h1{font-size:1.3rem}code{word-break:break-all}\
.error{color:#a00;font-weight:600}label{display:block;margin:.6rem 0}\
input[type=email],input[type=password],input[type=text]{width:100%;padding:.4rem}\
button{margin:.8rem .4rem 0 0;padding:.5rem 1rem}";

/// Shown when a client registered no name.
const UNNAMED_CLIENT: &str = "An unnamed application";

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            other => out.push(other),
        }
    }
    out
}

/// Everything the consent page shows and carries over to the form submission.
#[derive(Debug, Clone)]
pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub state: Option<&'a str>,
    pub scopes: &'a Scopes,
    pub code_challenge: &'a str,
    pub form_token: &'a str,
    /// A message about the previous submission.
    pub error: Option<&'a str>,
}

/// Renders the login + consent form.
pub fn consent(page: &ConsentPage<'_>, status: StatusCode) -> Response {
    let name = if page.client_name.trim().is_empty() {
        UNNAMED_CLIENT
    } else {
        page.client_name
    };
    let scopes: String = page
        .scopes
        .iter()
        .map(|scope| {
            format!(
                "<li><code>{}</code>: {}</li>",
                escape_html(scope.as_str()),
                escape_html(scope.description())
            )
        })
        .collect();
    let error = page.error.map_or(String::new(), |message| {
        format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape_html(message)
        )
    });
    let hidden: String = [
        ("response_type", "code"),
        ("client_id", page.client_id),
        ("redirect_uri", page.redirect_uri),
        ("state", page.state.unwrap_or_default()),
        ("scope", &page.scopes.to_string()),
        ("code_challenge", page.code_challenge),
        ("code_challenge_method", "S256"),
        ("csrf_token", page.form_token),
    ]
    .iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape_html(name),
            escape_html(value)
        )
    })
    .collect();
    let body = format!(
        "<h1>Authorize {name}</h1>\
         <p><strong>{name}</strong> wants to use TucDesk as you, with these permissions:</p>\
         <ul>{scopes}</ul>\
         <p>After you approve, you are sent back to <code>{redirect}</code>. Only continue if \
         you started this from your own AI agent.</p>{error}\
         <form method=\"post\" action=\"/oauth/authorize\">{hidden}\
         <label>Email <input type=\"email\" name=\"email\" autocomplete=\"username\" required \
         maxlength=\"254\"></label>\
         <label>Password <input type=\"password\" name=\"password\" \
         autocomplete=\"current-password\" required></label>\
         <label>Authenticator or recovery code (if enabled) <input type=\"text\" \
         name=\"totp_code\" autocomplete=\"one-time-code\" inputmode=\"numeric\" \
         maxlength=\"32\"></label>\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button>\
         </form>",
        name = escape_html(name),
        redirect = escape_html(page.redirect_uri),
    );
    html(status, "Authorize an AI agent", &body)
}

/// An error page, for requests that cannot be redirected back to a client.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>This authorization request cannot be completed</h1>\
         <p class=\"error\" role=\"alert\">{}</p>\
         <p>Start again from your AI agent.</p>",
        escape_html(message)
    );
    html(status, "Authorization error", &body)
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let document = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · TucDesk</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape_html(title)
    );
    let mut response = (status, document).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    insert_security_headers(headers);
    response
}

/// Headers every authorization-endpoint response carries, redirects included: nothing
/// cached (codes, forms), no referrer (the URL holds the request), no framing, no sniffing.
pub fn insert_security_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn content_security_policy() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; \
         frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_html_neutralises_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;y&#x27;"
        );
        assert_eq!(escape_html("plain text · é"), "plain text · é");
        assert_eq!(
            escape_html("&amp;"),
            "&amp;amp;",
            "escaping is not idempotent by design"
        );
    }

    #[tokio::test]
    async fn the_consent_page_escapes_every_value_and_forbids_framing() {
        let scopes = Scopes::all();
        let page = ConsentPage {
            client_name: "<img src=x onerror=alert(1)>",
            client_id: "id\"><script>",
            redirect_uri: "http://127.0.0.1:1/cb?a=1&b=2",
            state: Some("s'\"<>"),
            scopes: &scopes,
            code_challenge: "c",
            form_token: "t",
            error: Some("<b>bad</b>"),
        };
        let response = consent(&page, StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(body.contains("value=\"id&quot;&gt;&lt;script&gt;\""));
        assert!(body.contains("cb?a=1&amp;b=2"));
        for raw in ["<img", "<script", "<b>bad", "s'\"<>"] {
            assert!(!body.contains(raw), "{raw} reached the page unescaped");
        }
    }
}
