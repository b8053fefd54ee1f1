//! The console's pre-flight check (`crate::preflight`): live previews of
//! screen and camera, level meters per microphone channel, devices that are
//! missing or silent named in Russian, disk space and hours left, and the
//! 5-second sync self-test (`lab-setup check --json`). The preview holds the
//! devices, so it stops before the self-test and before a recording starts.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::state::Console;
use crate::preflight::{self, Preflight};

type S = State<Arc<Console>>;

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": msg.into() }))).into_response()
}

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/api/preflight", get(status))
        .route("/api/preflight/start", post(start))
        .route("/api/preflight/stop", post(stop))
        .route("/api/preflight/snapshot/{track}", get(snapshot))
        .route("/api/preflight/sync", post(sync))
}

/// Stops the preview (before a recording or the self-test); returns at
/// once when none runs.
pub async fn stop_preview(c: &Console) {
    let p = c.preflight.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(p) = p {
        let _ = tokio::task::spawn_blocking(move || p.stop()).await;
    }
}

async fn status(State(c): S) -> Response {
    let disk = preflight::disk(&c.opts.out, &c.station).ok();
    let g = c.preflight.lock().unwrap_or_else(|e| e.into_inner());
    let body = match g.as_ref() {
        Some(p) => json!({
            "running": true,
            "devices": p.devices(),
            "levels": p.levels(),
            "problems": p.problems(),
            "snapshots": p.devices().iter().filter_map(|d| p.snapshot(&d.track).map(|s| json!({"track": d.track, "at_ms": s.at_ms, "width": s.width, "height": s.height}))).collect::<Vec<_>>(),
        }),
        None => json!({ "running": false }),
    };
    drop(g);
    let mut body = body;
    body["disk"] = json!(disk);
    let raised = crate::priority::recording_can_raise();
    body["priority"] = json!({
        "raised": raised,
        "warning_ru": (!raised).then_some(crate::priority::CANNOT_RAISE_RU),
        "warning_en": (!raised).then_some(crate::priority::CANNOT_RAISE_EN),
    });
    body["sync"] = c
        .sync_result
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    axum::Json(body).into_response()
}

async fn start(State(c): S) -> Response {
    if c.live.lock().await.is_some() {
        return err(
            StatusCode::CONFLICT,
            "идёт запись: проверка — до начала сессии / a recording is running; check before the session",
        );
    }
    if c.preflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
    {
        return StatusCode::NO_CONTENT.into_response();
    }
    let station = c.station.clone();
    let test = c.opts.recorder.test_sources;
    match tokio::task::spawn_blocking(move || Preflight::start(&station, test)).await {
        Ok(Ok(p)) => {
            // A recording that began meanwhile needs the devices: let go.
            let live = c.live.lock().await;
            if live.is_some() {
                drop(live);
                let _ = tokio::task::spawn_blocking(move || p.stop()).await;
                return err(StatusCode::CONFLICT, "идёт запись / a recording is running");
            }
            *c.preflight.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn stop(State(c): S) -> Response {
    stop_preview(&c).await;
    StatusCode::NO_CONTENT.into_response()
}

async fn snapshot(State(c): S, Path(track): Path<String>) -> Response {
    let shot = c
        .preflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|p| p.snapshot(&track));
    match shot {
        Some(s) => ([(header::CONTENT_TYPE, "image/jpeg")], s.jpeg).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no picture of {track} yet")),
    }
}

/// The 5-second sync self-test; its figures, or why it could not run.
async fn sync(State(c): S) -> Response {
    if c.live.lock().await.is_some() {
        return err(StatusCode::CONFLICT, "идёт запись / a recording is running");
    }
    stop_preview(&c).await;
    let r = preflight::sync_self_test(
        &c.lab_setup,
        c.opts.recorder.station.as_deref(),
        c.opts.recorder.test_sources,
    )
    .await;
    let body = match r {
        Ok(f) => json!({ "figures": f }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    *c.sync_result.lock().unwrap_or_else(|e| e.into_inner()) = Some(body.clone());
    axum::Json(body).into_response()
}
