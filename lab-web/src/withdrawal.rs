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

use sqlx::Row;

use crate::state::AppState;

/// Whether the session is withdrawn (false for an unknown session).
pub async fn is_withdrawn(state: &AppState, session: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT withdrawn FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|r| r.try_get::<i64, _>(0))
        .transpose()?
        .is_some_and(|w| w != 0))
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
/// of its tags (and their rows). Returns an error only if the bundle could
/// not be deleted, which the withdrawal request reports.
pub async fn purge_files(state: &AppState, session: &str) -> anyhow::Result<()> {
    let bundle: Option<String> = sqlx::query("SELECT bundle_path FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    let tags: Vec<i64> = sqlx::query("SELECT id FROM tags WHERE session_id = $1")
        .bind(session)
        .fetch_all(&state.db.pool)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for t in &tags {
        sqlx::query("DELETE FROM clips WHERE tag_id = $1")
            .bind(t)
            .execute(&state.db.pool)
            .await?;
        for p in [
            crate::clips::clip_path(state, *t),
            crate::clips::clip_path(state, *t).with_extension("mp4.part"),
        ] {
            let _ = tokio::fs::remove_file(p).await;
        }
    }
    if let Some(b) = bundle.filter(|b| !b.is_empty()) {
        let dir = PathBuf::from(b);
        let d = dir.clone();
        tokio::task::spawn_blocking(move || purge_bundle_files(&d)).await?;
        anyhow::ensure!(
            std::fs::symlink_metadata(&dir).is_err(),
            "cannot delete {}",
            dir.display()
        );
    }
    Ok(())
}

/// The worker's guard after every job of a session: if the participant
/// withdrew while it ran, what it wrote is deleted and it does not count as
/// done. Returns whether that happened.
pub async fn after_job(state: &AppState, session: Option<&str>) -> bool {
    let Some(s) = session else { return false };
    match is_withdrawn(state, s).await {
        Ok(true) => {
            if let Err(e) = purge_files(state, s).await {
                tracing::error!("withdrawal of {s}: {e:#}");
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
