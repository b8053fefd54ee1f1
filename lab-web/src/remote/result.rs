//! A worker's result: the contents of a bundle's `analysis/` folder as a tar.
//! It is received into a file beside the bundle (`.lab-result-<job>-<random>`),
//! checked against the SHA-256 the worker declared, unpacked into a staging
//! folder entry by entry (plain files and folders under names a bundle may
//! hold; a link, a device, `..` or an absolute path refuses the whole
//! result), and then exchanged with the bundle's `analysis/` in one
//! `renameat2(RENAME_EXCHANGE)`: a reader sees the old folder or the new
//! one, never a mix.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use lab_model::upload::{MAX_UPLOAD_FILES, valid_upload_path};

/// The analysis state file, relative to `analysis/` (the one file every
/// result must hold).
fn state_file() -> &'static str {
    let p = lab_model::analysis::AnalysisFile::State.relative_path();
    p.strip_prefix("analysis/").unwrap_or(p)
}

/// Why a result was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("{0}")]
    Bad(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn bad(msg: impl Into<String>) -> ResultError {
    ResultError::Bad(msg.into())
}

/// A name the tar uses twice, or as both a file and a folder, is the
/// sender's error (422), not the server's.
fn clash(e: std::io::Error, path: &str) -> ResultError {
    use std::io::ErrorKind::*;
    match e.kind() {
        AlreadyExists | NotADirectory | IsADirectory => {
            bad(format!("{path} appears twice, or as a file and a folder"))
        }
        _ => ResultError::Io(e),
    }
}

/// Unpacks the tar at `tar` into `staging` (made here, must not exist).
/// Returns the number of files. The result must hold the state file.
pub fn unpack(tar: &Path, staging: &Path, max_bytes: u64) -> Result<usize, ResultError> {
    std::fs::create_dir(staging)?;
    let mut archive = tar::Archive::new(std::fs::File::open(tar)?);
    let mut files = 0usize;
    let mut entries = 0usize;
    let mut total = 0u64;
    let mut has_state = false;
    for entry in archive
        .entries()
        .map_err(|e| bad(format!("not a tar: {e}")))?
    {
        let mut entry = entry.map_err(|e| bad(format!("a broken tar entry: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| bad(format!("a tar entry's name: {e}")))?
            .to_str()
            .ok_or_else(|| bad("a tar entry's name is not UTF-8"))?
            .trim_end_matches('/')
            .to_string();
        let path = path.strip_prefix("./").unwrap_or(&path).to_string();
        if path.is_empty() || path == "." {
            continue;
        }
        if !valid_upload_path(&path) {
            return Err(bad(format!(
                "{path:?} is not a name a bundle file may have"
            )));
        }
        let kind = entry.header().entry_type();
        let target = staging.join(&path);
        // Folders count like files: a tar of nothing but folder headers
        // must not exhaust the inodes.
        entries += 1;
        if entries > MAX_UPLOAD_FILES {
            return Err(bad(format!("more than {MAX_UPLOAD_FILES} entries")));
        }
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| clash(e, &path))?;
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!(
                "{path} is a {kind:?}, not a plain file; links and devices are refused"
            )));
        }
        files += 1;
        total = total.saturating_add(entry.size());
        if total > max_bytes {
            return Err(bad(format!("the result is larger than {max_bytes} bytes")));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| clash(e, &path))?;
        }
        // The staging folder is ours and holds no link: only folders and
        // files made just now.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| clash(e, &path))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
        out.sync_all()?;
        has_state |= path == state_file();
    }
    if !has_state {
        return Err(bad(format!("the result holds no {}", state_file())));
    }
    sync_tree(staging)?;
    Ok(files)
}

/// fsyncs every folder under `dir` (the files were synced when written).
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            sync_tree(&e.path())?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Puts `staging` in place of `target` (the bundle's `analysis/`): one
/// atomic exchange when `target` exists (the old folder is then at
/// `staging`), else one rename. Both must be on one filesystem.
pub fn exchange(staging: &Path, target: &Path) -> std::io::Result<bool> {
    if std::fs::symlink_metadata(target).is_err() {
        std::fs::rename(staging, target)?;
        sync_parent(target)?;
        return Ok(false);
    }
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("a path with a NUL byte"))
    };
    let (a, b) = (c(staging)?, c(target)?);
    // SAFETY: both are valid NUL-terminated paths for the call's duration.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        // NFS and some other filesystems take no renameat2 flags: two
        // renames instead, with a moment in which `analysis/` is absent
        // (never a mix of old and new).
        if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOSYS) {
            let old = staging.with_extension("old");
            std::fs::rename(target, &old)?;
            if let Err(e) = std::fs::rename(staging, target) {
                let _ = std::fs::rename(&old, target);
                return Err(e);
            }
            std::fs::rename(&old, staging)?;
            sync_parent(target)?;
            return Ok(true);
        }
        return Err(e);
    }
    sync_parent(target)?;
    Ok(true)
}

