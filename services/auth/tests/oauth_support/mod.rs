//! A tiny HTTP/1.1 client over a plain TCP stream and the steps of the OAuth flow as an MCP
//! client and a browser perform them, for `tests/oauth.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::TestAuth;

/// A loopback redirect URI, as a native MCP client registers it.
pub const LOOPBACK: &str = "http://127.0.0.1:33418/callback";

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// The query parameters of the `Location` header.
    pub fn location_params(&self) -> BTreeMap<String, String> {
        let location = self.header("location").expect("a redirect");
        let url = url::Url::parse(location).unwrap();
        url.query_pairs().into_owned().collect()
    }
}

/// One request on a fresh connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

pub fn form(params: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

pub async fn get(t: &TestAuth, target: &str) -> HttpResponse {
    http(t.http_addr, "GET", target, None, b"").await
}

pub async fn post_form(t: &TestAuth, target: &str, params: &[(&str, &str)]) -> HttpResponse {
    let body = form(params);
    http(
        t.http_addr,
        "POST",
        target,
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
    )
    .await
}

pub async fn register(t: &TestAuth, metadata: &serde_json::Value) -> HttpResponse {
    let body = serde_json::to_vec(metadata).unwrap();
    http(
        t.http_addr,
        "POST",
        "/oauth/register",
        Some("application/json"),
        &body,
    )
    .await
}

/// Registers a client and returns its id.
pub async fn client(t: &TestAuth, name: &str, redirect_uris: &[&str]) -> String {
    let response = register(
        t,
        &serde_json::json!({
            "client_name": name,
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    response.json()["client_id"].as_str().unwrap().to_owned()
}

/// A PKCE pair: (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = base64_url(&tucdesk_crypto::rng::random_array::<32>().unwrap());
    let challenge = base64_url(&sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `/oauth/authorize?…` for a standard request; `extra` overrides or adds parameters
/// (an empty value leaves the parameter out).
pub fn authorize_target(
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", "st-123"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in extra {
        params.retain(|(existing, _)| existing != name);
        params.push((name, value));
    }
    params.retain(|(_, value)| !value.is_empty());
    format!("/oauth/authorize?{}", form(&params))
}

/// The hidden fields of the consent page, as a browser would submit them.
pub fn hidden_fields(page: &str) -> Vec<(String, String)> {
    page.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|rest| {
            let name = between(rest, "name=\"", "\"");
            let value = between(rest, "value=\"", "\"");
            (unescape(&name), unescape(&value))
        })
        .collect()
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).unwrap() + start.len();
    let to = text[from..].find(end).unwrap() + from;
    text[from..to].to_owned()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Submits the consent page's form with the given credentials and decision.
pub async fn submit(
    t: &TestAuth,
    page: &str,
    email: &str,
    password: &str,
    totp: &str,
    decision: &str,
) -> HttpResponse {
    let mut fields = hidden_fields(page);
    for (name, value) in [
        ("email", email),
        ("password", password),
        ("totp_code", totp),
        ("decision", decision),
    ] {
        fields.push((name.to_owned(), value.to_owned()));
    }
    let params: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    post_form(t, "/oauth/authorize", &params).await
}

/// Registers nothing; runs the browser part for an existing client: page, sign-in, consent.
/// Returns the code from the redirect.
pub async fn code_for(
    t: &TestAuth,
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
    email: &str,
) -> String {
    let page = get(
        t,
        &authorize_target(client_id, redirect_uri, challenge, &[]),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let done = submit(t, &page.body, email, crate::common::PASSWORD, "", "allow").await;
    assert_eq!(done.status, 303, "{}", done.body);
    let params = done.location_params();
    assert_eq!(params["state"], "st-123");
    params["code"].clone()
}

pub async fn exchange(
    t: &TestAuth,
    client_id: &str,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> HttpResponse {
    post_form(
        t,
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client_id),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn refresh(t: &TestAuth, client_id: &str, refresh_token: &str) -> HttpResponse {
    post_form(
        t,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ],
    )
    .await
}

/// Register, authorize and exchange: (client id, token response JSON).
pub async fn agent_tokens(t: &TestAuth, email: &str) -> (String, serde_json::Value) {
    let client_id = client(t, "Test Agent", &[LOOPBACK]).await;
    let (verifier, challenge) = pkce();
    let code = code_for(t, &client_id, LOOPBACK, &challenge, email).await;
    let response = exchange(t, &client_id, LOOPBACK, &code, &verifier).await;
    assert_eq!(response.status, 200, "{}", response.body);
    (client_id, response.json())
}
