//! The JSON API under `/api/v1` (`docs/lab-web-api.md`, `assets/openapi.json`).

mod access;
mod account;
mod admin;
mod exports;
mod filters;
mod live;
mod meta;
mod responses;
mod review;
mod sensors;
mod serve;
mod sessions;
mod setups;
mod uploads;
mod worker;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", post(account::login))
        .route(
            "/uploads",
            get(uploads::list)
                .post(uploads::create)
                .layer(DefaultBodyLimit::max(crate::limits::MAX_UPLOAD_LIST_BYTES)),
        )
        .route("/uploads/{id}", get(uploads::get))
        .route(
            "/uploads/{id}/files/{*path}",
            put(uploads::put_chunk)
                .layer(DefaultBodyLimit::max(crate::limits::MAX_UPLOAD_CHUNK_BYTES)),
        )
        .route("/uploads/{id}/complete", post(uploads::complete))
        .route("/worker/lease", post(worker::lease))
        .route("/worker/forget", post(worker::forget))
        .route("/worker/jobs/{id}/files/{*path}", get(worker::file))
        .route("/worker/jobs/{id}/heartbeat", post(worker::heartbeat))
        .route("/worker/jobs/{id}/fail", post(worker::fail))
        .route(
            "/worker/jobs/{id}/result",
            put(worker::result).layer(DefaultBodyLimit::disable()),
        )
        .route("/live", get(live::list))
        .route("/live/station/{id}", get(live::station))
        .route("/live/{id}/watch", get(live::watch))
        .route("/logout", post(account::logout))
        .route("/me", get(account::me))
        .route("/openapi.json", get(meta::openapi))
        .route("/categories", get(meta::categories))
        .route("/studies", get(sessions::studies))
        .route("/sessions", get(sessions::list))
        .route(
            "/sessions/{id}",
            get(sessions::detail).patch(sessions::patch),
        )
        .route("/sessions/{id}/withdraw", post(sessions::withdraw))
        .route("/sessions/{id}/timeline", get(sessions::timeline))
        .route("/sessions/{id}/sensors", get(sensors::lanes))
        .route("/sessions/{id}/sensors/{lane}", get(sensors::series))
        .route("/sessions/{id}/transcript", get(sessions::transcript))
        .route("/sessions/{id}/events", get(sessions::events))
        .route("/sessions/{id}/media/{*file}", get(sessions::media))
        .route("/sessions/{id}/analyze", post(sessions::analyze))
        .route(
            "/sessions/{id}/candidates/{cid}/accept",
            post(review::accept),
        )
        .route(
            "/sessions/{id}/candidates/{cid}/reject",
            post(review::reject),
        )
        .route(
            "/sessions/{id}/tags",
            get(review::list_tags).post(review::create_tag),
        )
        .route(
            "/tags/{tag}",
            put(review::update_tag).delete(review::delete_tag),
        )
        .route("/tags/{tag}/history", get(review::history))
        .route("/tags/{tag}/clip", post(review::make_clip))
        .route("/clips/{file}", get(review::clip))
        .route("/journeys", get(exports::journeys))
        .route("/journeys/{id}", get(exports::journey))
        .route("/journeys/{id}/map", get(exports::map))
        .route("/journeys/{id}/report.html", get(exports::report))
        .route("/findings", get(exports::findings))
        .route(
            "/overlay/findings",
            get(exports::overlay_findings).options(exports::overlay_preflight),
        )
        .route("/sessions/{id}/export.eaf", get(exports::eaf))
        .route("/sessions/{id}/export.vtt", get(exports::vtt))
        .route("/sessions/{id}/export.srt", get(exports::srt))
        .route("/setups", get(setups::list))
        .route(
            "/setups/{id}",
            get(setups::get)
                .put(setups::put)
                .delete(setups::delete)
                .layer(DefaultBodyLimit::max(crate::limits::MAX_SETUP_BYTES)),
        )
        .route("/setups/{id}/study.toml", get(setups::toml))
        .route("/search", get(sessions::search))
        .route("/imports", post(sessions::import))
        .route("/jobs", get(admin::jobs))
        .route("/jobs/events", get(admin::job_events))
        .route("/jobs/{id}/cancel", post(admin::cancel_job))
        .route("/jobs/{id}/retry", post(admin::retry_job))
        .route("/users", get(admin::users).post(admin::create_user))
        .route("/users/{id}", axum::routing::patch(admin::patch_user))
        .route("/tokens", get(admin::tokens).post(admin::create_token))
        .route("/workers", get(admin::workers))
        .route("/tokens/{id}", delete(admin::delete_token))
        .route("/audit", get(admin::audit_log))
        .fallback(|| async { ApiError::not_found("no such API route") })
}
