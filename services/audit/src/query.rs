//! `Query`: the caller's team's entries, filtered and paged (newest first by default).

use serde_json::{Map, Value};
use tucdesk_crypto::audit::{MAX_ACTION_LEN, MAX_ID_LEN, MAX_TARGET_LEN};
use tucdesk_proto::v1::{AuditEntry, AuditFilter, QueryAuditRequest, QueryAuditResponse};

use crate::caller::Caller;
use crate::convert::entry_to_proto;
use crate::error::AuditError;
use crate::paging;
use crate::service::Audit;
use crate::store::entries::{self, EntryFilter, EntryRow};

/// Largest encoded Query response: a page stops early (with a page token) rather than exceed
/// it, so a page of large entries stays under the 4 MiB clients accept by default.
pub const MAX_QUERY_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// Latest time a filter may name: the end of year 9999 (keeps millisecond arithmetic far
/// from overflow).
const MAX_FILTER_SECONDS: i64 = 253_402_300_799;

fn invalid(what: &str) -> AuditError {
    AuditError::InvalidArgument(what.to_owned())
}

fn text(value: &str, max: usize, field: &str) -> Result<Option<String>, AuditError> {
    if value.len() > max {
        return Err(invalid(&format!(
            "filter.{field} is longer than {max} bytes"
        )));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn millis(ts: Option<&prost_types::Timestamp>, field: &str) -> Result<Option<i64>, AuditError> {
    let Some(ts) = ts else { return Ok(None) };
    if !(-MAX_FILTER_SECONDS..=MAX_FILTER_SECONDS).contains(&ts.seconds)
        || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return Err(invalid(&format!("filter.{field} is out of range")));
    }
    Ok(Some(ts.seconds * 1000 + i64::from(ts.nanos / 1_000_000)))
}

/// The store filter of a request's filter, every field bounded. Team comes from the caller,
/// never from here.
pub fn filter_from_proto(filter: Option<&AuditFilter>) -> Result<EntryFilter, AuditError> {
    let default = AuditFilter::default();
    let f = filter.unwrap_or(&default);
    let mut out = EntryFilter {
        start_ms: millis(f.start.as_ref(), "start")?,
        end_ms: millis(f.end.as_ref(), "end")?,
        actor_id: text(&f.actor_id, MAX_ID_LEN, "actor_id")?,
        session_id: text(&f.session_id, MAX_ID_LEN, "session_id")?,
        target: text(&f.target, MAX_TARGET_LEN, "target")?,
        ..EntryFilter::default()
    };
    if let Some(action) = text(&f.action, MAX_ACTION_LEN, "action")? {
        if !action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        {
            return Err(invalid(
                "filter.action must be a dotted lowercase name or prefix",
            ));
        }
        if action.ends_with('.') {
            out.action_prefix = Some(action);
        } else {
            out.action = Some(action);
        }
    }
    if let Some(agent) = text(&f.agent_id, MAX_ID_LEN, "agent_id")? {
        let target = format!("agent:{agent}");
        match &out.target {
            // Both set and different: nothing can match.
            Some(other) if *other != target => out.to_seq = 0,
            _ => out.target = Some(target),
        }
    }
    if f.from_seq > 0 {
        out.from_seq = i64::try_from(f.from_seq).unwrap_or(i64::MAX);
    }
    if f.to_seq > 0 {
        out.to_seq = out.to_seq.min(i64::try_from(f.to_seq).unwrap_or(i64::MAX));
    }
    Ok(out)
}

/// The filter as recorded in the `audit.query` / `audit.export` event (the caller's own
/// bounded inputs; nothing secret).
pub fn filter_details(filter: &EntryFilter) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.to_owned(), value);
        }
    };
    put("start_ms", filter.start_ms.map(Value::from));
    put("end_ms", filter.end_ms.map(Value::from));
    put("actor_id", filter.actor_id.clone().map(Value::from));
    put("action", filter.action.clone().map(Value::from));
    put(
        "action_prefix",
        filter.action_prefix.clone().map(Value::from),
    );
    put("target", filter.target.clone().map(Value::from));
    put("session_id", filter.session_id.clone().map(Value::from));
    put(
        "from_seq",
        (filter.from_seq > 1).then(|| Value::from(filter.from_seq)),
    );
    put(
        "to_seq",
        (filter.to_seq < i64::MAX).then(|| Value::from(filter.to_seq)),
    );
    out
}

