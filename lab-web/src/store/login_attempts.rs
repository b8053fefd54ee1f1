//! Log-in throttling counters, shared by every process on the database.

use sqlx::Row;

use sqlx::AnyPool as Pool;

/// Forgets counters whose window ended before `window_before` and "known
/// address" marks older than `known_before`.
pub async fn forget_expired(
    pool: &Pool,
    window_before: i64,
    known_before: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM login_attempts WHERE (key NOT LIKE 'ok:%' AND window_start < $1) OR window_start < $2",
    )
    .bind(window_before)
    .bind(known_before)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether `key` was marked at or after `since`.
pub async fn marked_since(pool: &Pool, key: &str, since: i64) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("SELECT 1 FROM login_attempts WHERE key = $1 AND window_start >= $2")
            .bind(key)
            .bind(since)
            .fetch_optional(pool)
            .await?
            .is_some(),
    )
}

/// Counts one attempt under `key` atomically: restarts a window that began
/// before `window_before`, never counts past `limit + 1`. Returns the count.
pub async fn bump(
    pool: &Pool,
    key: &str,
    now: i64,
    window_before: i64,
    limit: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO login_attempts (key, count, window_start) VALUES ($1, 1, $2) \
         ON CONFLICT (key) DO UPDATE SET \
         count = CASE WHEN login_attempts.window_start < $3 THEN 1 \
                      WHEN login_attempts.count > $4 THEN login_attempts.count \
                      ELSE login_attempts.count + 1 END, \
         window_start = CASE WHEN login_attempts.window_start < $3 THEN $2 ELSE login_attempts.window_start END \
         RETURNING count",
    )
    .bind(key)
    .bind(now)
    .bind(window_before)
    .bind(limit)
    .fetch_one(pool)
    .await?
    .try_get("count")
}

/// After a successful log-in: `pair` starts over, `by_addr` and
/// `by_account` go down by one, and `known` is marked at `now`.
pub async fn succeeded(
    pool: &Pool,
    pair: &str,
    by_addr: &str,
    by_account: &str,
    known: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_attempts WHERE key = $1")
        .bind(pair)
        .execute(pool)
        .await?;
    sqlx::query(
        "UPDATE login_attempts SET count = count - 1 WHERE (key = $1 OR key = $2) AND count > 0",
    )
    .bind(by_addr)
    .bind(by_account)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO login_attempts (key, count, window_start) VALUES ($1, 0, $2) \
         ON CONFLICT (key) DO UPDATE SET window_start = excluded.window_start",
    )
    .bind(known)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}
