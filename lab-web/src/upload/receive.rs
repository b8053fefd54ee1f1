//! Starting or resuming an upload, and its status.

use std::collections::HashMap;

use anyhow::Context;
use axum::http::StatusCode;
use lab_model::upload::{
    CHUNK_BYTES, FileStatus, UploadFile, UploadRequest, UploadState, UploadStatus,
};

use super::common::*;
use crate::bundle_files::{self, BundleFileError};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::limits;
use crate::state::AppState;
use crate::store;
use crate::store::uploads::{FileRow, UploadRow};

/// The upload as the station should see it: per file, the bytes held in
/// staging (its length is the truth) and whether they were verified.
pub async fn status(state: &AppState, row: &UploadRow) -> ApiResult<UploadStatus> {
    let files = store::uploads::files(&state.db.pool, row.id).await?;
    let st = state_of(row);
    let dir = staging(state, row.id);
    let receiving = st == UploadState::Receiving;
    let (files, stale) = blocking(move || {
        let mut out = Vec::with_capacity(files.len());
        let mut stale = vec![];
        for f in files {
            let received = if receiving {
                held(&dir, &f.path).map_err(file_error)?
            } else {
                f.size
            };
            // Verified, but no longer whole (a disk lost, a hand in the
            // folder): it is sent again.
            let verified = f.verified && received == f.size;
            if f.verified && !verified {
                stale.push(f.path.clone());
            }
            out.push(FileStatus {
                path: f.path,
                size: f.size,
                received: received.min(f.size),
                verified,
            });
        }
        Ok((out, stale))
    })
    .await?;
    for p in stale {
        store::uploads::set_verified(&state.db.pool, row.id, &p, false).await?;
    }
    Ok(UploadStatus {
        upload_id: row.id,
        session_id: row.session_id.clone(),
        status: st,
        chunk_bytes: CHUNK_BYTES,
        files,
        imported: (st == UploadState::Imported).then(|| completed(row, true)),
    })
}

/// `POST /uploads`: starts an upload, or finds the one this station already
/// began for this session (resuming it; a changed file list replaces the
/// old one, keeping every file that is unchanged). True if it is new.
pub async fn create(
    state: &AppState,
    station: Station<'_>,
    req: UploadRequest,
) -> ApiResult<(bool, UploadStatus)> {
    req.check().map_err(list_error)?;
    let total = req.total_bytes();
    let limit = state.config.max_upload_bytes;
    if total > limit {
        return Err(too_large(format!(
            "сессия {} — {total} байт, сервер принимает до {limit} / the bundle is {total} bytes; this server takes at most {limit}",
            req.session_id
        )));
    }
    let digest = list_digest(&req.files);
    let pool = &state.db.pool;
    let existing = store::uploads::find(pool, station.name, &req.session_id).await?;
    let _guard = match &existing {
        Some(row) => Some(exclusive(state, row.id).await),
        None => None,
    };
    // Read again under the lock: a completion may have moved it on.
    let existing = match existing {
        Some(row) => store::uploads::get(pool, row.id).await?,
        None => None,
    };
    let row = match existing {
        Some(row) if row.status == "receiving" => {
            if row.digest != digest {
                replace_list(state, &row, &req, &digest).await?;
            }
            let st = status(state, &row).await?;
            let remaining: u64 = st.files.iter().map(|f| f.size - f.received).sum();
            check_space(state, remaining).await?;
            row
        }
        Some(row) if row.digest == digest => row,
        Some(row) => {
            return Err(conflict(
                "conflict",
                format!(
                    "станция {} уже выгрузила сессию {} с другим содержимым / station {} already uploaded session {} with other content",
                    station.name, row.session_id, station.name, row.session_id
                ),
            ));
        }
        None => {
            let busy = store::uploads::receiving_count(pool, station.name).await?;
            if busy >= limits::MAX_RECEIVING_PER_STATION {
                return Err(ApiError::TooMany(format!(
                    "у станции уже {busy} незавершённых выгрузок / the station has {busy} uploads in progress"
                )));
            }
            check_space(state, total).await?;
            let id = store::uploads::create(
                pool,
                station.name,
                station.token_id,
                &req.session_id,
                &digest,
                total,
                &req.files,
                now_ms(),
            )
            .await?;
            let dir = staging(state, id);
            blocking(move || {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("staging folder {}", dir.display()))
                    .map_err(ApiError::Internal)
            })
            .await?;
            let row = store::uploads::get(pool, id)
                .await?
                .ok_or_else(|| ApiError::not_found("upload"))?;
            let st = status(state, &row).await?;
            return Ok((true, st));
        }
    };
    let row = store::uploads::get(pool, row.id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))?;
    Ok((false, status(state, &row).await?))
}

