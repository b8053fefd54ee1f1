//! Friction candidates the analyzer proposed, and researchers' decisions.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::types::{Candidate, CandidateEvidence};
use sqlx::AnyPool as Pool;

const COLUMNS: &str =
    "id, detector, start_ms, end_ms, step, confidence, note, evidence, status, reason, tag_id";

fn candidate(r: &AnyRow) -> Result<Candidate, sqlx::Error> {
    let evidence: CandidateEvidence = serde_json::from_str(&r.try_get::<String, _>("evidence")?)
        .map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok(Candidate {
        id: r.try_get("id")?,
        detector: r.try_get("detector")?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        step: r.try_get("step")?,
        confidence: r.try_get("confidence")?,
        note: r.try_get("note")?,
        evidence,
        status: r.try_get("status")?,
        reason: r.try_get("reason")?,
        tag_id: r.try_get("tag_id")?,
    })
}

pub async fn list(pool: &Pool, session: &str) -> Result<Vec<Candidate>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM candidates WHERE session_id = $1 ORDER BY start_ms, id"
    )))
    .bind(session)
    .fetch_all(pool)
    .await?
    .iter()
    .map(candidate)
    .collect()
}

pub async fn get(pool: &Pool, session: &str, id: &str) -> Result<Option<Candidate>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM candidates WHERE session_id = $1 AND id = $2"
    )))
    .bind(session)
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(candidate)
    .transpose()
}

/// Marks a candidate accepted into tag `tag`.
pub async fn accept(
    pool: &Pool,
    session: &str,
    id: &str,
    tag: i64,
    user: i64,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE candidates SET status = 'accepted', tag_id = $3, decided_by = $4, decided_at = $5, reason = NULL \
         WHERE session_id = $1 AND id = $2",
    )
    .bind(session)
    .bind(id)
    .bind(tag)
    .bind(user)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Rejects a candidate of a session that is not withdrawn; false if there
/// was none to reject.
pub async fn reject(
    pool: &Pool,
    session: &str,
    id: &str,
    reason: &str,
    user: i64,
    at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE candidates SET status = 'rejected', reason = $3, decided_by = $4, decided_at = $5 WHERE session_id = $1 AND id = $2 \
         AND session_id IN (SELECT id FROM sessions WHERE withdrawn = 0)",
    )
    .bind(session)
    .bind(id)
    .bind(reason)
    .bind(user)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}
