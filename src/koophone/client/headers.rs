//! The headers of one attempt: the request id, and the token or the AK/SK signature.

use super::Client;
use crate::koophone::auth::CallAuth;
use crate::koophone::endpoint::Endpoint;
use crate::koophone::sign::{self, SignableRequest};
use jiff::Timestamp;
use secrecy::ExposeSecret;
use uuid::Uuid;

impl Client {
    /// The headers of one attempt: the request id, and the token or the AK/SK signature (which
    /// signs every header before it, `host` included).
    pub(super) fn headers(
        &self,
        endpoint: Endpoint,
        request_id: Uuid,
        call_auth: &CallAuth,
        body: &[u8],
    ) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            ("host".into(), self.host.clone()),
            ("x-request-id".into(), request_id.to_string()),
        ];
        match call_auth {
            CallAuth::Bearer(token) => {
                headers.push(("X-Auth-Token".into(), token.expose().to_owned()))
            }
            CallAuth::Sign {
                access_key,
                secret_key,
                project_id,
                security_token,
            } => {
                headers.push(("X-Project-Id".into(), project_id.clone()));
                if let Some(st) = security_token {
                    headers.push(("X-Security-Token".into(), st.expose_secret().to_owned()));
                }
                headers.push(("X-Sdk-Date".into(), sign::sdk_date(Timestamp::now())));
                let authorization = sign::authorization(
                    access_key,
                    secret_key.expose_secret(),
                    &SignableRequest {
                        method: "POST",
                        path: endpoint.path(),
                        query: &[],
                        headers: &headers,
                        body,
                    },
                );
                headers.push(("Authorization".into(), authorization));
            }
        }
        headers
    }
}
