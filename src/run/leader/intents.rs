//! The intents record of the backup calls, kept in an annotation of the election's Lease so that
//! a restart or a new leader reads what the last term may have left outstanding.

use crate::reconciler::{
    INTENTS_UNTIL_ANNOTATION, IntentsRecord, RecordError, format_until, parse_until,
};
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{Api, ObjectMeta, PostParams};

/// The intents record kept in the Lease's annotation [`INTENTS_UNTIL_ANNOTATION`], written with
/// the Lease's own resourceVersion (a write that conflicts reads again), never lowered. With leader
/// election it is written only while this replica holds the Lease; without, it creates the Lease
/// (with no holder) if there is none.
pub struct LeaseIntents {
    api: Api<Lease>,
    name: String,
    /// This replica's identity when it must hold the Lease to write.
    holder: Option<String>,
}

/// Conflicting writes tried again before the extension fails (and the call with it).
const RECORD_CONFLICTS: usize = 3;

impl LeaseIntents {
    /// The record in Lease `name` of `namespace`; `holder`: this replica's identity under leader
    /// election (the record is written only while it holds the Lease).
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: impl Into<String>,
        holder: Option<String>,
    ) -> LeaseIntents {
        LeaseIntents {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            holder,
        }
    }

    /// The time the Lease's annotation records.
    fn annotation(lease: &Lease) -> Result<Option<Timestamp>, RecordError> {
        lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INTENTS_UNTIL_ANNOTATION))
            .map(|v| parse_until(v))
            .transpose()
    }

    async fn extend_once(&self, until: Timestamp) -> Result<bool, RecordError> {
        let store = |e: kube::Error| RecordError::Store {
            source: Box::new(e),
        };
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert(INTENTS_UNTIL_ANNOTATION.to_owned(), format_until(until));
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(store)? else {
            if self.holder.is_some() {
                return Err(RecordError::NotHolder { holder: None });
            }
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec::default()),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(store(e)),
            };
        };
        if let Some(me) = &self.holder {
            let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
            if holder.as_deref() != Some(me.as_str()) {
                return Err(RecordError::NotHolder { holder });
            }
        }
        // NB: a value that is no time is replaced: this term's is a bound of its own intents,
        // and the term that reads it next reads a valid one.
        if Self::annotation(&lease)
            .ok()
            .flatten()
            .is_some_and(|r| r >= until)
        {
            return Ok(true);
        }
        lease
            .metadata
            .annotations
            .get_or_insert_default()
            .extend(annotations);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(store(e)),
        }
    }
}

impl IntentsRecord for LeaseIntents {
    fn read(&self) -> BoxFuture<'_, Result<Option<Timestamp>, RecordError>> {
        Box::pin(async move {
            let lease = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|e| RecordError::Store {
                    source: Box::new(e),
                })?;
            lease.as_ref().map_or(Ok(None), Self::annotation)
        })
    }

    fn extend(&self, until: Timestamp) -> BoxFuture<'_, Result<(), RecordError>> {
        Box::pin(async move {
            for _ in 0..RECORD_CONFLICTS {
                if self.extend_once(until).await? {
                    return Ok(());
                }
            }
            Err(RecordError::Store {
                source: format!(
                    "lease {}: {RECORD_CONFLICTS} conflicting writes in a row",
                    self.name
                )
                .into(),
            })
        })
    }
}
