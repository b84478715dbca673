//! **Interim** audit sink, until the audit service exists: a durable consumer of the `AUDIT`
//! stream on the shared in-process bus (every `audit.<team>.<action>` event the services'
//! outboxes publish) that appends each event as one JSON line to
//! `<data-dir>/audit-events.ndjson` (created 0600, only ever appended to).
//!
//! Delivery is at-least-once: an event is acknowledged only after its line is written and
//! synced, so a failed write is retried (and a crash between the write and the ack can repeat
//! a line; `event_id` tells repeats apart). The file is neither hash-chained nor signed; the
//! audit service (SPEC §6) replaces this module.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;
use tucdesk_proto::v1::{ActorKind, AuditEvent, PolicyDecision};
use tucdesk_svc::audit_events::{AUDIT_STREAM, audit_stream};
use tucdesk_svc::bus::{Bus, BusError, ConsumerSpec, Delivery, DurableConsumer};

/// The file events are appended to, inside the data directory.
pub const AUDIT_LOG_FILE: &str = "audit-events.ndjson";
/// Name of the sink's durable consumer on the `AUDIT` stream.
pub const CONSUMER_NAME: &str = "standalone-audit-file";
/// Subjects the sink consumes: every audit event of every team.
pub const AUDIT_SUBJECTS: &str = "audit.>";
/// Events taken per fetch.
const FETCH_BATCH: usize = 100;
/// How long one fetch waits for events (also how quickly the loop notices shutdown).
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// Pause after a failed fetch or write before trying again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// An event not acknowledged within this time is delivered again.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Batches drained at most after shutdown (what the outboxes published last).
const MAX_DRAIN_BATCHES: usize = 100;
/// Permission bits a private file must not have.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Why the sink could not start or write.
#[derive(Debug, thiserror::Error)]
pub enum AuditSinkError {
    #[error("opening the audit log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the audit log: {0}")]
    Write(#[source] std::io::Error),
    #[error("audit stream: {0}")]
    Bus(#[from] BusError),
}

/// The running sink's state: the open file and the consumer.
pub struct AuditFileSink {
    file: tokio::fs::File,
    consumer: Box<dyn DurableConsumer>,
    path: PathBuf,
}

impl std::fmt::Debug for AuditFileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFileSink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AuditFileSink {
    /// Opens (creating, 0600) the log at `path` and the durable consumer on `bus`, declaring
    /// the `AUDIT` stream if no service has yet.
    pub async fn open(bus: &Arc<dyn Bus>, path: &Path) -> Result<Self, AuditSinkError> {
        let open_error = |source| AuditSinkError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .await
            .map_err(open_error)?;
        let mode = file
            .metadata()
            .await
            .map_err(open_error)?
            .permissions()
            .mode();
        if mode & GROUP_OTHER_BITS != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the audit log is readable by group or others; run chmod 600"
            );
        }
        bus.ensure_stream(&audit_stream()).await?;
        let mut spec = ConsumerSpec::new(AUDIT_STREAM, CONSUMER_NAME);
        spec.filter_subject = Some(AUDIT_SUBJECTS.to_owned());
        spec.ack_wait = ACK_WAIT;
        let consumer = bus.durable_consumer(&spec).await?;
        Ok(Self {
            file,
            consumer,
            path: path.to_path_buf(),
        })
    }

    /// Appends events until `stop`, then drains what is already on the stream and returns.
    /// Cancel `stop` only after the producing services have stopped, so their last events
    /// are written.
    pub async fn run(mut self, stop: CancellationToken) {
        tracing::info!(path = %self.path.display(), "interim audit sink writing events");
        while !stop.is_cancelled() {
            match self.consumer.fetch(FETCH_BATCH, FETCH_WAIT).await {
                Ok(batch) => {
                    if let Err(err) = self.append(batch).await {
                        tracing::error!(error = %err, "audit sink write failed; will retry");
                        pause(&stop).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "audit sink fetch failed; retrying");
                    pause(&stop).await;
                }
            }
        }
        for _ in 0..MAX_DRAIN_BATCHES {
            match self.consumer.fetch(FETCH_BATCH, Duration::ZERO).await {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => {
                    if let Err(err) = self.append(batch).await {
                        tracing::error!(error = %err, "audit sink write failed at shutdown");
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "audit sink fetch failed at shutdown");
                    break;
                }
            }
        }
    }

