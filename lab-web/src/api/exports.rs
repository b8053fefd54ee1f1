//! Journeys (list, definition), the journey map, findings exports (JSON,
//! CSV), the HTML report, ELAN/VTT/SRT exports of a session, and the
//! findings overlay feed.

use axum::extract::{Json, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::access::require_session;
use super::filters::MapQuery;
use super::responses::{Journeys, OverlayFinding, OverlayFindings};
use super::serve::download;
use crate::auth::{self, Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::export;
use crate::lang::lang;
use crate::map::journey_map;
use crate::state::AppState;
use crate::store;
use crate::types::{
    FINDINGS_SCHEMA_VERSION, Finding, FindingsExport, FindingsFilters, JourneyInfo, JourneyMap,
    StepInterval, Tag, TimelineEvent, TranscriptView,
};

/// The lab's public address for absolute links in exports: configured
/// (`--public-url`), never taken from the request's Host header, which a
/// client chooses.
fn base_url(state: &AppState) -> String {
    state.config.public_url.trim_end_matches('/').to_string()
}

pub async fn journeys(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Journeys>> {
    auth.require(Right::Findings)?;
    let journeys = store::journeys::list(&state.db.pool).await?;
    Ok(Json(Journeys { journeys }))
}

/// `GET /journeys/{id}`: a journey's definition (its steps), e.g. for the
/// study set-up editor's step choices.
pub async fn journey(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<JourneyInfo>> {
    auth.require(Right::Findings)?;
    store::journeys::get(&state.db.pool, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("journey {id} not found")))
}

pub async fn map(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<MapQuery>,
) -> ApiResult<Json<JourneyMap>> {
    auth.require(Right::Findings)?;
    Ok(Json(journey_map(&state.db.pool, &id, &q.filter()?).await?))
}

pub async fn report(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<MapQuery>,
) -> ApiResult<Response> {
    auth.require(Right::Findings)?;
    let m = journey_map(&state.db.pool, &id, &q.filter()?).await?;
    let html = export::report::html(
        &m,
        lang(&headers),
        &humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        &base_url(&state),
    );
    auth::audit(
        &state,
        Some(&auth.user),
        "export_report",
        &format!("journey:{id}"),
        "",
    )
    .await;
    let mut r = download(
        "text/html; charset=utf-8",
        &format!("journey-map-{id}.html"),
        html,
    );
    // Viewed inline in the browser; saved as a file from there. It carries
    // its own styles and no script, so its policy allows exactly that.
    r.headers_mut().remove(header::CONTENT_DISPOSITION);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'none'",
        ),
    );
    Ok(r)
}

/// The findings (tags) matching the filters.
async fn load_findings(state: &AppState, q: &MapQuery, base: &str) -> ApiResult<Vec<Finding>> {
    Ok(store::findings::list(&state.db.pool, &q.filter()?, base).await?)
}

pub async fn findings(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Query(q): Query<MapQuery>,
) -> ApiResult<Response> {
    auth.require(Right::Findings)?;
    let base = base_url(&state);
    let list = load_findings(&state, &q, &base).await?;
    let name = if q.journey.is_empty() {
        "findings".to_string()
    } else {
        format!("findings-{}", q.journey)
    };
    auth::audit(
        &state,
        Some(&auth.user),
        "export_findings",
        &format!("journey:{}", q.journey),
        &q.format,
    )
    .await;
    if q.format == "csv" {
        let bytes = export::findings::to_csv(&list, lang(&headers));
        return Ok(download(
            "text/csv; charset=utf-8",
            &format!("{name}.csv"),
            bytes,
        ));
    }
    let doc = FindingsExport {
        schema_version: FINDINGS_SCHEMA_VERSION,
        generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        filters: FindingsFilters {
            journey: q.journey.clone(),
            study: q.study.clone(),
            segment: q.segment.clone(),
            from: q.from.clone(),
            to: q.to.clone(),
        },
        findings: list,
    };
    let text = export::findings::to_json(&doc);
    if q.format == "json" {
        return Ok(download("application/json", &format!("{name}.json"), text));
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

#[derive(Deserialize)]
pub struct OverlayQuery {
    #[serde(default)]
    url: String,
}

fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

pub async fn overlay_preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}

/// The path of a URL (`/a/b.html` of `http://host/a/b.html?x#y`); `#/route`
/// hash routes count as part of the path.
pub fn screen_path(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = match rest.find('/') {
        Some(i) if url.contains("://") => &rest[i..],
        None if url.contains("://") => "/",
        _ => rest,
    };
    let (path, hash) = match path.split_once('#') {
        Some((p, h)) => (p, if h.starts_with('/') { Some(h) } else { None }),
        None => (path, None),
    };
    let path = path.split('?').next().unwrap_or("/");
    let mut p = path
        .trim_end_matches("index.html")
        .trim_end_matches('/')
        .to_string();
    if p.is_empty() {
        p.push('/');
    }
    if let Some(h) = hash {
        p.push('#');
        p.push_str(h);
    }
    p
}

pub async fn overlay_findings(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    Query(q): Query<OverlayQuery>,
) -> Response {
    let result: ApiResult<Response> = async {
        let auth = auth?;
        auth.require(Right::Overlay)?;
        let base = base_url(&state);
        let want = screen_path(&q.url);
        let all = load_findings(&state, &MapQuery::default(), &base).await?;
        let findings = all
            .into_iter()
            .filter(|f| f.url.as_deref().is_some_and(|u| screen_path(u) == want))
            .map(|f| OverlayFinding {
                id: f.id,
                step: f.step,
                url: f.url,
                selector: f.selector,
                start_ms: f.start_ms,
                end_ms: f.end_ms,
                category: f.category,
                severity: f.severity,
                emotion: f.emotion,
                quote: f.quote,
                clip_url: f.clip_url,
                session_id: f.session_id,
                participant: f.participant,
            })
            .collect();
        Ok(Json(OverlayFindings { findings }).into_response())
    }
    .await;
    cors(result.unwrap_or_else(|e| e.into_response()))
}

async fn session_export_data(
    state: &AppState,
    id: &str,
) -> ApiResult<(
    export::eaf::SessionMeta,
    Vec<StepInterval>,
    TranscriptView,
    Vec<TimelineEvent>,
    Vec<Tag>,
)> {
    let pool = &state.db.pool;
    let (participant, started) = store::sessions::participant_and_start(pool, id).await?;
    let date = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(started.max(0) as u64),
    )
    .to_string();
    let meta = export::eaf::SessionMeta {
        session_id: id.to_string(),
        participant,
        date,
    };
    let steps = store::timeline::step_intervals(pool, id, i64::MIN / 2, i64::MAX / 2).await?;
    let events = store::timeline::lane(&mut *pool.acquire().await?, id).await?;
    let transcript = store::sessions::transcript(pool, id).await?;
    let tags = store::tags::list(pool, id).await?;
    Ok((meta, steps, transcript, events, tags))
}

pub async fn eaf(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require_session(&state, &auth, &id, Right::Raw).await?;
    let (meta, steps, transcript, events, tags) = session_export_data(&state, &id).await?;
    let media = format!("{}/api/v1/sessions/{id}/media/screen.mp4", base_url(&state));
    let xml = export::eaf::write(&meta, &steps, &transcript, &events, &tags, Some(&media));
    auth::audit(
        &state,
        Some(&auth.user),
        "export_eaf",
        &format!("session:{id}"),
        "",
    )
    .await;
    Ok(download(
        "application/xml; charset=utf-8",
        &format!("{id}.eaf"),
        xml,
    ))
}

pub async fn vtt(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    subtitles(&state, &auth, &id, "vtt").await
}

pub async fn srt(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    subtitles(&state, &auth, &id, "srt").await
}

/// The transcript as WebVTT or SRT.
async fn subtitles(state: &AppState, auth: &Auth, id: &str, format: &str) -> ApiResult<Response> {
    require_session(state, auth, id, Right::Raw).await?;
    let (content_type, render): (&'static str, fn(&TranscriptView) -> String) = if format == "vtt" {
        ("text/vtt; charset=utf-8", export::subtitles::vtt)
    } else {
        (
            "application/x-subrip; charset=utf-8",
            export::subtitles::srt,
        )
    };
    let t = store::sessions::transcript(&state.db.pool, id).await?;
    auth::audit(
        state,
        Some(&auth.user),
        &format!("export_{format}"),
        &format!("session:{id}"),
        "",
    )
    .await;
    Ok(download(
        content_type,
        &format!("{id}.{format}"),
        render(&t),
    ))
}

#[cfg(test)]
mod tests {
    use super::screen_path;

    #[test]
    fn screens_compare_by_path() {
        assert_eq!(
            screen_path("http://a:8000/child/form.html?x=1#top"),
            "/child/form.html"
        );
        assert_eq!(screen_path("https://proto.example/child/"), "/child");
        assert_eq!(screen_path("http://h/index.html"), "/");
        assert_eq!(screen_path("http://h/app#/step/2"), "/app#/step/2");
        assert_eq!(screen_path("http://h"), "/");
    }
}
