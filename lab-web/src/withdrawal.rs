//! Participant withdrawal: everything personal about a session goes, from
//! the database, the bundle on disk and the clips, and stays gone whatever
//! was running at the time.
//!
//! The order makes it race-free: the session is marked withdrawn first (in
//! the same transaction that clears its rows), so nothing new starts for it
//! (jobs refuse, imports purge, writes get 409); then its queued jobs are
//! cancelled and running ones told to stop; then the files are deleted. A
//! job that was already past its last check when the mark landed finishes
//! into the worker's guard ([`after_job`]), which deletes whatever it wrote.

use std::path::{Path, PathBuf};

use crate::state::AppState;
use crate::store;

/// Scrubs a session's rows in one transaction (see [`store::withdrawal::scrub_rows`]).
/// Idempotent: run at the withdrawal, again after files are gone and after
/// any job that ran.
pub async fn scrub_rows(state: &AppState, session: &str) -> anyhow::Result<()> {
    let mut tx = state.db.pool.begin().await?;
    store::withdrawal::scrub_rows(&mut tx, session, crate::db::now_ms()).await?;
    tx.commit().await?;
    Ok(())
}

/// Whether the session is withdrawn (false for an unknown session).
pub async fn is_withdrawn(state: &AppState, session: &str) -> Result<bool, sqlx::Error> {
    Ok(store::sessions::withdrawn(&state.db.pool, session)
        .await?
        .unwrap_or(false))
}

/// Deletes a withdrawn session's bundle folder (manifest with the
/// participant code and consent reference, events, media, analysis). Links
/// inside are removed, never followed.
pub fn purge_bundle_files(dir: &Path) {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            let _ = std::fs::remove_file(dir);
        }
        Ok(_) => {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                tracing::error!("withdrawal: cannot delete {}: {e}", dir.display());
            }
        }
        Err(_) => {}
    }
}

/// Deletes every file of a withdrawn session: its bundle folder and the clips
/// (with their subtitle and partial files) of its tags. Returns an error only if the bundle could
/// not be deleted, which the withdrawal request reports.
pub async fn purge_files(state: &AppState, session: &str) -> anyhow::Result<()> {
    let bundle = store::withdrawal::bundle_path(&state.db.pool, session).await?;
    let tags = store::tags::ids_of_session(&state.db.pool, session).await?;
    // The clip rows go with the other rows (`scrub_rows`); these are the files.
    let dir = state.clips_dir();
    for t in &tags {
        for p in [
            format!("{t}.mp4"),
            format!("{t}.mp4.part"),
            format!("{t}.srt"),
        ] {
            let _ = tokio::fs::remove_file(dir.join(p)).await;
        }
    }
    if let Some(b) = bundle.filter(|b| !b.is_empty()) {
        let dir = PathBuf::from(b);
        let d = dir.clone();
        tokio::task::spawn_blocking(move || purge_bundle_files(&d)).await?;
        anyhow::ensure!(
            tokio::fs::symlink_metadata(&dir).await.is_err(),
            "cannot delete {}",
            dir.display()
        );
    }
    Ok(())
}

/// The worker's guard after every job of a session: if the participant
/// withdrew while it ran, what it wrote (files, and rows its import wrote)
/// is deleted and it does not count as done. Returns whether that happened.
pub async fn after_job(state: &AppState, session: Option<&str>) -> bool {
    let Some(s) = session else { return false };
    match is_withdrawn(state, s).await {
        Ok(true) => {
            if let Err(e) = purge_files(state, s).await {
                tracing::error!("withdrawal of {s}: {e:#}");
            }
            if let Err(e) = scrub_rows(state, s).await {
                tracing::error!("withdrawal of {s}: cannot scrub rows after a job: {e:#}");
            }
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::error!("withdrawal check of {s}: {e}");
            false
        }
    }
}
