//! The simulator's authentication: an IAM token endpoint (`POST /v3/auth/tokens`), token checks with
//! expiry and revocation, and the gateway's AK/SK signature check with its 15-minute date window.
//!
//! NB: the signature is checked by [`super::signature`], written from the vendor's guide apart from
//! the client's signer, so that a signer bug fails against the simulator.

use super::signature::{self, Received};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How far `X-Sdk-Date` may be from the gateway's clock.
const SIGNATURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// An IAM user the simulator knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamUser {
    pub name: String,
    pub password: String,
    pub domain: String,
}

/// Who may call the simulated vendor.
#[derive(Debug, Default)]
pub struct Identities {
    /// Static tokens accepted as they are.
    pub static_tokens: HashSet<String>,
    pub users: Vec<IamUser>,
    /// Access key -> secret key.
    pub access_keys: HashMap<String, String>,
    /// Tokens issued by the IAM endpoint, with their expiry.
    pub issued: HashMap<String, Instant>,
    /// Issued tokens revoked before their expiry.
    pub revoked: HashSet<String>,
    pub token_lifetime: Duration,
    /// Static tokens of the tenants (token -> tenant): each sees only its tenant's instances.
    pub tenant_tokens: HashMap<String, String>,
    /// Access keys of the tenants (access key -> (secret key, tenant)); their calls must carry the
    /// tenant as `X-Project-Id`.
    pub tenant_keys: HashMap<String, (String, String)>,
}

/// The tenant of callers with the simulator's untenanted identities.
pub const DEFAULT_TENANT: &str = "";

impl Identities {
    /// With nothing configured, any non-empty token is accepted (the quick start's mode).
    fn open(&self) -> bool {
        self.static_tokens.is_empty()
            && self.users.is_empty()
            && self.access_keys.is_empty()
            && self.tenant_tokens.is_empty()
            && self.tenant_keys.is_empty()
    }

    /// The caller's tenant when the request is authenticated, else the gateway's 401 message.
    pub fn check(
        &self,
        headers: &axum::http::HeaderMap,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Result<String, &'static str> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        if let Some(authorization) =
            header("authorization").filter(|a| a.starts_with(signature::SCHEME))
        {
            return self.check_signature(authorization, headers, path, query, body);
        }
        let token = header("x-auth-token").unwrap_or("");
        if token.is_empty() {
            return Err("Incorrect IAM authentication information: the token is missing");
        }
        if let Some(tenant) = self.tenant_tokens.get(token) {
            return Ok(tenant.clone());
        }
        if self.open() || self.static_tokens.contains(token) {
            return Ok(DEFAULT_TENANT.to_owned());
        }
        if self.revoked.contains(token) {
            return Err("Incorrect IAM authentication information: the token was revoked");
        }
        match self.issued.get(token) {
            Some(expires) if Instant::now() < *expires => Ok(DEFAULT_TENANT.to_owned()),
            Some(_) => Err("Incorrect IAM authentication information: the token expired"),
            None => Err("Incorrect IAM authentication information: the token is unknown"),
        }
    }

