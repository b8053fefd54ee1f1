//! Candidates (accept / reject), tags (with history) and clips.

use axum::extract::{Json, Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::require_session;
use crate::auth::{self, Auth, Right};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::limits;
use crate::state::AppState;
use crate::types::{CATEGORIES, Candidate, CandidateEvidence, ClipState, EMOTIONS, Tag};

const CANDIDATE_COLUMNS: &str =
    "id, detector, start_ms, end_ms, step, confidence, note, evidence, status, reason, tag_id";

fn candidate_from_row(r: &AnyRow) -> Result<Candidate, ApiError> {
    let evidence: Value = serde_json::from_str(&r.try_get::<String, _>(7)?)?;
    Ok(Candidate {
        id: r.try_get(0)?,
        detector: r.try_get(1)?,
        start_ms: r.try_get(2)?,
        end_ms: r.try_get(3)?,
        step: r.try_get(4)?,
        confidence: r.try_get(5)?,
        note: r.try_get(6)?,
        evidence: CandidateEvidence {
            events: evidence["events"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default(),
            words: evidence["words"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|w| w.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        },
        status: r.try_get(8)?,
        reason: r.try_get(9)?,
        tag_id: r.try_get(10)?,
    })
}

pub async fn candidates(state: &AppState, session: &str) -> ApiResult<Vec<Candidate>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE session_id = $1 ORDER BY start_ms, id"
    )))
    .bind(session)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(candidate_from_row)
    .collect()
}

const TAG_COLUMNS: &str = "t.id, t.session_id, t.start_ms, t.end_ms, t.step, t.category, t.severity, t.emotion, t.note, \
    t.quote, t.url, t.selector, t.candidate_id, u.login, t.created_at, t.updated_at, c.status";

pub fn tag_from_row(r: &AnyRow) -> Result<Tag, sqlx::Error> {
    let id: i64 = r.try_get(0)?;
    let clip_status: Option<String> = r.try_get(16)?;
    Ok(Tag {
        id,
        session_id: r.try_get(1)?,
        start_ms: r.try_get(2)?,
        end_ms: r.try_get(3)?,
        step: r.try_get(4)?,
        category: r.try_get(5)?,
        severity: r.try_get(6)?,
        emotion: r.try_get(7)?,
        note: r.try_get(8)?,
        quote: r.try_get(9)?,
        url: r.try_get(10)?,
        selector: r.try_get(11)?,
        candidate_id: r.try_get(12)?,
        created_by: r.try_get::<Option<String>, _>(13)?.unwrap_or_default(),
        created_at: r.try_get(14)?,
        updated_at: r.try_get(15)?,
        clip: clip_status.map(|status| ClipState {
            url: (status == "done").then(|| format!("/api/v1/clips/{id}.mp4")),
            status,
        }),
    })
}

pub fn tag_select(filter: &str) -> String {
    format!(
        "SELECT {TAG_COLUMNS} FROM tags t LEFT JOIN users u ON u.id = t.created_by \
         LEFT JOIN clips c ON c.tag_id = t.id WHERE t.deleted = 0 AND {filter}"
    )
}

pub async fn tags(state: &AppState, session: &str) -> ApiResult<Vec<Tag>> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(
        tag_select("t.session_id = $1") + " ORDER BY t.start_ms, t.id",
    ))
    .bind(session)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(tag_from_row)
    .collect::<Result<_, _>>()?)
}

async fn tag_by_id(state: &AppState, id: i64) -> ApiResult<Tag> {
    let r = sqlx::query(sqlx::AssertSqlSafe(tag_select("t.id = $1")))
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tag {id} not found")))?;
    Ok(tag_from_row(&r)?)
}

pub async fn list_tags(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_session(&state, &auth, &id, Right::Findings).await?;
    Ok(Json(json!({ "tags": tags(&state, &id).await? })))
}

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

