//! Tags (findings) and their history.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::types::{ClipState, Tag, TagHistoryEntry};
use sqlx::AnyPool as Pool;

const SELECT: &str = "SELECT t.id, t.session_id, t.start_ms, t.end_ms, t.step, t.category, t.severity, t.emotion, \
    t.note, t.quote, t.url, t.selector, t.candidate_id, u.login AS created_by, t.created_at, t.updated_at, \
    c.status AS clip_status FROM tags t LEFT JOIN users u ON u.id = t.created_by \
    LEFT JOIN clips c ON c.tag_id = t.id WHERE t.deleted = 0";

fn tag(r: &AnyRow) -> Result<Tag, sqlx::Error> {
    let id: i64 = r.try_get("id")?;
    let clip_status: Option<String> = r.try_get("clip_status")?;
    Ok(Tag {
        id,
        session_id: r.try_get("session_id")?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        step: r.try_get("step")?,
        category: r.try_get("category")?,
        severity: r.try_get("severity")?,
        emotion: r.try_get("emotion")?,
        note: r.try_get("note")?,
        quote: r.try_get("quote")?,
        url: r.try_get("url")?,
        selector: r.try_get("selector")?,
        candidate_id: r.try_get("candidate_id")?,
        created_by: r
            .try_get::<Option<String>, _>("created_by")?
            .unwrap_or_default(),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        clip: clip_status.map(|status| ClipState {
            url: (status == "done").then(|| format!("/api/v1/clips/{id}.mp4")),
            status,
        }),
    })
}

/// A session's tags (not deleted), in time order.
pub async fn list(pool: &Pool, session: &str) -> Result<Vec<Tag>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} AND t.session_id = $1 ORDER BY t.start_ms, t.id"
    )))
    .bind(session)
    .fetch_all(pool)
    .await?
    .iter()
    .map(tag)
    .collect()
}

pub async fn get(pool: &Pool, id: i64) -> Result<Option<Tag>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} AND t.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(tag)
        .transpose()
}

/// The session a tag (deleted or not) belongs to.
pub async fn session_of(pool: &Pool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT session_id FROM tags WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get("session_id"))
        .transpose()
}

/// The ids of every tag of a session, deleted ones included.
pub async fn ids_of_session(pool: &Pool, session: &str) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query("SELECT id FROM tags WHERE session_id = $1")
        .bind(session)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect()
}

/// The fields of a tag that a researcher writes.
pub struct TagFields<'a> {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step: Option<&'a str>,
    pub category: &'a str,
    pub severity: i64,
    pub emotion: &'a str,
    pub note: &'a str,
    pub quote: &'a str,
}

/// Where on the prototype a new tag happened, and what proposed it.
pub struct TagOrigin<'a> {
    pub url: Option<String>,
    pub selector: Option<String>,
    pub candidate_id: Option<&'a str>,
    pub created_by: i64,
}

/// Inserts a tag, only while the session is not withdrawn (checked in the
/// same statement, so a withdrawal that lands after the caller's checks
/// wins). Returns the new id, or None if the session is withdrawn.
pub async fn insert(
    pool: &Pool,
    session: &str,
    f: &TagFields<'_>,
    origin: TagOrigin<'_>,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query(
        "INSERT INTO tags (session_id, start_ms, end_ms, step, category, severity, emotion, note, quote, url, selector, \
         candidate_id, created_by, created_at, updated_at) SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$14 \
         WHERE EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND withdrawn = 0) RETURNING id",
    )
    .bind(session)
    .bind(f.start_ms)
    .bind(f.end_ms)
    .bind(f.step)
    .bind(f.category)
    .bind(f.severity)
    .bind(f.emotion)
    .bind(f.note)
    .bind(f.quote)
    .bind(origin.url)
    .bind(origin.selector)
    .bind(origin.candidate_id)
    .bind(origin.created_by)
    .bind(now)
    .fetch_optional(pool)
    .await?
    .map(|r| r.try_get("id"))
    .transpose()
}

/// Updates a tag of a session that is not withdrawn; false if none was.
pub async fn update(
    pool: &Pool,
    id: i64,
    f: &TagFields<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tags SET start_ms = $2, end_ms = $3, step = $4, category = $5, severity = $6, emotion = $7, note = $8, \
         quote = $9, updated_at = $10 WHERE id = $1 \
         AND session_id IN (SELECT id FROM sessions WHERE withdrawn = 0)",
    )
    .bind(id)
    .bind(f.start_ms)
    .bind(f.end_ms)
    .bind(f.step)
    .bind(f.category)
    .bind(f.severity)
    .bind(f.emotion)
    .bind(f.note)
    .bind(f.quote)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes a tag (kept as deleted for its history); a candidate accepted
/// into it goes back to the open list.
pub async fn delete(pool: &Pool, id: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tags SET deleted = 1, updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?;
    sqlx::query("UPDATE candidates SET status = 'open', tag_id = NULL WHERE tag_id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn record_history(
    pool: &Pool,
    tag: i64,
    user: i64,
    at: i64,
    action: &str,
    before: Option<&Tag>,
    after: Option<&Tag>,
) -> Result<(), sqlx::Error> {
    let j = |t: Option<&Tag>| {
        t.map(serde_json::to_string)
            .transpose()
            .map_err(|e| sqlx::Error::Encode(e.into()))
    };
    sqlx::query("INSERT INTO tag_history (tag_id, user_id, at, action, before, after) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(tag)
        .bind(user)
        .bind(at)
        .bind(action)
        .bind(j(before)?)
        .bind(j(after)?)
        .execute(pool)
        .await?;
    Ok(())
}

fn history_entry(r: &AnyRow) -> Result<TagHistoryEntry, sqlx::Error> {
    let parse = |s: Option<String>| {
        s.and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    Ok(TagHistoryEntry {
        at: r.try_get("at")?,
        user: r.try_get("login")?,
        action: r.try_get("action")?,
        before: parse(r.try_get("before")?),
        after: parse(r.try_get("after")?),
    })
}

pub async fn history(pool: &Pool, tag: i64) -> Result<Vec<TagHistoryEntry>, sqlx::Error> {
    sqlx::query(
        "SELECT h.at, u.login, h.action, h.before, h.after FROM tag_history h LEFT JOIN users u ON u.id = h.user_id \
         WHERE h.tag_id = $1 ORDER BY h.at, h.id",
    )
    .bind(tag)
    .fetch_all(pool)
    .await?
    .iter()
    .map(history_entry)
    .collect()
}
