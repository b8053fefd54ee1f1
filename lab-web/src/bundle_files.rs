//! Opening files inside a session bundle without ever leaving it.
//!
//! A bundle is written by a station or an analysis machine, so its contents
//! are outside input: a rendition list can name `../../etc/passwd`, and any
//! file or folder in it can be a symlink or a hard link to the server's own
//! files (the database, the first admin's password). Every bundle file
//! lab-web reads or serves goes through [`open`]:
//!
//! - the relative path is checked lexically (no absolute path, `..`, empty or
//!   odd components);
//! - each component is opened with `openat(…, O_PATH | O_NOFOLLOW)` from the
//!   one before it, so a symlink anywhere is refused, never followed, and a
//!   folder swapped for a symlink between checks changes nothing;
//! - the final file must be a regular file with a single link. The check is
//!   made on an `O_PATH` descriptor, which pins the inode without opening
//!   it: closing an ordinary descriptor of a hard-linked `lab.db` would drop
//!   SQLite's POSIX locks for the whole process (the probe saw the next
//!   process delete the live WAL). Only after the checks is the pinned inode
//!   opened for reading, through `/proc/self/fd/N`.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BundleFileError {
    #[error("{0:?} is not a plain relative path inside the bundle")]
    BadPath(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} is a symbolic link; bundles may not contain links")]
    Symlink(String),
    #[error("{0} is not a regular file")]
    NotRegular(String),
    #[error("{0} has {1} hard links; bundle files must have exactly one")]
    HardLinked(String, u64),
    #[error("{path} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Checks a bundle-relative path lexically: `media/a-1.mkv` yes; `/x`,
/// `a/../b`, `./a`, `a//b`, names with control characters or a backslash no.
pub fn check_relative(rel: &str) -> Result<(), BundleFileError> {
    let bad = || BundleFileError::BadPath(rel.chars().take(200).collect());
    if rel.is_empty() || rel.len() > 1024 || rel.starts_with('/') {
        return Err(bad());
    }
    for c in rel.split('/') {
        if c.is_empty()
            || c == "."
            || c == ".."
            || c.len() > 255
            || c.chars().any(|ch| ch.is_control() || ch == '\\')
        {
            return Err(bad());
        }
    }
    Ok(())
}

fn c_name(s: &[u8], rel: &str) -> Result<CString, BundleFileError> {
    CString::new(s).map_err(|_| BundleFileError::BadPath(rel.into()))
}

/// `openat(dir, name, O_PATH …)`; `follow` only for the trusted starting
/// folder (the configured sessions or data folder may be reached through links).
fn openat_path(
    dir: Option<&OwnedFd>,
    name: &CString,
    directory: bool,
    follow: bool,
) -> io::Result<OwnedFd> {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `name` is a valid NUL-terminated string and `dirfd` is either
    // AT_FDCWD or a descriptor we own; the returned descriptor is checked and
    // immediately owned.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a failed no-follow `openat` means for the bundle file `shown`.
fn open_error(e: io::Error, shown: String) -> BundleFileError {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => BundleFileError::Symlink(shown),
        Some(libc::ENOENT) => BundleFileError::NotFound(shown),
        _ => BundleFileError::Io {
            path: shown,
            source: e,
        },
    }
}

