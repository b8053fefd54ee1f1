//! Making tags: checking a researcher's input, the participant's words and
//! the place on the prototype a tag is about, and writing it with its
//! history. Shared by tag creation and candidate acceptance.

use serde::Deserialize;

use crate::auth::{self, Auth};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::limits;
use crate::state::AppState;
use crate::store::tags::{TagFields, TagOrigin};
use crate::store::{self, Pool};
use crate::types::{CATEGORIES, EMOTIONS, Tag};

#[derive(Deserialize, Clone, Debug)]
pub struct TagInput {
    pub start_ms: i64,
    pub end_ms: i64,
    #[serde(default)]
    pub step: Option<String>,
    pub category: String,
    pub severity: i64,
    pub emotion: String,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub quote: Option<String>,
}

impl TagInput {
    /// The fields to store, with `quote` as given.
    pub fn fields<'a>(&'a self, note: &'a str, quote: &'a str) -> TagFields<'a> {
        TagFields {
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            step: self.step.as_deref().filter(|s| !s.is_empty()),
            category: &self.category,
            severity: self.severity,
            emotion: &self.emotion,
            note,
            quote,
        }
    }
}

/// The recorded length of a session, if known (0 in the database = unknown).
pub async fn session_duration_ms(pool: &Pool, session: &str) -> ApiResult<Option<i64>> {
    let (d, _) = store::sessions::duration_and_speech(pool, session).await?;
    Ok((d > 0).then_some(d))
}

/// Checks a tag: its range lies within the session (the recorded duration
/// plus [`limits::TAG_SLACK_MS`], never past [`limits::MAX_SESSION_MS`]), so
/// no export has to do arithmetic on absurd times.
pub fn validate(t: &TagInput, duration_ms: Option<i64>) -> ApiResult<()> {
    let max = duration_ms
        .map(|d| d.saturating_add(limits::TAG_SLACK_MS))
        .unwrap_or(limits::MAX_SESSION_MS)
        .min(limits::MAX_SESSION_MS);
    if t.start_ms < 0 || t.end_ms < t.start_ms {
        return Err(ApiError::bad(
            "диапазон: начало должно быть не позже конца / start must not be after end",
        ));
    }
    if t.end_ms > max {
        return Err(ApiError::bad(format!(
            "диапазон выходит за пределы сессии ({max} мс) / the range ends after the session ({max} ms)"
        )));
    }
    if !(1..=4).contains(&t.severity) {
        return Err(ApiError::bad("серьёзность 1–4 / severity must be 1-4"));
    }
    if !EMOTIONS.contains(&t.emotion.as_str()) {
        return Err(ApiError::bad(format!(
            "emotion must be one of {EMOTIONS:?}"
        )));
    }
    if !CATEGORIES.iter().any(|c| c.0 == t.category) {
        return Err(ApiError::bad(format!("unknown category {:?}", t.category)));
    }
    let long = |s: &Option<String>, n: usize| s.as_ref().is_some_and(|s| s.chars().count() > n);
    if long(&t.note, limits::MAX_TAG_TEXT_CHARS)
        || long(&t.quote, limits::MAX_TAG_TEXT_CHARS)
        || long(&t.step, limits::MAX_STEP_CHARS)
    {
        return Err(ApiError::bad("text too long"));
    }
    Ok(())
}

/// The participant's words in a range, as a quote.
async fn quote_for(pool: &Pool, session: &str, from: i64, to: i64) -> ApiResult<String> {
    let t = store::sessions::transcript(pool, session).await?;
    let words: Vec<&str> = t
        .segments
        .iter()
        .filter(|s| s.speaker != "moderator")
        .flat_map(|s| s.words.iter())
        .filter(|w| w.end_ms > from && w.start_ms < to)
        .map(|w| w.text.trim())
        .filter(|w| !w.is_empty())
        .collect();
    Ok(words.join(" "))
}

/// Where on the prototype it happened: the page URL at the end of the range
/// and the element the participant worked on in it.
async fn place_for(
    pool: &Pool,
    session: &str,
    from: i64,
    to: i64,
    evidence: &[i64],
) -> ApiResult<(Option<String>, Option<String>)> {
    let rows = store::timeline::browser_events_before(pool, session, to).await?;
    let mut url = None;
    let mut selector = None;
    let mut in_range_selector = None;
    for r in &rows {
        let data = &r.data;
        if url.is_none()
            && let Some(u) = data["url"].as_str().or(data["href"].as_str())
        {
            url = Some(u.to_string());
        }
        if let Some(sel) = data["selector"].as_str() {
            if evidence.contains(&r.seq) && selector.is_none() {
                selector = Some(sel.to_string());
            }
            if r.t_ms >= from {
                // Rows come newest first; keep the earliest in range.
                in_range_selector = Some(sel.to_string());
            }
        }
    }
    Ok((url, selector.or(in_range_selector)))
}

/// Checks and writes a new tag (from a candidate: its id and evidence
/// events), with its history and audit entries.
pub async fn insert_tag(
    state: &AppState,
    auth: &Auth,
    session: &str,
    input: &TagInput,
    candidate: Option<(&str, &[i64])>,
) -> ApiResult<Tag> {
    let pool = &state.db.pool;
    validate(input, session_duration_ms(pool, session).await?)?;
    let quote = match input.quote.as_deref().map(str::trim) {
        Some(q) if !q.is_empty() => q.to_string(),
        _ => quote_for(pool, session, input.start_ms, input.end_ms).await?,
    };
    let (url, selector) = place_for(
        pool,
        session,
        input.start_ms,
        input.end_ms,
        candidate.map(|c| c.1).unwrap_or(&[]),
    )
    .await?;
    let note = input.note.clone().unwrap_or_default();
    let origin = TagOrigin {
        url,
        selector,
        candidate_id: candidate.map(|c| c.0),
        created_by: auth.user.id,
    };
    let now = now_ms();
    let id = store::tags::insert(pool, session, &input.fields(&note, &quote), origin, now)
        .await?
        .ok_or_else(ApiError::withdrawn)?;
    let tag = tag_by_id(pool, id).await?;
    store::tags::record_history(pool, id, auth.user.id, now_ms(), "create", None, Some(&tag))
        .await?;
    auth::audit(
        state,
        Some(&auth.user),
        "create_tag",
        &format!("tag:{id}"),
        &format!("session:{session}"),
    )
    .await;
    Ok(tag)
}

pub async fn tag_by_id(pool: &Pool, id: i64) -> ApiResult<Tag> {
    store::tags::get(pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tag {id} not found")))
}

/// Category proposed for a detector's candidate.
pub fn detector_category(detector: &str) -> &'static str {
    match detector {
        "rage_click" | "dead_click" => "error",
        "backtrack" => "navigation",
        "hesitation" | "verbal_confusion" | "question_to_moderator" => "comprehension",
        "step_overtime" => "performance",
        "field_struggle" => "form_input",
        "js_error" => "error",
        _ => "other",
    }
}
