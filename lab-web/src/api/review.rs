//! Candidates (accept / reject), tags (with history) and clips.

use axum::extract::{Json, Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::access::{require_session, require_tag_session};
use super::responses::{Accepted, History, JobQueued, Tags};
use super::serve::{serve_file, starts_playback};
use crate::auth::{self, Auth, Right};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;
use crate::tagging::{self, TagInput, detector_category, tag_by_id};
use crate::types::{Candidate, JobArgs, JobKind, Tag};

pub async fn list_tags(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Tags>> {
    require_session(&state, &auth, &id, Right::Findings).await?;
    let tags = store::tags::list(&state.db.pool, &id).await?;
    Ok(Json(Tags { tags }))
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
        Json(tagging::insert_tag(&state, &auth, &id, &input, None).await?),
    ))
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
) -> ApiResult<Json<Accepted>> {
    require_session(&state, &auth, &id, Right::Review).await?;
    let c = store::candidates::get(&state.db.pool, &id, &cid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("candidate {cid} not found")))?;
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
        // The tag carries why the analysis proposed it into every export.
        note: Some(match c.evidence.explain(c.confidence) {
            Some(why) => format!("{}\n{why}", c.note),
            None => c.note.clone(),
        }),
        quote: None,
    });
    let tag =
        tagging::insert_tag(&state, &auth, &id, &input, Some((&cid, &c.evidence.events))).await?;
    store::candidates::accept(&state.db.pool, &id, &cid, tag.id, auth.user.id, now_ms()).await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "accept_candidate",
        &format!("session:{id}"),
        &cid,
    )
    .await;
    Ok(Json(Accepted { tag }))
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
    let reason: String = reason.chars().take(2000).collect();
    let pool = &state.db.pool;
    if !store::candidates::reject(pool, &id, &cid, &reason, auth.user.id, now_ms()).await? {
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
    let c = store::candidates::get(pool, &id, &cid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("candidate {cid} not found")))?;
    Ok(Json(c))
}

pub async fn update_tag(
    State(state): State<AppState>,
    auth: Auth,
    Path(tag): Path<i64>,
    Json(input): Json<TagInput>,
) -> ApiResult<Json<Tag>> {
    let session = require_tag_session(&state, &auth, tag, Right::Review).await?;
    let pool = &state.db.pool;
    tagging::validate(&input, tagging::session_duration_ms(pool, &session).await?)?;
    let before = tag_by_id(pool, tag).await?;
    let note = input.note.clone().unwrap_or_default();
    let quote = input.quote.clone().unwrap_or(before.quote.clone());
    if !store::tags::update(pool, tag, &input.fields(&note, &quote), now_ms()).await? {
        return Err(ApiError::withdrawn());
    }
    let after = tag_by_id(pool, tag).await?;
    store::tags::record_history(
        pool,
        tag,
        auth.user.id,
        now_ms(),
        "update",
        Some(&before),
        Some(&after),
    )
    .await?;
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
    require_tag_session(&state, &auth, tag, Right::Review).await?;
    let pool = &state.db.pool;
    let before = tag_by_id(pool, tag).await?;
    store::tags::delete(pool, tag, now_ms()).await?;
    store::tags::record_history(
        pool,
        tag,
        auth.user.id,
        now_ms(),
        "delete",
        Some(&before),
        None,
    )
    .await?;
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

pub async fn history(
    State(state): State<AppState>,
    auth: Auth,
    Path(tag): Path<i64>,
) -> ApiResult<Json<History>> {
    auth.require(Right::Raw)?;
    let history = store::tags::history(&state.db.pool, tag).await?;
    Ok(Json(History { history }))
}

pub async fn make_clip(
    State(state): State<AppState>,
    auth: Auth,
    Path(tag): Path<i64>,
) -> ApiResult<Json<JobQueued>> {
    require_tag_session(&state, &auth, tag, Right::Review).await?;
    let t = tag_by_id(&state.db.pool, tag).await?;
    let job = crate::jobs::enqueue(
        &state,
        JobKind::Clip,
        Some(&t.session_id),
        Some(tag),
        JobArgs {
            tag_id: Some(tag),
            ..Default::default()
        },
        Some(auth.user.id),
    )
    .await?;
    store::clips::queue(&state.db.pool, tag, job, now_ms()).await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "make_clip",
        &format!("tag:{tag}"),
        "",
    )
    .await;
    Ok(Json(JobQueued {
        job_id: job,
        already: None,
    }))
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
    if !store::clips::servable(&state.db.pool, tag).await? {
        return Err(ApiError::not_found("no such clip"));
    }
    if starts_playback(&req) {
        auth::audit(
            &state,
            Some(&auth.user),
            "view_clip",
            &format!("tag:{tag}"),
            "",
        )
        .await;
    }
    serve_file(&state.clips_dir(), &format!("{tag}.mp4"), "video/mp4", req).await
}