fn pinned_metadata(fd: &OwnedFd) -> io::Result<std::fs::Metadata> {
    // std's metadata on an O_PATH descriptor is an fstat, which O_PATH allows.
    std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens `root/rel` for reading, refusing anything that leaves `root`.
/// Only `root`'s parent is resolved the ordinary way (it is the sessions
/// folder, or the data folder for clips: the server's own configuration);
/// `root`'s own name and every component of `rel` are opened without
/// following links, so a bundle folder swapped for a symlink, or a link
/// anywhere inside it, is refused.
pub fn open(root: &Path, rel: &str) -> Result<(File, u64), BundleFileError> {
    check_relative(rel)?;
    let shown = || format!("{}/{rel}", root.display());
    let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else {
        return Err(BundleFileError::BadPath(root.display().to_string()));
    };
    let name = name
        .to_str()
        .ok_or_else(|| BundleFileError::BadPath(shown()))?;
    check_relative(name)?;
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let map_open = |e: io::Error| open_error(e, shown());
    let parent_c = c_name(parent.as_os_str().as_bytes(), rel)?;
    let parent_fd = openat_path(None, &parent_c, true, true).map_err(map_open)?;
    let mut dir = openat_path(
        Some(&parent_fd),
        &c_name(name.as_bytes(), rel)?,
        true,
        false,
    )
    .map_err(map_open)?;
    let parts: Vec<&str> = rel.split('/').collect();
    let (last, folders) = parts.split_last().expect("checked non-empty");
    for part in folders {
        dir = openat_path(Some(&dir), &c_name(part.as_bytes(), rel)?, true, false)
            .map_err(map_open)?;
    }
    let pinned =
        openat_path(Some(&dir), &c_name(last.as_bytes(), rel)?, false, false).map_err(map_open)?;
    let meta = pinned_metadata(&pinned).map_err(|source| BundleFileError::Io {
        path: shown(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(BundleFileError::Symlink(shown()));
    }
    if !meta.file_type().is_file() {
        return Err(BundleFileError::NotRegular(shown()));
    }
    if meta.nlink() != 1 {
        return Err(BundleFileError::HardLinked(shown(), meta.nlink()));
    }
    let file = File::open(format!("/proc/self/fd/{}", pinned.as_raw_fd())).map_err(|source| {
        BundleFileError::Io {
            path: shown(),
            source,
        }
    })?;
    Ok((file, meta.len()))
}

/// Opens (creating, with its folders) `base/rel` for writing, for an upload's
/// staging folder: `base` (the server's sessions folder) is resolved the
/// ordinary way; every component of `rel` is entered, or made with
/// `mkdirat`, without following links, and the file itself is pinned with
/// `O_PATH | O_NOFOLLOW` and checked to be a regular file with one link
/// before it is opened for writing (a new one is made with `O_EXCL`). A link
/// planted anywhere under `base` is refused, never written through, and a
/// hard link to a server file (the database) is never opened. Returns the
/// file and its length.
pub fn open_for_append(base: &Path, rel: &str) -> Result<(File, u64), BundleFileError> {
    check_relative(rel)?;
    let shown = || format!("{}/{rel}", base.display());
    let map_open = |e: io::Error| open_error(e, shown());
    let base_c = c_name(base.as_os_str().as_bytes(), rel)?;
    let mut dir = openat_path(None, &base_c, true, true).map_err(map_open)?;
    let parts: Vec<&str> = rel.split('/').collect();
    let (last, folders) = parts.split_last().expect("checked non-empty");
    for part in folders {
        let name = c_name(part.as_bytes(), rel)?;
        // SAFETY: `name` is NUL-terminated and `dir` is a descriptor we own.
        let made = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) };
        if made != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(map_open(e));
            }
        }
        dir = openat_path(Some(&dir), &name, true, false).map_err(map_open)?;
    }
    let name = c_name(last.as_bytes(), rel)?;
    let io_err = |source| BundleFileError::Io {
        path: shown(),
        source,
    };
    match openat_path(Some(&dir), &name, false, false) {
        Ok(pinned) => {
            let meta = pinned_metadata(&pinned).map_err(io_err)?;
            if meta.file_type().is_symlink() {
                return Err(BundleFileError::Symlink(shown()));
            }
            if !meta.file_type().is_file() {
                return Err(BundleFileError::NotRegular(shown()));
            }
            if meta.nlink() != 1 {
                return Err(BundleFileError::HardLinked(shown(), meta.nlink()));
            }
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/self/fd/{}", pinned.as_raw_fd()))
                .map_err(io_err)?;
            Ok((file, meta.len()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            // SAFETY: as above; the descriptor returned is owned at once.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDWR
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600 as libc::c_uint,
                )
            };
            if fd < 0 {
                return Err(map_open(io::Error::last_os_error()));
            }
            // SAFETY: `fd` was just returned by openat and is owned by nobody else.
            Ok((File::from(unsafe { OwnedFd::from_raw_fd(fd) }), 0))
        }
        Err(e) => Err(map_open(e)),
    }
}

