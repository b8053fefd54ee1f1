//! What of a bundle is uploaded, and its bytes: the file list (every plain
//! file but the transient ones, each with a path the server accepts), the
//! SHA-256 of each (cached next to the bundle, so a restarted uploader does
//! not re-read gigabytes), and chunks read from descriptors opened without
//! following links. A file that changes under the uploader is noticed (size,
//! mtime and inode are checked on every read) and re-hashed, never sent
//! half old and half new.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lab_model::bundle::{MANIFEST_FILE, RESERVE_FILE, write_atomic};
use lab_model::upload::valid_upload_path;
use lab_model::{Bundle, BundleError, SessionStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes read at a time while hashing.
const HASH_BLOCK: usize = 1 << 20;
/// Bumped when the shape of the hash cache changes (an old one is ignored).
const CACHE_FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{0} is still recording (or its recorder died): run `lab-recorder recover {0}` first")]
    Recording(PathBuf),
    #[error(
        "{0} cannot be uploaded: its name is not a path a bundle may hold (plain ASCII letters, digits and ._-, no dot first); rename or remove it"
    )]
    BadPath(PathBuf),
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} changed while it was being read")]
    Changed(PathBuf),
}

/// A plain file of the bundle, as it was when listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Relative to the bundle, `/`-separated.
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
}

#[derive(Debug, Clone)]
pub struct Listing {
    /// The manifest's session id.
    pub session_id: String,
    /// Sorted by path.
    pub files: Vec<LocalFile>,
}

/// Files that exist only while something is being written and are never
/// part of a finished bundle: the recorder's disk reserve and
/// `write_atomic`'s temporaries (`manifest.tmp`, `*.tmp`).
pub fn is_transient(name: &str) -> bool {
    name == RESERVE_FILE || name.ends_with(".tmp")
}

