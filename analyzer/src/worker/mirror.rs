//! The worker's copy of a leased bundle: `WORK/bundles/<session>/` made to
//! hold exactly the files lab-web lists, byte for byte.
//!
//! - What is there and matches is kept: a file whose size and mtime are in
//!   the bundle's sums cache (`WORK/sums/<session>.json`, outside the
//!   bundle so neither `lab-analyze run` nor the result sees it) with the
//!   listed SHA-256 is not read again; one of the listed size but unknown
//!   time is hashed, and kept if it matches (cached by content).
//! - What lab-web does not list is deleted, and so is anything that is not
//!   a plain file or folder (a link, a FIFO) or a file with a second hard
//!   link: `lab-analyze run` refuses both (`Bundle::check_contents`).
//! - What is missing or differs is downloaded into `FILE.part` (resumed
//!   from its length with `Range` after a broken connection), hashed while
//!   written, checked against the listed SHA-256, synced and renamed into
//!   place. A mismatch is downloaded once more from scratch; a second one is
//!   [`MirrorError::Mismatch`].

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lab_model::BundleError;
use lab_model::bundle::write_atomic;
use lab_model::worker::LeaseFile;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::api::{Backoff, CallError, Download, hex, sleep_unless};

/// Suffix of a download under way.
pub const PART_SUFFIX: &str = ".part";
/// Bumped when the sums cache changes shape (an old one is ignored).
const SUMS_FORMAT_VERSION: u32 = 1;
const BLOCK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("checksum mismatch: {path}: lab-web listed {listed}, received {received}")]
    Mismatch {
        path: String,
        listed: String,
        received: String,
    },
    #[error("size mismatch: {path}: lab-web listed {listed} bytes and sent more")]
    TooLong { path: String, listed: u64 },
    #[error("cannot write the bundle's copy at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot download {path}: {source}")]
    Call {
        path: String,
        #[source]
        source: CallError,
    },
    #[error("the job was stopped")]
    Stopped,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> MirrorError + '_ {
    move |source| MirrorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How files are fetched, and when to give up.
pub struct Fetcher<'a> {
    /// One file from a byte offset (`Server::open_file` for the job).
    pub fetch: &'a (dyn Fn(&str, u64) -> Result<Download, CallError> + Sync),
    /// The job ended (cancelled, lease lost, worker stopping).
    pub stop: &'a (dyn Fn() -> bool + Sync),
    pub log: &'a (dyn Fn(&str) + Sync),
    /// The wait between tries of one file; reset when bytes arrive.
    pub backoff: Backoff,
    /// Tries in a row without a byte gained before the download fails.
    pub max_tries: u32,
}

/// What a sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Files already there (from the cache or hashed).
    pub kept: usize,
    /// Files read to learn their SHA-256 (not in the cache).
    pub hashed: usize,
    pub downloaded: usize,
    /// Downloads that went on from a `.part`.
    pub resumed: usize,
    /// Files, folders and links removed.
    pub deleted: usize,
    /// Bytes received.
    pub bytes: u64,
}

/// What to do with one thing found in the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A listed file: check it.
    Keep,
    /// `FILE.part` of a listed `FILE`: resume it.
    Partial,
    /// A folder above a listed file.
    Descend,
    Delete,
}

/// What a thing in the copy is (read without following links).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File {
        nlink: u64,
    },
    Dir,
    /// A link, FIFO, socket, device, or a name that is not UTF-8.
    Other,
}

/// The listed paths, and every folder above one.
pub struct Listed<'a> {
    files: HashMap<&'a str, &'a LeaseFile>,
    dirs: HashSet<&'a str>,
}

impl<'a> Listed<'a> {
    pub fn new(files: &'a [LeaseFile]) -> Self {
        let mut dirs = HashSet::new();
        for f in files {
            let mut end = 0;
            while let Some(i) = f.path[end..].find('/') {
                end += i;
                dirs.insert(&f.path[..end]);
                end += 1;
            }
        }
        Self {
            files: files.iter().map(|f| (f.path.as_str(), f)).collect(),
            dirs,
        }
    }

    /// The rule for `rel` (relative to the bundle, `/`-separated).
    pub fn judge(&self, rel: &str, kind: Kind) -> Verdict {
        match kind {
            Kind::Other => Verdict::Delete,
            // A second hard link: `lab-analyze run` would refuse the bundle.
            Kind::File { nlink } if nlink != 1 => Verdict::Delete,
            Kind::File { .. } if self.files.contains_key(rel) => Verdict::Keep,
            Kind::File { .. } => match rel.strip_suffix(PART_SUFFIX) {
                Some(stem) if self.files.contains_key(stem) => Verdict::Partial,
                _ => Verdict::Delete,
            },
            Kind::Dir if self.dirs.contains(rel) => Verdict::Descend,
            Kind::Dir => Verdict::Delete,
        }
    }
}

/// One remembered SHA-256, valid while the file keeps this size and mtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Sum {
    path: String,
    size: u64,
    mtime_ns: i64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct SumsFile {
    format_version: u32,
    files: Vec<Sum>,
}

