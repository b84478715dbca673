//! `audit_entries`: the chains. Inserted once, read back as `tucdesk_crypto::audit::Entry`.

use std::collections::HashSet;

use tucdesk_crypto::audit::{AuditEvent, Entry};
use tucdesk_crypto::merkle::Hash;
use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use super::{WriteError, db_int, from_db_int, stored_hash, stored_sig};
use crate::error::AuditError;

/// One stored entry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EntryRow {
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub sig: Vec<u8>,
    pub key_id: String,
    pub event_json: String,
}

impl EntryRow {
    /// The crypto entry, with the event rebuilt exactly from its stored JSON (strictly
    /// parsed), and the id of the key that signed it. Does not verify: code that builds on a
    /// row checks its hash (`ChainBuilder::resume`), and exports are verified by their readers.
    pub fn into_entry(self) -> Result<(Entry, String), AuditError> {
        let event: AuditEvent = tucdesk_crypto::json::from_json_object(self.event_json.as_bytes())
            .map_err(|err| AuditError::internal("stored audit event does not parse", err))?;
        let entry = Entry {
            seq: from_db_int(self.seq)?,
            prev_hash: stored_hash(&self.prev_hash)?,
            event,
            hash: stored_hash(&self.hash)?,
            sig: stored_sig(&self.sig)?,
        };
        Ok((entry, self.key_id))
    }
}

/// The query filters of `audit_entries` (all set fields must match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFilter {
    /// Inclusive start and exclusive end on `occurred_at_ms`.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub actor_id: Option<String>,
    /// Exact action.
    pub action: Option<String>,
    /// Action prefix ending with `.` (`session.`).
    pub action_prefix: Option<String>,
    pub target: Option<String>,
    pub session_id: Option<String>,
    /// Inclusive seq range (1..=i64::MAX).
    pub from_seq: i64,
    pub to_seq: i64,
}

impl Default for EntryFilter {
    fn default() -> Self {
        Self {
            start_ms: None,
            end_ms: None,
            actor_id: None,
            action: None,
            action_prefix: None,
            target: None,
            session_id: None,
            from_seq: 1,
            to_seq: i64::MAX,
        }
    }
}

const QUERY_ASC: &str = "SELECT seq, prev_hash, hash, sig, key_id, event_json FROM audit_entries \
     WHERE team_id = $1 AND seq >= $2 AND seq <= $3 \
     AND ($4 IS NULL OR occurred_at_ms >= $4) \
     AND ($5 IS NULL OR occurred_at_ms < $5) \
     AND ($6 IS NULL OR actor_id = $6) \
     AND ($7 IS NULL OR action = $7) \
     AND ($8 IS NULL OR substr(action, 1, length($8)) = $8) \
     AND ($9 IS NULL OR target = $9) \
     AND ($10 IS NULL OR session_id = $10) \
     ORDER BY seq ASC LIMIT $11";

const QUERY_DESC: &str = "SELECT seq, prev_hash, hash, sig, key_id, event_json FROM audit_entries \
     WHERE team_id = $1 AND seq >= $2 AND seq <= $3 \
     AND ($4 IS NULL OR occurred_at_ms >= $4) \
     AND ($5 IS NULL OR occurred_at_ms < $5) \
     AND ($6 IS NULL OR actor_id = $6) \
     AND ($7 IS NULL OR action = $7) \
     AND ($8 IS NULL OR substr(action, 1, length($8)) = $8) \
     AND ($9 IS NULL OR target = $9) \
     AND ($10 IS NULL OR session_id = $10) \
     ORDER BY seq DESC LIMIT $11";

/// Up to `limit` entries of `team_id` matching `filter`, by seq (ascending or descending).
pub async fn query(
    db: &Database,
    team_id: &str,
    filter: &EntryFilter,
    limit: u32,
    descending: bool,
) -> Result<Vec<EntryRow>, sqlx::Error> {
    let sql = if descending { QUERY_DESC } else { QUERY_ASC };
    Ok(on_pool!(db, |pool| {
        sqlx::query_as::<_, EntryRow>(sql)
            .bind(team_id)
            .bind(filter.from_seq)
            .bind(filter.to_seq)
            .bind(filter.start_ms)
            .bind(filter.end_ms)
            .bind(filter.actor_id.as_deref())
            .bind(filter.action.as_deref())
            .bind(filter.action_prefix.as_deref())
            .bind(filter.target.as_deref())
            .bind(filter.session_id.as_deref())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    }))
}

