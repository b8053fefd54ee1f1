//! Bundles uploaded by stations (`docs/upload-protocol.md`): the service
//! behind `/api/v1/uploads`.
//!
//! Files arrive in `SESSIONS/.incoming/<upload id>/`, chunk by chunk, each
//! chunk written at exactly the length the server already holds and
//! `fdatasync`ed before it is acknowledged; the staging file's length is
//! the truth about what arrived, so a killed server or station resumes
//! there. A full file is checked against its declared SHA-256 (a mismatch
//! discards it). Completion checks every file and the manifest, reserves
//! the id the session gets (the manifest's, or `<id>.<station>` when another
//! station's session has it), records where it goes, renames the staging
//! folder into the sessions folder and imports it. Every step can be
//! repeated, and a restart finishes a placement it interrupted
//! ([`reconcile`]), so a bundle is imported exactly once.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::http::StatusCode;
use lab_model::upload::{
    CHUNK_BYTES, ChunkAck, Completed, FileStatus, UploadFile, UploadListError, UploadRequest,
    UploadState, UploadStatus,
};
use sha2::{Digest, Sha256};

use crate::bundle_files::{self, BundleFileError};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::import::Outcome;
use crate::limits;
use crate::state::AppState;
use crate::store;
use crate::store::uploads::{FileRow, UploadRow};

/// A station, as its token says.
#[derive(Debug, Clone, Copy)]
pub struct Station<'a> {
    pub token_id: i64,
    pub name: &'a str,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over the sorted file list: two lists are the same upload if
/// their digests are equal.
pub fn list_digest(files: &[UploadFile]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|f| format!("{}\0{}\0{}\n", f.path, f.size, f.sha256))
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
    }
    hex(&h.finalize())
}

fn unprocessable(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::refused(StatusCode::UNPROCESSABLE_ENTITY, code, msg)
}

fn conflict(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::refused(StatusCode::CONFLICT, code, msg)
}

fn too_large(msg: impl Into<String>) -> ApiError {
    ApiError::refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg)
}

fn list_error(e: UploadListError) -> ApiError {
    let code = match e {
        UploadListError::BadPath(_) | UploadListError::FileAndFolder(_) => "bad_path",
        UploadListError::TooMany(_) | UploadListError::ManifestTooLarge(_) => "too_large",
        _ => "bad_list",
    };
    unprocessable(code, e.to_string())
}

