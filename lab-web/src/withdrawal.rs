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

/// Marks the session withdrawn and removes everything personal from its
/// rows: the participant code, consent reference and moderator, transcript,
/// speech, event payloads, tag quotes, notes, places (URL, selector) and
/// history, candidate evidence, notes and reasons, clips, job messages and
/// the session label. Step times and tag categories, severities, emotions
/// and steps stay as anonymous aggregates. Every statement selects by
/// session (tags by subquery), so a tag made a moment before is included.
/// Idempotent: run in the withdrawal's transaction and again after files
/// are gone and after any job that ran.
pub async fn scrub_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    session: &str,
) -> anyhow::Result<()> {
    const TAGS: &str = "(SELECT id FROM tags WHERE session_id = $1)";
    let statements = [
        "UPDATE sessions SET withdrawn = 1, withdrawn_at = COALESCE(withdrawn_at, $2), participant = 'отозван', consent = '', \
         moderator = NULL, media = '{}', qa = NULL, transcript_status = 'withdrawn', transcript_json = NULL, \
         speech_json = NULL WHERE id = $1"
            .to_string(),
        "DELETE FROM transcript_segments WHERE session_id = $1 AND $2 = $2".to_string(),
        "DELETE FROM speech_spans WHERE session_id = $1 AND $2 = $2".to_string(),
        "UPDATE events SET data = '{}', summary = '' WHERE session_id = $1 AND $2 = $2".to_string(),
        "UPDATE tags SET quote = '', note = '', url = NULL, selector = NULL WHERE session_id = $1 AND $2 = $2"
            .to_string(),
        "UPDATE candidates SET evidence = '{\"events\":[],\"words\":[]}', note = '', reason = NULL \
         WHERE session_id = $1 AND $2 = $2"
            .to_string(),
        format!("DELETE FROM clips WHERE tag_id IN {TAGS} AND $2 = $2"),
        format!("UPDATE tag_history SET before = NULL, after = NULL WHERE tag_id IN {TAGS} AND $2 = $2"),
        "UPDATE jobs SET message = '' WHERE session_id = $1 AND status NOT IN ('queued', 'running') AND $2 = $2"
            .to_string(),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(session)
            .bind(crate::db::now_ms())
            .execute(&mut **tx)
            .await?;
    }
    let lane = sqlx::query(
        "SELECT seq, t_ms, source, kind FROM events WHERE session_id = $1 ORDER BY t_ms, seq",
    )
    .bind(session)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| {
        Ok(crate::types::TimelineEvent {
            seq: r.try_get(0)?,
            t_ms: r.try_get(1)?,
            source: r.try_get(2)?,
            kind: r.try_get(3)?,
            summary: String::new(),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    crate::import::write_event_chunks(tx, session, &lane).await?;
    Ok(())
}

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
/// (with their subtitle and partial files) of its tags. Returns an error only if the bundle could
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
            std::fs::symlink_metadata(&dir).is_err(),
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
            let scrub = async {
                let mut tx = state.db.pool.begin().await?;
                scrub_rows(&mut tx, s).await?;
                tx.commit().await?;
                anyhow::Ok(())
            };
            if let Err(e) = scrub.await {
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
