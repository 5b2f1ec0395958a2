//! Vendor credentials, in the three forms a Secret may hold, chosen by which keys are present. No
//! value ever reaches `Debug`, `Display` or an error: errors name keys only.

use super::token::{Token, secret};
use secrecy::SecretString;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The project a token is scoped to.
#[derive(Clone, PartialEq, Eq)]
pub enum ProjectScope {
    Name(String),
    Id(String),
}

/// Vendor credentials.
#[derive(Clone)]
pub enum Credentials {
    /// A static `X-Auth-Token` (for tests and short trials: it expires after 24 hours), with the
    /// project it is scoped to when the Secret names it (`projectId`): without it, the operator
    /// cannot tell two routes to one project apart.
    Token {
        token: Token,
        project_id: Option<String>,
    },
    /// An IAM user, exchanged for project-scoped tokens at `iam_endpoint`.
    Password {
        username: String,
        password: SecretString,
        domain: String,
        project: ProjectScope,
        iam_endpoint: String,
    },
    /// An access key pair: every call is signed (`SDK-HMAC-SHA256`).
    AccessKey {
        access_key: String,
        secret_key: SecretString,
        project_id: String,
        security_token: Option<SecretString>,
    },
}

impl Credentials {
    /// A static token whose project is not known.
    pub fn token(token: Token) -> Credentials {
        Credentials::Token {
            token,
            project_id: None,
        }
    }

    /// The form's name, for logs: `token`, `password` or `access key`.
    pub fn form(&self) -> &'static str {
        match self {
            Credentials::Token { .. } => "token",
            Credentials::Password { .. } => "password",
            Credentials::AccessKey { .. } => "access key",
        }
    }
}

/// Equal when every field is, secrets included (compared, never shown): a Secret rewritten with the
/// same data holds the same credentials.
impl PartialEq for Credentials {
    fn eq(&self, other: &Credentials) -> bool {
        use secrecy::ExposeSecret;
        let same = |a: &SecretString, b: &SecretString| a.expose_secret() == b.expose_secret();
        match (self, other) {
            (
                Credentials::Token {
                    token: t1,
                    project_id: p1,
                },
                Credentials::Token {
                    token: t2,
                    project_id: p2,
                },
            ) => t1 == t2 && p1 == p2,
            (
                Credentials::Password {
                    username: u1,
                    password: w1,
                    domain: d1,
                    project: p1,
                    iam_endpoint: e1,
                },
                Credentials::Password {
                    username: u2,
                    password: w2,
                    domain: d2,
                    project: p2,
                    iam_endpoint: e2,
                },
            ) => u1 == u2 && same(w1, w2) && d1 == d2 && p1 == p2 && e1 == e2,
            (
                Credentials::AccessKey {
                    access_key: a1,
                    secret_key: k1,
                    project_id: p1,
                    security_token: s1,
                },
                Credentials::AccessKey {
                    access_key: a2,
                    secret_key: k2,
                    project_id: p2,
                    security_token: s2,
                },
            ) => {
                a1 == a2
                    && same(k1, k2)
                    && p1 == p2
                    && match (s1, s2) {
                        (Some(x), Some(y)) => same(x, y),
                        (None, None) => true,
                        _ => false,
                    }
            }
            _ => false,
        }
    }
}

impl Eq for Credentials {}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token { project_id, .. } => f
                .debug_struct("Credentials::Token")
                .field("project_id", project_id)
                .finish_non_exhaustive(),
            Credentials::Password {
                username,
                domain,
                iam_endpoint,
                ..
            } => f
                .debug_struct("Credentials::Password")
                .field("username", username)
                .field("domain", domain)
                .field("iam_endpoint", iam_endpoint)
                .finish_non_exhaustive(),
            Credentials::AccessKey { project_id, .. } => f
                .debug_struct("Credentials::AccessKey")
                .field("project_id", project_id)
                .finish_non_exhaustive(),
        }
    }
}