/// The recorded length of a session, if known (0 in the database = unknown).
async fn session_duration_ms(state: &AppState, session: &str) -> ApiResult<Option<i64>> {
    let d: i64 = sqlx::query("SELECT duration_ms FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_one(&state.db.pool)
        .await?
        .try_get(0)?;
    Ok((d > 0).then_some(d))
}

/// Checks a tag: its range lies within the session (the recorded duration
/// plus [`limits::TAG_SLACK_MS`], never past [`limits::MAX_SESSION_MS`]), so
/// no export has to do arithmetic on absurd times.
fn validate(t: &TagInput, duration_ms: Option<i64>) -> ApiResult<()> {
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
async fn quote_for(state: &AppState, session: &str, from: i64, to: i64) -> ApiResult<String> {
    let t = super::load_transcript(state, session).await?;
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
    state: &AppState,
    session: &str,
    from: i64,
    to: i64,
    evidence: &[i64],
) -> ApiResult<(Option<String>, Option<String>)> {
    let rows = sqlx::query(
        "SELECT seq, t_ms, data FROM events WHERE session_id = $1 AND source = 'browser' AND t_ms <= $2 ORDER BY t_ms DESC, seq DESC LIMIT 400",
    )
    .bind(session)
    .bind(to)
    .fetch_all(&state.db.pool)
    .await?;
    let mut url = None;
    let mut selector = None;
    let mut in_range_selector = None;
    for r in &rows {
        let seq: i64 = r.try_get(0)?;
        let t: i64 = r.try_get(1)?;
        let data: Value = serde_json::from_str(&r.try_get::<String, _>(2)?).unwrap_or(Value::Null);
        if url.is_none()
            && let Some(u) = data["url"].as_str().or(data["href"].as_str())
        {
            url = Some(u.to_string());
        }
        if let Some(sel) = data["selector"].as_str() {
            if evidence.contains(&seq) && selector.is_none() {
                selector = Some(sel.to_string());
            }
            if t >= from {
                // Rows come newest first; keep the earliest in range.
                in_range_selector = Some(sel.to_string());
            }
        }
    }
    Ok((url, selector.or(in_range_selector)))
}

async fn insert_tag(
    state: &AppState,
    auth: &Auth,
    session: &str,
    input: &TagInput,
    candidate: Option<(&str, &[i64])>,
) -> ApiResult<Tag> {
    validate(input, session_duration_ms(state, session).await?)?;
    let quote = match input.quote.as_deref().map(str::trim) {
        Some(q) if !q.is_empty() => q.to_string(),
        _ => quote_for(state, session, input.start_ms, input.end_ms).await?,
    };
    let (url, selector) = place_for(
        state,
        session,
        input.start_ms,
        input.end_ms,
        candidate.map(|c| c.1).unwrap_or(&[]),
    )
    .await?;
    let now = now_ms();
    // Written only while the session is not withdrawn, in the same
    // statement, so a withdrawal that lands after the checks above wins.
    let row = sqlx::query(
        "INSERT INTO tags (session_id, start_ms, end_ms, step, category, severity, emotion, note, quote, url, selector, \
         candidate_id, created_by, created_at, updated_at) SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$14 \
         WHERE EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND withdrawn = 0) RETURNING id",
    )
    .bind(session)
    .bind(input.start_ms)
    .bind(input.end_ms)
    .bind(input.step.as_deref().filter(|s| !s.is_empty()))
    .bind(&input.category)
    .bind(input.severity)
    .bind(&input.emotion)
    .bind(input.note.clone().unwrap_or_default())
    .bind(&quote)
    .bind(url)
    .bind(selector)
    .bind(candidate.map(|c| c.0))
    .bind(auth.user.id)
    .bind(now)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(withdrawn_conflict)?;
    let id: i64 = row.try_get(0)?;
    let tag = tag_by_id(state, id).await?;
    record_history(state, auth, id, "create", None, Some(&tag)).await?;
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

async fn record_history(
    state: &AppState,
    auth: &Auth,
    tag: i64,
    action: &str,
    before: Option<&Tag>,
    after: Option<&Tag>,
) -> ApiResult<()> {
    let j = |t: Option<&Tag>| t.map(serde_json::to_string).transpose();
    sqlx::query("INSERT INTO tag_history (tag_id, user_id, at, action, before, after) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(tag)
        .bind(auth.user.id)
        .bind(now_ms())
        .bind(action)
        .bind(j(before)?)
        .bind(j(after)?)
        .execute(&state.db.pool)
        .await?;
    Ok(())
}

pub async fn create_tag(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(input): Json<TagInput>,
) -> ApiResult<(StatusCode, Json<Tag>)> {
    require_session(&state, &auth, &id, Right::Review).await?;
    Ok((
        StatusCode::CREATED,
        Json(insert_tag(&state, &auth, &id, &input, None).await?),
    ))
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

#[derive(Deserialize, Default)]
pub struct AcceptBody {
    tag: Option<TagInput>,
}

pub async fn accept(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, cid)): Path<(String, String)>,
    body: Option<Json<AcceptBody>>,
) -> ApiResult<Json<Value>> {
    require_session(&state, &auth, &id, Right::Review).await?;
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE session_id = $1 AND id = $2"
    )))
    .bind(&id)
    .bind(&cid)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("candidate {cid} not found")))?;
    let c = candidate_from_row(&r)?;
    if c.status == "accepted" {
        return Err(ApiError::Conflict(
            "кандидат уже принят / candidate already accepted".into(),
        ));
    }
    let input = body.and_then(|b| b.0.tag).unwrap_or(TagInput {
        start_ms: c.start_ms,
        end_ms: c.end_ms.max(c.start_ms),
        step: c.step.clone(),
        category: detector_category(&c.detector).into(),
        severity: if c.confidence >= 0.8 { 3 } else { 2 },
        emotion: "negative".into(),
        note: Some(c.note.clone()),
        quote: None,
    });
    let tag = insert_tag(&state, &auth, &id, &input, Some((&cid, &c.evidence.events))).await?;
    sqlx::query(
        "UPDATE candidates SET status = 'accepted', tag_id = $3, decided_by = $4, decided_at = $5, reason = NULL \
         WHERE session_id = $1 AND id = $2",
    )
    .bind(&id)
    .bind(&cid)
    .bind(tag.id)
    .bind(auth.user.id)
    .bind(now_ms())
    .execute(&state.db.pool)
    .await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "accept_candidate",
        &format!("session:{id}"),
        &cid,
    )
    .await;
    Ok(Json(json!({ "tag": tag })))
}