pub(super) async fn check_space(state: &AppState, remaining: u64) -> ApiResult<()> {
    let dir = state.config.sessions_dir.clone();
    let free = blocking(move || free_bytes(&dir).map_err(|e| ApiError::Internal(e.into()))).await?;
    if free < remaining.saturating_add(limits::UPLOAD_FREE_MARGIN_BYTES) {
        return Err(ApiError::refused(
            StatusCode::INSUFFICIENT_STORAGE,
            "no_space",
            format!(
                "на сервере свободно {free} байт, нужно {remaining} и запас / the server has {free} bytes free; the upload needs {remaining} plus a margin; the station keeps its copy"
            ),
        ));
    }
    Ok(())
}

/// A station that changed its bundle (re-hashed after a checksum error, or
/// analysed it) sends a new list: unchanged files keep their bytes, changed
/// ones start over, files no longer listed are removed.
pub(super) async fn replace_list(
    state: &AppState,
    row: &UploadRow,
    req: &UploadRequest,
    digest: &str,
) -> ApiResult<()> {
    let old: HashMap<String, FileRow> = store::uploads::files(&state.db.pool, row.id)
        .await?
        .into_iter()
        .map(|f| (f.path.clone(), f))
        .collect();
    let new: HashMap<&str, &UploadFile> = req.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut changed = vec![];
    let mut dropped = vec![];
    for o in old.values() {
        match new.get(o.path.as_str()) {
            Some(f) if f.size == o.size && f.sha256 == o.sha256 => {}
            Some(_) => changed.push(staged(row.id, &o.path)),
            None => dropped.push(staged(row.id, &o.path)),
        }
    }
    let base = state.config.sessions_dir.clone();
    blocking(move || {
        // Dropped first: a file may become a folder of a new path.
        for p in dropped {
            bundle_files::remove_staged(&base, &p).map_err(file_error)?;
        }
        for p in changed {
            match bundle_files::open_for_append(&base, &p) {
                Ok((f, _)) => f.set_len(0).map_err(|e| ApiError::Internal(e.into()))?,
                Err(BundleFileError::NotFound(_)) => {}
                Err(e) => return Err(file_error(e)),
            }
        }
        Ok(())
    })
    .await?;
    let keep = |f: &UploadFile| {
        old.get(&f.path)
            .is_some_and(|o| o.verified && o.size == f.size && o.sha256 == f.sha256)
    };
    store::uploads::replace_files(
        &state.db.pool,
        row.id,
        digest,
        req.total_bytes(),
        &req.files,
        keep,
        now_ms(),
    )
    .await?;
    Ok(())
}

/// This station's upload `id`, or 404 (another station's is not found either).
pub async fn find(state: &AppState, station: Station<'_>, id: i64) -> ApiResult<UploadRow> {
    store::uploads::get(&state.db.pool, id)
        .await?
        .filter(|r| r.station == station.name)
        .ok_or_else(|| {
            ApiError::not_found(format!("выгрузка {id} не найдена / upload {id} not found"))
        })
}