/// Rows per multi-row SQLite statement: 14 binds a row keeps a statement far below SQLite's
/// 32 766 bind limit, and a batch of 1 000 costs two statements.
const ROWS_PER_INSERT: usize = 500;

/// Ids per `IN (…)` lookup (same bind limits as above).
const IDS_PER_LOOKUP: usize = 1_000;

/// Appends `entries` (inside the batch's transaction) in as few statements as possible:
/// per-statement round trips, not hashing or signing, bound the append rate. Postgres takes
/// the whole batch as one `INSERT … SELECT FROM UNNEST` of column arrays (one cached statement
/// with 14 parameters, whatever the batch size); SQLite, multi-row `VALUES` a few hundred rows
/// at a time.
pub async fn insert_many(
    tx: &mut Tx,
    entries: &[Entry],
    key_id: &str,
    now_ms: i64,
) -> Result<(), WriteError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        rows.push(EntryInsert::new(entry)?);
    }
    match tx {
        Tx::Postgres(pg) => insert_unnest(pg, &rows, key_id, now_ms).await,
        Tx::Sqlite(lite) => {
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new(INSERT_COLUMNS);
                insert.push_values(chunk, |mut values, row| {
                    let event = &row.entry.event;
                    values
                        .push_bind(&event.team_id)
                        .push_bind(row.seq)
                        .push_bind(&event.event_id)
                        .push_bind(&row.entry.prev_hash[..])
                        .push_bind(&row.entry.hash[..])
                        .push_bind(&row.entry.sig[..])
                        .push_bind(key_id)
                        .push_bind(&row.event_json)
                        .push_bind(row.occurred_at_ms)
                        .push_bind(&event.action)
                        .push_bind(&event.actor.id)
                        .push_bind(&event.target)
                        .push_bind(event.session_id.as_deref())
                        .push_bind(now_ms);
                });
                insert.build().execute(&mut **lite).await?;
            }
            Ok(())
        }
    }
}

const INSERT_COLUMNS: &str = "INSERT INTO audit_entries (team_id, seq, event_id, prev_hash, hash, \
     sig, key_id, event_json, occurred_at_ms, action, actor_id, target, session_id, \
     appended_at_ms) ";

