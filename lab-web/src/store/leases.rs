//! Leases on jobs (docs/worker-protocol.md): a worker holds a job while it
//! heartbeats; a lapsed lease lets the next worker take the job again, and
//! every write about the job is checked against the current lease, so a
//! late worker never overwrites a newer result. On PostgreSQL the job is
//! chosen with `FOR UPDATE SKIP LOCKED`, so several lab-web processes lease
//! at once without waiting on each other; SQLite has one writer at a time.

use lab_model::worker::{MAX_ATTEMPTS, retry_backoff_seconds};
use sqlx::Row;

use crate::db::{Backend, Db};

/// What a worker asks for.
pub struct Ask<'a> {
    /// The worker's name (a worker token's name, or lab-web's own).
    pub worker: &'a str,
    /// Job kinds it runs (one or two).
    pub kinds: &'a [&'a str],
    /// Its capability names.
    pub capabilities: &'a [String],
    /// The new lease id.
    pub lease: &'a str,
    pub lease_ms: i64,
    pub now: i64,
}

/// A job just leased.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: i64,
    pub kind: String,
    pub args: String,
    pub session_id: Option<String>,
    pub attempt: i64,
}

/// Ends the jobs whose lease lapsed for the last time: cancelled ones as
/// `cancelled`, the others as `dead` (the dead-letter state). Returns their ids.
pub async fn bury_lapsed(db: &Db, now: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET \
           status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'dead' END, \
           message = CASE WHEN cancel_requested = 1 THEN 'отменено / cancelled' \
             ELSE 'обработчик пропал ' || CAST(attempts AS TEXT) || ' раз(а) подряд / the worker holding it vanished ' || CAST(attempts AS TEXT) || ' times' END, \
           finished_at = $1 \
         WHERE status = 'running' AND COALESCE(lease_expires_at, 0) < $1 \
           AND (attempts >= $2 OR cancel_requested = 1) RETURNING id",
    )
    .bind(now)
    .bind(MAX_ATTEMPTS)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect()
}

/// Leases the oldest job this worker may run: a queued one past its backoff,
/// or a running one whose lease lapsed (another attempt).
pub async fn lease(db: &Db, ask: &Ask<'_>) -> Result<Option<Leased>, sqlx::Error> {
    let (contains, lock) = match db.backend {
        Backend::Postgres => (
            "strpos($8, ',' || requires || ',') > 0",
            "FOR UPDATE SKIP LOCKED",
        ),
        Backend::Sqlite => ("instr($8, ',' || requires || ',') > 0", ""),
    };
    let sql = format!(
        "UPDATE jobs SET status = 'running', lease = $1, lease_expires_at = $2, worker = $3, \
           attempts = attempts + 1, started_at = $4, leased_at = $4, progress = 0, stage = '' \
         WHERE id = (SELECT id FROM jobs WHERE kind IN ($5, $6) \
           AND ((status = 'queued' AND not_before <= $4) \
             OR (status = 'running' AND COALESCE(lease_expires_at, 0) < $4 AND attempts < $7 AND cancel_requested = 0)) \
           AND (requires = '' OR {contains}) \
           ORDER BY id LIMIT 1 {lock}) \
         RETURNING id, kind, args, session_id, attempts"
    );
    let caps = format!(",{},", ask.capabilities.join(","));
    let k1 = ask.kinds.first().copied().unwrap_or("");
    let k2 = ask.kinds.get(1).copied().unwrap_or(k1);
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ask.lease)
        .bind(ask.now + ask.lease_ms)
        .bind(ask.worker)
        .bind(ask.now)
        .bind(k1)
        .bind(k2)
        .bind(MAX_ATTEMPTS)
        .bind(caps)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| {
        Ok(Leased {
            id: r.try_get("id")?,
            kind: r.try_get("kind")?,
            args: r.try_get("args")?,
            session_id: r.try_get("session_id")?,
            attempt: r.try_get("attempts")?,
        })
    })
    .transpose()
}

/// Extends a held lease and records progress. `None`: the lease is not the
/// job's current one (lapsed and re-leased, or the job ended); else whether
/// someone asked to cancel the job.
pub async fn heartbeat(
    db: &Db,
    id: i64,
    lease: &str,
    progress: Option<(f64, &str)>,
    lease_ms: i64,
    now: i64,
) -> Result<Option<bool>, sqlx::Error> {
    let (p, stage) = progress.unwrap_or((-1.0, ""));
    sqlx::query(
        "UPDATE jobs SET lease_expires_at = $3, \
           progress = CASE WHEN $4 < 0 THEN progress ELSE $4 END, \
           stage = CASE WHEN $4 < 0 THEN stage ELSE $5 END \
         WHERE id = $1 AND lease = $2 AND status = 'running' RETURNING cancel_requested",
    )
    .bind(id)
    .bind(lease)
    .bind(now + lease_ms)
    .bind(p)
    .bind(stage)
    .fetch_optional(&db.pool)
    .await?
    .map(|r| r.try_get::<i64, _>("cancel_requested").map(|c| c != 0))
    .transpose()
}

/// Asks the worker holding a running job to stop (it hears it at its next
/// heartbeat). False if the job is not running.
pub async fn request_cancel(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    let r =
        sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'")
            .bind(id)
            .execute(&db.pool)
            .await?;
    Ok(r.rows_affected() > 0)
}

