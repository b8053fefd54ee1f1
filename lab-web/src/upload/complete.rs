//! Completion: every file verified, the bundle checked, its session id
//! reserved, one rename into the sessions folder, the import; and the
//! start-up reconcile of a placement a stop cut.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lab_model::upload::Completed;

use super::common::*;
use super::receive::find;
use crate::bundle_files::{self};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::import::Outcome;
use crate::state::AppState;
use crate::store;
use crate::store::uploads::{FileRow, UploadRow};

/// `POST /uploads/{id}/complete`: checks, places and imports the bundle; the
/// station's acknowledgement. Repeating it answers the same.
pub async fn complete(state: &AppState, station: Station<'_>, id: i64) -> ApiResult<Completed> {
    find(state, station, id).await?;
    // A second completion (a station that timed out and asked again) waits
    // for the first and then answers from what it did.
    let _guard = exclusive(state, id).await;
    let row = find(state, station, id).await?;
    match row.status.as_str() {
        "imported" => return Ok(completed(&row, true)),
        "placing" => return place_and_import(state, &row).await,
        _ => {}
    }
    verify_all(state, &row).await?;
    let dir = staging(state, id);
    let declared = row.session_id.clone();
    let files: Vec<String> = store::uploads::files(&state.db.pool, id)
        .await?
        .into_iter()
        .map(|f| f.path)
        .collect();
    let manifest_sha = blocking(move || check_bundle(&dir, &declared, &files)).await?;
    let pool = &state.db.pool;
    // Withdrawn, or this very recording already here (the watcher took it
    // from a shared folder, or the station forgot it had sent it): nothing
    // is imported twice and nothing of a withdrawn participant is kept.
    if let Some(known) = store::import::known(pool, &row.session_id).await? {
        let same = known.withdrawn || {
            let there = PathBuf::from(&known.bundle_path);
            let files = store::uploads::files(pool, id).await?;
            blocking(move || Ok(same_recording(&there, &files, &manifest_sha))).await?
        };
        if same {
            // Recorded first, then the copy goes: a stop in between leaves
            // an acknowledged upload and a folder for the clean-up.
            store::uploads::set_imported(pool, id, None, known.withdrawn, now_ms()).await?;
            let dir = staging(state, id);
            blocking(move || {
                crate::withdrawal::purge_bundle_files(&dir);
                Ok(())
            })
            .await?;
            let row = store::uploads::get(pool, id)
                .await?
                .ok_or_else(|| ApiError::not_found("upload"))?;
            return Ok(completed(&row, false));
        }
    }
    let row = reserve(state, &row, station.name).await?;
    place_and_import(state, &row).await
}