/// A Secret that holds no usable credentials. Names keys, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "credentials: the Secret holds none of the three forms (keys present: {present:?}); give `token`, \
         or `username`+`password`+`domain`+`project`|`projectId`+`region`|`iamEndpoint`, \
         or `accessKey`+`secretKey`+`projectId`"
    )]
    NoForm { present: Vec<String> },
    #[error(
        "credentials: the Secret holds more than one form ({forms:?}, from keys {keys:?}); keep exactly one"
    )]
    Conflicting {
        forms: Vec<&'static str>,
        keys: Vec<String>,
    },
    #[error("credentials: the {form} form lacks {missing:?}")]
    Missing {
        form: &'static str,
        missing: Vec<&'static str>,
    },
    #[error("credentials: key {key:?} {reason}")]
    Invalid { key: String, reason: &'static str },
    #[error("credentials: the Secret {0} does not exist (yet)")]
    SecretMissing(String),
}

/// The longest project id accepted (the vendor's are 32 hex digits).
pub const MAX_PROJECT_ID_CHARS: usize = 128;

const TOKEN_KEYS: [&str; 2] = ["token", "projectId"];
const PASSWORD_KEYS: [&str; 7] = [
    "username",
    "password",
    "domain",
    "project",
    "projectId",
    "region",
    "iamEndpoint",
];
const ACCESS_KEY_KEYS: [&str; 3] = ["accessKey", "secretKey", "securityToken"];

