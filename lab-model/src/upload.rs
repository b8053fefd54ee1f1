//! The station → lab server upload protocol (version 1), typed once for both
//! sides: `lab-recorder upload` (and the station console) and lab-web's
//! `/api/v1/uploads` routes. The exchange is documented in
//! `docs/upload-protocol.md`:
//!
//! 1. `POST /uploads` with an [`UploadRequest`] (every file of the bundle with
//!    its size and SHA-256) answers an [`UploadStatus`]: per file, how many
//!    bytes the server already holds and whether it verified them;
//! 2. `PUT /uploads/{id}/files/{path}?offset=N` appends one chunk (at most
//!    [`CHUNK_BYTES`]) at exactly the length the server holds, answering a
//!    [`ChunkAck`]; a file is verified against its SHA-256 once it is full;
//! 3. `POST /uploads/{id}/complete` places the verified bundle in the sessions
//!    folder and imports it, answering [`Completed`]. Repeating any step is
//!    harmless, so a station that lost its connection or its memory resumes.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::bundle::MANIFEST_FILE;
use crate::bundle::limits::MAX_MANIFEST_BYTES;
use crate::bundle::limits::safe_component;

pub const UPLOAD_PROTOCOL_VERSION: u32 = 1;
/// The most bytes one `PUT` carries (the server refuses more).
pub const CHUNK_BYTES: u64 = 8 << 20;
/// Files in one upload: a two-hour session has about 7,200 segments and
/// analysis files; this leaves room for a day-long one.
pub const MAX_UPLOAD_FILES: usize = 250_000;
/// Folder depth of a path in a bundle (as `Bundle::check_contents` allows).
pub const MAX_PATH_DEPTH: usize = 8;
/// Bytes of one path in a bundle.
pub const MAX_PATH_BYTES: usize = 1024;
/// The largest file an upload may list (1 TiB): with [`MAX_UPLOAD_FILES`]
/// the sum of all sizes stays far inside `i64`, where the server keeps it.
pub const MAX_FILE_BYTES: u64 = 1 << 40;

/// `POST /uploads`: what the station is about to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    pub protocol: u32,
    /// The manifest's session id (checked against the manifest on completion).
    pub session_id: String,
    pub files: Vec<UploadFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadFile {
    /// Relative to the bundle folder, `/`-separated ([`valid_upload_path`]).
    pub path: String,
    pub size: u64,
    /// SHA-256 of the whole file, 64 lower-case hex digits.
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Files are arriving.
    Receiving,
    /// Every file is verified; the bundle is being placed and imported.
    Placing,
    /// In the sessions folder and imported (or purged: a withdrawn participant).
    Imported,
}

/// The server's view of an upload: the answer to `POST /uploads` and
/// `GET /uploads/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    pub upload_id: i64,
    pub session_id: String,
    pub status: UploadState,
    /// The most bytes the server takes in one `PUT`.
    pub chunk_bytes: u64,
    pub files: Vec<FileStatus>,
    /// Set once imported.
    pub imported: Option<Completed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStatus {
    pub path: String,
    pub size: u64,
    /// Bytes the server holds (durably); the next `PUT` starts here.
    pub received: u64,
    pub verified: bool,
}

/// The answer to one `PUT` chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkAck {
    pub path: String,
    pub received: u64,
    pub verified: bool,
}

/// The acknowledgement: after it, the station may delete its copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    /// The id lab-web lists the session under: the manifest's id, or
    /// `<id>.<station>` when another station's session already has it.
    pub session_id: String,
    /// The participant had withdrawn: the server keeps nothing of it.
    pub withdrawn: bool,
    /// This upload had already been completed before this call.
    #[serde(default)]
    pub already: bool,
}

/// A path a bundle may hold: 1–[`MAX_PATH_DEPTH`] `/`-separated parts, each a
/// plain ASCII name (`[A-Za-z0-9._-]`, not starting with a dot), so no `..`,
/// no hidden or transient files, no backslash and nothing absolute.
pub fn valid_upload_path(path: &str) -> bool {
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return false;
    }
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() <= MAX_PATH_DEPTH && parts.iter().all(|p| safe_component(p, 255, true))
}

/// Whether a SHA-256 is written as this protocol writes it.
pub fn valid_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadListError {
    #[error("protocol {0} is not spoken here (this side speaks {UPLOAD_PROTOCOL_VERSION})")]
    Protocol(u32),
    #[error("session id {0:?} is not a plain name")]
    SessionId(String),
    #[error("the upload lists no files")]
    Empty,
    #[error("the upload lists {0} files; at most {MAX_UPLOAD_FILES} are taken")]
    TooMany(usize),
    #[error(
        "{0:?} is not a path a bundle may hold (plain ASCII names, no dot first, at most {MAX_PATH_DEPTH} levels)"
    )]
    BadPath(String),
    #[error("{0:?} is listed twice")]
    Duplicate(String),
    #[error("{0:?} is listed both as a file and as a folder")]
    FileAndFolder(String),
    #[error("{0:?}: {1:?} is not a SHA-256 in lower-case hex")]
    BadSha(String, String),
    #[error("the bundle has no manifest.json")]
    NoManifest,
    #[error("manifest.json is {0} bytes; at most {MAX_MANIFEST_BYTES} are read")]
    ManifestTooLarge(u64),
    #[error("{0:?} is {1} bytes; a file of at most {MAX_FILE_BYTES} bytes is taken")]
    FileTooLarge(String, u64),
}