fn file_error(e: BundleFileError) -> ApiError {
    match e {
        BundleFileError::Symlink(_) | BundleFileError::HardLinked(..) => {
            unprocessable("symlink", e.to_string())
        }
        BundleFileError::BadPath(_) => unprocessable("bad_path", e.to_string()),
        BundleFileError::NotRegular(_) => unprocessable("symlink", e.to_string()),
        e => ApiError::Internal(anyhow::Error::new(e)),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
}

fn staging(state: &AppState, id: i64) -> PathBuf {
    state.incoming_dir().join(id.to_string())
}

/// Bytes of `rel` the staging folder holds (0 if absent).
fn held(dir: &Path, rel: &str) -> Result<u64, BundleFileError> {
    match bundle_files::open(dir, rel) {
        Ok((_, len)) => Ok(len),
        Err(BundleFileError::NotFound(_)) => Ok(0),
        Err(e) => Err(e),
    }
}

fn sha256_of(dir: &Path, rel: &str) -> Result<String, BundleFileError> {
    let (mut file, _) = bundle_files::open(dir, rel)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|source| BundleFileError::Io {
            path: rel.into(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Free bytes on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is NUL-terminated; `st` is plain data statvfs fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

fn completed(row: &UploadRow, already: bool) -> Completed {
    Completed {
        session_id: row
            .assigned_id
            .clone()
            .unwrap_or_else(|| row.session_id.clone()),
        withdrawn: row.withdrawn,
        already,
    }
}

fn state_of(row: &UploadRow) -> UploadState {
    match row.status.as_str() {
        "imported" => UploadState::Imported,
        "placing" => UploadState::Placing,
        _ => UploadState::Receiving,
    }
}

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
    let row = match existing {
        Some(row) if row.status == "receiving" => {
            if row.digest != digest {
                replace_list(state, &row, &req, &digest).await?;
            }
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

async fn check_space(state: &AppState, remaining: u64) -> ApiResult<()> {
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
/// ones start over, vanished ones are removed.
async fn replace_list(
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
    let same = |f: &UploadFile| {
        old.get(&f.path)
            .is_some_and(|o| o.size == f.size && o.sha256 == f.sha256)
    };
    let changed: Vec<String> = old
        .values()
        .filter(|o| {
            !req.files
                .iter()
                .any(|f| f.path == o.path && f.size == o.size && f.sha256 == o.sha256)
        })
        .map(|o| o.path.clone())
        .collect();
    let dir = staging(state, row.id);
    blocking(move || {
        for p in changed {
            match bundle_files::open_for_append(&dir, &p) {
                Ok((f, _)) => f.set_len(0).map_err(|e| ApiError::Internal(e.into()))?,
                Err(BundleFileError::NotFound(_)) => {}
                Err(e) => return Err(file_error(e)),
            }
        }
        Ok(())
    })
    .await?;
    let keep = |f: &UploadFile| same(f) && old.get(&f.path).is_some_and(|o| o.verified);
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

/// `PUT /uploads/{id}/files/{path}?offset=N`: one chunk of one file.
pub async fn put_chunk(
    state: &AppState,
    station: Station<'_>,
    id: i64,
    path: &str,
    offset: u64,
    body: axum::body::Bytes,
) -> ApiResult<ChunkAck> {
    let row = find(state, station, id).await?;
    if !lab_model::upload::valid_upload_path(path) {
        return Err(unprocessable(
            "bad_path",
            format!("{path:?} is not a path a bundle may hold"),
        ));
    }
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
    let dir = staging(state, id);
    let rel = path.to_string();
    let len = body.len() as u64;
    let (received, verified) =
        blocking(move || write_chunk(&dir, &rel, &file, offset, &body)).await?;
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
    dir: &Path,
    rel: &str,
    file: &FileRow,
    offset: u64,
    body: &[u8],
) -> ApiResult<(u64, bool)> {
    let (f, held) = bundle_files::open_for_append(dir, rel).map_err(file_error)?;
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
    if offset != held {
        return Err(conflict(
            "offset_mismatch",
            format!(
                "сервер хранит {held} байт {rel} / the server holds {held} bytes of {rel}; send from there"
            ),
        ));
    }
    let end = offset + body.len() as u64;
    if end > file.size {
        return Err(too_large(format!(
            "{rel} was declared {} bytes; this chunk ends at {end}",
            file.size
        )));
    }
    if !body.is_empty() {
        let io = |e: std::io::Error| {
            ApiError::Internal(anyhow::Error::new(e).context(format!("writing {rel}")))
        };
        f.write_all_at(body, offset).map_err(io)?;
        f.sync_data().map_err(io)?;
    }
    if end < file.size {
        return Ok((end, false));
    }
    let got = sha256_of(dir, rel).map_err(file_error)?;
    if got != file.sha256 {
        let _ = f.set_len(0);
        let _ = f.sync_data();
        return Err(unprocessable(
            "checksum_mismatch",
            format!(
                "{rel}: SHA-256 {got} is not the declared {}; the file was discarded, send it again",
                file.sha256
            ),
        ));
    }
    Ok((end, true))
}

/// `POST /uploads/{id}/complete`: checks, places and imports the bundle; the
/// station's acknowledgement. Repeating it answers the same.
pub async fn complete(state: &AppState, station: Station<'_>, id: i64) -> ApiResult<Completed> {
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
            let dir = staging(state, id);
            blocking(move || {
                crate::withdrawal::purge_bundle_files(&dir);
                Ok(())
            })
            .await?;
            store::uploads::set_imported(pool, id, None, known.withdrawn, now_ms()).await?;
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
                    if let Ok((h, _)) = bundle_files::open_for_append(&dir, &f.path) {
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

/// Whether the bundle in `there` is the recording this upload carries: the
/// same manifest (byte for byte), the same events, and every uploaded file
/// there with the same size. Manifests name the station, the recorder's pid
/// and the times, so two recordings never share one.
fn same_recording(there: &Path, files: &[FileRow], manifest_sha: &str) -> bool {
    let sha_there = |rel: &str| sha256_of(there, rel).ok();
    if sha_there(lab_model::bundle::MANIFEST_FILE).as_deref() != Some(manifest_sha) {
        return false;
    }
    files.iter().all(|f| {
        if f.path == lab_model::bundle::EVENTS_FILE {
            return sha_there(&f.path).as_deref() == Some(f.sha256.as_str());
        }
        held(there, &f.path).is_ok_and(|len| len == f.size)
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
    let (_, outcome) = crate::import::import(state, &target)
        .await
        .map_err(|e| unprocessable("bad_bundle", format!("import: {e:#}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_digest_does_not_depend_on_order() {
        let f = |p: &str, s: u64| UploadFile {
            path: p.into(),
            size: s,
            sha256: "0".repeat(64),
        };
        let a = list_digest(&[f("a", 1), f("b", 2)]);
        assert_eq!(a, list_digest(&[f("b", 2), f("a", 1)]));
        assert_ne!(a, list_digest(&[f("a", 1), f("b", 3)]));
        assert_ne!(a, list_digest(&[f("a", 1)]));
    }
}
