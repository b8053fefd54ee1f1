//! What the upload's requests share: errors, paths in staging, the per-upload lock.

use std::io::Read;
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use lab_model::upload::{Completed, UploadFile, UploadListError, UploadState};
use sha2::{Digest, Sha256};

use crate::bundle_files::{self, BundleFileError};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::uploads::UploadRow;

/// A station, as its token says.
#[derive(Debug, Clone, Copy)]
pub struct Station<'a> {
    pub token_id: i64,
    pub name: &'a str,
}

pub(super) fn hex(bytes: &[u8]) -> String {
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

pub(super) fn unprocessable(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::refused(StatusCode::UNPROCESSABLE_ENTITY, code, msg)
}

pub(super) fn conflict(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::refused(StatusCode::CONFLICT, code, msg)
}

pub(super) fn too_large(msg: impl Into<String>) -> ApiError {
    ApiError::refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg)
}

pub(super) fn list_error(e: UploadListError) -> ApiError {
    match e {
        UploadListError::TooMany(_)
        | UploadListError::ManifestTooLarge(_)
        | UploadListError::FileTooLarge(..) => too_large(e.to_string()),
        UploadListError::BadPath(_) | UploadListError::FileAndFolder(_) => {
            unprocessable("bad_path", e.to_string())
        }
        _ => unprocessable("bad_list", e.to_string()),
    }
}

pub(super) fn file_error(e: BundleFileError) -> ApiError {
    match e {
        BundleFileError::Symlink(_) | BundleFileError::HardLinked(..) => {
            unprocessable("symlink", e.to_string())
        }
        BundleFileError::BadPath(_) => unprocessable("bad_path", e.to_string()),
        BundleFileError::NotRegular(_) => unprocessable("symlink", e.to_string()),
        e => ApiError::Internal(anyhow::Error::new(e)),
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
}

pub(super) fn staging(state: &AppState, id: i64) -> PathBuf {
    state.incoming_dir().join(id.to_string())
}

/// `rel` of upload `id`, relative to the sessions folder: what
/// `bundle_files::open_for_append` walks without following links.
pub(super) fn staged(id: i64, rel: &str) -> String {
    format!(".incoming/{id}/{rel}")
}

/// Serialises the requests of one upload in this process (a changed list,
/// a chunk, the completion); the file `flock` and the UNIQUE columns keep
/// several lab-web processes apart.
pub(super) async fn exclusive(state: &AppState, id: i64) -> tokio::sync::OwnedMutexGuard<()> {
    let m = state
        .upload_locks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id)
        .or_default()
        .clone();
    m.lock_owned().await
}

/// Bytes of `rel` the staging folder holds (0 if absent).
pub(super) fn held(dir: &Path, rel: &str) -> Result<u64, BundleFileError> {
    match bundle_files::open(dir, rel) {
        Ok((_, len)) => Ok(len),
        Err(BundleFileError::NotFound(_)) => Ok(0),
        Err(e) => Err(e),
    }
}

pub(super) fn sha256_of(dir: &Path, rel: &str) -> Result<String, BundleFileError> {
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
pub(super) fn free_bytes(dir: &Path) -> std::io::Result<u64> {
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

pub(super) fn completed(row: &UploadRow, already: bool) -> Completed {
    Completed {
        session_id: row
            .assigned_id
            .clone()
            .unwrap_or_else(|| row.session_id.clone()),
        withdrawn: row.withdrawn,
        already,
    }
}

pub(super) fn state_of(row: &UploadRow) -> UploadState {
    match row.status.as_str() {
        "imported" => UploadState::Imported,
        "placing" => UploadState::Placing,
        _ => UploadState::Receiving,
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
