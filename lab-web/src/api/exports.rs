//! Journey map, findings exports (JSON, CSV), the HTML report, ELAN/VTT/SRT
//! exports of a session, and the findings overlay feed.

use axum::extract::{Json, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::require_session;
use super::sessions::date_bound;
use crate::auth::{self, Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::export;
use crate::map::{Filters, journey_map};
use crate::state::AppState;
use crate::types::{FINDINGS_SCHEMA_VERSION, Finding, FindingsExport, TimelineEvent};

#[derive(Deserialize, Default)]
pub struct MapQuery {
    #[serde(default)]
    study: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    journey: String,
    #[serde(default)]
    format: String,
}

impl MapQuery {
    fn filters(&self) -> ApiResult<Filters> {
        Ok(Filters {
            study: self.study.clone(),
            segment: self.segment.clone(),
            from: date_bound(&self.from, false)?,
            to: date_bound(&self.to, true)?,
        })
    }
}

/// The lab's public address for absolute links in exports: configured
/// (`--public-url`), never taken from the request's Host header, which a
/// client chooses.
fn base_url(state: &AppState) -> String {
    state.config.public_url.trim_end_matches('/').to_string()
}

fn download(content_type: &'static str, name: &str, body: impl Into<axum::body::Body>) -> Response {
    let mut r = (StatusCode::OK, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

pub async fn journeys(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require(Right::Findings)?;
    let rows = sqlx::query(
        "SELECT j.id, j.title, j.version, (SELECT COUNT(*) FROM sessions s WHERE s.journey_id = j.id) FROM journeys j ORDER BY j.title",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(
                json!({"id": r.try_get::<String, _>(0)?, "title": r.try_get::<String, _>(1)?,
                      "version": r.try_get::<String, _>(2)?, "sessions": r.try_get::<i64, _>(3)?}),
            )
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "journeys": list })))
}

pub async fn map(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<MapQuery>,
) -> ApiResult<Json<Value>> {
    auth.require(Right::Findings)?;
    let m = journey_map(&state, &id, &q.filters()?).await?;
    Ok(Json(serde_json::to_value(m)?))
}

pub async fn report(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<MapQuery>,
) -> ApiResult<Response> {
    auth.require(Right::Findings)?;
    let m = journey_map(&state, &id, &q.filters()?).await?;
    let html = export::report::html(
        &m,
        super::lang(&headers),
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
pub async fn load_findings(state: &AppState, q: &MapQuery, base: &str) -> ApiResult<Vec<Finding>> {
    let f = q.filters()?;
    let rows = sqlx::query(
        "SELECT t.id, s.journey_id, t.step, t.session_id, s.participant, s.segment, s.study, t.url, t.selector, t.start_ms, \
         t.end_ms, t.category, t.severity, t.emotion, t.quote, t.note, c.status, j.definition \
         FROM tags t JOIN sessions s ON s.id = t.session_id LEFT JOIN clips c ON c.tag_id = t.id \
         LEFT JOIN journeys j ON j.id = s.journey_id \
         WHERE t.deleted = 0 AND ($1 = '' OR s.journey_id = $1) AND ($2 = '' OR s.study = $2) AND ($3 = '' OR s.segment = $3) \
         AND ($4 = 0 OR s.started_at >= $4) AND ($5 = 0 OR s.started_at <= $5) ORDER BY s.started_at, t.start_ms, t.id",
    )
    .bind(&q.journey)
    .bind(&f.study)
    .bind(&f.segment)
    .bind(f.from)
    .bind(f.to)
    .fetch_all(&state.db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: i64 = r.try_get(0)?;
        let step: Option<String> = r.try_get(2)?;
        let definition: Option<String> = r.try_get(17)?;
        let step_title = match (&step, definition) {
            (Some(step), Some(d)) => serde_json::from_str::<crate::types::JourneyInfo>(&d)
                .ok()
                .and_then(|j| j.steps.into_iter().find(|s| &s.id == step).map(|s| s.title)),
            _ => None,
        };
        let session_id: String = r.try_get(3)?;
        out.push(Finding {
            id,
            journey_id: r.try_get(1)?,
            step,
            step_title,
            session_url: format!("{base}/sessions/{session_id}"),
            session_id,
            participant: r.try_get(4)?,
            segment: r.try_get(5)?,
            study: r.try_get(6)?,
            url: r.try_get(7)?,
            selector: r.try_get(8)?,
            start_ms: r.try_get(9)?,
            end_ms: r.try_get(10)?,
            category: r.try_get(11)?,
            severity: r.try_get(12)?,
            emotion: r.try_get(13)?,
            quote: r.try_get(14)?,
            note: r.try_get(15)?,
            clip_url: (r.try_get::<Option<String>, _>(16)?.as_deref() == Some("done"))
                .then(|| format!("{base}/api/v1/clips/{id}.mp4")),
        });
    }
    Ok(out)
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
        let bytes = export::findings::to_csv(&list, super::lang(&headers));
        return Ok(download(
            "text/csv; charset=utf-8",
            &format!("{name}.csv"),
            bytes,
        ));
    }
    let doc = FindingsExport {
        schema_version: FINDINGS_SCHEMA_VERSION,
        generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        filters: json!({"journey": q.journey, "study": q.study, "segment": q.segment, "from": q.from, "to": q.to}),
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
        let list: Vec<Value> = all
            .into_iter()
            .filter(|f| f.url.as_deref().is_some_and(|u| screen_path(u) == want))
            .map(|f| {
                json!({"id": f.id, "step": f.step, "url": f.url, "selector": f.selector, "start_ms": f.start_ms,
                       "end_ms": f.end_ms, "category": f.category, "severity": f.severity, "emotion": f.emotion,
                       "quote": f.quote, "clip_url": f.clip_url, "session_id": f.session_id, "participant": f.participant})
            })
            .collect();
        Ok(Json(json!({ "findings": list })).into_response())
    }
    .await;
    cors(result.unwrap_or_else(|e| e.into_response()))
}

async fn session_export_data(
    state: &AppState,
    id: &str,
) -> ApiResult<(
    export::eaf::SessionMeta,
    Vec<crate::types::StepInterval>,
    crate::types::TranscriptView,
    Vec<TimelineEvent>,
    Vec<crate::types::Tag>,
)> {
    let r = sqlx::query("SELECT participant, started_at FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_one(&state.db.pool)
        .await?;
    let started: i64 = r.try_get(1)?;
    let date = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(started.max(0) as u64),
    )
    .to_string();
    let meta = export::eaf::SessionMeta {
        session_id: id.to_string(),
        participant: r.try_get(0)?,
        date,
    };
    let titles: std::collections::HashMap<String, String> =
        sqlx::query("SELECT step, title FROM step_summaries WHERE session_id = $1")
            .bind(id)
            .fetch_all(&state.db.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let steps = sqlx::query("SELECT step, visit, start_ms, end_ms FROM step_intervals WHERE session_id = $1 ORDER BY start_ms")
        .bind(id)
        .fetch_all(&state.db.pool)
        .await?
        .iter()
        .map(|r| {
            let step: String = r.try_get(0)?;
            Ok(crate::types::StepInterval {
                title: titles.get(&step).cloned().unwrap_or_else(|| step.clone()),
                step,
                visit: r.try_get(1)?,
                start_ms: r.try_get(2)?,
                end_ms: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let events = sqlx::query("SELECT seq, t_ms, source, kind, summary FROM events WHERE session_id = $1 ORDER BY t_ms, seq")
        .bind(id)
        .fetch_all(&state.db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(TimelineEvent { seq: r.try_get(0)?, t_ms: r.try_get(1)?, source: r.try_get(2)?, kind: r.try_get(3)?, summary: r.try_get(4)? })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let transcript = super::load_transcript(state, id).await?;
    let tags = super::review::tags(state, id).await?;
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
    let (content_type, render): (&'static str, fn(&crate::types::TranscriptView) -> String) =
        if format == "vtt" {
            ("text/vtt; charset=utf-8", export::subtitles::vtt)
        } else {
            (
                "application/x-subrip; charset=utf-8",
                export::subtitles::srt,
            )
        };
    let t = super::load_transcript(state, id).await?;
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
