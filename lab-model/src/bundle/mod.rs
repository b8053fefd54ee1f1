//! The session bundle: a directory holding `manifest.json`, `events.jsonl`
//! and `media/` segments. The manifest is always replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory) so a crash leaves
//! either the old or the new manifest, never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::event::Event;

/// Value of `format` in every manifest.
pub const BUNDLE_FORMAT: &str = "lab-session-bundle";
/// Bumped whenever the saved shape of the manifest or events changes.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const MEDIA_DIR: &str = "media";
/// Where `Bundle::repair_torn_events` keeps the torn tail of `events.jsonl`.
pub const TORN_EVENTS_FILE: &str = "events.jsonl.torn";
/// Space the recorder holds while recording and frees on "disk full", so
/// the final manifest still fits; removed when the recording ends.
pub const RESERVE_FILE: &str = ".reserve";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid manifest")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} has format {found:?} version {version}, expected {BUNDLE_FORMAT:?} version <= {BUNDLE_FORMAT_VERSION}"
    )]
    Version {
        path: PathBuf,
        found: String,
        version: u32,
    },
    #[error("{path} is not a manifest this lab accepts")]
    Invalid {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error("{path} is {len} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge { path: PathBuf, len: u64 },
    #[error("{path} {what}; a bundle may hold only folders and plain files with one link")]
    Unsafe { path: PathBuf, what: &'static str },
    #[error("{path} holds more than {limit} entries (or is nested deeper than {depth})")]
    TooMany {
        path: PathBuf,
        limit: usize,
        depth: usize,
    },
    #[error("{path} line {line}: invalid event")]
    Event {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

pub mod limits;
pub(crate) mod manifest;
pub mod sensors;

pub use limits::MAX_MANIFEST_BYTES;
pub use manifest::*;
pub use sensors::{SENSORS_DIR, SensorTrack};

/// A bundle directory on disk.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.join(EVENTS_FILE)
    }

    pub fn media_dir(&self) -> PathBuf {
        self.dir.join(MEDIA_DIR)
    }

    /// Refuses a bundle holding anything but real folders and regular files
    /// with a single link: a symlink, a hard link (to a server file such as
    /// lab-web's database), a FIFO (which would hang a reader) or a device.
    /// The analyzer runs this before it reads or writes anything, so it
    /// never reads a segment or writes a result through a link that leads
    /// outside the bundle. (What lab-web reads and serves is opened without
    /// following links as well: `lab-web/src/bundle_files.rs`.)
    pub fn check_contents(&self) -> Result<(), BundleError> {
        use std::os::unix::fs::MetadataExt;
        const MAX_ENTRIES: usize = 1_000_000;
        const MAX_DEPTH: usize = 8;
        let unsafe_at = |path: &Path, what| BundleError::Unsafe {
            path: path.to_path_buf(),
            what,
        };
        let meta = fs::symlink_metadata(&self.dir).map_err(|source| BundleError::Read {
            path: self.dir.clone(),
            source,
        })?;
        if !meta.file_type().is_dir() {
            return Err(unsafe_at(&self.dir, "is not a folder (a link?)"));
        }
        let mut stack = vec![(self.dir.clone(), 0usize)];
        let mut seen = 0usize;
        while let Some((dir, depth)) = stack.pop() {
            let entries = fs::read_dir(&dir).map_err(|source| BundleError::Read {
                path: dir.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| BundleError::Read {
                    path: dir.clone(),
                    source,
                })?;
                seen += 1;
                if seen > MAX_ENTRIES || depth >= MAX_DEPTH {
                    return Err(BundleError::TooMany {
                        path: self.dir.clone(),
                        limit: MAX_ENTRIES,
                        depth: MAX_DEPTH,
                    });
                }
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).map_err(|source| BundleError::Read {
                    path: path.clone(),
                    source,
                })?;
                let t = meta.file_type();
                if t.is_symlink() {
                    return Err(unsafe_at(&path, "is a symbolic link"));
                } else if t.is_dir() {
                    stack.push((path, depth + 1));
                } else if !t.is_file() {
                    return Err(unsafe_at(
                        &path,
                        "is not a regular file (a FIFO, socket or device)",
                    ));
                } else if meta.nlink() != 1 {
                    return Err(unsafe_at(&path, "has more than one hard link"));
                }
            }
        }
        Ok(())
    }

    /// Reads, parses and validates the manifest ([`Manifest::validate`]).
    pub fn read_manifest(&self) -> Result<Manifest, BundleError> {
        let path = self.manifest_path();
        let bytes = read_limited(&path, MAX_MANIFEST_BYTES)?;
        let manifest = parse_manifest(&bytes).map_err(|e| e.at(&path))?;
        Ok(manifest)
    }

    /// Replaces the manifest atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), BundleError> {
        let mut bytes = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
        bytes.push(b'\n');
        write_atomic(&self.manifest_path(), &bytes)
    }

    /// Reads every event. A torn last line (the process died mid-write, before
    /// the event was acknowledged) is skipped and counted in the second value;
    /// a bad line anywhere else is an error naming the line. See [`parse_events`].
    pub fn read_events(&self) -> Result<(Vec<Event>, usize), BundleError> {
        let path = self.events_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(source) => return Err(BundleError::Read { path, source }),
        };
        parse_events(&bytes).map_err(|e| BundleError::Event {
            path,
            line: e.line,
            source: e.source,
        })
    }

    /// Path of the file that keeps a torn tail cut off `events.jsonl`.
    pub fn torn_events_path(&self) -> PathBuf {
        self.dir.join(TORN_EVENTS_FILE)
    }

    /// Makes `events.jsonl` end on a complete line again after a crash, for
    /// `lab-recorder recover`. A torn tail (bytes after the last newline that
    /// are not a whole event) is appended to `events.jsonl.torn` and synced
    /// before `events.jsonl` is truncated to its last complete line and synced,
    /// so no byte is lost even if this is interrupted (then the tail is in both
    /// files, and the next call moves it again). A complete event that only
    /// lacks its newline gets the newline. Returns the number of bytes moved,
    /// `None` when there was nothing to repair; safe to call again.
    pub fn repair_torn_events(&self) -> Result<Option<usize>, BundleError> {
        let path = self.events_path();
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BundleError::Write { path, source }
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(BundleError::Read { path, source }),
        };
        let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let tail = &bytes[keep..];
        if tail.is_empty() {
            return Ok(None);
        }
        if serde_json::from_slice::<Event>(tail).is_ok() {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(werr(&path))?;
            f.write_all(b"\n").map_err(werr(&path))?;
            f.sync_data().map_err(werr(&path))?;
            return Ok(None);
        }
        let torn_path = self.torn_events_path();
        {
            let mut t = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&torn_path)
                .map_err(werr(&torn_path))?;
            t.write_all(tail).map_err(werr(&torn_path))?;
            t.sync_all().map_err(werr(&torn_path))?;
        }
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(werr(&path))?;
        f.set_len(keep as u64).map_err(werr(&path))?;
        f.sync_all().map_err(werr(&path))?;
        // The new `.torn` file's directory entry; not worth failing the repair over.
        let _ = File::open(&self.dir).and_then(|d| d.sync_all());
        Ok(Some(tail.len()))
    }
}