/// Every file to upload. Refuses, before anything is sent, a bundle holding
/// a link, a hard link, a FIFO or a device (`Bundle::check_contents`), one
/// whose manifest is invalid or still `recording`, and any file (other than
/// a transient one) whose path the server would refuse: nothing is dropped
/// silently.
pub fn list(bundle: &Path) -> Result<Listing, FilesError> {
    let b = Bundle::new(bundle);
    b.check_contents()?;
    let manifest = b.read_manifest()?;
    if manifest.status == SessionStatus::Recording {
        return Err(FilesError::Recording(bundle.to_path_buf()));
    }
    let mut files = Vec::new();
    let mut stack = vec![(bundle.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let read_err = |source| FilesError::Read {
            path: dir.clone(),
            source,
        };
        for entry in fs::read_dir(&dir).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|source| FilesError::Read {
                path: path.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(FilesError::BadPath(path));
            };
            let rel = format!("{prefix}{name}");
            if meta.is_dir() {
                stack.push((path, format!("{rel}/")));
            } else if meta.is_file() {
                if is_transient(name) {
                    continue;
                }
                if !valid_upload_path(&rel) {
                    return Err(FilesError::BadPath(path));
                }
                files.push(LocalFile {
                    path: rel,
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                    ino: meta.ino(),
                });
            } else {
                // check_contents ran just before; something is changing the bundle.
                return Err(FilesError::Changed(path));
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if !files.iter().any(|f| f.path == MANIFEST_FILE) {
        return Err(FilesError::Changed(bundle.join(MANIFEST_FILE)));
    }
    Ok(Listing {
        session_id: manifest.session_id,
        files,
    })
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// One remembered hash: valid while the file has this size, mtime and inode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CachedHash {
    path: String,
    size: u64,
    mtime_ns: i64,
    ino: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    format_version: u32,
    files: Vec<CachedHash>,
}

/// The hashes of a listing.
#[derive(Debug, Clone)]
pub struct Hashed {
    /// Lower-case hex SHA-256, in the listing's order.
    pub sha256: Vec<String>,
    /// Files and bytes actually read (0 when every hash came from the cache).
    pub files_read: usize,
    pub bytes_read: u64,
}

/// The SHA-256 of every listed file: from the cache at `cache` when the
/// file's (path, size, mtime, inode) is unchanged, otherwise read (on the
/// calling thread: run it where blocking is fine). The cache is rewritten
/// when anything was hashed. `progress` gets the bytes read so far.
pub fn hash_all(
    bundle: &Path,
    listing: &Listing,
    cache: &Path,
    progress: &dyn Fn(u64),
) -> Result<Hashed, FilesError> {
    let known: HashMap<String, CachedHash> = fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
        .filter(|c| c.format_version == CACHE_FORMAT_VERSION)
        .map(|c| c.files.into_iter().map(|f| (f.path.clone(), f)).collect())
        .unwrap_or_default();
    let mut sha256 = Vec::with_capacity(listing.files.len());
    let (mut files_read, mut bytes_read) = (0, 0);
    for f in &listing.files {
        let hit = known.get(&f.path).filter(|c| {
            c.size == f.size
                && c.mtime_ns == f.mtime_ns
                && c.ino == f.ino
                && lab_model::upload::valid_sha256(&c.sha256)
        });
        let sha = match hit {
            Some(c) => c.sha256.clone(),
            None => {
                let sha = hash_file(bundle, f, &mut |n| progress(bytes_read + n))?;
                files_read += 1;
                bytes_read += f.size;
                sha
            }
        };
        sha256.push(sha);
    }
    if files_read > 0 || known.len() != listing.files.len() {
        remember(cache, &listing.files, sha256.clone())?;
    }
    Ok(Hashed {
        sha256,
        files_read,
        bytes_read,
    })
}

/// Whether the bundle still holds exactly the files last hashed (same paths,
/// sizes, modification times and inodes): what was sent is all there is, so
/// deleting it after the acknowledgement loses nothing.
pub fn unchanged_since_hashed(bundle: &Path, cache: &Path) -> Result<bool, FilesError> {
    let listing = list(bundle)?;
    let Some(known) = fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
    else {
        return Ok(false);
    };
    let now: Vec<(&str, u64, i64, u64)> = listing
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size, f.mtime_ns, f.ino))
        .collect();
    let mut then: Vec<(&str, u64, i64, u64)> = known
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size, f.mtime_ns, f.ino))
        .collect();
    then.sort();
    Ok(now == then)
}

/// Replaces the hash cache with these files and hashes (after a file was
/// found to differ from its cached hash).
pub fn remember(cache: &Path, files: &[LocalFile], sha256: Vec<String>) -> Result<(), FilesError> {
    let file = CacheFile {
        format_version: CACHE_FORMAT_VERSION,
        files: files
            .iter()
            .zip(sha256)
            .map(|(f, sha256)| CachedHash {
                path: f.path.clone(),
                size: f.size,
                mtime_ns: f.mtime_ns,
                ino: f.ino,
                sha256,
            })
            .collect(),
    };
    write_atomic(cache, &serde_json::to_vec(&file).expect("cache serialises"))?;
    Ok(())
}

