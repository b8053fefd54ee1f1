//! The result a worker sends: an uncompressed tar of the **contents** of the
//! bundle's `analysis/` folder (paths relative to it), regular files and
//! folders only, in sorted order, hashed while written (the SHA-256 goes in
//! `X-Lab-Sha256`). Nothing is followed: a link, FIFO or device inside
//! `analysis/` refuses the whole result (lab-web would refuse it too, and
//! `lab-analyze run` never makes one). `write_atomic`'s leftovers (`*.tmp`)
//! are skipped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lab_model::analysis::ANALYSIS_DIR;
use lab_model::upload::valid_upload_path;
use sha2::{Digest, Sha256};

use super::api::hex;

#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("{0}: not sent: the result holds only regular files and folders, this is {1}")]
    NotPlain(String, &'static str),
    #[error(
        "{0:?}: not sent: not a name lab-web takes (plain ASCII letters, digits and ._-, no dot first, at most 8 levels)"
    )]
    BadName(String),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} changed while it was being packed")]
    Changed(PathBuf),
    #[error("cannot write the result {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A packed result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub sha256: String,
    pub bytes: u64,
    pub files: usize,
}

/// Writes the tar of `analysis`'s contents to `out` (replaced).
pub fn pack(analysis: &Path, out: &Path) -> Result<Packed, ResultError> {
    let write_err = |source| ResultError::Write {
        path: out.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(analysis).map_err(|source| ResultError::Read {
        path: analysis.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ResultError::NotPlain(
            ANALYSIS_DIR.to_string(),
            "not a folder",
        ));
    }
    let _ = fs::remove_file(out);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(write_err)?;
    let mut tar = tar::Builder::new(Hashing {
        inner: BufWriter::new(file),
        hasher: Sha256::new(),
        bytes: 0,
    });
    let mut files = 0;
    add_dir(&mut tar, analysis, "", &mut files)?;
    let hashing = tar.into_inner().map_err(write_err)?;
    let Hashing {
        inner,
        hasher,
        bytes,
    } = hashing;
    inner
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?
        .sync_data()
        .map_err(write_err)?;
    Ok(Packed {
        sha256: hex(&hasher.finalize()),
        bytes,
        files,
    })
}

/// Appends the entries of `dir` (at `prefix` in the tar), sorted by name.
fn add_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    files: &mut usize,
) -> Result<(), ResultError> {
    let read_err = |source| ResultError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        entries.push((entry.file_name(), entry.path()));
    }
    entries.sort();
    for (name, path) in entries {
        let rel = match name.to_str() {
            Some(n) => format!("{prefix}{n}"),
            None => {
                return Err(ResultError::BadName(format!(
                    "{prefix}{}",
                    name.to_string_lossy()
                )));
            }
        };
        let meta = fs::symlink_metadata(&path).map_err(|source| ResultError::Read {
            path: path.clone(),
            source,
        })?;
        let t = meta.file_type();
        if t.is_file() && rel.ends_with(".tmp") {
            continue;
        }
        let shown = format!("{ANALYSIS_DIR}/{rel}");
        if t.is_symlink() {
            return Err(ResultError::NotPlain(shown, "a symbolic link"));
        }
        if !t.is_file() && !t.is_dir() {
            return Err(ResultError::NotPlain(shown, "a FIFO, socket or device"));
        }
        if !valid_upload_path(&shown) {
            return Err(ResultError::BadName(shown));
        }
        let mut header = tar::Header::new_gnu();
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_uid(0);
        header.set_gid(0);
        let append_err = |source| ResultError::Write {
            path: PathBuf::from(&shown),
            source,
        };
        if t.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, format!("{rel}/"), io::empty())
                .map_err(append_err)?;
            add_dir(tar, &path, &format!("{rel}/"), files)?;
        } else {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(&path)
                .map_err(|source| ResultError::Read {
                    path: path.clone(),
                    source,
                })?;
            let opened = file.metadata().map_err(|source| ResultError::Read {
                path: path.clone(),
                source,
            })?;
            if !opened.is_file() || opened.ino() != meta.ino() {
                return Err(ResultError::Changed(path));
            }
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(opened.len());
            let mut counted = Counted { inner: file, n: 0 };
            tar.append_data(&mut header, &rel, (&mut counted).take(opened.len()))
                .map_err(append_err)?;
            if counted.n != opened.len() {
                return Err(ResultError::Changed(path));
            }
            *files += 1;
        }
    }
    Ok(())
}

/// A reader that counts what it gave.
struct Counted {
    inner: File,
    n: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[path = "tests/result.rs"]
mod tests;