#[derive(Deserialize)]
pub struct RejectBody {
    #[serde(default)]
    reason: String,
}

pub async fn reject(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, cid)): Path<(String, String)>,
    Json(body): Json<RejectBody>,
) -> ApiResult<Json<Candidate>> {
    require_session(&state, &auth, &id, Right::Review).await?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad("укажите причину / a reason is required"));
    }
    let done = sqlx::query(
        "UPDATE candidates SET status = 'rejected', reason = $3, decided_by = $4, decided_at = $5 WHERE session_id = $1 AND id = $2 \
         AND session_id IN (SELECT id FROM sessions WHERE withdrawn = 0)",
    )
    .bind(&id)
    .bind(&cid)
    .bind(reason.chars().take(2000).collect::<String>())
    .bind(auth.user.id)
    .bind(now_ms())
    .execute(&state.db.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("candidate {cid} not found")));
    }
    auth::audit(
        &state,
        Some(&auth.user),
        "reject_candidate",
        &format!("session:{id}"),
        &cid,
    )
    .await;
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE session_id = $1 AND id = $2"
    )))
    .bind(&id)
    .bind(&cid)
    .fetch_one(&state.db.pool)
    .await?;
    Ok(Json(candidate_from_row(&r)?))
}

pub async fn update_tag(
    State(state): State<AppState>,
    auth: Auth,
    Path(tag): Path<i64>,
    Json(input): Json<TagInput>,
) -> ApiResult<Json<Tag>> {
    let session = super::require_tag_session(&state, &auth, tag, Right::Review).await?;
    validate(&input, session_duration_ms(&state, &session).await?)?;
    let before = tag_by_id(&state, tag).await?;
    let done = sqlx::query(
        "UPDATE tags SET start_ms = $2, end_ms = $3, step = $4, category = $5, severity = $6, emotion = $7, note = $8, \
         quote = $9, updated_at = $10 WHERE id = $1 \
         AND session_id IN (SELECT id FROM sessions WHERE withdrawn = 0)",
    )
    .bind(tag)
    .bind(input.start_ms)
    .bind(input.end_ms)
    .bind(input.step.as_deref().filter(|s| !s.is_empty()))
    .bind(&input.category)
    .bind(input.severity)
    .bind(&input.emotion)
    .bind(input.note.clone().unwrap_or_default())
    .bind(input.quote.clone().unwrap_or(before.quote.clone()))
    .bind(now_ms())
    .execute(&state.db.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(withdrawn_conflict());
    }
    let after = tag_by_id(&state, tag).await?;
    record_history(&state, &auth, tag, "update", Some(&before), Some(&after)).await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "update_tag",
        &format!("tag:{tag}"),
        "",
    )
    .await;
    Ok(Json(after))
}

