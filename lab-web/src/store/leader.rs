//! Leadership among lab-web processes that share one database: the watched
//! folder is scanned by one process at a time. On PostgreSQL that process
//! holds a session advisory lock on a connection of its own; the lock goes
//! with the connection, so a process that dies (or loses its connection)
//! gives it up and another takes over within one scan interval. SQLite is
//! the one-process default: its process always leads.

use sqlx::Row;
use sqlx::pool::PoolConnection;
use sqlx::{Any, Executor};

use super::Pool;
use crate::db::Backend;

/// What a leader holds: the connection carrying the lock (PostgreSQL).
pub struct Leader {
    conn: Option<PoolConnection<Any>>,
}

/// Tries to become the leader for `key` (one key per duty); `None` while
/// another process leads.
pub async fn try_lead(
    pool: &Pool,
    backend: Backend,
    key: i64,
) -> Result<Option<Leader>, sqlx::Error> {
    if backend == Backend::Sqlite {
        return Ok(Some(Leader { conn: None }));
    }
    let mut conn = pool.acquire().await?;
    let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS got")
        .bind(key)
        .fetch_one(&mut *conn)
        .await?
        .try_get("got")?;
    if !got {
        return Ok(None);
    }
    // The lock lives as long as this session: keep the connection out of
    // the pool's reuse (it goes back closed when the leader is dropped).
    Ok(Some(Leader { conn: Some(conn) }))
}

impl Leader {
    /// Whether the lock is still held (its connection still answers).
    pub async fn alive(&mut self) -> bool {
        match self.conn.as_mut() {
            None => true,
            Some(c) => c.execute("SELECT 1").await.is_ok(),
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Closing the session releases the advisory lock; a connection
        // returned to the pool would keep it.
        if let Some(c) = self.conn.take() {
            let _ = c.detach();
        }
    }
}
