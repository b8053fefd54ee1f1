//! The station's record of one bundle's upload, kept next to the bundle and
//! never inside it (the bundle stays byte-identical to what the server
//! stores): `OUT/.lab-upload/<bundle>.json` (what happened: upload id, state,
//! last error, the acknowledgement), `<bundle>.files.json` (the hash cache,
//! `files.rs`) and `<bundle>.lock`, held with an exclusive `flock` for as
//! long as one uploader works on the bundle. The folder is dot-named and
//! holds no `manifest.json`, so neither the recorder nor lab-web's watcher
//! takes it for a bundle. Bytes received are not recorded here: the server's
//! answer is the truth about those.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use lab_model::BundleError;
use lab_model::bundle::write_atomic;
use serde::{Deserialize, Serialize};

/// The folder in `OUT` that holds the upload records.
pub const STATE_DIR: &str = ".lab-upload";
/// Bumped when the shape of [`UploadRecord`] changes.
pub const STATE_FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0} is already being uploaded (pid {1})")]
    Busy(String, String),
    #[error("{0} is not a folder (a link?); it keeps the station's upload records")]
    NotAFolder(PathBuf),
    #[error("failed to use {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not an upload record this recorder reads")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] BundleError),
}

/// Where an upload stands, as the station sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Queued,
    Hashing,
    Uploading,
    Acknowledged,
    Refused,
}

/// The lab server's acknowledgement: the bundle is verified, placed and
/// imported (or purged, for a withdrawn participant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRecord {
    pub at_ms: u64,
    /// The id lab-web lists the session under.
    pub server_session_id: String,
    pub withdrawn: bool,
}

/// `OUT/.lab-upload/<bundle>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub format_version: u32,
    /// The bundle's folder name.
    pub bundle: String,
    pub session_id: String,
    /// The server the upload goes to (`LabClient::server`).
    pub server: String,
    pub upload_id: Option<i64>,
    pub state: Phase,
    /// Failed tries since the last progress.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_try_at_ms: Option<u64>,
    pub acknowledged: Option<AckRecord>,
    /// When the station's copy was deleted after the acknowledgement.
    pub deleted_at_ms: Option<u64>,
}

impl UploadRecord {
    pub fn new(bundle: &str, server: &str) -> Self {
        Self {
            format_version: STATE_FORMAT_VERSION,
            bundle: bundle.into(),
            session_id: String::new(),
            server: server.into(),
            upload_id: None,
            state: Phase::Queued,
            attempts: 0,
            last_error: None,
            next_try_at_ms: None,
            acknowledged: None,
            deleted_at_ms: None,
        }
    }
}

/// The upload records of one bundle, locked: only one uploader at a time
/// (the console and a shell may both try). Unlocked on drop.
#[derive(Debug)]
pub struct StateLock {
    dir: PathBuf,
    bundle: String,
    /// Holds the `flock`.
    _lock: File,
}

impl StateLock {
    /// Takes the lock of bundle folder `bundle` in `out_dir`, creating
    /// `out_dir/.lab-upload` (0700) if needed. Another holder is refused at
    /// once with its pid, never waited for.
    pub fn acquire(out_dir: &Path, bundle: &str) -> Result<Self, StateError> {
        let dir = out_dir.join(STATE_DIR);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
        if !fs::symlink_metadata(&dir)
            .map_err(io_err(&dir))?
            .file_type()
            .is_dir()
        {
            return Err(StateError::NotAFolder(dir));
        }
        let path = dir.join(format!("{bundle}.lock"));
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                let pid = pid.trim();
                let pid = if pid.is_empty() { "unknown" } else { pid };
                return Err(StateError::Busy(bundle.into(), pid.into()));
            }
            return Err(io_err(&path)(e));
        }
        // Who holds it, for the next one's message.
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .map_err(io_err(&path))?;
        Ok(Self {
            dir,
            bundle: bundle.into(),
            _lock: lock,
        })
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.bundle))
    }

    /// The hash cache (`files::HashCache`).
    pub fn files_path(&self) -> PathBuf {
        self.dir.join(format!("{}.files.json", self.bundle))
    }

    /// The record, or `None` when this bundle was never uploaded from here.
    pub fn load(&self) -> Result<Option<UploadRecord>, StateError> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Parse { path, source })
    }

    /// Replaces the record atomically.
    pub fn save(&self, record: &UploadRecord) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(record).expect("records serialise");
        bytes.push(b'\n');
        write_atomic(&self.state_path(), &bytes)?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, for the record.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::tests::temp_dir;

    #[test]
    fn a_record_round_trips_and_stays_outside_the_bundle() {
        let out = temp_dir("state");
        fs::create_dir(out.join("B1")).unwrap();
        let lock = StateLock::acquire(&out, "B1").unwrap();
        assert_eq!(lock.load().unwrap(), None);
        let mut r = UploadRecord::new("B1", "http://lab:8080");
        r.session_id = "B1".into();
        r.upload_id = Some(12);
        r.state = Phase::Acknowledged;
        r.acknowledged = Some(AckRecord {
            at_ms: 5,
            server_session_id: "B1.lab-2".into(),
            withdrawn: false,
        });
        lock.save(&r).unwrap();
        assert_eq!(lock.load().unwrap(), Some(r.clone()));
        let text = fs::read_to_string(out.join(".lab-upload/B1.json")).unwrap();
        assert!(text.contains("\"state\": \"acknowledged\""), "{text}");
        assert!(text.contains("\"deleted_at_ms\": null"), "{text}");
        // Nothing was written into the bundle.
        assert_eq!(fs::read_dir(out.join("B1")).unwrap().count(), 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(out.join(STATE_DIR))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // A record that is not JSON is an error naming the file, not a fresh start.
        fs::write(lock.state_path(), b"{").unwrap();
        let e = lock.load().unwrap_err().to_string();
        assert!(e.contains("B1.json"), "{e}");
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_second_uploader_of_the_same_bundle_is_refused_with_the_first_ones_pid() {
        let out = temp_dir("flock");
        let first = StateLock::acquire(&out, "B1").unwrap();
        let e = StateLock::acquire(&out, "B1").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, StateError::Busy(..)), "{text}");
        assert!(text.contains("already being uploaded"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        // Another bundle in the same folder is not locked by it.
        let other = StateLock::acquire(&out, "B2").unwrap();
        drop(other);
        drop(first);
        StateLock::acquire(&out, "B1").unwrap();
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_linked_state_folder_is_refused() {
        let out = temp_dir("statelink");
        let elsewhere = temp_dir("statelink-target");
        std::os::unix::fs::symlink(&elsewhere, out.join(STATE_DIR)).unwrap();
        let e = StateLock::acquire(&out, "B1").unwrap_err();
        assert!(matches!(e, StateError::NotAFolder(_)), "{e}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        fs::remove_dir_all(&out).unwrap();
        fs::remove_dir_all(&elsewhere).unwrap();
    }
}
