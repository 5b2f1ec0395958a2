//! The simulated gateway's check of an `SDK-HMAC-SHA256` signature, written from the vendor's API
//! signature guide (devg-apisign) as a gateway applies it to the request it received, and sharing
//! no code with the client's signer (`koophone::sign`): a bug there shows up here as a 401.
//!
//! ```text
//! canonical = METHOD \n URI-with-trailing-slash \n sorted-encoded-query \n name:value\n... \n names;joined \n hex(sha256(body))
//! to sign   = "SDK-HMAC-SHA256" \n X-Sdk-Date \n hex(sha256(canonical))
//! signature = hex(hmac-sha256(secret key, to sign))
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The scheme's name, as it opens the `Authorization` header.
pub const SCHEME: &str = "SDK-HMAC-SHA256";

/// The parts of an `Authorization: SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, PartialEq, Eq)]
pub struct Claimed<'a> {
    pub access_key: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Reads the `Authorization` header; `None` when it is not this scheme's or lacks a part.
pub fn claimed(header: &str) -> Option<Claimed<'_>> {
    let fields = header.trim().strip_prefix(SCHEME)?;
    let (mut access_key, mut signed_headers, mut signature) = (None, None, None);
    for field in fields.split(',') {
        let (name, value) = field.trim().split_once('=')?;
        let value = value.trim();
        match name.trim() {
            "Access" => access_key = Some(value),
            "SignedHeaders" => signed_headers = Some(value.split(';').collect()),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    Some(Claimed {
        access_key: access_key?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// What the gateway saw of a request.
pub struct Received<'a> {
    pub method: &'a str,
    /// The path as received, percent-encoded or not.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// The value of each signed header, in the order of `SignedHeaders`.
    pub signed: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The `X-Sdk-Date` value.
    pub date: &'a str,
}

/// True when `signature` (hex) is the one `secret_key` gives the received request.
pub fn verify(received: &Received<'_>, secret_key: &str, signature: &str) -> bool {
    let expected = sign(received, secret_key);
    // NB: compared in full, whatever the first difference, so that timing tells nothing.
    expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
            == 0
}

fn sign(r: &Received<'_>, secret_key: &str) -> String {
    let mut canonical = String::new();
    canonical.push_str(&r.method.to_uppercase());
    canonical.push('\n');
    canonical.push_str(&uri(r.path));
    canonical.push('\n');
    canonical.push_str(&query(r.query));
    canonical.push('\n');
    for (name, value) in r.signed {
        canonical.push_str(&name.to_lowercase());
        canonical.push(':');
        canonical.push_str(value.trim());
        canonical.push('\n');
    }
    canonical.push('\n');
    let names: Vec<String> = r.signed.iter().map(|(n, _)| n.to_lowercase()).collect();
    canonical.push_str(&names.join(";"));
    canonical.push('\n');
    canonical.push_str(&to_hex(&Sha256::digest(r.body)));
    let to_sign = format!(
        "{SCHEME}\n{}\n{}",
        r.date,
        to_hex(&Sha256::digest(canonical.as_bytes()))
    );
    // NB: HMAC accepts a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()).expect("any key length");
    mac.update(to_sign.as_bytes());
    to_hex(&mac.finalize().into_bytes())
}

/// The path decoded, then each of its segments encoded again, and a `/` at the end (as the guide's
/// reference signer does: an encoded `/` inside a segment becomes a separator).
fn uri(path: &str) -> String {
    let mut out: String = unescape(path)
        .split('/')
        .map(escape)
        .collect::<Vec<_>>()
        .join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// `k=v` pairs, each side decoded then encoded again, sorted, joined by `&`.
fn query(raw: &str) -> String {
    let mut pairs: Vec<String> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            format!("{}={}", escape(&unescape(k)), escape(&unescape(v)))
        })
        .collect();
    pairs.sort();
    pairs.join("&")
}

/// Percent-encodes every byte but the unreserved `A-Z a-z 0-9 - _ . ~` (RFC 3986), in upper-case hex.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; a malformed one stays as it is.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the vendor's API signature guide, checked as the gateway receives it.
    #[test]
    fn the_guides_worked_example_verifies() {
        let header = "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, \
                      Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe";
        let claim = claimed(header).unwrap();
        assert_eq!(claim.access_key, "QTWAOYTTINDUT2QVKYUC");
        assert_eq!(claim.signed_headers, ["content-type", "host", "x-sdk-date"]);
        let signed = [
            ("content-type", "application/json"),
            ("host", "service.region.example.com"),
            ("x-sdk-date", "20191115T033655Z"),
        ];
        let received = Received {
            method: "GET",
            path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
            query: "marker=13551d6b-755d-4757-b956-536f674975c0&limit=2",
            signed: &signed,
            body: b"",
            date: "20191115T033655Z",
        };
        let secret = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc";
        assert!(verify(&received, secret, claim.signature));
        assert!(!verify(&received, "another secret", claim.signature));
        let tampered = Received {
            body: b"{}",
            ..received
        };
        assert!(!verify(&tampered, secret, claim.signature));
    }

    #[test]
    fn paths_and_queries_are_canonical_whatever_their_encoding() {
        assert_eq!(uri("/v1/instances/backup"), "/v1/instances/backup/");
        assert_eq!(uri("/a b/c%2Fd"), "/a%20b/c/d/");
        assert_eq!(query("b=2&a=x%20y"), "a=x%20y&b=2");
        assert_eq!(unescape("100%"), "100%");
    }

    #[test]
    fn foreign_schemes_and_partial_headers_are_not_claims() {
        assert_eq!(claimed("Bearer abc"), None);
        assert_eq!(claimed("SDK-HMAC-SHA256 Access=a, Signature=b"), None);
    }
}
