//! Sessions: list, detail, timeline, transcript, events, media, import,
//! analysis, search and participant withdrawal.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Json, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;
use tower::ServiceExt;

use super::require_session;
use crate::auth::{self, Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::types::{
    AnalysisState, JourneyInfo, Marker, SessionRow, SpeechSpan, StepInterval, TimelineEvent,
};

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    pub study: String,
    #[serde(default)]
    pub life_situation: String,
    #[serde(default)]
    pub journey: String,
    #[serde(default)]
    pub segment: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
}

/// `YYYY-MM-DD` (start of day, or end of day for `to`) or Unix ms; 0 = no bound.
pub fn date_bound(s: &str, end_of_day: bool) -> ApiResult<i64> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(&format!("{s} 00:00:00"))
        .map_err(|_| ApiError::bad(format!("bad date {s:?}: use YYYY-MM-DD")))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Ok(if end_of_day { ms + 86_400_000 - 1 } else { ms })
}

const ROW_COLUMNS: &str = "s.id, s.study, s.life_situation, s.journey_id, s.participant, s.segment, s.station, \
    s.started_at, s.duration_ms, s.status, s.withdrawn, s.transcript_status, s.media, \
    (SELECT COUNT(*) FROM candidates c WHERE c.session_id = s.id AND c.status = 'open'), \
    (SELECT COUNT(*) FROM candidates c WHERE c.session_id = s.id), \
    (SELECT COUNT(*) FROM tags t WHERE t.session_id = s.id AND t.deleted = 0)";

fn row_to_session(
    r: &sqlx::any::AnyRow,
    jobs: &HashMap<String, crate::jobs::Job>,
) -> Result<SessionRow, sqlx::Error> {
    let id: String = r.try_get(0)?;
    let transcript_status: String = r.try_get(11)?;
    let media: String = r.try_get(12)?;
    let analysed = !transcript_status.is_empty() || media != "{}";
    let mut analysis = AnalysisState {
        status: if analysed { "done" } else { "none" }.into(),
        ..Default::default()
    };
    if let Some(j) = jobs.get(&id) {
        analysis = AnalysisState {
            status: j.status.clone(),
            progress: j.progress,
            stage: j.stage.clone(),
            message: j.message.clone(),
            job_id: Some(j.id),
        };
    }
    Ok(SessionRow {
        id,
        study: r.try_get(1)?,
        life_situation: r.try_get(2)?,
        journey_id: r.try_get(3)?,
        participant: r.try_get(4)?,
        segment: r.try_get(5)?,
        station: r.try_get(6)?,
        started_at: r.try_get(7)?,
        duration_ms: r.try_get(8)?,
        status: r.try_get(9)?,
        withdrawn: r.try_get::<i64, _>(10)? != 0,
        analysis,
        candidates_open: r.try_get(13)?,
        candidates_total: r.try_get(14)?,
        tags: r.try_get(15)?,
    })
}

pub async fn session_row(state: &AppState, id: &str) -> ApiResult<SessionRow> {
    let jobs = crate::jobs::latest_for_sessions(state).await?;
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROW_COLUMNS} FROM sessions s WHERE s.id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("session {id} not found")))?;
    Ok(row_to_session(&r, &jobs)?)
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    auth.require(Right::Findings)?;
    let jobs = crate::jobs::latest_for_sessions(&state).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROW_COLUMNS} FROM sessions s WHERE ($1 = '' OR s.study = $1) AND ($2 = '' OR s.life_situation = $2) \
         AND ($3 = '' OR s.segment = $3) AND ($4 = 0 OR s.started_at >= $4) AND ($5 = 0 OR s.started_at <= $5) \
         AND ($6 = '' OR s.journey_id = $6) ORDER BY s.started_at DESC LIMIT 2000"
    )))
    .bind(&q.study)
    .bind(&q.life_situation)
    .bind(&q.segment)
    .bind(date_bound(&q.from, false)?)
    .bind(date_bound(&q.to, true)?)
    .bind(&q.journey)
    .fetch_all(&state.db.pool)
    .await?;
    let sessions = rows
        .iter()
        .map(|r| row_to_session(r, &jobs))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "sessions": sessions })))
}