/// The Postgres insert: one array per column.
async fn insert_unnest(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    rows: &[EntryInsert<'_>],
    key_id: &str,
    now_ms: i64,
) -> Result<(), WriteError> {
    let column = |f: fn(&EntryInsert<'_>) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let bytes = |f: fn(&EntryInsert<'_>) -> Vec<u8>| rows.iter().map(f).collect::<Vec<Vec<u8>>>();
    let sql = format!(
        "{INSERT_COLUMNS} SELECT t.team_id, t.seq, t.event_id, t.prev_hash, t.hash, t.sig, $7, \
         t.event_json, t.occurred_at_ms, t.action, t.actor_id, t.target, t.session_id, $14 \
         FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::bytea[], $5::bytea[], \
         $6::bytea[], $8::text[], $9::int8[], $10::text[], $11::text[], $12::text[], \
         $13::text[]) AS t(team_id, seq, event_id, prev_hash, hash, sig, event_json, \
         occurred_at_ms, action, actor_id, target, session_id)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(column(|r| r.entry.event.team_id.clone()))
        .bind(rows.iter().map(|r| r.seq).collect::<Vec<i64>>())
        .bind(column(|r| r.entry.event.event_id.clone()))
        .bind(bytes(|r| r.entry.prev_hash.to_vec()))
        .bind(bytes(|r| r.entry.hash.to_vec()))
        .bind(bytes(|r| r.entry.sig.to_vec()))
        .bind(key_id)
        .bind(column(|r| r.event_json.clone()))
        .bind(rows.iter().map(|r| r.occurred_at_ms).collect::<Vec<i64>>())
        .bind(column(|r| r.entry.event.action.clone()))
        .bind(column(|r| r.entry.event.actor.id.clone()))
        .bind(column(|r| r.entry.event.target.clone()))
        .bind(
            rows.iter()
                .map(|r| r.entry.event.session_id.clone())
                .collect::<Vec<Option<String>>>(),
        )
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One entry's row, with the columns derived from it.
struct EntryInsert<'a> {
    entry: &'a Entry,
    seq: i64,
    event_json: String,
    /// The filter copy of occurred_at; the hashed value stays exact in event_json.
    occurred_at_ms: i64,
}

impl<'a> EntryInsert<'a> {
    fn new(entry: &'a Entry) -> Result<Self, WriteError> {
        let event_json = serde_json::to_string(&entry.event)
            .map_err(|err| AuditError::internal("encoding an audit event", err))?;
        Ok(Self {
            entry,
            seq: db_int(entry.seq)?,
            event_json,
            occurred_at_ms: i64::try_from(entry.event.occurred_at).unwrap_or(i64::MAX),
        })
    }
}

/// Which of `event_ids` are already in the log (any team: event ids are global), looked up
/// a thousand at a time instead of one statement per event.
pub async fn existing_event_ids(
    tx: &mut Tx,
    event_ids: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut found = HashSet::new();
    for chunk in event_ids.chunks(IDS_PER_LOOKUP) {
        let ids: Vec<String> = on_tx!(tx, |conn| {
            let mut lookup =
                sqlx::QueryBuilder::new("SELECT event_id FROM audit_entries WHERE event_id IN (");
            let mut list = lookup.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            lookup.push(")");
            lookup.build_query_scalar().fetch_all(conn).await?
        });
        found.extend(ids);
    }
    Ok(found)
}

/// The entry at `seq` of `team_id`, read inside a transaction.
pub async fn get_in(tx: &mut Tx, team_id: &str, seq: u64) -> Result<Option<EntryRow>, AuditError> {
    let seq = db_int(seq)?;
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as::<_, EntryRow>(
            "SELECT seq, prev_hash, hash, sig, key_id, event_json FROM audit_entries \
             WHERE team_id = $1 AND seq = $2",
        )
        .bind(team_id)
        .bind(seq)
        .fetch_optional(conn)
        .await?
    }))
}

/// The entry at `seq` of `team_id`.
pub async fn get(db: &Database, team_id: &str, seq: u64) -> Result<Option<EntryRow>, AuditError> {
    let seq = db_int(seq)?;
    Ok(on_pool!(db, |pool| {
        sqlx::query_as::<_, EntryRow>(
            "SELECT seq, prev_hash, hash, sig, key_id, event_json FROM audit_entries \
             WHERE team_id = $1 AND seq = $2",
        )
        .bind(team_id)
        .bind(seq)
        .fetch_optional(pool)
        .await?
    }))
}

/// The first entry of `team_id` whose hash is `hash`.
pub async fn find_by_hash(
    db: &Database,
    team_id: &str,
    hash: &Hash,
) -> Result<Option<EntryRow>, AuditError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_as::<_, EntryRow>(
            "SELECT seq, prev_hash, hash, sig, key_id, event_json FROM audit_entries \
             WHERE team_id = $1 AND hash = $2 ORDER BY seq LIMIT 1",
        )
        .bind(team_id)
        .bind(&hash[..])
        .fetch_optional(pool)
        .await?
    }))
}

/// The hashes of entries `1..=tree_size` of `team_id`, in seq order. Fails if any is missing
/// (a gap means the table was tampered with).
pub async fn hashes(db: &Database, team_id: &str, tree_size: u64) -> Result<Vec<Hash>, AuditError> {
    let upto = db_int(tree_size)?;
    let rows: Vec<(i64, Vec<u8>)> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT seq, hash FROM audit_entries WHERE team_id = $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(team_id)
        .bind(upto)
        .fetch_all(pool)
        .await?
    });
    let mut out = Vec::with_capacity(rows.len());
    for (expected, (seq, hash)) in (1i64..).zip(rows) {
        if seq != expected {
            return Err(AuditError::internal(
                "audit chain has a gap",
                format!("team {team_id}: expected seq {expected}, found {seq}"),
            ));
        }
        out.push(stored_hash(&hash)?);
    }
    if out.len() as u64 != tree_size {
        return Err(AuditError::internal(
            "audit chain is shorter than its tree size",
            format!("team {team_id}: {} of {tree_size} entries", out.len()),
        ));
    }
    Ok(out)
}