/// The SHA-256 of one file, read now (never from the cache), checked to be
/// the file that was listed and unchanged while it was read.
pub fn hash_file(
    bundle: &Path,
    f: &LocalFile,
    progress: &mut dyn FnMut(u64),
) -> Result<String, FilesError> {
    let open = OpenFile::open(bundle, f)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BLOCK];
    let mut done = 0u64;
    let mut file = &open.file;
    loop {
        let n = file.read(&mut buf).map_err(|source| FilesError::Read {
            path: open.path.clone(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    if done != f.size {
        return Err(FilesError::Changed(open.path.clone()));
    }
    open.check_unchanged()?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A listed file opened for sending: the descriptor is opened without
/// following a link and checked to be the listed inode, size and mtime on
/// every read.
#[derive(Debug)]
pub struct OpenFile {
    file: File,
    path: PathBuf,
    expect: LocalFile,
}

impl OpenFile {
    pub fn open(bundle: &Path, f: &LocalFile) -> Result<Self, FilesError> {
        let path = bundle.join(&f.path);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|source| match source.raw_os_error() {
                // A link planted since the listing.
                Some(libc::ELOOP) => FilesError::Changed(path.clone()),
                _ => FilesError::Read {
                    path: path.clone(),
                    source,
                },
            })?;
        let open = Self {
            file,
            path,
            expect: f.clone(),
        };
        open.check_unchanged()?;
        Ok(open)
    }

    /// `len` bytes at `offset` (fewer only at the end of the file).
    pub fn read_chunk(&self, offset: u64, len: usize) -> Result<Vec<u8>, FilesError> {
        let end = self.expect.size.min(offset.saturating_add(len as u64));
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| match source.kind() {
                io::ErrorKind::UnexpectedEof => FilesError::Changed(self.path.clone()),
                _ => FilesError::Read {
                    path: self.path.clone(),
                    source,
                },
            })?;
        self.check_unchanged()?;
        Ok(buf)
    }

    /// Still a plain file with one link and the listed inode, size and mtime.
    pub fn check_unchanged(&self) -> Result<(), FilesError> {
        let meta = self.file.metadata().map_err(|source| FilesError::Read {
            path: self.path.clone(),
            source,
        })?;
        let same = meta.is_file()
            && meta.nlink() == 1
            && meta.ino() == self.expect.ino
            && meta.len() == self.expect.size
            && mtime_ns(&meta) == self.expect.mtime_ns;
        if same {
            Ok(())
        } else {
            Err(FilesError::Changed(self.path.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::tests::{temp_dir, write_bundle};

    #[test]
    fn a_bundle_lists_every_plain_file_but_the_transient_ones() {
        let dir = temp_dir("list").join("B");
        write_bundle(&dir, "complete", &[("media/main-00001.mkv", &b"abc"[..])]);
        fs::write(dir.join(RESERVE_FILE), b"reserve").unwrap();
        fs::write(dir.join("manifest.tmp"), b"{").unwrap();
        fs::create_dir_all(dir.join("analysis")).unwrap();
        fs::write(dir.join("analysis/x.tmp"), b"half").unwrap();
        fs::write(dir.join("analysis/steps-notes.txt"), b"j").unwrap();
        fs::create_dir_all(dir.join("empty/folder")).unwrap();
        let l = list(&dir).unwrap();
        assert_eq!(l.session_id, "20261123T101500Z-P07");
        let paths: Vec<&str> = l.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "analysis/steps-notes.txt",
                "events.jsonl",
                "manifest.json",
                "media/main-00001.mkv"
            ]
        );
        assert_eq!(l.files[3].size, 3);
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn links_fifos_hard_links_odd_names_and_a_recording_manifest_are_refused() {
        let root = temp_dir("refuse");
        let fresh = |name: &str| {
            let dir = root.join(name);
            write_bundle(&dir, "complete", &[("media/main-00001.mkv", &b"abc"[..])]);
            dir
        };
        let msg = |dir: &Path| list(dir).unwrap_err().to_string();

        let d = fresh("symlink");
        std::os::unix::fs::symlink("/etc/passwd", d.join("media/x.mkv")).unwrap();
        let m = msg(&d);
        assert!(
            m.contains("media/x.mkv") && m.contains("symbolic link"),
            "{m}"
        );

        let d = fresh("fifo");
        let c =
            std::ffi::CString::new(d.join("media/pipe").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let m = msg(&d);
        assert!(m.contains("media/pipe") && m.contains("FIFO"), "{m}");

        let d = fresh("hardlink");
        fs::hard_link(d.join("media/main-00001.mkv"), root.join("outside.mkv")).unwrap();
        let m = msg(&d);
        assert!(
            m.contains("main-00001.mkv") && m.contains("hard link"),
            "{m}"
        );

        let d = fresh("hidden");
        fs::write(d.join("media/.DS_Store"), b"x").unwrap();
        let m = msg(&d);
        assert!(
            m.contains("media/.DS_Store") && m.contains("rename or remove"),
            "{m}"
        );

        let d = fresh("space");
        fs::write(d.join("notes v2.txt"), b"x").unwrap();
        assert!(msg(&d).contains("notes v2.txt"));

        let d = root.join("recording");
        write_bundle(&d, "recording", &[]);
        let m = msg(&d);
        assert!(m.contains("lab-recorder recover"), "{m}");
        assert!(matches!(list(&d), Err(FilesError::Recording(_))));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn hashes_are_cached_until_a_file_changes() {
        let root = temp_dir("hash");
        let dir = root.join("B");
        write_bundle(
            &dir,
            "complete",
            &[("media/main-00001.mkv", &vec![7u8; 3 * HASH_BLOCK + 5][..])],
        );
        let cache = root.join("B.files.json");
        let l = list(&dir).unwrap();
        let first = hash_all(&dir, &l, &cache, &|_| {}).unwrap();
        let total: u64 = l.files.iter().map(|f| f.size).sum();
        assert_eq!(first.bytes_read, total);
        let media = l
            .files
            .iter()
            .position(|f| f.path == "media/main-00001.mkv")
            .unwrap();
        let expect = hex(&Sha256::digest(vec![7u8; 3 * HASH_BLOCK + 5]));
        assert_eq!(first.sha256[media], expect);
        // Unchanged: nothing is read again.
        let again = hash_all(&dir, &list(&dir).unwrap(), &cache, &|_| {}).unwrap();
        assert_eq!((again.files_read, again.bytes_read), (0, 0));
        assert_eq!(again.sha256, first.sha256);
        // Rewritten with the same size: only that file is read again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(
            dir.join("media/main-00001.mkv"),
            vec![8u8; 3 * HASH_BLOCK + 5],
        )
        .unwrap();
        let l = list(&dir).unwrap();
        let changed = hash_all(&dir, &l, &cache, &|_| {}).unwrap();
        assert_eq!(changed.files_read, 1);
        assert_eq!(changed.bytes_read, 3 * HASH_BLOCK as u64 + 5);
        assert_eq!(
            changed.sha256[media],
            hex(&Sha256::digest(vec![8u8; 3 * HASH_BLOCK + 5]))
        );
        assert_eq!(hash_all(&dir, &l, &cache, &|_| {}).unwrap().bytes_read, 0);
        // A cache that is not JSON is ignored, not trusted.
        fs::write(&cache, b"garbage").unwrap();
        assert_eq!(
            hash_all(&dir, &l, &cache, &|_| {}).unwrap().bytes_read,
            total
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_file_that_changes_after_listing_is_noticed_when_read() {
        let root = temp_dir("changed");
        let dir = root.join("B");
        write_bundle(
            &dir,
            "complete",
            &[("media/main-00001.mkv", &b"0123456789"[..])],
        );
        let l = list(&dir).unwrap();
        let f = l
            .files
            .iter()
            .find(|f| f.path.starts_with("media"))
            .unwrap();
        let open = OpenFile::open(&dir, f).unwrap();
        assert_eq!(open.read_chunk(4, 4).unwrap(), b"4567");
        assert_eq!(open.read_chunk(8, 4).unwrap(), b"89");
        fs::OpenOptions::new()
            .append(true)
            .open(dir.join(&f.path))
            .unwrap()
            .write_all_at(b"more", 10)
            .unwrap();
        assert!(matches!(open.read_chunk(0, 4), Err(FilesError::Changed(_))));
        // Replaced by a link: not followed.
        fs::remove_file(dir.join(&f.path)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join(&f.path)).unwrap();
        assert!(matches!(
            OpenFile::open(&dir, f),
            Err(FilesError::Changed(_))
        ));
        fs::remove_dir_all(&root).unwrap();
    }
}