impl UploadRequest {
    /// Every rule a file list must meet before a byte is sent; the first
    /// broken one, naming what broke it.
    pub fn check(&self) -> Result<(), UploadListError> {
        if self.protocol != UPLOAD_PROTOCOL_VERSION {
            return Err(UploadListError::Protocol(self.protocol));
        }
        if !crate::bundle::manifest::valid_session_id(&self.session_id) {
            return Err(UploadListError::SessionId(self.session_id.clone()));
        }
        if self.files.is_empty() {
            return Err(UploadListError::Empty);
        }
        if self.files.len() > MAX_UPLOAD_FILES {
            return Err(UploadListError::TooMany(self.files.len()));
        }
        let mut paths = HashSet::with_capacity(self.files.len());
        for f in &self.files {
            if !valid_upload_path(&f.path) {
                return Err(UploadListError::BadPath(f.path.clone()));
            }
            if !valid_sha256(&f.sha256) {
                return Err(UploadListError::BadSha(f.path.clone(), f.sha256.clone()));
            }
            if f.size > MAX_FILE_BYTES {
                return Err(UploadListError::FileTooLarge(f.path.clone(), f.size));
            }
            if !paths.insert(f.path.as_str()) {
                return Err(UploadListError::Duplicate(f.path.clone()));
            }
        }
        for f in &self.files {
            // Every folder above a file must not itself be a listed file.
            let mut end = 0;
            while let Some(i) = f.path[end..].find('/') {
                end += i;
                if paths.contains(&f.path[..end]) {
                    return Err(UploadListError::FileAndFolder(f.path[..end].to_string()));
                }
                end += 1;
            }
        }
        let manifest = self
            .files
            .iter()
            .find(|f| f.path == MANIFEST_FILE)
            .ok_or(UploadListError::NoManifest)?;
        if manifest.size > MAX_MANIFEST_BYTES {
            return Err(UploadListError::ManifestTooLarge(manifest.size));
        }
        Ok(())
    }

    /// The sum of the sizes (saturating: a list that passed [`Self::check`]
    /// never reaches it).
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |sum, f| sum.saturating_add(f.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn file(path: &str) -> UploadFile {
        UploadFile {
            path: path.into(),
            size: 10,
            sha256: SHA.into(),
        }
    }

    fn request(paths: &[&str]) -> UploadRequest {
        UploadRequest {
            protocol: UPLOAD_PROTOCOL_VERSION,
            session_id: "20261123T101500Z-P07".into(),
            files: paths.iter().map(|p| file(p)).collect(),
        }
    }

    #[test]
    fn paths_a_bundle_holds_are_taken() {
        for p in [
            "manifest.json",
            "events.jsonl",
            "events.jsonl.torn",
            "media/main-00001.mkv",
            "analysis/web/thumbs/000010.jpg",
            "a/b/c/d/e/f/g/h",
        ] {
            assert!(valid_upload_path(p), "{p}");
        }
    }

    #[test]
    fn paths_that_escape_hide_or_smuggle_are_refused() {
        let long = "x".repeat(256);
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a/",
            ".reserve",
            "media/.x",
            "a\\b",
            "a\nb",
            "медиа/x",
            "a b",
            long.as_str(),
            "a/b/c/d/e/f/g/h/i",
        ] {
            assert!(!valid_upload_path(p), "{p:?}");
        }
    }

    #[test]
    fn a_file_list_is_checked_before_anything_is_sent() {
        assert_eq!(request(&["manifest.json", "media/a.mkv"]).check(), Ok(()));
        assert_eq!(
            request(&["media/a.mkv"]).check(),
            Err(UploadListError::NoManifest)
        );
        assert_eq!(
            request(&["manifest.json", "x", "x"]).check(),
            Err(UploadListError::Duplicate("x".into()))
        );
        assert_eq!(
            request(&["manifest.json", "media", "media/a"]).check(),
            Err(UploadListError::FileAndFolder("media".into()))
        );
        assert_eq!(
            request(&["manifest.json", "a/b", "a/b/c/d"]).check(),
            Err(UploadListError::FileAndFolder("a/b".into()))
        );
        assert_eq!(
            request(&["manifest.json", "../x"]).check(),
            Err(UploadListError::BadPath("../x".into()))
        );
        assert_eq!(request(&[]).check(), Err(UploadListError::Empty));
        let mut r = request(&["manifest.json"]);
        r.files[0].sha256 = SHA.to_uppercase();
        assert!(matches!(r.check(), Err(UploadListError::BadSha(..))));
        let mut r = request(&["manifest.json"]);
        r.protocol = 2;
        assert_eq!(r.check(), Err(UploadListError::Protocol(2)));
        let mut r = request(&["manifest.json"]);
        r.session_id = "../x".into();
        assert!(matches!(r.check(), Err(UploadListError::SessionId(_))));
        let mut r = request(&["manifest.json", "media/a.mkv"]);
        r.files[1].size = 1 << 62;
        assert!(
            matches!(r.check(), Err(UploadListError::FileTooLarge(..))),
            "sizes cannot wrap a sum"
        );
        r.files[1].size = u64::MAX;
        assert_eq!(r.total_bytes(), u64::MAX);
        let mut r = request(&["manifest.json"]);
        r.files[0].size = MAX_MANIFEST_BYTES + 1;
        assert!(matches!(
            r.check(),
            Err(UploadListError::ManifestTooLarge(_))
        ));
        assert_eq!(request(&["manifest.json", "media/a.mkv"]).total_bytes(), 20);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let bad = r#"{"protocol":1,"session_id":"x","files":[],"extra":1}"#;
        assert!(serde_json::from_str::<UploadRequest>(bad).is_err());
    }
}
