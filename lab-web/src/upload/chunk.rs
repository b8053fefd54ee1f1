//! One chunk of one file: written at the held length, synced, and the
//! file verified against its SHA-256 when it is full.

use std::os::unix::fs::FileExt;
use std::path::Path;

use axum::http::StatusCode;
use lab_model::upload::ChunkAck;
use sha2::{Digest, Sha256};

use super::common::*;
use super::receive::find;
use crate::bundle_files::{self};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;
use crate::store::uploads::FileRow;

/// `PUT /uploads/{id}/files/{path}?offset=N`: one chunk of one file.
pub async fn put_chunk(
    state: &AppState,
    station: Station<'_>,
    id: i64,
    path: &str,
    offset: u64,
    body: axum::body::Bytes,
) -> ApiResult<ChunkAck> {
    find(state, station, id).await?;
    if !lab_model::upload::valid_upload_path(path) {
        return Err(unprocessable(
            "bad_path",
            format!("{path:?} is not a path a bundle may hold"),
        ));
    }
    let _guard = exclusive(state, id).await;
    let row = find(state, station, id).await?;
    let file = store::uploads::file_of(&state.db.pool, id, path)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{path} is not in upload {id}")))?;
    if row.status != "receiving" {
        if file.verified || row.status == "imported" {
            return Ok(ChunkAck {
                path: path.into(),
                received: file.size,
                verified: true,
            });
        }
        return Err(conflict(
            "not_receiving",
            format!("upload {id} is {}; no more bytes are taken", row.status),
        ));
    }
    let base = state.config.sessions_dir.clone();
    let rel = staged(id, path);
    let len = body.len() as u64;
    let (received, verified) =
        blocking(move || write_chunk(&base, &rel, &file, offset, &body)).await?;
    let pool = &state.db.pool;
    if verified {
        store::uploads::set_verified(pool, id, path, true).await?;
    }
    store::uploads::add_bytes(pool, id, len, now_ms()).await?;
    Ok(ChunkAck {
        path: path.into(),
        received,
        verified,
    })
}

/// Writes one chunk durably; (bytes held, verified). A full file whose
/// SHA-256 is not the declared one is emptied and refused.
fn write_chunk(
    base: &Path,
    rel: &str,
    file: &FileRow,
    offset: u64,
    body: &[u8],
) -> ApiResult<(u64, bool)> {
    let (f, _) = bundle_files::open_for_append(base, rel).map_err(file_error)?;
    // One writer per file, also across lab-web processes on one database.
    // SAFETY: flock on a descriptor we own; released when `f` is closed.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        return Err(ApiError::Busy);
    }
    let io = |e: std::io::Error| {
        ApiError::Internal(anyhow::Error::new(e).context(format!("writing {rel}")))
    };
    // The length under the lock is what the server holds.
    let held = f.metadata().map_err(io)?.len();
    let name = &file.path;
    if offset != held {
        return Err(conflict(
            "offset_mismatch",
            format!(
                "сервер хранит {held} байт {name} / the server holds {held} bytes of {name}; send from there"
            ),
        ));
    }
    let end = offset + body.len() as u64;
    if end > file.size {
        return Err(too_large(format!(
            "{name} was declared {} bytes; this chunk ends at {end}",
            file.size
        )));
    }
    if !body.is_empty() {
        f.write_all_at(body, offset).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                ApiError::refused(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "no_space",
                    "на сервере кончилось место / the server's disk is full; the station keeps its copy",
                )
            } else {
                io(e)
            }
        })?;
        f.sync_data().map_err(io)?;
    }
    if end < file.size {
        return Ok((end, false));
    }
    let got = sha256_of_file(&f).map_err(io)?;
    if got != file.sha256 {
        let _ = f.set_len(0);
        let _ = f.sync_data();
        return Err(unprocessable(
            "checksum_mismatch",
            format!(
                "{name}: SHA-256 {got} is not the declared {}; the file was discarded, send it again",
                file.sha256
            ),
        ));
    }
    Ok((end, true))
}

/// SHA-256 of an open file, read from its start.
fn sha256_of_file(f: &std::fs::File) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = f.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex(&h.finalize()))
}
