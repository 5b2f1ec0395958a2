//! The IAM token request: `POST /v3/auth/tokens` with the password method, and what its answer
//! tells (the token, its lifetime, the project's id).

use super::{Auth, AuthError};
use crate::koophone::credentials::{MAX_PROJECT_ID_CHARS, ProjectScope};
use crate::koophone::token::Token;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::time::Duration;

impl Auth {
    /// `POST /v3/auth/tokens` with the password method; the token is in `X-Subject-Token`, the
    /// project's id in `token.project.id`.
    pub(super) async fn fetch(
        &self,
        endpoint: &str,
        username: &str,
        password: &SecretString,
        domain: &str,
        project: &ProjectScope,
    ) -> Result<(Token, Duration, Option<String>), AuthError> {
        let fail = |reason: String| AuthError::Iam {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let scope = match project {
            ProjectScope::Name(name) => json!({"project": {"name": name}}),
            ProjectScope::Id(id) => json!({"project": {"id": id}}),
        };
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "password": password.expose_secret(), "domain": {"name": domain},
            }}},
            "scope": scope,
        }});
        let response = self
            .http
            .post(format!("{endpoint}/v3/auth/tokens"))
            .json(&body)
            .send()
            .await
            .map_err(|e| fail(format!("transport error: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let token = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(Token::new);
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if status != 201 && status != 200 {
            let message = answer["error"]["message"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>();
            return Err(fail(format!("HTTP {status} {message}")));
        }
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(fail("the answer has no X-Subject-Token header".into()));
        };
        let parse = |key: &str| {
            answer["token"][key]
                .as_str()
                .and_then(|s| s.parse::<Timestamp>().ok())
        };
        let expires =
            parse("expires_at").ok_or_else(|| fail("the answer has no token.expires_at".into()))?;
        // Measured from issued_at when given, so that the clocks of IAM and this host need not agree.
        let issued = parse("issued_at").unwrap_or_else(Timestamp::now);
        let lifetime = Duration::try_from(expires.duration_since(issued)).unwrap_or(Duration::ZERO);
        if lifetime.is_zero() {
            return Err(fail("the token is already expired".into()));
        }
        let project_id = answer["token"]["project"]["id"]
            .as_str()
            .filter(|id| !id.is_empty() && id.chars().count() <= MAX_PROJECT_ID_CHARS)
            .map(str::to_owned);
        Ok((token, lifetime, project_id))
    }
}
