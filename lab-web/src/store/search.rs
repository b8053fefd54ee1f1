//! Transcript search: the one query written per backend (fts5 on SQLite,
//! the `search_postings` B-tree on PostgreSQL).

use std::fmt::Write as _;

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
    // Newest imports first (segment ids grow with imports). Both indexes
    // hand matches over in id order, so the first page costs little even
    // when a word occurs in hundreds of thousands of segments. Withdrawn
    // sessions have no segments left.
    let mut stems: Vec<&str> = stems.iter().map(String::as_str).collect();
    stems.sort_unstable();
    stems.dedup();
    if stems.is_empty() {
        return Ok(vec![]);
    }
    // An empty journey is no filter, as the API's empty parameter is.
    let journey = journey.filter(|j| !j.is_empty());
    let (sql, binds) = match db.backend {
        Backend::Sqlite => (sqlite_sql(journey.is_some()), vec![fts5_match(&stems)]),
        Backend::Postgres => (
            postgres_sql(stems.len(), journey.is_some()),
            stems.iter().map(|s| s.to_string()).collect(),
        ),
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit);
    for b in binds {
        query = query.bind(b);
    }
    if let Some(j) = journey {
        query = query.bind(j.to_string());
    }
    query
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

const HIT_COLUMNS: &str =
    "t.session_id, s.participant, t.idx, t.start_ms, t.end_ms, t.speaker, t.text";

/// `$1` the limit, `$2` the fts5 query, `$3` the journey if any.
fn sqlite_sql(by_journey: bool) -> String {
    // fts5 walks its rowids backwards and stops at the limit; with a
    // journey filter the limit must apply after the join.
    let (inner, journey) = if by_journey {
        ("", "WHERE s.journey_id = $3 ")
    } else {
        ("LIMIT $1", "")
    };
    format!(
        "SELECT {HIT_COLUMNS} \
         FROM (SELECT rowid AS id FROM segment_fts WHERE segment_fts MATCH $2 ORDER BY rowid DESC {inner}) m \
         JOIN transcript_segments t ON t.id = m.id JOIN sessions s ON s.id = t.session_id \
         {journey}ORDER BY t.id DESC LIMIT $1"
    )
}

/// Every stem quoted, so nothing in it is fts5 syntax; juxtaposed stems
/// must all be present.
fn fts5_match(stems: &[&str]) -> String {
    stems
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `$1` the limit, `$2…` the stems (at least one), then the journey if any.
///
/// The inner query finds the ids: each stem's postings are an index-only
/// scan of `(stem, segment_id)` walked backwards, merge-joined on
/// `segment_id` (or probed per row for a rarer stem), so the newest matches
/// come first and LIMIT stops the walk early. The journey is a test on the
/// postings' `session_key` against the journey's sessions, gathered once.
/// Only then are the 200 segments read. Joining `transcript_segments` in the
/// walk itself lets the planner merge-join with a backward scan of the
/// whole table, which for a rare stem reads all of it (0.6 s at 1,000
/// session-hours). Every segment has its session row (written first, never
/// deleted), so limiting before the join loses nothing.
fn postgres_sql(stems: usize, by_journey: bool) -> String {
    let mut inner = "SELECT p1.segment_id FROM search_postings p1".to_string();
    for i in 2..=stems {
        let _ = write!(
            inner,
            " JOIN search_postings p{i} ON p{i}.segment_id = p1.segment_id AND p{i}.stem = ${}",
            i + 1
        );
    }
    inner.push_str(" WHERE p1.stem = $2");
    if by_journey {
        let _ = write!(
            inner,
            " AND p1.session_key = ANY (ARRAY(SELECT search_key FROM sessions WHERE journey_id = ${}))",
            stems + 2
        );
    }
    format!(
        "SELECT {HIT_COLUMNS} FROM ({inner} ORDER BY p1.segment_id DESC LIMIT $1) m \
         JOIN transcript_segments t ON t.id = m.segment_id JOIN sessions s ON s.id = t.session_id \
         ORDER BY t.id DESC LIMIT $1"
    )
}

/// Refreshes PostgreSQL's planner statistics after a bulk load (`bench`).
pub async fn analyze_tables(db: &Db) -> Result<(), sqlx::Error> {
    if db.backend == Backend::Postgres {
        for table in ["transcript_segments", "search_postings", "sessions"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
                .execute(&db.pool)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_sql_joins_one_posting_list_per_stem() {
        let sql = postgres_sql(3, true);
        assert!(sql.contains("p2.stem = $3"), "{sql}");
        assert!(sql.contains("p3.stem = $4"), "{sql}");
        assert!(sql.contains("journey_id = $5"), "{sql}");
        assert!(!postgres_sql(1, false).contains("journey"));
    }

    #[test]
    fn fts5_match_quotes_every_stem() {
        assert_eq!(fts5_match(&["кнопк", "пол"]), "\"кнопк\" \"пол\"");
    }
}
