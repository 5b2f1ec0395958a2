//! The AK/SK signer against an independent implementation of the published algorithm (Python's
//! hmac and hashlib, tests/sign_oracle.py), over many generated requests.

use cloudphone_operator::koophone::sign::{SignableRequest, authorization};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};

const ALPHABET: &[u8] = b"abcXYZ019-_.~ /%+=&?:;,@!*'()[]{}\"\\\xc3\xa9";

fn text(rng: &mut StdRng, max: usize) -> String {
    let len = rng.random_range(0..=max);
    let bytes: Vec<u8> = (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len() - 2)])
        .collect();
    let mut s = String::from_utf8_lossy(&bytes).into_owned();
    if rng.random_bool(0.2) {
        s.push('é');
    }
    s
}

fn token(rng: &mut StdRng) -> String {
    (0..rng.random_range(1..12))
        .map(|_| (b'a' + rng.random_range(0..26u8)) as char)
        .collect()
}

#[test]
fn the_signer_agrees_with_an_independent_implementation() {
    let mut rng = StdRng::seed_from_u64(20261125);
    let mut cases = Vec::new();
    for i in 0..400 {
        let segments: Vec<String> = (0..rng.random_range(1..5))
            .map(|_| text(&mut rng, 8))
            .collect();
        let path = format!("/{}", segments.join("/"));
        let query: Vec<(String, String)> = (0..rng.random_range(0..4))
            .map(|_| (token(&mut rng), text(&mut rng, 10)))
            .collect();
        let mut headers = vec![
            (
                "Host".to_owned(),
                format!("{}.example.com", token(&mut rng)),
            ),
            (
                "X-Sdk-Date".to_owned(),
                format!("2026{:02}{:02}T{:02}0000Z", 1 + i % 12, 1 + i % 28, i % 24),
            ),
        ];
        for _ in 0..rng.random_range(0..4) {
            headers.push((
                format!("X-{}", token(&mut rng)),
                format!("  {}  ", token(&mut rng)),
            ));
        }
        let method = ["GET", "POST", "put", "DELETE"][rng.random_range(0..4)].to_owned();
        let body = text(&mut rng, 40);
        let (ak, sk) = (token(&mut rng).to_uppercase(), text(&mut rng, 40));
        cases.push((method, path, query, headers, body, ak, sk));
    }
    let input: Vec<_> = cases
        .iter()
        .map(|(method, path, query, headers, body, ak, sk)| {
            json!({"method": method, "path": path, "query": query, "headers": headers, "body": body, "ak": ak, "sk": sk})
        })
        .collect();
    let mut child = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sign_oracle.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the oracle");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the oracle failed");
    let expected: Vec<String> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(expected.len(), cases.len());
    for ((method, path, query, headers, body, ak, sk), want) in cases.iter().zip(&expected) {
        let req = SignableRequest {
            method,
            path,
            query,
            headers,
            body: body.as_bytes(),
        };
        assert_eq!(
            &authorization(ak, sk, &req),
            want,
            "{method} {path} {query:?} {headers:?}"
        );
    }
}