impl Credentials {
    /// Reads credentials from a Secret's data. The form is chosen by the keys present: `token`;
    /// `username`/`password`/`domain`; or `accessKey`/`secretKey`. (`projectId` alone belongs to
    /// either of the last two.)
    pub fn from_secret_data(
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Credentials, CredentialsError> {
        let get = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => {
                    let text = std::str::from_utf8(bytes)
                        .map_err(|_| CredentialsError::Invalid {
                            key: key.to_owned(),
                            reason: "is not UTF-8",
                        })?
                        .trim()
                        .to_owned();
                    if text.is_empty() {
                        Err(CredentialsError::Invalid {
                            key: key.to_owned(),
                            reason: "is empty",
                        })
                    } else {
                        Ok(Some(text))
                    }
                }
            }
        };
        // NB: a project id becomes the scope recorded in each intent (`status.backup.scope`): one
        // longer than that field allows would make every intent write fail.
        if let Some(id) = get("projectId")?
            && id.chars().count() > MAX_PROJECT_ID_CHARS
        {
            return Err(CredentialsError::Invalid {
                key: "projectId".to_owned(),
                reason: "is longer than 128 characters",
            });
        }
        let has = |k: &str| data.contains_key(k);
        let mut forms = Vec::new();
        if has("token") {
            forms.push("token");
        }
        if ["username", "password", "domain"].iter().any(|k| has(k)) {
            forms.push("password");
        }
        if ["accessKey", "secretKey", "securityToken"]
            .iter()
            .any(|k| has(k))
        {
            forms.push("access key");
        }
        let known: BTreeSet<&str> = TOKEN_KEYS
            .iter()
            .chain(&PASSWORD_KEYS)
            .chain(&ACCESS_KEY_KEYS)
            .copied()
            .collect();
        match forms.as_slice() {
            [] => Err(CredentialsError::NoForm {
                present: data.keys().cloned().collect(),
            }),
            ["token"] => Ok(Credentials::Token {
                token: Token::new(get("token")?.unwrap_or_default()),
                project_id: get("projectId")?,
            }),
            ["password"] => {
                let mut missing = Vec::new();
                for key in ["username", "password", "domain"] {
                    if !has(key) {
                        missing.push(key);
                    }
                }
                if !has("project") && !has("projectId") {
                    missing.push("project or projectId");
                }
                if !has("region") && !has("iamEndpoint") {
                    missing.push("region or iamEndpoint");
                }
                if !missing.is_empty() {
                    return Err(CredentialsError::Missing {
                        form: "password",
                        missing,
                    });
                }
                let project = match get("projectId")? {
                    Some(id) => ProjectScope::Id(id),
                    None => ProjectScope::Name(get("project")?.unwrap_or_default()),
                };
                let iam_endpoint = match get("iamEndpoint")? {
                    Some(url) => url.trim_end_matches('/').to_owned(),
                    None => format!(
                        "https://iam.{}.myhuaweicloud.com",
                        get("region")?.unwrap_or_default()
                    ),
                };
                Ok(Credentials::Password {
                    username: get("username")?.unwrap_or_default(),
                    password: secret(get("password")?.unwrap_or_default()),
                    domain: get("domain")?.unwrap_or_default(),
                    project,
                    iam_endpoint,
                })
            }
            ["access key"] => {
                let missing: Vec<&'static str> = ["accessKey", "secretKey", "projectId"]
                    .into_iter()
                    .filter(|k| !has(k))
                    .collect();
                if !missing.is_empty() {
                    return Err(CredentialsError::Missing {
                        form: "access key",
                        missing,
                    });
                }
                Ok(Credentials::AccessKey {
                    access_key: get("accessKey")?.unwrap_or_default(),
                    secret_key: secret(get("secretKey")?.unwrap_or_default()),
                    project_id: get("projectId")?.unwrap_or_default(),
                    security_token: get("securityToken")?.map(secret),
                })
            }
            _ => Err(CredentialsError::Conflicting {
                forms,
                keys: data
                    .keys()
                    .filter(|k| known.contains(k.as_str()))
                    .cloned()
                    .collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn each_form_is_read_from_its_keys() {
        assert!(matches!(
            Credentials::from_secret_data(&data(&[("token", "t0k\n")])),
            Ok(Credentials::Token { token: t, project_id: None }) if t.expose() == "t0k"
        ));
        assert!(
            matches!(
                Credentials::from_secret_data(&data(&[("token", "t0k"), ("projectId", "p-1")])),
                Ok(Credentials::Token { project_id: Some(p), .. }) if p == "p-1"
            ),
            "a token may name its project beside it"
        );
        let long = "p".repeat(129);
        assert!(
            matches!(
                Credentials::from_secret_data(&data(&[("token", "t0k"), ("projectId", &long)])),
                Err(CredentialsError::Invalid { key, .. }) if key == "projectId"
            ),
            "a project id longer than the intents' scope field allows"
        );
        let iam = Credentials::from_secret_data(&data(&[
            ("username", "ops"),
            ("password", "pw"),
            ("domain", "acme"),
            ("project", "cn-north-4"),
            ("region", "cn-north-4"),
        ]))
        .unwrap();
        match iam {
            Credentials::Password {
                iam_endpoint,
                project,
                ..
            } => {
                assert_eq!(iam_endpoint, "https://iam.cn-north-4.myhuaweicloud.com");
                assert!(project == ProjectScope::Name("cn-north-4".into()));
            }
            other => panic!("{other:?}"),
        }
        let ak = Credentials::from_secret_data(&data(&[
            ("accessKey", "AK"),
            ("secretKey", "SK"),
            ("projectId", "p1"),
        ]))
        .unwrap();
        assert_eq!(ak.form(), "access key");
    }

    #[test]
    fn refusals_name_keys_never_values() {
        let secret = "hunter2-secret-value";
        let cases = [
            data(&[("user", secret)]),
            data(&[
                ("token", secret),
                ("accessKey", secret),
                ("secretKey", secret),
                ("projectId", "p"),
            ]),
            data(&[("username", secret), ("password", secret)]),
            data(&[("accessKey", secret)]),
            data(&[("token", "  ")]),
        ];
        let messages: Vec<String> = cases
            .iter()
            .map(|d| Credentials::from_secret_data(d).unwrap_err().to_string())
            .collect();
        assert!(
            messages[0].contains("none of the three forms") && messages[0].contains("user"),
            "{}",
            messages[0]
        );
        assert!(
            messages[1].contains("more than one form") && messages[1].contains("accessKey"),
            "{}",
            messages[1]
        );
        assert!(
            messages[2].contains("domain") && messages[2].contains("project or projectId"),
            "{}",
            messages[2]
        );
        assert!(
            messages[3].contains("secretKey") && messages[3].contains("projectId"),
            "{}",
            messages[3]
        );
        assert!(
            messages[4].contains("\"token\" is empty"),
            "{}",
            messages[4]
        );
        for m in &messages {
            assert!(!m.contains(secret), "a value leaked: {m}");
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = Credentials::from_secret_data(&data(&[
            ("accessKey", "AKVALUE"),
            ("secretKey", "SKVALUE"),
            ("projectId", "p1"),
            ("securityToken", "STVALUE"),
        ]))
        .unwrap();
        let text = format!("{c:?}");
        assert!(
            !text.contains("SKVALUE") && !text.contains("STVALUE") && !text.contains("AKVALUE"),
            "{text}"
        );
    }
}