pub async fn studies(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require(Right::Findings)?;
    let rows = sqlx::query(
        "SELECT s.study, s.life_situation, s.journey_id, j.title, COUNT(*) FROM sessions s \
         LEFT JOIN journeys j ON j.id = s.journey_id GROUP BY s.study, s.life_situation, s.journey_id, j.title \
         ORDER BY s.study, s.life_situation",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let studies = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "study": r.try_get::<String, _>(0)?,
                "life_situation": r.try_get::<String, _>(1)?,
                "journey_id": r.try_get::<Option<String>, _>(2)?,
                "journey_title": r.try_get::<Option<String>, _>(3)?,
                "sessions": r.try_get::<i64, _>(4)?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "studies": studies })))
}

pub async fn journey_info(state: &AppState, id: &str) -> ApiResult<Option<JourneyInfo>> {
    let row = sqlx::query("SELECT definition FROM journeys WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?;
    match row {
        Some(r) => Ok(Some(serde_json::from_str(&r.try_get::<String, _>(0)?)?)),
        None => Ok(None),
    }
}

pub async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_session(&state, &auth, &id, Right::Findings).await?;
    let row = session_row(&state, &id).await?;
    let r = sqlx::query("SELECT consent, moderator, tracks, media, qa FROM sessions WHERE id = $1")
        .bind(&id)
        .fetch_one(&state.db.pool)
        .await?;
    let media: Value = serde_json::from_str(&r.try_get::<String, _>(3)?)?;
    let qa: Option<Value> = r
        .try_get::<Option<String>, _>(4)?
        .and_then(|q| serde_json::from_str(&q).ok());
    let raw = auth.can(Right::Raw) && !row.withdrawn;
    let base = format!("/api/v1/sessions/{id}/media");
    let video = |k: &str| -> Value {
        if raw && media.get(k).is_some() {
            json!(format!("{base}/{k}.mp4"))
        } else {
            Value::Null
        }
    };
    let thumbs: Vec<Value> = if raw {
        media["thumbnails"]
            .as_array()
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(n, t)| json!({"t_ms": t["t_ms"], "url": format!("{base}/thumbs/{n}.jpg")}))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![]
    };
    let journey = match &row.journey_id {
        Some(j) => journey_info(&state, j).await?,
        None => None,
    };
    let mut v = serde_json::to_value(&row)?;
    let o = v.as_object_mut().expect("object");
    // The consent reference and the moderator are for roles that see
    // recordings; viewers and tokens get the findings, not the paperwork.
    let staff = auth.can(Right::Raw);
    o.insert(
        "consent".into(),
        json!(staff.then(|| r.try_get::<String, _>(0)).transpose()?),
    );
    o.insert(
        "moderator".into(),
        json!(if staff {
            r.try_get::<Option<String>, _>(1)?
        } else {
            None
        }),
    );
    o.insert(
        "tracks".into(),
        serde_json::from_str(&r.try_get::<String, _>(2)?)?,
    );
    o.insert(
        "media".into(),
        json!({
            "screen": video("screen"),
            "camera": video("camera"),
            // The renditions keep session timestamps, and Chromium plays an
            // MP4 whose first frame is at t from currentTime t, so
            // session_ms = *_start_ms + currentTime * 1000 with start 0.
            "screen_start_ms": 0,
            "camera_start_ms": 0,
            "thumbnails": thumbs,
            "peaks": if raw && media.get("peaks").is_some() { json!(format!("{base}/peaks.json")) } else { Value::Null },
        }),
    );
    o.insert("journey".into(), serde_json::to_value(journey)?);
    o.insert("qa".into(), qa.unwrap_or(Value::Null));
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
    Ok(Json(v))
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
        sqlx::query("UPDATE sessions SET segment = $2 WHERE id = $1")
            .bind(&id)
            .bind(&seg)
            .execute(&state.db.pool)
            .await?;
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
    let head = sqlx::query("SELECT duration_ms, speech_json FROM sessions WHERE id = $1")
        .bind(&id)
        .fetch_one(pool)
        .await?;
    let duration: i64 = head.try_get(0)?;
    let speech_json: Option<String> = head.try_get(1)?;
    let titles: HashMap<String, String> =
        sqlx::query("SELECT step, title FROM step_summaries WHERE session_id = $1")
            .bind(&id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let steps = sqlx::query(
        "SELECT step, visit, start_ms, end_ms FROM step_intervals WHERE session_id = $1 AND end_ms >= $2 AND start_ms <= $3 ORDER BY start_ms",
    )
    .bind(&id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let step: String = r.try_get(0)?;
        Ok(StepInterval {
            title: titles.get(&step).cloned().unwrap_or_else(|| step.clone()),
            step,
            visit: r.try_get(1)?,
            start_ms: r.try_get(2)?,
            end_ms: r.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // Whole minutes are passed through as stored; the edge minutes are cut.
    let chunks = sqlx::query(
        "SELECT minute, n, events FROM event_chunks WHERE session_id = $1 AND minute >= $2 AND minute <= $3 ORDER BY minute",
    )
    .bind(&id)
    .bind(from.div_euclid(60_000))
    .bind(to.div_euclid(60_000))
    .fetch_all(pool)
    .await?;
    let mut events = String::from("[");
    let mut count: i64 = 0;
    let mut truncated = false;
    for r in &chunks {
        let minute: i64 = r.try_get(0)?;
        let n: i64 = r.try_get(1)?;
        let json: String = r.try_get(2)?;
        let whole = minute * 60_000 >= from && (minute + 1) * 60_000 - 1 <= to;
        if whole && count + n <= TIMELINE_EVENT_LIMIT {
            if count > 0 {
                events.push(',');
            }
            events.push_str(&json[1..json.len() - 1]);
            count += n;
            continue;
        }
        let part: Vec<TimelineEvent> = serde_json::from_str(&json)?;
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
    let mut markers = vec![];
    // Markers are few and always wanted whole.
    for r in sqlx::query(
        "SELECT seq, t_ms, summary FROM events WHERE session_id = $1 AND kind = 'marker' AND t_ms >= $2 AND t_ms <= $3 ORDER BY t_ms",
    )
    .bind(&id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?
    {
        markers.push(Marker {
            seq: r.try_get(0)?,
            t_ms: r.try_get(1)?,
            label: r.try_get(2)?,
        });
    }
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
    let candidates = super::review::candidates(&state, &id).await?;
    let tags = super::review::tags(&state, &id).await?;
    // The event lane is spliced in as pre-rendered JSON.
    let rest = json!({
        "duration_ms": duration,
        "steps": steps,
        "candidates": candidates,
        "tags": tags,
        "markers": markers,
        "truncated": truncated,
    })
    .to_string();
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
    let json = super::transcript_json(&state, &id).await?;
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
) -> ApiResult<Json<Value>> {
    require_session(&state, &auth, &id, Right::Raw).await?;
    let rows = sqlx::query(
        "SELECT seq, t_ms, source, kind, data FROM events WHERE session_id = $1 AND t_ms >= $2 AND t_ms <= $3 \
         AND ($4 = '' OR kind = $4) ORDER BY t_ms, seq LIMIT 50000",
    )
    .bind(&id)
    .bind(q.from_ms.unwrap_or(i64::MIN / 2))
    .bind(q.to_ms.unwrap_or(i64::MAX / 2))
    .bind(&q.kind)
    .fetch_all(&state.db.pool)
    .await?;
    let events = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "seq": r.try_get::<i64, _>(0)?,
                "t_ms": r.try_get::<i64, _>(1)?,
                "source": r.try_get::<String, _>(2)?,
                "kind": r.try_get::<String, _>(3)?,
                "data": serde_json::from_str::<Value>(&r.try_get::<String, _>(4)?).unwrap_or(Value::Null),
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "events": events })))
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
    let r = sqlx::query("SELECT bundle_path, media, withdrawn FROM sessions WHERE id = $1")
        .bind(&id)
        .fetch_one(&state.db.pool)
        .await?;
    if r.try_get::<i64, _>(2)? != 0 {
        return Err(ApiError::not_found(
            "the participant withdrew; media deleted",
        ));
    }
    let bundle = PathBuf::from(r.try_get::<String, _>(0)?);
    let media: Value = serde_json::from_str(&r.try_get::<String, _>(1)?)?;
    // The content type follows the route, never the file name the bundle chose.
    let (rel, mime) = match file.as_str() {
        "screen.mp4" => (media["screen"]["file"].as_str(), "video/mp4"),
        "camera.mp4" => (media["camera"]["file"].as_str(), "video/mp4"),
        "peaks.json" => (media["peaks"].as_str(), "application/json"),
        f => (
            f.strip_prefix("thumbs/")
                .and_then(|n| n.strip_suffix(".jpg"))
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| media["thumbnails"].get(n))
                .and_then(|t| t["file"].as_str()),
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
    serve_file(&bundle, rel, mime, req).await
}

/// Whether a media request starts playback (no range, or a range from byte
/// 0), so views are audited once and not for every range a player fetches.
pub fn starts_playback(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::RANGE)
        .is_none_or(|r| r.as_bytes().starts_with(b"bytes=0-"))
}

/// A file of `root` (see [`crate::bundle_files`]: no symlinks, no hard
/// links, no `..`) with range requests and conditional requests, served as
/// `mime` whatever its name says.
pub async fn serve_file(
    root: &std::path::Path,
    rel: &str,
    mime: &'static str,
    req: Request,
) -> ApiResult<Response> {
    let (root, rel_owned) = (root.to_path_buf(), rel.to_string());
    let file = tokio::task::spawn_blocking(move || crate::bundle_files::open(&root, &rel_owned))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| {
            tracing::warn!("refused to serve a bundle file: {e}");
            match e {
                crate::bundle_files::BundleFileError::NotFound(_) => {
                    ApiError::not_found("file not found")
                }
                _ => ApiError::not_found("file not available"),
            }
        })?
        .0;
    // tower-http reopens the already checked inode through the descriptor.
    let pinned = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let mime: mime::Mime = mime
        .parse()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("content type {mime}: {e}")))?;
    let resp = tower_http::services::ServeFile::new_with_mime(pinned, &mime)
        .oneshot(req)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    drop(file);
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[derive(Deserialize)]
pub struct AnalyzeBody {
    force: Option<String>,
}

