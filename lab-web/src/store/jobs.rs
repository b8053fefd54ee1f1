//! The job queue.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::types::{Job, JobArgs, JobKind};
use sqlx::AnyPool as Pool;

const COLUMNS: &str = "id, kind, session_id, tag_id, status, progress, stage, message, created_at, started_at, finished_at, worker, attempts, requires";

/// The `kind` column as a [`JobKind`]; an unknown kind is a decode error.
fn kind(r: &AnyRow) -> Result<JobKind, sqlx::Error> {
    let name: String = r.try_get("kind")?;
    JobKind::parse(&name)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown job kind {name:?}").into()))
}

fn job(r: &AnyRow) -> Result<Job, sqlx::Error> {
    Ok(Job {
        id: r.try_get("id")?,
        kind: kind(r)?,
        session_id: r.try_get("session_id")?,
        tag_id: r.try_get("tag_id")?,
        status: r.try_get("status")?,
        progress: r.try_get("progress")?,
        stage: r.try_get("stage")?,
        message: r.try_get("message")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        worker: r.try_get("worker")?,
        attempts: r.try_get("attempts")?,
        requires: r.try_get("requires")?,
    })
}

pub async fn get(pool: &Pool, id: i64) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(job)
    .transpose()
}

/// The newest 200 jobs, or only the queued and running ones.
pub async fn list(pool: &Pool, active_only: bool) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE ($1 = 0 OR status IN ('queued', 'running')) ORDER BY id DESC LIMIT 200"
    )))
    .bind(i64::from(active_only))
    .fetch_all(pool)
    .await?
    .iter()
    .map(job)
    .collect()
}

/// The current analysis job (or last one) per session.
pub async fn latest_analysis_per_session(pool: &Pool) -> Result<HashMap<String, Job>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE kind = $1 AND id IN \
         (SELECT MAX(id) FROM jobs WHERE kind = $1 GROUP BY session_id)"
    )))
    .bind(JobKind::Analyze.as_str())
    .fetch_all(pool)
    .await?;
    let mut out = HashMap::new();
    for r in &rows {
        let j = job(r)?;
        if let Some(s) = j.session_id.clone() {
            out.insert(s, j);
        }
    }
    Ok(out)
}

/// What a job was asked to do, to run it again.
pub struct JobRequest {
    pub kind: JobKind,
    pub session_id: Option<String>,
    pub tag_id: Option<i64>,
    pub args: JobArgs,
    pub status: String,
}

pub async fn request(pool: &Pool, id: i64) -> Result<Option<JobRequest>, sqlx::Error> {
    sqlx::query("SELECT kind, session_id, tag_id, args, status FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| {
            Ok(JobRequest {
                kind: kind(&r)?,
                session_id: r.try_get("session_id")?,
                tag_id: r.try_get("tag_id")?,
                args: serde_json::from_str(&r.try_get::<String, _>("args")?)
                    .map_err(|e| sqlx::Error::Decode(e.into()))?,
                status: r.try_get("status")?,
            })
        })
        .transpose()
}

/// Queues a job; returns its id.
pub async fn insert(
    pool: &Pool,
    kind: JobKind,
    session_id: Option<&str>,
    tag_id: Option<i64>,
    args: &JobArgs,
    user: Option<i64>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let requires = args.requires.as_deref().unwrap_or("");
    let args = serde_json::to_string(args).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(
        "INSERT INTO jobs (kind, session_id, tag_id, status, args, created_by, created_at, requires) \
         VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7) RETURNING id",
    )
    .bind(kind.as_str())
    .bind(session_id)
    .bind(tag_id)
    .bind(args)
    .bind(user)
    .bind(now)
    .bind(requires)
    .fetch_one(pool)
    .await?
    .try_get("id")
}

/// The queued or running analysis of a session, if any.
pub async fn active_analysis(pool: &Pool, session: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query("SELECT id FROM jobs WHERE kind = $2 AND session_id = $1 AND status IN ('queued', 'running')")
        .bind(session)
        .bind(JobKind::Analyze.as_str())
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()
}

/// The queued and running jobs of a session.
pub async fn active_for_session(pool: &Pool, session: &str) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query("SELECT id FROM jobs WHERE session_id = $1 AND status IN ('queued', 'running')")
        .bind(session)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect()
}

/// Cancels a job that is still queued; false if it was not.
pub async fn cancel_queued(pool: &Pool, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'cancelled', finished_at = $2, message = 'отменено / cancelled' \
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn set_progress(
    pool: &Pool,
    id: i64,
    progress: f64,
    stage: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE jobs SET progress = $2, stage = $3 WHERE id = $1")
        .bind(id)
        .bind(progress)
        .bind(stage)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn finish(
    pool: &Pool,
    id: i64,
    status: &str,
    message: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET status = $2, message = $3, finished_at = $4, \
         progress = CASE WHEN $2 = 'done' THEN 1.0 ELSE progress END WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(message)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// The channel job changes are announced on (PostgreSQL), so the server-sent
/// events of every lab-web process on the database carry every job.
pub const JOBS_CHANNEL: &str = "lab_jobs";

/// Announces that job `id` changed (`NOTIFY`; delivered at commit).
pub async fn notify(pool: &Pool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(JOBS_CHANNEL)
        .bind(id.to_string())
        .execute(pool)
        .await?;
    Ok(())
}

/// A connection listening for job changes (PostgreSQL only).
pub async fn listener(url: &str) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut l = sqlx::postgres::PgListener::connect(url).await?;
    l.listen(JOBS_CHANNEL).await?;
    Ok(l)
}
