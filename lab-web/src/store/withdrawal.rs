//! The rows a withdrawal scrubs (the withdrawal service sets the order
//! that makes it race-free).

use sqlx::Row;

use crate::types::CandidateEvidence;

use sqlx::AnyConnection as Conn;
use sqlx::AnyPool as Pool;

/// Marks the session withdrawn and removes everything personal from its
/// rows: the participant code, consent reference and moderator, transcript,
/// speech, event payloads, tag quotes, notes, places (URL, selector) and
/// history, candidate evidence, notes and reasons, clips, job messages and
/// the session label, sensor lanes. Step times and tag categories, severities, emotions
/// and steps stay as anonymous aggregates. Every statement selects by
/// session (tags by subquery), so a tag made a moment before is included.
/// Idempotent.
pub async fn scrub_rows(conn: &mut Conn, session: &str, now: i64) -> Result<(), sqlx::Error> {
    const TAGS: &str = "(SELECT id FROM tags WHERE session_id = $1)";
    let statements = [
        "UPDATE sessions SET withdrawn = 1, withdrawn_at = COALESCE(withdrawn_at, $2), participant = 'отозван', consent = '', \
         moderator = NULL, media = '{}', qa = NULL, transcript_status = 'withdrawn', transcript_json = NULL, \
         speech_json = NULL WHERE id = $1"
            .to_string(),
        "DELETE FROM transcript_segments WHERE session_id = $1 AND $2 = $2".to_string(),
        "DELETE FROM speech_spans WHERE session_id = $1 AND $2 = $2".to_string(),
        "UPDATE events SET data = '{}', summary = '' WHERE session_id = $1 AND $2 = $2".to_string(),
        "UPDATE tags SET quote = '', note = '', url = NULL, selector = NULL WHERE session_id = $1 AND $2 = $2"
            .to_string(),
        format!("DELETE FROM clips WHERE tag_id IN {TAGS} AND $2 = $2"),
        format!("UPDATE tag_history SET before = NULL, after = NULL WHERE tag_id IN {TAGS} AND $2 = $2"),
        "UPDATE jobs SET message = '' WHERE session_id = $1 AND status NOT IN ('queued', 'running') AND $2 = $2"
            .to_string(),
        "DELETE FROM bundle_sums WHERE session_id = $1 AND $2 = $2".to_string(),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(session)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    let no_evidence = serde_json::to_string(&CandidateEvidence::default())
        .map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(
        "UPDATE candidates SET evidence = $2, note = '', reason = NULL WHERE session_id = $1",
    )
    .bind(session)
    .bind(no_evidence)
    .execute(&mut *conn)
    .await?;
    super::sensors::delete(conn, session).await?;
    // The event lane keeps times and kinds; its summaries are gone.
    let lane = super::timeline::lane(conn, session).await?;
    super::timeline::write_event_chunks(conn, session, &lane).await
}

/// The session's bundle folder, if the session is known.
pub async fn bundle_path(pool: &Pool, session: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT bundle_path FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get("bundle_path"))
        .transpose()
}