    /// Writes one line per event, syncs, then acknowledges the batch.
    async fn append(&mut self, batch: Vec<Delivery>) -> Result<(), AuditSinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for delivery in &batch {
            let line = event_line(&delivery.subject, &delivery.payload);
            lines.extend_from_slice(line.to_string().as_bytes());
            lines.push(b'\n');
        }
        self.file
            .write_all(&lines)
            .await
            .map_err(AuditSinkError::Write)?;
        self.file.flush().await.map_err(AuditSinkError::Write)?;
        self.file.sync_data().await.map_err(AuditSinkError::Write)?;
        for delivery in batch {
            // A failed ack only means the event is written again after the ack wait.
            if let Err(err) = delivery.ack().await {
                tracing::warn!(error = %err, "acknowledging an audit event failed");
            }
        }
        Ok(())
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(RETRY_PAUSE) => {}
    }
}

/// One event as a JSON object; an undecodable payload becomes a line saying so (never
/// silently dropped, never retried for ever).
pub fn event_line(subject: &str, payload: &[u8]) -> Value {
    let event = match AuditEvent::decode(payload) {
        Ok(event) => event,
        Err(err) => {
            tracing::warn!(subject, error = %err, "undecodable audit event");
            return json!({ "subject": subject, "error": "undecodable audit event" });
        }
    };
    let actor = event.actor.as_ref().map(|actor| {
        json!({
            "kind": enum_name(
                ActorKind::try_from(actor.kind).map(|k| k.as_str_name()),
                "ACTOR_KIND_",
            ),
            "id": actor.id,
            "display": actor.display,
        })
    });
    let policy_result = event.policy_result.as_ref().map(|result| {
        json!({
            "decision": enum_name(
                PolicyDecision::try_from(result.decision).map(|d| d.as_str_name()),
                "POLICY_DECISION_",
            ),
            "rule": result.rule,
            "reason": result.reason,
            "approver": result.approver,
        })
    });
    let context = if event.context_json.is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str::<Value>(&event.context_json)
            .unwrap_or_else(|_| Value::String(event.context_json.clone()))
    };
    json!({
        "event_id": event.event_id,
        "team_id": event.team_id,
        "action": event.action,
        "actor": actor,
        "target": event.target,
        "occurred_at_ms": event.occurred_at_ms,
        "session_id": event.session_id,
        "policy_result": policy_result,
        "context": context,
    })
}

/// `ACTOR_KIND_USER` → `user`; an unknown value → `unknown`.
fn enum_name<E>(name: Result<&str, E>, prefix: &str) -> String {
    name.map_or_else(
        |_| "unknown".to_owned(),
        |name| name.trim_start_matches(prefix).to_ascii_lowercase(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tucdesk_proto::v1::Actor;

    use super::*;

    #[test]
    fn events_become_flat_json_with_readable_enums_and_parsed_context() {
        let event = AuditEvent {
            event_id: "e1".into(),
            team_id: "t1".into(),
            actor: Some(Actor {
                kind: ActorKind::User as i32,
                id: "u1".into(),
                display: String::new(),
            }),
            action: "auth.login".into(),
            context_json: r#"{"outcome":"success"}"#.into(),
            ..Default::default()
        };
        let line = event_line("audit.t1.auth.login", &event.encode_to_vec());
        assert_eq!(line["action"], "auth.login");
        assert_eq!(line["actor"]["kind"], "user");
        assert_eq!(line["context"]["outcome"], "success");
        assert!(line["policy_result"].is_null());
    }

    #[test]
    fn undecodable_payloads_are_reported_not_dropped() {
        let line = event_line("audit.t1.x.y", &[0xff, 0xff, 0xff]);
        assert_eq!(line["error"], "undecodable audit event");
        assert_eq!(line["subject"], "audit.t1.x.y");
    }
}