/// The fingerprint binding page tokens to a filter and an order.
fn filter_fingerprint(filter: &EntryFilter, oldest_first: bool) -> paging::Fingerprint {
    let opt = |v: &Option<String>| v.as_deref().unwrap_or("\u{0}none").as_bytes().to_vec();
    let num = |v: Option<i64>| v.map_or_else(|| b"none".to_vec(), |n| n.to_be_bytes().to_vec());
    paging::fingerprint(&[
        &num(filter.start_ms),
        &num(filter.end_ms),
        &opt(&filter.actor_id),
        &opt(&filter.action),
        &opt(&filter.action_prefix),
        &opt(&filter.target),
        &opt(&filter.session_id),
        &filter.from_seq.to_be_bytes(),
        &filter.to_seq.to_be_bytes(),
        &[u8::from(oldest_first)],
    ])
}

/// Stored rows as wire entries.
pub(crate) fn rows_to_proto(rows: Vec<EntryRow>) -> Result<Vec<AuditEntry>, AuditError> {
    rows.into_iter()
        .map(|row| {
            let (entry, key_id) = row.into_entry()?;
            entry_to_proto(&entry, &key_id)
                .map_err(|err| AuditError::internal("a stored entry does not convert", err))
        })
        .collect()
}

impl Audit {
    /// The caller's team's entries matching the filter, one page.
    pub async fn query(
        &self,
        caller: &Caller,
        request: &QueryAuditRequest,
    ) -> Result<QueryAuditResponse, AuditError> {
        let filter = filter_from_proto(request.filter.as_ref())?;
        let size = paging::page_size(request.page.as_ref());
        let fingerprint = filter_fingerprint(&filter, request.oldest_first);
        let cursor = paging::cursor(request.page.as_ref(), &fingerprint)?;
        let mut details = filter_details(&filter);
        details.insert("oldest_first".into(), Value::from(request.oldest_first));
        self.record_access(caller, "audit.query", details, &[])
            .await?;

        let mut bounded = filter.clone();
        if let Some(cursor) = cursor.map(|c| i64::try_from(c).unwrap_or(i64::MAX)) {
            if request.oldest_first {
                bounded.from_seq = bounded.from_seq.max(cursor.saturating_add(1));
            } else {
                bounded.to_seq = bounded.to_seq.min(cursor.saturating_sub(1));
            }
        }
        let rows = entries::query(
            self.db(),
            caller.team_id(),
            &bounded,
            size,
            !request.oldest_first,
        )
        .await?;
        let full = rows.len() == size as usize;
        let mut entries = rows_to_proto(rows)?;
        let mut total = 0usize;
        let keep = entries
            .iter()
            .position(|entry| {
                total = total.saturating_add(prost::Message::encoded_len(entry) + 8);
                total > MAX_QUERY_RESPONSE_BYTES
            })
            .map_or(entries.len(), |at| at.max(1));
        let cut = keep < entries.len();
        entries.truncate(keep);
        let last = (full || cut)
            .then(|| entries.last().map(|entry| entry.seq))
            .flatten();
        Ok(QueryAuditResponse {
            entries,
            page: Some(paging::next_page(&fingerprint, last)),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn filters_are_bounded_and_mapped() {
        let f = AuditFilter {
            action: "session.".into(),
            agent_id: "abc".into(),
            from_seq: 3,
            ..Default::default()
        };
        let out = filter_from_proto(Some(&f)).unwrap();
        assert_eq!(out.action_prefix.as_deref(), Some("session."));
        assert_eq!(out.target.as_deref(), Some("agent:abc"));
        assert_eq!((out.from_seq, out.to_seq), (3, i64::MAX));

        let clash = AuditFilter {
            target: "user:1".into(),
            agent_id: "abc".into(),
            ..Default::default()
        };
        assert_eq!(filter_from_proto(Some(&clash)).unwrap().to_seq, 0);

        for bad in [
            AuditFilter {
                actor_id: "x".repeat(MAX_ID_LEN + 1),
                ..Default::default()
            },
            AuditFilter {
                action: "Session.%".into(),
                ..Default::default()
            },
            AuditFilter {
                start: Some(prost_types::Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
                ..Default::default()
            },
        ] {
            assert!(filter_from_proto(Some(&bad)).is_err(), "{bad:?}");
        }
    }
}
