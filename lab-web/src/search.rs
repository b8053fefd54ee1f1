//! Transcript search over Russian word forms. Each transcript segment keeps
//! `stems`: its words lower-cased, `ё` folded to `е`, and reduced to their
//! Snowball stems (Russian for Cyrillic words, English for Latin ones), so
//! «понимаю», «понимаете» and «понимать» all meet at «понима». The same
//! function stems the query. SQLite indexes `stems` with fts5, PostgreSQL
//! with `search_postings`, one B-tree row per (stem, segment) kept by
//! triggers; both answer "all query stems present", newest segment first,
//! and stop reading once they have the page.

use std::sync::LazyLock;

use crate::db::Db;
use crate::types::SearchHit;
use rust_stemmers::{Algorithm, Stemmer};

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

/// Segments containing every stem of `query`, newest first.
pub async fn search(
    db: &Db,
    query: &str,
    journey: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<SearchHit>> {
    let terms: Vec<String> = words(query).map(|w| stem(&w)).take(12).collect();
    if terms.is_empty() {
        return Ok(vec![]);
    }
    Ok(crate::store::search::segments_with_stems(db, &terms, journey, limit).await?)
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
