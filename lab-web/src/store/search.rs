//! Transcript search: the one query written per backend (fts5 on SQLite,
//! a GIN `tsvector` index on PostgreSQL).

use sqlx::Row;

use crate::db::{Backend, Db};
use crate::types::SearchHit;

/// Segments whose stems contain every one of `stems`, newest first.
pub async fn segments_with_stems(
    db: &Db,
    stems: &[String],
    journey: Option<&str>,
    limit: i64,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    // Newest imports first (segment ids grow with imports). Both indexes can
    // hand matches over in id order, so the first page costs little even
    // when a word occurs in tens of thousands of segments. Withdrawn
    // sessions have no segments left.
    let sql = match db.backend {
        Backend::Sqlite => {
            // fts5 walks its rowids backwards and stops at the limit; with a
            // journey filter the limit must apply after the join.
            let inner = if journey.is_some() { "" } else { "LIMIT $3" };
            format!(
                "SELECT t.session_id, s.participant, t.idx, t.start_ms, t.end_ms, t.speaker, t.text \
                 FROM (SELECT rowid AS id FROM segment_fts WHERE segment_fts MATCH $1 ORDER BY rowid DESC {inner}) m \
                 JOIN transcript_segments t ON t.id = m.id JOIN sessions s ON s.id = t.session_id \
                 WHERE ($2 = '' OR s.journey_id = $2) ORDER BY t.id DESC LIMIT $3"
            )
        }
        // The materialized CTE makes the planner use the GIN index and sort
        // the matching ids, instead of walking the primary key backwards and
        // testing every row.
        Backend::Postgres => "WITH m AS MATERIALIZED (SELECT id FROM transcript_segments WHERE tsv @@ to_tsquery('simple', $1)) \
             SELECT t.session_id, s.participant, t.idx, t.start_ms, t.end_ms, t.speaker, t.text \
             FROM m JOIN transcript_segments t ON t.id = m.id JOIN sessions s ON s.id = t.session_id \
             WHERE ($2 = '' OR s.journey_id = $2) ORDER BY t.id DESC LIMIT $3"
            .to_string(),
    };
    let needle = match db.backend {
        Backend::Sqlite => stems
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" "),
        Backend::Postgres => stems.join(" & "),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(needle)
        .bind(journey.unwrap_or(""))
        .bind(limit)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(SearchHit {
                session_id: r.try_get("session_id")?,
                participant: r.try_get("participant")?,
                segment_id: r.try_get("idx")?,
                start_ms: r.try_get("start_ms")?,
                end_ms: r.try_get("end_ms")?,
                speaker: r.try_get("speaker")?,
                text: r.try_get("text")?,
            })
        })
        .collect()
}

/// Refreshes PostgreSQL's planner statistics after a bulk load (`bench`).
pub async fn analyze_tables(db: &Db) -> Result<(), sqlx::Error> {
    if db.backend == Backend::Postgres {
        sqlx::query("ANALYZE transcript_segments")
            .execute(&db.pool)
            .await?;
        sqlx::query("ANALYZE sessions").execute(&db.pool).await?;
    }
    Ok(())
}
