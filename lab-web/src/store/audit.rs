//! The audit log.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::types::{AuditEntry, User};
use sqlx::AnyPool as Pool;

fn entry(r: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        user: r.try_get("login")?,
        action: r.try_get("action")?,
        object: r.try_get("object")?,
        detail: r.try_get("detail")?,
    })
}

pub async fn append(
    pool: &Pool,
    at: i64,
    user: Option<&User>,
    action: &str,
    object: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit (at, user_id, login, action, object, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(at)
    .bind(user.map(|u| u.id))
    .bind(user.map(|u| u.login.as_str()).unwrap_or("-"))
    .bind(action)
    .bind(object)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}

/// Newest first; `before` = 0 for the newest page.
pub async fn list(pool: &Pool, before: i64, limit: i64) -> Result<Vec<AuditEntry>, sqlx::Error> {
    sqlx::query(
        "SELECT id, at, login, action, object, detail FROM audit WHERE ($1 = 0 OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(entry)
    .collect()
}
