//! API tokens (bearer, stored as SHA-256).

use sqlx::Row;

use crate::types::ApiToken;
use sqlx::AnyPool as Pool;

pub async fn list(pool: &Pool) -> Result<Vec<ApiToken>, sqlx::Error> {
    sqlx::query("SELECT id, name, created_at, scope FROM api_tokens ORDER BY id")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(ApiToken {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
                scope: r.try_get("scope")?,
            })
        })
        .collect()
}

pub async fn insert(
    pool: &Pool,
    name: &str,
    token_hash: &str,
    created_by: i64,
    now: i64,
    scope: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query("INSERT INTO api_tokens (name, token_hash, created_by, created_at, scope) VALUES ($1, $2, $3, $4, $5) RETURNING id")
        .bind(name)
        .bind(token_hash)
        .bind(created_by)
        .bind(now)
        .bind(scope)
        .fetch_one(pool)
        .await?
        .try_get("id")
}

pub async fn delete(pool: &Pool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM api_tokens WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The token with this hash: (id, name, scope).
pub async fn by_hash(
    pool: &Pool,
    token_hash: &str,
) -> Result<Option<(i64, String, String)>, sqlx::Error> {
    sqlx::query("SELECT id, name, scope FROM api_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(pool)
        .await?
        .map(|r| Ok((r.try_get("id")?, r.try_get("name")?, r.try_get("scope")?)))
        .transpose()
}