pub async fn analyze(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Option<Json<AnalyzeBody>>,
) -> ApiResult<Json<Value>> {
    require_session(&state, &auth, &id, Right::Operate).await?;
    let force = body.and_then(|b| b.0.force);
    if let Some(f) = &force
        && !["speech", "steps", "candidates", "renditions", "qa", "all"].contains(&f.as_str())
    {
        return Err(ApiError::bad(format!("unknown stage {f:?}")));
    }
    let active = sqlx::query("SELECT id FROM jobs WHERE kind = 'analyze' AND session_id = $1 AND status IN ('queued', 'running')")
        .bind(&id)
        .fetch_optional(&state.db.pool)
        .await?;
    if let Some(r) = active {
        return Ok(Json(
            json!({ "job_id": r.try_get::<i64, _>(0)?, "already": true }),
        ));
    }
    let job = crate::jobs::enqueue(
        &state,
        "analyze",
        Some(&id),
        None,
        json!({"session_id": id, "force": force}),
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
    Ok(Json(json!({ "job_id": job })))
}

#[derive(Deserialize)]
pub struct ImportBody {
    path: String,
}

pub async fn import(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<ImportBody>,
) -> ApiResult<Json<Value>> {
    auth.require(Right::Operate)?;
    let root = state
        .config
        .sessions_dir
        .canonicalize()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("sessions folder: {e}")))?;
    let path = PathBuf::from(body.path.trim());
    let path = if path.is_relative() {
        root.join(path)
    } else {
        path
    };
    let Some(path) = crate::bundle_files::bundle_folder_in(&root, &path) else {
        return Err(ApiError::bad(format!(
            "{} is not a folder directly inside the sessions folder {} (links are not followed)",
            body.path,
            root.display()
        )));
    };
    if !path.join(lab_model::bundle::MANIFEST_FILE).is_file() {
        return Err(ApiError::bad(format!(
            "{} is not a session bundle (no manifest.json)",
            path.display()
        )));
    }
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
    Ok(Json(
        json!({ "session_id": id, "imported": outcome == crate::import::Outcome::Imported }),
    ))
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
) -> ApiResult<Json<Value>> {
    auth.require(Right::Raw)?;
    let t0 = std::time::Instant::now();
    let hits = crate::search::search(
        &state.db,
        &q.q,
        (!q.journey.is_empty()).then_some(q.journey.as_str()),
        200,
    )
    .await?;
    Ok(Json(
        json!({ "hits": hits, "took_ms": t0.elapsed().as_secs_f64() * 1000.0 }),
    ))
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
) -> ApiResult<axum::http::StatusCode> {
    require_session(&state, &auth, &id, Right::Withdraw).await?;
    let mut tx = state.db.pool.begin().await?;
    crate::withdrawal::scrub_rows(&mut tx, &id).await?;
    tx.commit().await?;
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
    let mut tx = state.db.pool.begin().await?;
    crate::withdrawal::scrub_rows(&mut tx, &id).await?;
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