fn load_sums(path: &Path) -> HashMap<String, Sum> {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<SumsFile>(&b).ok())
        .filter(|s| s.format_version == SUMS_FORMAT_VERSION)
        .map(|s| s.files.into_iter().map(|f| (f.path.clone(), f)).collect())
        .unwrap_or_default()
}

fn save_sums(path: &Path, mut sums: Vec<Sum>) -> Result<(), MirrorError> {
    sums.sort_by(|a, b| a.path.cmp(&b.path));
    let file = SumsFile {
        format_version: SUMS_FORMAT_VERSION,
        files: sums,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
    }
    write_atomic(path, &serde_json::to_vec(&file).expect("sums serialise")).map_err(|e| match e {
        BundleError::Write { path, source } => MirrorError::Io { path, source },
        other => MirrorError::Io {
            path: path.to_path_buf(),
            source: io::Error::other(other),
        },
    })
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Removes whatever is at `path` without following a link.
fn remove_any(path: &Path) -> Result<(), MirrorError> {
    let meta = fs::symlink_metadata(path).map_err(io_at(path))?;
    if meta.is_dir() {
        fs::remove_dir_all(path).map_err(io_at(path))
    } else {
        fs::remove_file(path).map_err(io_at(path))
    }
}

/// Makes `dir` a plain folder (a link or file there is removed first).
pub fn ensure_dir(dir: &Path) -> Result<(), MirrorError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => remove_any(dir)?,
        Err(_) => {}
    }
    fs::create_dir_all(dir).map_err(io_at(dir))
}

/// Deletes what the listing does not hold, under `dir` (the folder at
/// `prefix`); fills `found` with the files kept and `parts` with the
/// partial downloads, both by relative path.
fn prune(
    dir: &Path,
    prefix: &str,
    listed: &Listed<'_>,
    found: &mut HashMap<String, fs::Metadata>,
    parts: &mut HashSet<String>,
    synced: &mut Synced,
) -> Result<(), MirrorError> {
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        let name = entry.file_name();
        let rel = name.to_str().map(|n| format!("{prefix}{n}"));
        let kind = match &rel {
            None => Kind::Other,
            Some(_) if meta.file_type().is_file() => Kind::File {
                nlink: meta.nlink(),
            },
            Some(_) if meta.file_type().is_dir() => Kind::Dir,
            Some(_) => Kind::Other,
        };
        let rel = rel.unwrap_or_default();
        match listed.judge(&rel, kind) {
            Verdict::Keep => {
                found.insert(rel, meta);
            }
            Verdict::Partial => {
                parts.insert(rel);
            }
            Verdict::Descend => prune(&path, &format!("{rel}/"), listed, found, parts, synced)?,
            Verdict::Delete => {
                remove_any(&path)?;
                synced.deleted += 1;
            }
        }
    }
    Ok(())
}

