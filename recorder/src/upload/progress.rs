//! What an upload reports while it runs: a [`Progress`] snapshot (for the
//! CLI's progress line and, later, the station console's upload queue) and
//! [`Note`]s, the lines a person should read (retries, a resumed file, a
//! deleted copy). The uploader only sends them; its caller prints them.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::state::Phase;

/// Where an upload is, for a progress line or the console's queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub phase: Phase,
    /// Bytes hashed (while hashing) or held by the server (while uploading).
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: usize,
    pub files_total: usize,
    pub current: Option<String>,
    pub last_error: Option<String>,
    pub next_try_at: Option<SystemTime>,
}

/// Something the person running the upload should read, one line each.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// `read` of `files` files were hashed (the others were unchanged since
    /// an earlier run hashed them).
    Hashed {
        read: usize,
        files: usize,
        bytes: u64,
    },
    /// A file's first `PUT` of this run starts after bytes the server holds.
    Resuming {
        path: String,
        offset: u64,
    },
    Retrying {
        error: String,
        delay: Duration,
    },
    /// The server discarded a file whose bytes did not hash as declared.
    Resending {
        path: String,
        changed: bool,
    },
    Deleted {
        path: PathBuf,
        withdrawn: bool,
    },
    NotDeleted {
        path: PathBuf,
        error: String,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hashed { read, files, bytes } => {
                write!(f, "hashed {read} of {files} files ({})", mib(*bytes))
            }
            Self::Resuming { path, offset } => write!(f, "resuming {path} at {offset}"),
            Self::Retrying { error, delay } => {
                write!(f, "{error}; trying again in {:.1} s", delay.as_secs_f64())
            }
            Self::Resending {
                path,
                changed: false,
            } => write!(
                f,
                "the server's copy of {path} did not match its SHA-256; sending it once more"
            ),
            Self::Resending {
                path,
                changed: true,
            } => write!(
                f,
                "{path} changed since it was hashed; sending it with its new SHA-256"
            ),
            Self::Deleted {
                path,
                withdrawn: false,
            } => {
                write!(f, "deleted the station copy {}", path.display())
            }
            Self::Deleted {
                path,
                withdrawn: true,
            } => write!(
                f,
                "the participant withdrew consent and lab-web keeps nothing of this session; deleted the station copy {}",
                path.display()
            ),
            Self::NotDeleted { path, error } => write!(
                f,
                "acknowledged, but the station copy {} could not be deleted ({error}); run again to retry",
                path.display()
            ),
        }
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}