/// A line of `events.jsonl` that is not an event (1-based line number).
#[derive(Debug, thiserror::Error)]
#[error("line {line}: invalid event")]
pub struct EventLineError {
    pub line: usize,
    #[source]
    pub source: serde_json::Error,
}

/// Parses the bytes of `events.jsonl`: one JSON event per `\n`-terminated line;
/// blank lines are skipped. The last line, when it lacks its newline and is
/// not an event, is torn (the writer died mid-write, before acknowledging it):
/// it is skipped and counted in the second value. Any other bad line, including
/// one that is not UTF-8, is an error naming the line. Works on bytes because a
/// torn line can end inside a multi-byte character.
pub fn parse_events(bytes: &[u8]) -> Result<(Vec<Event>, usize), EventLineError> {
    let mut events = Vec::new();
    let mut torn = 0;
    let mut lines = bytes.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        // `split` yields one piece after the last newline: empty when the file
        // ends on a newline, the torn tail otherwise.
        let unterminated = lines.peek().is_none();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > limits::MAX_EVENT_LINE_BYTES {
            // Bounded before parsing: one huge line of `[0,0,…]` in `data`
            // would take ~16 times its size in memory as a JSON value.
            if unterminated {
                torn += 1;
                continue;
            }
            return Err(EventLineError {
                line: i + 1,
                source: <serde_json::Error as serde::de::Error>::custom(format!(
                    "the line is {} bytes, more than the {}-byte limit",
                    line.len(),
                    limits::MAX_EVENT_LINE_BYTES
                )),
            });
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(e) => events.push(e),
            Err(_) if unterminated => torn += 1,
            Err(source) => {
                return Err(EventLineError {
                    line: i + 1,
                    source,
                });
            }
        }
    }
    Ok((events, torn))
}

/// What [`parse_manifest`] refuses, before it is tied to a path.
#[derive(Debug)]
pub enum ManifestParseError {
    Parse(serde_json::Error),
    Version { found: String, version: u32 },
    Invalid(ManifestError),
}

impl ManifestParseError {
    /// The error naming the manifest file it came from.
    pub fn at(self, path: &Path) -> BundleError {
        let path = path.to_path_buf();
        match self {
            Self::Parse(source) => BundleError::Parse { path, source },
            Self::Version { found, version } => BundleError::Version {
                path,
                found,
                version,
            },
            Self::Invalid(source) => BundleError::Invalid { path, source },
        }
    }
}

/// Parses the bytes of `manifest.json`, checks format and version, and
/// validates it: everything [`Bundle::read_manifest`] does but the reading.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ManifestParseError> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(ManifestParseError::Parse)?;
    if manifest.format != BUNDLE_FORMAT || manifest.format_version > BUNDLE_FORMAT_VERSION {
        return Err(ManifestParseError::Version {
            found: manifest.format,
            version: manifest.format_version,
        });
    }
    manifest.validate().map_err(ManifestParseError::Invalid)?;
    Ok(manifest)
}

/// Reads a whole file that must not be larger than `limit` bytes.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, BundleError> {
    use std::io::Read;
    let rerr = |source| BundleError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(rerr)?;
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes).map_err(rerr)?;
    if bytes.len() as u64 > limit {
        return Err(BundleError::TooLarge {
            path: path.to_path_buf(),
            len: f_len(path).unwrap_or(bytes.len() as u64),
        });
    }
    Ok(bytes)
}

fn f_len(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.len())
}

/// Writes `bytes` to a new file at `path`, replacing whatever was there
/// (a link at `path` is removed, never followed). Not atomic: for files that
/// are written once and listed in a manifest only afterwards.
pub fn write_fresh(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)
}

/// Writes `bytes` to `path` so that readers see either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let err = |source| BundleError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        // A fresh file, never one reached through a link planted at the
        // temporary name (create_new does not follow links).
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_data().map_err(err)?;
    }
    fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable; failure here is not worth losing the write over.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
