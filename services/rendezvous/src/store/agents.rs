//! Enrolled agents and their tags.

use std::collections::HashMap;

use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use crate::error::RendezvousError;

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_REVOKED: &str = "revoked";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRow {
    pub agent_id: String,
    pub team_id: String,
    pub public_key: Vec<u8>,
    pub name: String,
    pub hostname: String,
    pub status: String,
    pub enrollment_token_id: String,
    pub enrolled_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub host: Option<Vec<u8>>,
    pub protocol_version: i32,
    pub last_seen_at_ms: Option<i64>,
}

impl AgentRow {
    pub fn is_revoked(&self) -> bool {
        self.status == STATUS_REVOKED
    }
}

/// An agent with its tags (sorted).
#[derive(Debug, Clone)]
pub struct Agent {
    pub row: AgentRow,
    pub tags: Vec<String>,
}

const COLUMNS: &str = "agent_id, team_id, public_key, name, hostname, status, \
     enrollment_token_id, enrolled_at_ms, revoked_at_ms, host, protocol_version, last_seen_at_ms";

/// The agent with this id in any team (registration: the team comes from this row).
pub async fn find(db: &Database, agent_id: &str) -> Result<Option<AgentRow>, RendezvousError> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE agent_id = $1");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(agent_id)
            .fetch_optional(pool)
            .await?
    }))
}

/// The agent with this id in the caller's team, with its tags; another team's agent is
/// `None`, exactly like a missing one.
pub async fn find_in_team(
    db: &Database,
    team_id: &str,
    agent_id: &str,
) -> Result<Option<Agent>, RendezvousError> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE agent_id = $1 AND team_id = $2");
    let row: Option<AgentRow> = on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(agent_id)
            .bind(team_id)
            .fetch_optional(pool)
            .await?
    });
    let Some(row) = row else { return Ok(None) };
    let tags = tags_of(db, std::slice::from_ref(&row.agent_id))
        .await?
        .remove(&row.agent_id)
        .unwrap_or_default();
    Ok(Some(Agent { row, tags }))
}

/// The same inside a transaction (for read-modify-write).
pub async fn find_in_team_tx(
    tx: &mut Tx,
    team_id: &str,
    agent_id: &str,
) -> Result<Option<AgentRow>, RendezvousError> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE agent_id = $1 AND team_id = $2");
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(agent_id)
            .bind(team_id)
            .fetch_optional(conn)
            .await?
    }))
}

pub async fn find_tx(tx: &mut Tx, agent_id: &str) -> Result<Option<AgentRow>, RendezvousError> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE agent_id = $1");
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(agent_id)
            .fetch_optional(conn)
            .await?
    }))
}

/// Tags of each agent in `agent_ids` (agents without tags are absent from the map).
pub async fn tags_of(
    db: &Database,
    agent_ids: &[String],
) -> Result<HashMap<String, Vec<String>>, RendezvousError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if agent_ids.is_empty() {
        return Ok(out);
    }
    let placeholders = (1..=agent_ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT agent_id, tag FROM agent_tags WHERE agent_id IN ({placeholders}) ORDER BY agent_id, tag"
    );
    let rows: Vec<(String, String)> = on_pool!(db, |pool| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
        for id in agent_ids {
            query = query.bind(id);
        }
        query.fetch_all(pool).await?
    });
    for (agent_id, tag) in rows {
        out.entry(agent_id).or_default().push(tag);
    }
    Ok(out)
}

/// Display names of the agents in `agent_ids` (one query; unknown ids are absent).
pub async fn names_of(
    db: &Database,
    agent_ids: &[String],
) -> Result<HashMap<String, String>, RendezvousError> {
    let mut unique: Vec<&String> = agent_ids.iter().collect();
    unique.sort();
    unique.dedup();
    if unique.is_empty() {
        return Ok(HashMap::new());
    }
    let placeholders = (1..=unique.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT agent_id, name FROM agents WHERE agent_id IN ({placeholders})");
    let rows: Vec<(String, String)> = on_pool!(db, |pool| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
        for id in &unique {
            query = query.bind(*id);
        }
        query.fetch_all(pool).await?
    });
    Ok(rows.into_iter().collect())
}

pub async fn tags_of_tx(tx: &mut Tx, agent_id: &str) -> Result<Vec<String>, RendezvousError> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT tag FROM agent_tags WHERE agent_id = $1 ORDER BY tag")
            .bind(agent_id)
            .fetch_all(conn)
            .await?
    }))
}

pub async fn insert(tx: &mut Tx, row: &AgentRow, tags: &[String]) -> Result<(), RendezvousError> {
    let sql = format!(
        "INSERT INTO agents ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    );
    on_tx!(tx, |conn| {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&row.agent_id)
            .bind(&row.team_id)
            .bind(&row.public_key)
            .bind(&row.name)
            .bind(&row.hostname)
            .bind(&row.status)
            .bind(&row.enrollment_token_id)
            .bind(row.enrolled_at_ms)
            .bind(row.revoked_at_ms)
            .bind(&row.host)
            .bind(row.protocol_version)
            .bind(row.last_seen_at_ms)
            .execute(&mut *conn)
            .await?;
    });
    replace_tags(tx, &row.agent_id, tags).await
}