/// Every file full and verified (a full one not yet verified, after a crash
/// between the write and the database, is checked now), or 409 naming them.
async fn verify_all(state: &AppState, row: &UploadRow) -> ApiResult<()> {
    let files = store::uploads::files(&state.db.pool, row.id).await?;
    let dir = staging(state, row.id);
    let (base, id) = (state.config.sessions_dir.clone(), row.id);
    let (newly, missing) = blocking(move || {
        let mut newly = vec![];
        let mut missing = vec![];
        for f in files {
            let len = held(&dir, &f.path).map_err(file_error)?;
            if len != f.size {
                missing.push(format!("{} ({len} of {} bytes)", f.path, f.size));
            } else if !f.verified {
                if sha256_of(&dir, &f.path).map_err(file_error)? == f.sha256 {
                    newly.push(f.path);
                } else {
                    if let Ok((h, _)) = bundle_files::open_for_append(&base, &staged(id, &f.path)) {
                        let _ = h.set_len(0);
                    }
                    missing.push(format!("{} (checksum mismatch, discarded)", f.path));
                }
            }
        }
        Ok((newly, missing))
    })
    .await?;
    for p in &newly {
        store::uploads::set_verified(&state.db.pool, row.id, p, true).await?;
    }
    if !missing.is_empty() {
        let n = missing.len();
        let shown: Vec<String> = missing.into_iter().take(10).collect();
        return Err(conflict(
            "incomplete",
            format!(
                "не все файлы получены ({n}) / {n} file(s) are not complete: {}",
                shown.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The staged bundle is one lab-web can import: its manifest parses, names
/// the declared session, is not still recording, every segment it lists
/// arrived, and the folder holds only plain files. The manifest's SHA-256.
fn check_bundle(dir: &Path, declared: &str, files: &[String]) -> ApiResult<String> {
    let bad = |m: String| unprocessable("bad_bundle", m);
    let manifest = crate::import::read::manifest(dir).map_err(|e| bad(format!("{e:#}")))?;
    if manifest.session_id != declared {
        return Err(bad(format!(
            "manifest.json names session {}, the upload declared {declared}",
            manifest.session_id
        )));
    }
    if manifest.status == lab_model::SessionStatus::Recording {
        return Err(bad(
            "сессия ещё записывается (или запись прервалась): сначала `lab-recorder recover` / the bundle is still recording (or its recorder died): run `lab-recorder recover` first".into(),
        ));
    }
    for s in &manifest.segments {
        if !files.contains(&s.file) {
            return Err(bad(format!(
                "manifest.json lists {}, which was not uploaded",
                s.file
            )));
        }
    }
    lab_model::Bundle::new(dir)
        .check_contents()
        .map_err(|e| unprocessable("symlink", e.to_string()))?;
    sha256_of(dir, lab_model::bundle::MANIFEST_FILE).map_err(file_error)
}

/// Whether the bundle in `there` is the recording this upload carries:
/// every uploaded file is there with the same size and SHA-256 (a damaged
/// copy in a shared folder is not the recording, and the station's verified
/// copy must not be dropped for it). Rare, so the cost of hashing is paid.
fn same_recording(there: &Path, files: &[FileRow], manifest_sha: &str) -> bool {
    let sha_there = |rel: &str| sha256_of(there, rel).ok();
    if sha_there(lab_model::bundle::MANIFEST_FILE).as_deref() != Some(manifest_sha) {
        return false;
    }
    files.iter().all(|f| {
        held(there, &f.path).is_ok_and(|len| len == f.size)
            && sha_there(&f.path).as_deref() == Some(f.sha256.as_str())
    })
}

/// Picks and claims the session id: the manifest's, else `<id>.<station>`,
/// `<id>.<station>.2`, … — one no session, folder or other upload has.
async fn reserve(state: &AppState, row: &UploadRow, station: &str) -> ApiResult<UploadRow> {
    let sessions = {
        let d = state.config.sessions_dir.clone();
        blocking(move || {
            d.canonicalize()
                .with_context(|| format!("sessions folder {}", d.display()))
                .map_err(ApiError::Internal)
        })
        .await?
    };
    let pool = &state.db.pool;
    for n in 0..50 {
        let mut candidate = match n {
            0 => row.session_id.clone(),
            1 => format!("{}.{station}", row.session_id),
            n => format!("{}.{station}.{n}", row.session_id),
        };
        if candidate.len() > lab_model::bundle::limits::MAX_SESSION_ID_LEN {
            let tail = candidate[row.session_id.len()..].to_string();
            let keep = lab_model::bundle::limits::MAX_SESSION_ID_LEN - tail.len();
            candidate = format!("{}{tail}", &row.session_id[..keep]);
        }
        let target = sessions.join(&candidate);
        let on_disk = std::fs::symlink_metadata(&target).is_ok();
        if on_disk
            || store::import::known(pool, &candidate).await?.is_some()
            || store::uploads::id_claimed(pool, &candidate).await?
        {
            continue;
        }
        let path = target.to_string_lossy().to_string();
        if store::uploads::reserve_target(pool, row.id, &candidate, &path, now_ms()).await? {
            return store::uploads::get(pool, row.id)
                .await?
                .ok_or_else(|| ApiError::not_found("upload"));
        }
        // Lost a race for this id, or the upload moved on: look again.
        let now = store::uploads::get(pool, row.id)
            .await?
            .ok_or_else(|| ApiError::not_found("upload"))?;
        if now.status != "receiving" {
            return Ok(now);
        }
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "no free session id for upload {} ({})",
        row.id,
        row.session_id
    )))
}

/// Moves the staging folder to its reserved place (unless a crash already
/// did), makes that durable, and imports it.
async fn place_and_import(state: &AppState, row: &UploadRow) -> ApiResult<Completed> {
    let target =
        PathBuf::from(row.target_path.clone().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("upload {} has no target", row.id))
        })?);
    let from = staging(state, row.id);
    let to = target.clone();
    blocking(move || place(&from, &to).map_err(ApiError::Internal)).await?;
    // The bundle is placed; an import that fails (the database, a disk) is
    // tried again by the station's next call or the start-up reconcile.
    let (imported_id, outcome) = crate::import::import(state, &target)
        .await
        .map_err(|e| ApiError::Internal(e.context(format!("import of upload {}", row.id))))?;
    if outcome == Outcome::Imported && state.config.analyze_new {
        crate::import::analyze_new(state, &imported_id, &target).await;
    }
    let withdrawn = outcome == Outcome::Withdrawn;
    let assigned = row
        .assigned_id
        .clone()
        .unwrap_or_else(|| row.session_id.clone());
    store::uploads::set_imported(&state.db.pool, row.id, Some(&assigned), withdrawn, now_ms())
        .await?;
    crate::auth::audit(
        state,
        None,
        "upload_imported",
        &format!("session:{assigned}"),
        &format!(
            "station {} upload {} ({} bytes)",
            row.station, row.id, row.total_bytes
        ),
    )
    .await;
    let row = store::uploads::get(&state.db.pool, row.id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))?;
    Ok(completed(&row, false))
}

fn fsync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))
}

/// Every folder of the staged bundle is synced (so each file's entry is on
/// disk), then one rename places it, then the sessions folder is synced.
fn place(from: &Path, to: &Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(from).is_err() {
        anyhow::ensure!(
            std::fs::symlink_metadata(to).is_ok_and(|m| m.is_dir()),
            "neither {} nor {} exists",
            from.display(),
            to.display()
        );
        return Ok(());
    }
    let mut dirs = vec![from.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("{}", d.display()))? {
            let e = e?;
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            }
        }
        fsync_dir(&d)?;
    }
    std::fs::rename(from, to)
        .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    fsync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// At start-up: finishes every placement a stop interrupted.
pub async fn reconcile(state: &AppState) {
    let rows = match store::uploads::placing(&state.db.pool).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("uploads: cannot list interrupted placements: {e}");
            return;
        }
    };
    for row in rows {
        match place_and_import(state, &row).await {
            Ok(c) => tracing::info!(
                "upload {} finished after a restart as {}",
                row.id,
                c.session_id
            ),
            Err(e) => tracing::warn!("upload {} could not be finished: {e:?}", row.id),
        }
    }
}