    fn check_signature(
        &self,
        authorization: &str,
        headers: &axum::http::HeaderMap,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Result<String, &'static str> {
        let claim = signature::claimed(authorization)
            .ok_or("Incorrect IAM authentication information: malformed Authorization")?;
        let (secret, tenant) = match self.access_keys.get(claim.access_key) {
            Some(secret) => (secret, DEFAULT_TENANT),
            None => self
                .tenant_keys
                .get(claim.access_key)
                .map(|(secret, tenant)| (secret, tenant.as_str()))
                .ok_or("Incorrect IAM authentication information: AK access failed to reach the limit or the AK is unknown")?,
        };
        let date_header = headers
            .get("x-sdk-date")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or(
                "Incorrect IAM authentication information: X-Sdk-Date is missing or malformed",
            )?;
        let date = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", date_header)
            .ok()
            .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
            .ok_or(
                "Incorrect IAM authentication information: X-Sdk-Date is missing or malformed",
            )?;
        let skew = Timestamp::now().duration_since(date).unsigned_abs();
        if skew > SIGNATURE_WINDOW {
            return Err(
                "Incorrect IAM authentication information: signature expired (X-Sdk-Date is over 15 minutes off)",
            );
        }
        if !claim.signed_headers.contains(&"host") || !claim.signed_headers.contains(&"x-sdk-date")
        {
            return Err(
                "Incorrect IAM authentication information: host and x-sdk-date must be signed",
            );
        }
        let mut signed = Vec::with_capacity(claim.signed_headers.len());
        for name in &claim.signed_headers {
            let value = headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .ok_or("Incorrect IAM authentication information: a signed header is missing")?;
            signed.push((*name, value));
        }
        // NB: the guide's canonical headers are sorted by name, whatever order the header lists.
        signed.sort_by_key(|(name, _)| name.to_ascii_lowercase());
        let received = Received {
            method: "POST",
            path,
            query,
            signed: &signed,
            body,
            date: date_header,
        };
        if !signature::verify(&received, secret, claim.signature) {
            return Err("Incorrect IAM authentication information: verify aksk signature fail");
        }
        let Some(project) = headers.get("x-project-id") else {
            return Err("Incorrect IAM authentication information: X-Project-Id is missing");
        };
        if tenant != DEFAULT_TENANT && project.as_bytes() != tenant.as_bytes() {
            return Err(
                "Incorrect IAM authentication information: the AK has no permission on X-Project-Id",
            );
        }
        Ok(tenant.to_owned())
    }

    /// `POST /v3/auth/tokens`: (HTTP status, the token for `X-Subject-Token`, body).
    pub fn issue(&mut self, body: &[u8]) -> (u16, Option<String>, Value) {
        let refuse = |code: u16, message: &str| {
            (
                code,
                None,
                json!({"error": {"code": code, "message": message, "title": "Unauthorized"}}),
            )
        };
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return refuse(400, "the request body is not JSON");
        };
        let identity = &request["auth"]["identity"];
        if !identity["methods"]
            .as_array()
            .is_some_and(|m| m.iter().any(|v| v == "password"))
        {
            return refuse(400, "auth.identity.methods must include password");
        }
        let user = &identity["password"]["user"];
        let (Some(name), Some(password), Some(domain)) = (
            user["name"].as_str(),
            user["password"].as_str(),
            user["domain"]["name"].as_str(),
        ) else {
            return refuse(
                400,
                "auth.identity.password.user needs name, password and domain.name",
            );
        };
        let project = &request["auth"]["scope"]["project"];
        if project["name"].as_str().is_none() && project["id"].as_str().is_none() {
            return refuse(400, "auth.scope.project needs name or id");
        }
        let known = self
            .users
            .iter()
            .any(|u| u.name == name && u.password == password && u.domain == domain);
        if !known {
            return refuse(401, "The username or password is wrong.");
        }
        let token = format!("sim-iam-{}", uuid::Uuid::new_v4().simple());
        self.issued
            .insert(token.clone(), Instant::now() + self.token_lifetime);
        let issued_at = Timestamp::now();
        let expires_at = issued_at
            .checked_add(self.token_lifetime)
            .unwrap_or(Timestamp::MAX);
        let project = match project["id"].as_str() {
            Some(id) => json!({"id": id}),
            None => {
                let project_name = project["name"].as_str().unwrap_or_default();
                json!({"id": project_id_of(domain, project_name), "name": project_name})
            }
        };
        let body = json!({"token": {
            "methods": ["password"],
            "issued_at": issued_at.to_string(),
            "expires_at": expires_at.to_string(),
            "user": {"name": name, "domain": {"name": domain}},
            "project": project,
        }});
        (201, Some(token), body)
    }
}

/// The id IAM gives the project `name` of `domain`: fixed, 32 hex digits as IAM's ids are.
pub fn project_id_of(domain: &str, name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{domain}/{name}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}