/// Ends a job under its lease with `status` (`done`, `failed`,
/// `cancelled`); false if the lease is no longer the job's.
pub async fn finish(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    lease: &str,
    status: &str,
    message: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = $3, message = $4, finished_at = $5, \
           progress = CASE WHEN $3 = 'done' THEN 1.0 ELSE progress END \
         WHERE id = $1 AND lease = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(lease)
    .bind(status)
    .bind(message)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Takes the job's row lock (PostgreSQL) or the write lock (SQLite) inside
/// `conn`'s transaction, if the lease is still current: nothing can lease
/// the job again until the transaction ends.
pub async fn hold(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    lease: &str,
    until: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET lease_expires_at = $3 WHERE id = $1 AND lease = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(lease)
    .bind(until)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// The status of a job whose current or last lease is `lease`, if any.
pub async fn status_under(db: &Db, id: i64, lease: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT status FROM jobs WHERE id = $1 AND lease = $2")
        .bind(id)
        .bind(lease)
        .fetch_optional(&db.pool)
        .await?
        .map(|r| r.try_get("status"))
        .transpose()
}

/// A worker gives its job back. `retry`: queued again after a backoff, or
/// `dead` after [`MAX_ATTEMPTS`]; else `failed`. A job someone cancelled
/// ends `cancelled`. `None`: the lease is not the job's current one.
pub async fn give_back(
    db: &Db,
    id: i64,
    lease: &str,
    error: &str,
    retry: bool,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    give_back_as(db, id, lease, error, (retry, false), now).await
}

/// A stopping worker hands its job back: queued again at once, the attempt
/// not counted (a deploy must not push jobs to the dead-letter state).
pub async fn release(
    db: &Db,
    id: i64,
    lease: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    give_back_as(db, id, lease, "", (true, true), now).await
}

async fn give_back_as(
    db: &Db,
    id: i64,
    lease: &str,
    error: &str,
    (retry, released): (bool, bool),
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT attempts, cancel_requested FROM jobs WHERE id = $1 AND lease = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(lease)
    .fetch_optional(&db.pool)
    .await?
    else {
        return Ok(None);
    };
    let attempts: i64 = row.try_get("attempts")?;
    let cancelled = row.try_get::<i64, _>("cancel_requested")? != 0;
    let (status, message) = if cancelled {
        ("cancelled", "отменено / cancelled".to_string())
    } else if released {
        ("queued", "обработчик остановлен; задание вернулось в очередь / the worker stopped; the job is queued again".to_string())
    } else if !retry {
        ("failed", error.to_string())
    } else if attempts >= MAX_ATTEMPTS {
        (
            "dead",
            format!("{attempts} попытки не удались / {attempts} attempts failed: {error}"),
        )
    } else {
        ("queued", error.to_string())
    };
    let not_before = if released {
        now
    } else {
        now + 1000 * retry_backoff_seconds(attempts) as i64
    };
    let ended = status != "queued";
    // A cancel that lands between the read above and this write wins.
    sqlx::query(
        "UPDATE jobs SET \
           status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE $3 END, \
           message = CASE WHEN cancel_requested = 1 THEN 'отменено / cancelled' ELSE $4 END, \
           not_before = $5, \
           finished_at = CASE WHEN cancel_requested = 1 OR $6 = 1 THEN $7 ELSE NULL END, \
           lease_expires_at = CASE WHEN cancel_requested = 1 OR $6 = 1 THEN lease_expires_at ELSE NULL END, \
           attempts = attempts - CASE WHEN cancel_requested = 1 THEN 0 ELSE $8 END \
         WHERE id = $1 AND lease = $2 AND status = 'running' RETURNING status",
    )
    .bind(id)
    .bind(lease)
    .bind(status)
    .bind(message)
    .bind(not_before)
    .bind(i64::from(ended))
    .bind(now)
    .bind(i64::from(released && status == "queued"))
    .fetch_optional(&db.pool)
    .await?
    .map(|r| r.try_get("status"))
    .transpose()
}

/// Queues an ended job again (an admin's «Повторить» of a dead or failed
/// job): a fresh set of attempts.
pub async fn requeue(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, not_before = 0, cancel_requested = 0, \
           progress = 0, stage = '', finished_at = NULL \
         WHERE id = $1 AND status IN ('dead', 'failed')",
    )
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Records that a worker called (its capabilities, now).
pub async fn seen(db: &Db, worker: &str, capabilities: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO workers (name, capabilities, last_seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET capabilities = excluded.capabilities, last_seen_at = excluded.last_seen_at",
    )
    .bind(worker)
    .bind(capabilities)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// A worker seen, with the job it holds now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerRow {
    pub name: String,
    pub capabilities: String,
    pub last_seen_at: i64,
    /// Running jobs held under its name.
    pub running: i64,
}

pub async fn workers(db: &Db) -> Result<Vec<WorkerRow>, sqlx::Error> {
    sqlx::query(
        "SELECT w.name, w.capabilities, w.last_seen_at, \
           (SELECT COUNT(*) FROM jobs j WHERE j.worker = w.name AND j.status = 'running') AS running \
         FROM workers w ORDER BY w.last_seen_at DESC LIMIT 200",
    )
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(WorkerRow {
            name: r.try_get("name")?,
            capabilities: r.try_get("capabilities")?,
            last_seen_at: r.try_get("last_seen_at")?,
            running: r.try_get("running")?,
        })
    })
    .collect()
}

/// Jobs still leased: none once a fleet has drained (the fault test).
pub async fn held_count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status = 'running'")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")
}
