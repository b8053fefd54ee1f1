//! Findings: tags with their session, journey step and clip, for exports
//! and the overlay.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::types::{Finding, JourneyInfo, SessionFilter};
use sqlx::AnyPool as Pool;

fn finding(r: &AnyRow, base: &str) -> Result<Finding, sqlx::Error> {
    let id: i64 = r.try_get("id")?;
    let step: Option<String> = r.try_get("step")?;
    let definition: Option<String> = r.try_get("definition")?;
    let step_title = match (&step, definition) {
        (Some(step), Some(d)) => serde_json::from_str::<JourneyInfo>(&d)
            .ok()
            .and_then(|j| j.steps.into_iter().find(|s| &s.id == step).map(|s| s.title)),
        _ => None,
    };
    let session_id: String = r.try_get("session_id")?;
    Ok(Finding {
        id,
        journey_id: r.try_get("journey_id")?,
        step,
        step_title,
        session_url: format!("{base}/sessions/{session_id}"),
        session_id,
        participant: r.try_get("participant")?,
        segment: r.try_get("segment")?,
        study: r.try_get("study")?,
        url: r.try_get("url")?,
        selector: r.try_get("selector")?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        category: r.try_get("category")?,
        severity: r.try_get("severity")?,
        emotion: r.try_get("emotion")?,
        quote: r.try_get("quote")?,
        note: r.try_get("note")?,
        clip_url: (r.try_get::<Option<String>, _>("clip_status")?.as_deref() == Some("done"))
            .then(|| format!("{base}/api/v1/clips/{id}.mp4")),
    })
}

/// The findings (tags) of the sessions `f` selects (its `life_situation`
/// is not used), with links under `base`.
pub async fn list(pool: &Pool, f: &SessionFilter, base: &str) -> Result<Vec<Finding>, sqlx::Error> {
    sqlx::query(
        "SELECT t.id, s.journey_id, t.step, t.session_id, s.participant, s.segment, s.study, t.url, t.selector, t.start_ms, \
         t.end_ms, t.category, t.severity, t.emotion, t.quote, t.note, c.status AS clip_status, j.definition \
         FROM tags t JOIN sessions s ON s.id = t.session_id LEFT JOIN clips c ON c.tag_id = t.id \
         LEFT JOIN journeys j ON j.id = s.journey_id \
         WHERE t.deleted = 0 AND ($1 = '' OR s.journey_id = $1) AND ($2 = '' OR s.study = $2) AND ($3 = '' OR s.segment = $3) \
         AND ($4 = 0 OR s.started_at >= $4) AND ($5 = 0 OR s.started_at <= $5) ORDER BY s.started_at, t.start_ms, t.id",
    )
    .bind(&f.journey)
    .bind(&f.study)
    .bind(&f.segment)
    .bind(f.from)
    .bind(f.to)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| finding(r, base))
    .collect()
}
