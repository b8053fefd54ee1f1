//! Transcript search over Russian word forms. Each transcript segment keeps
//! `stems`: its words lower-cased, `ё` folded to `е`, and reduced to their
//! Snowball stems (Russian for Cyrillic words, English for Latin ones), so
//! «понимаю», «понимаете» and «понимать» all meet at «понима». The same
//! function stems the query. SQLite indexes `stems` with fts5, PostgreSQL with
//! a GIN index on a stored `tsv = to_tsvector('simple', stems)` column; both answer "all query stems
//! present".

use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};
use sqlx::Row;

use crate::db::{Backend, Db};

static RU: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::Russian));
static EN: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// The words of `text`, normalised.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('ё', "е"))
}

pub fn stem(word: &str) -> String {
    if word.chars().any(|c| matches!(c, 'а'..='я')) {
        RU.stem(word).into_owned()
    } else {
        EN.stem(word).into_owned()
    }
}

/// Space-separated stems of `text`.
pub fn stems(text: &str) -> String {
    words(text).map(|w| stem(&w)).collect::<Vec<_>>().join(" ")
}

#[derive(Debug, serde::Serialize)]
pub struct Hit {
    pub session_id: String,
    pub participant: String,
    pub segment_id: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub speaker: String,
    pub text: String,
}

/// Segments containing every stem of `query`, newest first.
pub async fn search(
    db: &Db,
    query: &str,
    journey: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<Hit>> {
    let terms: Vec<String> = words(query).map(|w| stem(&w)).take(12).collect();
    if terms.is_empty() {
        return Ok(vec![]);
    }
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
        Backend::Sqlite => terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" "),
        Backend::Postgres => terms.join(" & "),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(needle)
        .bind(journey.unwrap_or(""))
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Hit {
                session_id: r.try_get(0)?,
                participant: r.try_get(1)?,
                segment_id: r.try_get(2)?,
                start_ms: r.try_get(3)?,
                end_ms: r.try_get(4)?,
                speaker: r.try_get(5)?,
                text: r.try_get(6)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_forms_share_a_stem() {
        assert_eq!(stem("понимаю"), stem("понимаете"));
        assert_eq!(stem("кнопку"), stem("кнопка"));
        assert_eq!(
            stems("Ещё НЕ понимаю, где кнопка!"),
            stems("еще не понимает где кнопки")
        );
        assert_ne!(stem("кнопка"), stem("карта"));
    }

    #[test]
    fn stems_contain_no_query_syntax() {
        let s = stems("a\"b OR c* NEAR(d) -e & f | g");
        assert!(s.chars().all(|c| c.is_alphanumeric() || c == ' '), "{s}");
    }
}