fn sync_parent(p: &Path) -> std::io::Result<()> {
    match p.parent() {
        Some(d) => std::fs::File::open(d)?.sync_all(),
        None => Ok(()),
    }
}

/// What a result's tar and staging folder beside the bundle are called
/// (`.lab-result-<job>-<random>`): hidden, and never a bundle (no manifest).
pub const STAGING_PREFIX: &str = ".lab-result-";

/// Removes staging left by a lab-web that died mid-receipt: entries of the
/// sessions folder named [`STAGING_PREFIX`]… and older than `age` (several
/// processes may receive at once; a live receipt is younger).
pub fn sweep(sessions: &Path, age: std::time::Duration) -> usize {
    let Ok(dir) = std::fs::read_dir(sessions) else {
        return 0;
    };
    let mut n = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a > age);
        if name.to_string_lossy().starts_with(STAGING_PREFIX) && old {
            let p = e.path();
            let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lab-web-result-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])], out: &Path) {
        let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/passwd").unwrap();
            }
            // Names are written raw, so a hostile one reaches the reader.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
    }

    #[test]
    fn stale_staging_is_swept_and_fresh_staging_kept() {
        let d = tmp("sweep");
        std::fs::create_dir_all(d.join(format!("{STAGING_PREFIX}1-abc"))).unwrap();
        std::fs::write(d.join(format!("{STAGING_PREFIX}1-abc.tar")), b"x").unwrap();
        std::fs::create_dir_all(d.join("S1")).unwrap();
        assert_eq!(
            sweep(&d, std::time::Duration::from_secs(3600)),
            0,
            "fresh: kept"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(sweep(&d, std::time::Duration::from_millis(1)), 2);
        assert!(d.join("S1").is_dir(), "bundles are never touched");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_good_result_unpacks_and_exchanges_atomically() {
        let d = tmp("good");
        let t = d.join("r.tar");
        tar_of(
            &[
                (state_file(), tar::EntryType::Regular, b"{}"),
                ("renditions/", tar::EntryType::Directory, b""),
                ("renditions/screen.mp4", tar::EntryType::Regular, b"mp4"),
            ],
            &t,
        );
        let staging = d.join("staging");
        assert_eq!(unpack(&t, &staging, 1 << 20).unwrap(), 2);
        let target = d.join("bundle/analysis");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("old.json"), b"old").unwrap();
        assert!(exchange(&staging, &target).unwrap());
        assert_eq!(
            std::fs::read(target.join("renditions/screen.mp4")).unwrap(),
            b"mp4"
        );
        assert!(!target.join("old.json").exists());
        assert!(
            staging.join("old.json").exists(),
            "the old folder is left at staging"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn hostile_results_are_refused_by_name() {
        let d = tmp("hostile");
        let cases: [(&str, tar::EntryType, &str); 5] = [
            ("../escape.json", tar::EntryType::Regular, "not a name"),
            ("/etc/x.json", tar::EntryType::Regular, "not a name"),
            ("link.json", tar::EntryType::Symlink, "links and devices"),
            (".hidden", tar::EntryType::Regular, "not a name"),
            ("fifo", tar::EntryType::Fifo, "links and devices"),
        ];
        for (i, (name, kind, want)) in cases.into_iter().enumerate() {
            let t = d.join(format!("{i}.tar"));
            tar_of(
                &[
                    (state_file(), tar::EntryType::Regular, b"{}"),
                    (name, kind, b""),
                ],
                &t,
            );
            let e = unpack(&t, &d.join(format!("s{i}")), 1 << 20)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
        let t = d.join("nostate.tar");
        tar_of(&[("other.json", tar::EntryType::Regular, b"{}")], &t);
        let e = unpack(&t, &d.join("s-nostate"), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains(state_file()), "{e}");
        let t = d.join("big.tar");
        tar_of(&[(state_file(), tar::EntryType::Regular, &[0u8; 4096])], &t);
        let e = unpack(&t, &d.join("s-big"), 100).unwrap_err().to_string();
        assert!(e.contains("larger"), "{e}");
        // A name used as a file and then as a folder: the sender's error.
        let t = d.join("clash.tar");
        tar_of(
            &[
                (state_file(), tar::EntryType::Regular, b"{}"),
                ("web", tar::EntryType::Regular, b"x"),
                ("web/x.json", tar::EntryType::Regular, b"{}"),
            ],
            &t,
        );
        let e = unpack(&t, &d.join("s-clash"), 1 << 20).unwrap_err();
        assert!(matches!(e, ResultError::Bad(_)), "{e}");
        std::fs::write(d.join("junk.tar"), b"not a tar at all").unwrap();
        assert!(unpack(&d.join("junk.tar"), &d.join("s-junk"), 100).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
