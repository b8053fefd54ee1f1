//! SHA-256 of bundle files as lab-web last hashed them, keyed by size and
//! modification time (`remote::files`), so a lease does not hash a whole
//! bundle again.

use std::collections::HashMap;

use sqlx::Row;

use crate::db::Db;

/// Path → (size, mtime ns, SHA-256) of the session's files hashed so far.
pub async fn known(
    db: &Db,
    session: &str,
) -> Result<HashMap<String, (i64, i64, String)>, sqlx::Error> {
    sqlx::query("SELECT path, size, mtime_ns, sha256 FROM bundle_sums WHERE session_id = $1")
        .bind(session)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("path")?,
                (
                    r.try_get("size")?,
                    r.try_get("mtime_ns")?,
                    r.try_get("sha256")?,
                ),
            ))
        })
        .collect()
}

pub async fn record(
    db: &Db,
    session: &str,
    path: &str,
    size: u64,
    mtime_ns: i64,
    sha256: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO bundle_sums (session_id, path, size, mtime_ns, sha256) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (session_id, path) DO UPDATE SET size = excluded.size, \
         mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256",
    )
    .bind(session)
    .bind(path)
    .bind(size as i64)
    .bind(mtime_ns)
    .bind(sha256)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub async fn forget(db: &Db, session: &str, path: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM bundle_sums WHERE session_id = $1 AND path = $2")
        .bind(session)
        .bind(path)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Of `ids`, those no session has or whose participant withdrew.
pub async fn gone_or_withdrawn(db: &Db, ids: &[String]) -> Result<Vec<String>, sqlx::Error> {
    let mut out = vec![];
    for id in ids {
        let row = sqlx::query("SELECT withdrawn FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?;
        let keep = match row {
            Some(r) => r.try_get::<i64, _>("withdrawn")? == 0,
            None => false,
        };
        if !keep {
            out.push(id.clone());
        }
    }
    Ok(out)
}

/// Forgets every hash of a session's files: the next lease hashes them
/// again (a worker found a file that did not match its listed hash).
pub async fn forget_session(db: &Db, session: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM bundle_sums WHERE session_id = $1")
        .bind(session)
        .execute(&db.pool)
        .await?;
    Ok(())
}