pub async fn delete_tag(
    State(state): State<AppState>,
    auth: Auth,
    Path(tag): Path<i64>,
) -> ApiResult<StatusCode> {
    super::require_tag_session(&state, &auth, tag, Right::Review).await?;
    let before = tag_by_id(&state, tag).await?;
    sqlx::query("UPDATE tags SET deleted = 1, updated_at = $2 WHERE id = $1")
        .bind(tag)
        .bind(now_ms())
        .execute(&state.db.pool)
        .await?;
    // A candidate accepted into this tag goes back to the open list.
    sqlx::query("UPDATE candidates SET status = 'open', tag_id = NULL WHERE tag_id = $1")
        .bind(tag)
        .execute(&state.db.pool)
        .await?;
    record_history(&state, &auth, tag, "delete", Some(&before), None).await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "delete_tag",
        &format!("tag:{tag}"),
        "",
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn history_list(state: &AppState, tag: i64) -> ApiResult<Vec<Value>> {
    sqlx::query(
        "SELECT h.at, u.login, h.action, h.before, h.after FROM tag_history h LEFT JOIN users u ON u.id = h.user_id \
         WHERE h.tag_id = $1 ORDER BY h.at, h.id",
    )
    .bind(tag)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|r| {
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok()).unwrap_or(Value::Null);
        Ok(json!({
            "at": r.try_get::<i64, _>(0)?,
            "user": r.try_get::<Option<String>, _>(1)?,
            "action": r.try_get::<String, _>(2)?,
            "before": parse(r.try_get(3)?),
            "after": parse(r.try_get(4)?),
        }))
    })
    .collect()
}

pub async fn history(
    State(state): State<AppState>,
    auth: Auth,
    Path(tag): Path<i64>,
) -> ApiResult<Json<Value>> {
    auth.require(Right::Raw)?;
    Ok(Json(json!({ "history": history_list(&state, tag).await? })))
}

pub async fn make_clip(
    State(state): State<AppState>,
    auth: Auth,
    Path(tag): Path<i64>,
) -> ApiResult<Json<Value>> {
    super::require_tag_session(&state, &auth, tag, Right::Review).await?;
    let t = tag_by_id(&state, tag).await?;
    let job = crate::jobs::enqueue(
        &state,
        "clip",
        Some(&t.session_id),
        Some(tag),
        json!({"tag_id": tag}),
        Some(auth.user.id),
    )
    .await?;
    sqlx::query(
        "INSERT INTO clips (tag_id, status, job_id, created_at) VALUES ($1, 'queued', $2, $3) \
         ON CONFLICT (tag_id) DO UPDATE SET status = 'queued', job_id = excluded.job_id",
    )
    .bind(tag)
    .bind(job)
    .bind(now_ms())
    .execute(&state.db.pool)
    .await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "make_clip",
        &format!("tag:{tag}"),
        "",
    )
    .await;
    Ok(Json(json!({ "job_id": job })))
}

/// `/clips/{tag}.mp4`: viewers may watch clips.
pub async fn clip(
    State(state): State<AppState>,
    auth: Auth,
    Path(file): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    auth.require(Right::Findings)?;
    let tag: i64 = file
        .strip_suffix(".mp4")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::not_found("no such clip"))?;
    // A clip of a withdrawn participant or a deleted tag is never served,
    // whatever a job that was still running at the time left behind.
    let done = sqlx::query(
        "SELECT c.status FROM clips c JOIN tags t ON t.id = c.tag_id JOIN sessions s ON s.id = t.session_id \
         WHERE c.tag_id = $1 AND s.withdrawn = 0 AND t.deleted = 0",
    )
        .bind(tag)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|r| r.try_get::<String, _>(0))
        .transpose()?;
    if done.as_deref() != Some("done") {
        return Err(ApiError::not_found("no such clip"));
    }
    if super::sessions::starts_playback(&req) {
        auth::audit(
            &state,
            Some(&auth.user),
            "view_clip",
            &format!("tag:{tag}"),
            "",
        )
        .await;
    }
    super::sessions::serve_file(&state.clips_dir(), &format!("{tag}.mp4"), "video/mp4", req).await
}

/// The answer to a change that lost the race with a withdrawal.
fn withdrawn_conflict() -> ApiError {
    ApiError::Conflict(
        "участник отозвал согласие, сессию нельзя менять / the participant withdrew; the session is read-only"
            .into(),
    )
}