/// Sets an agent's tags to exactly `tags`.
pub async fn replace_tags(
    tx: &mut Tx,
    agent_id: &str,
    tags: &[String],
) -> Result<(), RendezvousError> {
    on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM agent_tags WHERE agent_id = $1")
            .bind(agent_id)
            .execute(&mut *conn)
            .await?;
        for tag in tags {
            sqlx::query("INSERT INTO agent_tags (agent_id, tag) VALUES ($1, $2)")
                .bind(agent_id)
                .bind(tag)
                .execute(&mut *conn)
                .await?;
        }
    });
    Ok(())
}

pub async fn rename(tx: &mut Tx, agent_id: &str, name: &str) -> Result<(), RendezvousError> {
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE agents SET name = $1 WHERE agent_id = $2")
            .bind(name)
            .bind(agent_id)
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// Marks an active agent revoked; `false` if it already was.
pub async fn revoke(
    tx: &mut Tx,
    agent_id: &str,
    by: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, RendezvousError> {
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE agents SET status = $1, revoked_at_ms = $2, revoked_by = $3, revoke_reason = $4 \
             WHERE agent_id = $5 AND status = $6",
        )
        .bind(STATUS_REVOKED)
        .bind(now_ms)
        .bind(by)
        .bind(reason)
        .bind(agent_id)
        .bind(STATUS_ACTIVE)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// Records what an agent reported when it (re)connected or disconnected.
pub async fn touch(
    db: &Database,
    agent_id: &str,
    host: Option<(&[u8], &str)>,
    protocol_version: u32,
    now_ms: i64,
) -> Result<(), RendezvousError> {
    let version = i32::try_from(protocol_version).unwrap_or(i32::MAX);
    on_pool!(db, |pool| {
        match host {
            Some((encoded, hostname)) => {
                sqlx::query(
                    "UPDATE agents SET host = $1, hostname = $2, protocol_version = $3, \
                     last_seen_at_ms = $4 WHERE agent_id = $5",
                )
                .bind(encoded)
                .bind(hostname)
                .bind(version)
                .bind(now_ms)
                .bind(agent_id)
                .execute(pool)
                .await?
            }
            None => {
                sqlx::query("UPDATE agents SET last_seen_at_ms = $1 WHERE agent_id = $2")
                    .bind(now_ms)
                    .bind(agent_id)
                    .execute(pool)
                    .await?
            }
        };
    });
    Ok(())
}

/// Filters of an agent listing (team from claims).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this agent (a support principal scoped to one agent).
    pub agent_id: Option<String>,
    /// The agent must carry every one of these.
    pub tags: Vec<String>,
    /// Lowercase substring of the name or hostname.
    pub name_contains: Option<String>,
    pub include_revoked: bool,
}

/// One page of a team's agents ordered by (name, agent_id), starting after `after`.
pub async fn list(
    db: &Database,
    team_id: &str,
    filter: &ListFilter,
    after: Option<(&str, &str)>,
    limit: u32,
) -> Result<Vec<AgentRow>, RendezvousError> {
    let mut sql = format!("SELECT {COLUMNS} FROM agents a WHERE a.team_id = $1");
    let mut next = 2;
    let mut placeholder = || {
        let p = format!("${next}");
        next += 1;
        p
    };
    if filter.agent_id.is_some() {
        sql.push_str(&format!(" AND a.agent_id = {}", placeholder()));
    }
    if !filter.include_revoked {
        sql.push_str(&format!(" AND a.status = {}", placeholder()));
    }
    if filter.name_contains.is_some() {
        let (p1, p2) = (placeholder(), placeholder());
        sql.push_str(&format!(
            " AND (LOWER(a.name) LIKE {p1} ESCAPE '\\' OR LOWER(a.hostname) LIKE {p2} ESCAPE '\\')"
        ));
    }
    if after.is_some() {
        let (p1, p2, p3) = (placeholder(), placeholder(), placeholder());
        sql.push_str(&format!(
            " AND (a.name > {p1} OR (a.name = {p2} AND a.agent_id > {p3}))"
        ));
    }
    if !filter.tags.is_empty() {
        let list = filter
            .tags
            .iter()
            .map(|_| placeholder())
            .collect::<Vec<_>>()
            .join(", ");
        let count = placeholder();
        sql.push_str(&format!(
            " AND (SELECT COUNT(*) FROM agent_tags t WHERE t.agent_id = a.agent_id AND t.tag IN ({list})) = {count}"
        ));
    }
    let limit_placeholder = placeholder();
    sql.push_str(&format!(
        " ORDER BY a.name, a.agent_id LIMIT {limit_placeholder}"
    ));

    let pattern = filter.name_contains.as_deref().map(like_pattern);
    let tag_count = i64::try_from(filter.tags.len()).unwrap_or(i64::MAX);
    Ok(on_pool!(db, |pool| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(team_id);
        if let Some(agent_id) = &filter.agent_id {
            query = query.bind(agent_id);
        }
        if !filter.include_revoked {
            query = query.bind(STATUS_ACTIVE);
        }
        if let Some(pattern) = &pattern {
            query = query.bind(pattern.clone()).bind(pattern.clone());
        }
        if let Some((name, agent_id)) = after {
            query = query.bind(name).bind(name).bind(agent_id);
        }
        for tag in &filter.tags {
            query = query.bind(tag);
        }
        if !filter.tags.is_empty() {
            query = query.bind(tag_count);
        }
        query.bind(i64::from(limit)).fetch_all(pool).await?
    }))
}

/// `%needle%` with LIKE's wildcards in the needle escaped, so a search for `a_b` is literal.
fn like_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("Web_1%"), "%web\\_1\\%%");
    }
}