/// Removes `base/rel` (a plain file) if it is there, entering every folder
/// without following links; a file dropped from an upload's list.
pub fn remove_staged(base: &Path, rel: &str) -> Result<(), BundleFileError> {
    match open_for_append(base, rel) {
        Ok(_) => {}
        Err(BundleFileError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    }
    // Every component was just checked not to be a link; the staging folder
    // is the server's own, so nothing swaps it in between but the server.
    std::fs::remove_file(base.join(rel)).map_err(|source| BundleFileError::Io {
        path: format!("{}/{rel}", base.display()),
        source,
    })
}

/// Reads a whole bundle file of at most `limit` bytes; `Ok(None)` if it does
/// not exist.
pub fn read(root: &Path, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, BundleFileError> {
    let (file, size) = match open(root, rel) {
        Ok(f) => f,
        Err(BundleFileError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if size > limit {
        return Err(BundleFileError::TooLarge {
            path: format!("{}/{rel}", root.display()),
            size,
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // A file that grows while being read is cut at the limit, not followed.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| BundleFileError::Io {
            path: format!("{}/{rel}", root.display()),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(BundleFileError::TooLarge {
            path: format!("{}/{rel}", root.display()),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(Some(bytes))
}

/// The bundle folder `dir` as the server stores it: the canonical sessions
/// folder joined with the bundle's own name, if `dir` is a real folder (not
/// a symlink) directly inside `root`, as the watcher and the import API
/// require of a bundle. The name is never resolved through a link, so a
/// folder swapped for a link later is refused when its files are opened.
pub fn bundle_folder_in(root: &Path, dir: &Path) -> Option<std::path::PathBuf> {
    let name = dir.file_name()?.to_str()?;
    check_relative(name).ok()?;
    let root = root.canonicalize().ok()?;
    if dir.parent()?.canonicalize().ok()? != root {
        return None;
    }
    let path = root.join(name);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    meta.file_type().is_dir().then_some(path)
}

/// Whether [`bundle_folder_in`] accepts `dir`.
pub fn is_bundle_folder_in(root: &Path, dir: &Path) -> bool {
    bundle_folder_in(root, dir).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bundle-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("analysis/web")).unwrap();
        d
    }

    #[test]
    fn appending_makes_folders_and_never_follows_a_planted_link() {
        let root = tmp("append");
        let outside = root.with_extension("outside");
        let _ = std::fs::remove_dir_all(&outside);
        std::fs::create_dir_all(&outside).unwrap();
        let (f, len) = open_for_append(&root, "media/deep/a.bin").unwrap();
        assert!(
            open_for_append(&root, ".incoming/7/x").is_ok(),
            "dot folders are made too"
        );
        assert_eq!(len, 0);
        std::os::unix::fs::FileExt::write_all_at(&f, b"abc", 0).unwrap();
        assert_eq!(open_for_append(&root, "media/deep/a.bin").unwrap().1, 3);
        // A folder swapped for a link, a file that is a link, a hard link.
        symlink(&outside, root.join("linked")).unwrap();
        assert!(matches!(
            open_for_append(&root, "linked/x"),
            Err(BundleFileError::Symlink(_))
        ));
        symlink(outside.join("target"), root.join("file-link")).unwrap();
        assert!(matches!(
            open_for_append(&root, "file-link"),
            Err(BundleFileError::Symlink(_))
        ));
        std::fs::hard_link(root.join("media/deep/a.bin"), root.join("hard")).unwrap();
        assert!(matches!(
            open_for_append(&root, "hard"),
            Err(BundleFileError::HardLinked(..))
        ));
        assert!(matches!(
            open_for_append(&root, "../x"),
            Err(BundleFileError::BadPath(_))
        ));
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written outside"
        );
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&outside);
    }

    #[test]
    fn relative_paths_are_checked_lexically() {
        for ok in ["a.mp4", "analysis/web/screen.mp4", "media/main-00001.mkv"] {
            assert!(check_relative(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/",
            "a\\b",
            "a\nb",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_symlinked_rendition_is_refused_not_followed() {
        let d = tmp("symlink");
        std::fs::write(d.join("analysis/web/screen.mp4"), b"video").unwrap();
        symlink("/etc/passwd", d.join("analysis/web/evil.mp4")).unwrap();
        symlink("/etc", d.join("analysis/etc")).unwrap();
        symlink(d.join("analysis"), d.join("alias")).unwrap();
        let (mut f, n) = open(&d, "analysis/web/screen.mp4").unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!((s.as_str(), n), ("video", 5));
        for rel in [
            "analysis/web/evil.mp4",
            "analysis/etc/passwd",
            "alias/web/screen.mp4",
        ] {
            let e = open(&d, rel).unwrap_err();
            assert!(matches!(e, BundleFileError::Symlink(_)), "{rel}: {e}");
        }
        // The bundle folder itself may not be a link either (a folder swapped
        // for a link to the data folder after import).
        symlink(&d, d.with_extension("link")).unwrap();
        assert!(matches!(
            open(&d.with_extension("link"), "analysis/web/screen.mp4").unwrap_err(),
            BundleFileError::Symlink(_)
        ));
        let _ = std::fs::remove_file(d.with_extension("link"));
        // A link in a component between the parent and the file is refused too.
        std::fs::create_dir_all(d.join("real/inner")).unwrap();
        std::fs::write(d.join("real/inner/f.json"), b"{}").unwrap();
        symlink(d.join("real"), d.join("swapped")).unwrap();
        assert!(open(&d.join("real"), "inner/f.json").is_ok());
        assert!(open(&d.join("swapped"), "inner/f.json").is_err());
    }

    #[test]
    fn a_hard_linked_database_is_refused_without_being_opened() {
        let d = tmp("hardlink");
        let db = d.join("lab.db");
        std::fs::write(&db, b"SQLite format 3").unwrap();
        std::fs::hard_link(&db, d.join("analysis/web/screen.mp4")).unwrap();
        let e = open(&d, "analysis/web/screen.mp4").unwrap_err();
        assert!(matches!(e, BundleFileError::HardLinked(_, 2)), "{e}");
        std::fs::create_dir_all(d.join("analysis/web/dir.mp4")).unwrap();
        assert!(matches!(
            open(&d, "analysis/web/dir.mp4").unwrap_err(),
            BundleFileError::NotRegular(_)
        ));
    }

    #[test]
    fn reads_are_bounded() {
        let d = tmp("bounded");
        std::fs::write(d.join("analysis/x.json"), vec![b'1'; 100]).unwrap();
        assert_eq!(
            read(&d, "analysis/x.json", 100).unwrap().unwrap().len(),
            100
        );
        assert!(matches!(
            read(&d, "analysis/x.json", 99).unwrap_err(),
            BundleFileError::TooLarge { size: 100, .. }
        ));
        assert!(read(&d, "analysis/missing.json", 99).unwrap().is_none());
    }
}
