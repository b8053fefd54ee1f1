//! Sessions: list, detail, timeline, transcript, events, media, import,
//! analysis, search and participant withdrawal.

use std::path::PathBuf;

use axum::extract::{Json, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lab_model::analysis::AnalysisFile;
use serde::Deserialize;

use super::access::require_session;
use super::filters::ListQuery;
use super::responses::{
    Events, Imported, JobQueued, MediaLinks, SearchResult, SessionDetail, Sessions, Studies,
    ThumbnailLink, TimelineRest,
};
use super::serve::{serve_file, starts_playback};
use crate::auth::{self, Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;
use crate::types::{JobArgs, JobKind, SessionRow, SpeechSpan, TimelineEvent};

/// The waveform peaks' route under `…/media/`: named like the bundle's
/// file ([`AnalysisFile::Peaks`]), whose JSON it serves as it is.
fn peaks_route() -> &'static str {
    let path = AnalysisFile::Peaks.relative_path();
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

async fn session_row(state: &AppState, id: &str) -> ApiResult<SessionRow> {
    store::sessions::get(&state.db.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {id} not found")))
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Sessions>> {
    auth.require(Right::Findings)?;
    let sessions = store::sessions::list(&state.db.pool, &q.filter()?).await?;
    Ok(Json(Sessions { sessions }))
}

pub async fn studies(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Studies>> {
    auth.require(Right::Findings)?;
    let studies = store::sessions::studies(&state.db.pool).await?;
    Ok(Json(Studies { studies }))
}

pub async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionDetail>> {
    require_session(&state, &auth, &id, Right::Findings).await?;
    let row = session_row(&state, &id).await?;
    let paper = store::sessions::paperwork(&state.db.pool, &id).await?;
    let raw = auth.can(Right::Raw) && !row.withdrawn;
    let base = format!("/api/v1/sessions/{id}/media");
    let media = &paper.media;
    let link = |present: bool, name: &str| (raw && present).then(|| format!("{base}/{name}"));
    let thumbnails = if raw {
        media
            .thumbnails
            .iter()
            .flatten()
            .enumerate()
            .map(|(n, t)| ThumbnailLink {
                t_ms: t.t_ms,
                url: format!("{base}/thumbs/{n}.jpg"),
            })
            .collect()
    } else {
        vec![]
    };
    let journey = match &row.journey_id {
        Some(j) => store::journeys::get(&state.db.pool, j).await?,
        None => None,
    };
    // The consent reference and the moderator are for roles that see
    // recordings; viewers and tokens get the findings, not the paperwork.
    let staff = auth.can(Right::Raw);
    let detail = SessionDetail {
        consent: staff.then(|| paper.consent.clone()),
        moderator: if staff { paper.moderator.clone() } else { None },
        tracks: paper.tracks,
        media: MediaLinks {
            screen: link(media.screen.is_some(), "screen.mp4"),
            camera: link(media.camera.is_some(), "camera.mp4"),
            // The renditions keep session timestamps, and Chromium plays an
            // MP4 whose first frame is at t from currentTime t, so
            // session_ms = *_start_ms + currentTime * 1000 with start 0.
            screen_start_ms: 0,
            camera_start_ms: 0,
            thumbnails,
            peaks: link(media.peaks.is_some(), peaks_route()),
        },
        journey,
        qa: paper.qa,
        row,
    };
    if raw {
        auth::audit(
            &state,
            Some(&auth.user),
            "view_session",
            &format!("session:{id}"),
            "",
        )
        .await;
    }
    Ok(Json(detail))
}

#[derive(Deserialize)]
pub struct PatchBody {
    segment: Option<String>,
}

pub async fn patch(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<PatchBody>,
) -> ApiResult<Json<SessionRow>> {
    // Researchers and operators may label sessions; never a withdrawn one.
    let right = if auth.can(Right::Review) {
        Right::Review
    } else {
        Right::Operate
    };
    require_session(&state, &auth, &id, right).await?;
    if let Some(seg) = body.segment {
        let seg: String = seg.trim().chars().take(80).collect();
        store::sessions::set_segment(&state.db.pool, &id, &seg).await?;
        auth::audit(
            &state,
            Some(&auth.user),
            "set_segment",
            &format!("session:{id}"),
            &seg,
        )
        .await;
    }
    Ok(Json(session_row(&state, &id).await?))
}

#[derive(Deserialize, Default)]
pub struct RangeQuery {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    #[serde(default)]
    kind: String,
}

pub const TIMELINE_EVENT_LIMIT: i64 = 5000;

pub async fn timeline(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    require_session(&state, &auth, &id, Right::Raw).await?;
    let from = q.from_ms.unwrap_or(i64::MIN / 2);
    let to = q.to_ms.unwrap_or(i64::MAX / 2);
    let pool = &state.db.pool;
    let (duration, speech_json) = store::sessions::duration_and_speech(pool, &id).await?;
    let steps = store::timeline::step_intervals(pool, &id, from, to).await?;
    // Whole minutes are passed through as stored; the edge minutes are cut.
    let chunks =
        store::timeline::event_chunks(pool, &id, from.div_euclid(60_000), to.div_euclid(60_000))
            .await?;
    let mut events = String::from("[");
    let mut count: i64 = 0;
    let mut truncated = false;
    for c in &chunks {
        let (minute, n, json) = (c.minute, c.n, &c.events);
        let whole = minute * 60_000 >= from && (minute + 1) * 60_000 - 1 <= to;
        if whole && count + n <= TIMELINE_EVENT_LIMIT {
            if count > 0 {
                events.push(',');
            }
            events.push_str(&json[1..json.len() - 1]);
            count += n;
            continue;
        }
        let part: Vec<TimelineEvent> = serde_json::from_str(json)?;
        for e in part.into_iter().filter(|e| e.t_ms >= from && e.t_ms <= to) {
            if count >= TIMELINE_EVENT_LIMIT {
                truncated = true;
                break;
            }
            if count > 0 {
                events.push(',');
            }
            events.push_str(&serde_json::to_string(&e)?);
            count += 1;
        }
        if truncated || (whole && count + n > TIMELINE_EVENT_LIMIT) {
            truncated = true;
            break;
        }
    }
    events.push(']');
    // Markers are few and always wanted whole.
    let markers = store::timeline::markers(pool, &id, from, to).await?;
    let speech = match speech_json {
        None => "[]".to_string(),
        Some(s) if q.from_ms.is_none() && q.to_ms.is_none() => s,
        Some(s) => {
            let spans: Vec<SpeechSpan> = serde_json::from_str(&s)?;
            serde_json::to_string(
                &spans
                    .into_iter()
                    .filter(|x| x.end_ms >= from && x.start_ms <= to)
                    .collect::<Vec<_>>(),
            )?
        }
    };
    // The event lane is spliced in as pre-rendered JSON.
    let rest = serde_json::to_string(&TimelineRest {
        duration_ms: duration,
        steps,
        candidates: store::candidates::list(pool, &id).await?,
        tags: store::tags::list(pool, &id).await?,
        markers,
        truncated,
    })?;
    let body = format!("{{\"events\":{events},\"speech\":{speech},{}", &rest[1..]);
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

pub async fn transcript(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require_session(&state, &auth, &id, Right::Raw).await?;
    let json = store::sessions::transcript_json(&state.db.pool, &id).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response())
}

pub async fn events(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<Events>> {
    require_session(&state, &auth, &id, Right::Raw).await?;
    let events = store::timeline::events(
        &state.db.pool,
        &id,
        q.from_ms.unwrap_or(i64::MIN / 2),
        q.to_ms.unwrap_or(i64::MAX / 2),
        &q.kind,
    )
    .await?;
    Ok(Json(Events { events }))
}

/// Renditions, served with range requests. Only files the renditions list
/// names are reachable (no path from the URL touches the disk).
pub async fn media(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, file)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    require_session(&state, &auth, &id, Right::Raw).await?;
    let files = store::sessions::files(&state.db.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {id} not found")))?;
    if files.withdrawn {
        return Err(ApiError::not_found(
            "the participant withdrew; media deleted",
        ));
    }
    let bundle = PathBuf::from(files.bundle_path);
    let media = files.media;
    // The content type follows the route, never the file name the bundle chose.
    let (rel, mime) = match file.as_str() {
        "screen.mp4" => (media.screen.map(|m| m.file), "video/mp4"),
        "camera.mp4" => (media.camera.map(|m| m.file), "video/mp4"),
        f if f == peaks_route() => (media.peaks, "application/json"),
        f => (
            f.strip_prefix("thumbs/")
                .and_then(|n| n.strip_suffix(".jpg"))
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| media.thumbnails.unwrap_or_default().into_iter().nth(n))
                .and_then(|t| t.file),
            "image/jpeg",
        ),
    };
    let rel = rel.ok_or_else(|| ApiError::not_found(format!("no {file} for this session")))?;
    if file.ends_with(".mp4") && starts_playback(&req) {
        auth::audit(
            &state,
            Some(&auth.user),
            "view_media",
            &format!("session:{id}"),
            &file,
        )
        .await;
    }
    serve_file(&bundle, &rel, mime, req).await
}

#[derive(Deserialize)]
pub struct AnalyzeBody {
    force: Option<String>,
    /// A capability the worker must have (`gpu`): docs/worker-protocol.md.
    requires: Option<String>,
}

pub async fn analyze(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Option<Json<AnalyzeBody>>,
) -> ApiResult<Json<JobQueued>> {
    require_session(&state, &auth, &id, Right::Operate).await?;
    let (force, requires) = body.map(|b| (b.0.force, b.0.requires)).unwrap_or_default();
    if let Some(r) = &requires
        && !lab_model::worker::valid_capability(r)
    {
        return Err(ApiError::bad(format!(
            "требование к обработчику — имя из a-z, 0-9, -, _, . / a worker requirement is a name of a-z 0-9 - _ ., not {r:?}"
        )));
    }
    if let Some(f) = &force {
        // `lab-analyze run --force` takes the same names.
        lab_model::analysis::Stage::forced_from(f).map_err(|e| ApiError::bad(e.to_string()))?;
    }
    if let Some(job_id) = store::jobs::active_analysis(&state.db.pool, &id).await? {
        return Ok(Json(JobQueued {
            job_id,
            already: Some(true),
        }));
    }
    let job = crate::jobs::enqueue(
        &state,
        JobKind::Analyze,
        Some(&id),
        None,
        JobArgs {
            session_id: Some(id.clone()),
            force: force.clone(),
            tag_id: None,
            requires,
        },
        Some(auth.user.id),
    )
    .await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "analyze",
        &format!("session:{id}"),
        force.as_deref().unwrap_or(""),
    )
    .await;
    Ok(Json(JobQueued {
        job_id: job,
        already: None,
    }))
}

#[derive(Deserialize)]
pub struct ImportBody {
    path: String,
}

pub async fn import(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<ImportBody>,
) -> ApiResult<Json<Imported>> {
    auth.require(Right::Operate)?;
    let sessions_dir = state.config.sessions_dir.clone();
    let asked = body.path.clone();
    let path = tokio::task::spawn_blocking(move || bundle_to_import(&sessions_dir, &asked))
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    let (id, outcome) = crate::import::import_from_sessions_folder(&state, &path)
        .await
        .map_err(|e| ApiError::bad(format!("import failed: {e:#}")))?;
    auth::audit(
        &state,
        Some(&auth.user),
        "import",
        &format!("session:{id}"),
        &path.to_string_lossy(),
    )
    .await;
    Ok(Json(Imported {
        session_id: id,
        imported: outcome == crate::import::Outcome::Imported,
    }))
}

/// The bundle folder an import request names: directly inside the sessions
/// folder (links not followed), with a manifest. Blocking.
fn bundle_to_import(sessions_dir: &std::path::Path, asked: &str) -> ApiResult<PathBuf> {
    let root = sessions_dir
        .canonicalize()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("sessions folder: {e}")))?;
    let path = PathBuf::from(asked.trim());
    let path = if path.is_relative() {
        root.join(path)
    } else {
        path
    };
    let Some(path) = crate::bundle_files::bundle_folder_in(&root, &path) else {
        return Err(ApiError::bad(format!(
            "{} is not a folder directly inside the sessions folder {} (links are not followed)",
            asked,
            root.display()
        )));
    };
    if !path.join(lab_model::bundle::MANIFEST_FILE).is_file() {
        return Err(ApiError::bad(format!(
            "{} is not a session bundle (no manifest.json)",
            path.display()
        )));
    }
    Ok(path)
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    journey: String,
}

pub async fn search(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<SearchResult>> {
    auth.require(Right::Raw)?;
    let t0 = std::time::Instant::now();
    let hits = crate::search::search(
        &state.db,
        &q.q,
        (!q.journey.is_empty()).then_some(q.journey.as_str()),
        200,
    )
    .await?;
    Ok(Json(SearchResult {
        hits,
        took_ms: t0.elapsed().as_secs_f64() * 1000.0,
    }))
}

#[derive(Deserialize)]
pub struct WithdrawBody {
    #[serde(default)]
    reason: String,
}

/// Participant withdrawal: media, transcript, speech, event payloads, quotes
/// and clips go; step times and tags' category/severity/emotion/step stay as
/// anonymous aggregates. The bundle's media and analysis files are deleted
/// from disk too, and the session is never re-imported.
pub async fn withdraw(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<WithdrawBody>,
) -> ApiResult<StatusCode> {
    require_session(&state, &auth, &id, Right::Withdraw).await?;
    crate::withdrawal::scrub_rows(&state, &id).await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "withdraw",
        &format!("session:{id}"),
        &body.reason,
    )
    .await;
    // Marked withdrawn: nothing new starts for the session. Stop what runs,
    // then delete the files, then scrub the rows once more for anything a
    // request that raced the mark wrote (see `withdrawal`).
    crate::jobs::cancel_for_session(&state, &id).await?;
    crate::withdrawal::purge_files(&state, &id).await?;
    crate::withdrawal::scrub_rows(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
