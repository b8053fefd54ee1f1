//! Clip rows: one per tag, with the state of its cutting job.

use sqlx::Row;

use crate::types::MediaIndex;
use sqlx::AnyPool as Pool;

/// Queues (or re-queues) the clip of `tag` under job `job`.
pub async fn queue(pool: &Pool, tag: i64, job: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO clips (tag_id, status, job_id, created_at) VALUES ($1, 'queued', $2, $3) \
         ON CONFLICT (tag_id) DO UPDATE SET status = 'queued', job_id = excluded.job_id",
    )
    .bind(tag)
    .bind(job)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_status(
    pool: &Pool,
    tag: i64,
    status: &str,
    file: Option<&str>,
    job: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO clips (tag_id, status, file, job_id, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tag_id) DO UPDATE SET status = excluded.status, file = excluded.file, job_id = excluded.job_id",
    )
    .bind(tag)
    .bind(status)
    .bind(file)
    .bind(job)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether the clip of `tag` may be served: cut, of a tag not deleted, of
/// a session whose participant did not withdraw.
pub async fn servable(pool: &Pool, tag: i64) -> Result<bool, sqlx::Error> {
    let status: Option<String> = sqlx::query(
        "SELECT c.status FROM clips c JOIN tags t ON t.id = c.tag_id JOIN sessions s ON s.id = t.session_id \
         WHERE c.tag_id = $1 AND s.withdrawn = 0 AND t.deleted = 0",
    )
    .bind(tag)
    .fetch_optional(pool)
    .await?
    .map(|r| r.try_get("status"))
    .transpose()?;
    Ok(status.as_deref() == Some("done"))
}

/// What a clip job cuts: the tag's range of its session's screen rendition.
pub struct ClipSource {
    pub session_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub bundle_path: String,
    pub media: MediaIndex,
    pub withdrawn: bool,
}

pub async fn source(pool: &Pool, tag: i64) -> Result<ClipSource, sqlx::Error> {
    let r = sqlx::query(
        "SELECT t.session_id, t.start_ms, t.end_ms, s.bundle_path, s.media, s.withdrawn FROM tags t \
         JOIN sessions s ON s.id = t.session_id WHERE t.id = $1 AND t.deleted = 0",
    )
    .bind(tag)
    .fetch_one(pool)
    .await?;
    Ok(ClipSource {
        session_id: r.try_get("session_id")?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        bundle_path: r.try_get("bundle_path")?,
        media: super::sessions::media_index(&r.try_get::<String, _>("media")?)?,
        withdrawn: r.try_get::<i64, _>("withdrawn")? != 0,
    })
}
