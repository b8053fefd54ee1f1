//! lab-web: the review application. `serve` builds the router over an
//! [`AppState`]; the binary adds the CLI. See `docs/lab-web-api.md`.

pub mod api;
pub mod auth;
pub mod bench;
pub mod clips;
pub mod db;
pub mod error;
pub mod export;
pub mod import;
pub mod jobs;
pub mod map;
pub mod pages;
pub mod search;
pub mod state;
pub mod synth;
pub mod types;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use state::{AppState, Config};

/// The whole application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .nest("/api/v1", api::router())
        .merge(pages::router())
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}

/// Starts the background tasks: the job worker and the folder watcher.
pub fn start_background(state: &AppState) {
    if state.config.worker {
        tokio::spawn(jobs::worker(state.clone()));
    }
    tokio::spawn(import::watch(state.clone()));
}