/// Makes `dir` a copy of the listed files (see the module doc). `sums` is
/// the bundle's sums cache file.
pub fn sync(
    dir: &Path,
    sums: &Path,
    files: &[LeaseFile],
    fetcher: &Fetcher<'_>,
) -> Result<Synced, MirrorError> {
    ensure_dir(dir)?;
    let listed = Listed::new(files);
    let mut synced = Synced::default();
    let (mut found, mut parts) = (HashMap::new(), HashSet::new());
    prune(dir, "", &listed, &mut found, &mut parts, &mut synced)?;
    let known = load_sums(sums);
    let mut verified = Vec::with_capacity(files.len());
    let mut sorted: Vec<&LeaseFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut result = Ok(());
    for f in sorted {
        let step = keep_or_fetch(dir, f, &found, &parts, &known, fetcher, &mut synced);
        match step {
            Ok(sum) => verified.push(sum),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    // Even after a failure: what was verified need not be read again.
    save_sums(sums, verified)?;
    result.map(|()| synced)
}

fn keep_or_fetch(
    dir: &Path,
    f: &LeaseFile,
    found: &HashMap<String, fs::Metadata>,
    parts: &HashSet<String>,
    known: &HashMap<String, Sum>,
    fetcher: &Fetcher<'_>,
    synced: &mut Synced,
) -> Result<Sum, MirrorError> {
    let path = dir.join(&f.path);
    let part_rel = format!("{}{PART_SUFFIX}", f.path);
    let part = dir.join(&part_rel);
    let drop_part = |synced: &mut Synced| -> Result<(), MirrorError> {
        if parts.contains(&part_rel) {
            fs::remove_file(&part).map_err(io_at(&part))?;
            synced.deleted += 1;
        }
        Ok(())
    };
    if let Some(meta) = found.get(&f.path).filter(|m| m.len() == f.size) {
        let sum = Sum {
            path: f.path.clone(),
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            sha256: String::new(),
        };
        let cached = known
            .get(&f.path)
            .filter(|k| k.size == sum.size && k.mtime_ns == sum.mtime_ns && k.sha256 == f.sha256);
        if cached.is_some() {
            drop_part(synced)?;
            synced.kept += 1;
            return Ok(Sum {
                sha256: f.sha256.clone(),
                ..sum
            });
        }
        let sha = hash_file(&path)?;
        synced.hashed += 1;
        if sha == f.sha256 {
            drop_part(synced)?;
            synced.kept += 1;
            return Ok(Sum { sha256: sha, ..sum });
        }
    }
    if (fetcher.stop)() {
        return Err(MirrorError::Stopped);
    }
    if let Some(parent) = part.parent() {
        fs::create_dir_all(parent).map_err(io_at(parent))?;
    }
    if parts.contains(&part_rel) {
        synced.resumed += 1;
    }
    for round in 0..2 {
        let received = download(&part, f, fetcher, synced)?;
        if received.as_deref() == Some(f.sha256.as_str()) {
            let received = f.sha256.clone();
            fs::rename(&part, &path).map_err(io_at(&path))?;
            synced.downloaded += 1;
            let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
            return Ok(Sum {
                path: f.path.clone(),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                sha256: received,
            });
        }
        fs::remove_file(&part).map_err(io_at(&part))?;
        let error = match received {
            Some(received) => MirrorError::Mismatch {
                path: f.path.clone(),
                listed: f.sha256.clone(),
                received,
            },
            None => MirrorError::TooLong {
                path: f.path.clone(),
                listed: f.size,
            },
        };
        if round == 1 {
            return Err(error);
        }
        (fetcher.log)(&format!("{error}; downloading it again"));
    }
    unreachable!("the second round returns")
}

/// The SHA-256 of a file, read without following a link.
pub fn hash_file(path: &Path) -> Result<String, MirrorError> {
    let mut file = open_nofollow(path, false).map_err(io_at(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = file.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

fn open_nofollow(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Fills `part` up to `f.size` bytes, going on from what it holds, and
/// answers the SHA-256 of what it then holds (synced to disk); `None` when
/// lab-web sent more than `f.size` bytes.
fn download(
    part: &Path,
    f: &LeaseFile,
    fetcher: &Fetcher<'_>,
    synced: &mut Synced,
) -> Result<Option<String>, MirrorError> {
    let mut file = open_nofollow(part, true).map_err(io_at(part))?;
    let mut have = file.metadata().map_err(io_at(part))?.len();
    if have > f.size {
        file.set_len(0).map_err(io_at(part))?;
        have = 0;
    }
    // The bytes already there count in the hash.
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    let mut left = have;
    while left > 0 {
        let n = file
            .read(&mut buf[..BLOCK.min(left as usize)])
            .map_err(io_at(part))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(have)).map_err(io_at(part))?;
    let mut backoff = fetcher.backoff.clone();
    let mut tries = 0u32;
    let mut last_error = None;
    while have < f.size {
        if (fetcher.stop)() {
            return Err(MirrorError::Stopped);
        }
        if tries >= fetcher.max_tries {
            return Err(MirrorError::Call {
                path: f.path.clone(),
                source: last_error.unwrap_or(CallError::Transport("no answer".into())),
            });
        }
        tries += 1;
        let mut got = match (fetcher.fetch)(&f.path, have) {
            Ok(d) => d,
            // Asked from a byte past lab-web's end: its file is shorter than
            // listed. What is here is all there is; the hash will tell.
            Err(e) if e.status() == Some(416) => break,
            Err(e @ CallError::Transport(_)) => {
                (fetcher.log)(&format!("{}: {e}; trying again", f.path));
                last_error = Some(e);
                if !sleep_unless(backoff.next_delay(), fetcher.stop) {
                    return Err(MirrorError::Stopped);
                }
                continue;
            }
            Err(e) => {
                return Err(MirrorError::Call {
                    path: f.path.clone(),
                    source: e,
                });
            }
        };
        if got.from != have {
            // lab-web sent the whole file instead of the rest.
            file.set_len(0).map_err(io_at(part))?;
            file.seek(SeekFrom::Start(0)).map_err(io_at(part))?;
            hasher = Sha256::new();
            have = 0;
        }
        let before = have;
        let ended = loop {
            if (fetcher.stop)() {
                return Err(MirrorError::Stopped);
            }
            match got.body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    if have + n as u64 > f.size {
                        return Ok(None);
                    }
                    file.write_all(&buf[..n]).map_err(io_at(part))?;
                    hasher.update(&buf[..n]);
                    have += n as u64;
                    synced.bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(CallError::Transport(e.to_string())),
            }
        };
        if have > before {
            tries = 0;
            backoff.reset();
        }
        match ended {
            // The whole body came and it was short: lab-web's file is
            // shorter than listed (the hash will tell) unless more comes.
            None if have == before => break,
            None => {}
            Some(e) => {
                if have < f.size {
                    (fetcher.log)(&format!(
                        "{}: broken at byte {have} of {}: {e}; resuming",
                        f.path, f.size
                    ));
                }
                last_error = Some(e);
                if !sleep_unless(backoff.next_delay(), fetcher.stop) {
                    return Err(MirrorError::Stopped);
                }
            }
        }
    }
    file.sync_data().map_err(io_at(part))?;
    Ok(Some(hex(&hasher.finalize())))
}

#[cfg(test)]
#[path = "tests/mirror.rs"]
mod tests;
