//! lab-web: the review application. `serve` builds the router over an
//! [`AppState`]; the binary adds the CLI. See `docs/lab-web-api.md`.

pub mod api;
pub mod assets;
pub mod auth;
pub mod bench;
pub mod bundle_files;
pub mod clips;
pub mod cookies;
pub mod db;
pub mod error;
pub mod export;
pub mod import;
pub mod jobs;
pub mod lang;
pub mod limits;
pub mod live;
pub mod map;
pub mod pages;
pub mod remote;
pub mod runner;
pub mod search;
pub mod sensors;
pub mod setups;
pub mod state;
pub mod store;
pub mod synth;
pub mod tagging;
pub mod types;
pub mod upload;
pub mod withdrawal;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

pub use state::{AppState, Config};

/// The whole application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .nest(
            "/api/v1",
            api::router().layer(axum::middleware::map_response(error::json_errors)),
        )
        .merge(pages::router())
        .layer(DefaultBodyLimit::max(limits::MAX_BODY_BYTES))
        .layer(default_header(
            header::X_CONTENT_TYPE_OPTIONS,
            "nosniff",
        ))
        // Pages and the HTML report set their own policy; everything else
        // (JSON, media, exports) may run nothing and be framed by nobody.
        .layer(default_header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox",
        ))
        .layer(default_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(default_header(header::REFERRER_POLICY, "same-origin"))
        .with_state(state)
}

fn default_header(
    name: header::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Starts the background tasks: the job worker and the folder watcher.
pub fn start_background(state: &AppState) {
    let s = state.clone();
    tokio::spawn(async move {
        if let Err(e) = jobs::start_forwarding(&s).await {
            tracing::error!("job notifications: cannot listen: {e}");
        }
    });
    for n in 0..state.config.workers {
        tokio::spawn(runner::run(state.clone(), n, runner::Runs::Everything));
    }
    if state.config.workers == 0 && state.config.clip_worker {
        tokio::spawn(runner::run(state.clone(), 0, runner::Runs::ClipsOnly));
    }
    let s = state.clone();
    tokio::spawn(async move {
        match import::lab_journeys(&s).await {
            Ok(n) => tracing::info!("{n} journey definition(s) read from the journeys folders"),
            Err(e) => tracing::error!("journeys folders: {e:#}"),
        }
        import::watch(s).await
    });
    let s = state.clone();
    tokio::spawn(async move { upload::reconcile(&s).await });
    // Result staging a crashed lab-web left beside the bundles (a day old:
    // another process may be receiving one right now).
    let sessions = state.config.sessions_dir.clone();
    tokio::task::spawn_blocking(move || {
        let n = remote::result::sweep(&sessions, std::time::Duration::from_secs(24 * 3600));
        if n > 0 {
            tracing::info!("removed {n} stale result staging entr(ies) from the sessions folder");
        }
    });
}
