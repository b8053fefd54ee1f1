//! The CTranslate2 `model.bin` reader: a bounds-checked parse of the format
//! (version 6, `WhisperSpec` revision 3) into named variables, each a shape,
//! an element type and a byte range of the file. It checks what it reads
//! (version, spec, byte counts, truncation, duplicates, aliases) so that a
//! broken download fails here, with the file and the field named.

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::error::ConvertError;

/// Element types of CTranslate2 variables, by their id in `model.bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        }
    }

    pub(super) fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::Bf16)
    }
}

/// One variable: its shape (row-major), element type and bytes in the file.
#[derive(Debug, Clone)]
pub(super) struct Ct2Var {
    pub(super) dims: Vec<usize>,
    pub(super) dtype: Ct2Dtype,
    pub(super) data: Range<usize>,
}

/// A parsed `model.bin`, holding the file's bytes and where each variable lies.
pub(super) struct Ct2Model {
    pub(super) path: PathBuf,
    pub(super) bytes: Vec<u8>,
    vars: HashMap<String, Ct2Var>,
    aliases: HashMap<String, String>,
}

/// Bounds-checked little-endian reader: every read says what it was reading,
/// so a truncated file is reported with the field that ran past the end.
struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8], ConvertError> {
        if self.buf.len() - self.pos < n {
            return Err(ConvertError::Truncated {
                path: self.path.to_path_buf(),
                what: what(),
                offset: self.pos,
                need: n,
                len: self.buf.len(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, what: impl FnOnce() -> String) -> Result<u8, ConvertError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: impl FnOnce() -> String) -> Result<u16, ConvertError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, ConvertError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A CTranslate2 string: `u16` length that counts a trailing NUL, then bytes.
    fn string(&mut self, what: impl Fn() -> String) -> Result<String, ConvertError> {
        let n = self.u16(&what)? as usize;
        let raw = self.take(n, &what)?;
        let malformed = |why: &str| ConvertError::Malformed {
            path: self.path.to_path_buf(),
            what: format!("{}: {why}", what()),
        };
        let Some((&0, text)) = raw.split_last() else {
            return Err(malformed("string is not NUL-terminated"));
        };
        String::from_utf8(text.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }
}

impl Ct2Model {
    pub(super) fn read(path: &Path) -> Result<Self, ConvertError> {
        let bytes = fs::read(path).map_err(|source| ConvertError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, bytes)
    }

    pub(super) fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, ConvertError> {
        let mut c = Cursor {
            path,
            buf: &bytes,
            pos: 0,
        };
        let version = c.u32(|| "format version".into())?;
        if version != 6 {
            return Err(ConvertError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let spec = c.string(|| "spec name".into())?;
        if spec != "WhisperSpec" {
            return Err(ConvertError::UnsupportedSpec {
                path: path.to_path_buf(),
                found: spec,
            });
        }
        let revision = c.u32(|| "spec revision".into())?;
        if revision != 3 {
            return Err(ConvertError::UnsupportedRevision {
                path: path.to_path_buf(),
                found: revision,
            });
        }
        let count = c.u32(|| "variable count".into())?;
        // The count is untrusted: a variable takes at least 9 bytes, so never
        // reserve more than the file could hold.
        let mut vars = HashMap::with_capacity((count as usize).min(bytes.len() / 9));
        for i in 0..count {
            let name = c.string(|| format!("name of variable #{i}"))?;
            let rank = c.u8(|| format!("rank of {name}"))?;
            let mut dims = Vec::with_capacity(rank as usize);
            for _ in 0..rank {
                dims.push(c.u32(|| format!("dims of {name}"))? as usize);
            }
            let id = c.u8(|| format!("dtype of {name}"))?;
            let dtype = Ct2Dtype::from_id(id).ok_or_else(|| ConvertError::UnknownDtype {
                path: path.to_path_buf(),
                name: name.clone(),
                id,
            })?;
            let found = c.u32(|| format!("byte count of {name}"))? as usize;
            let expected = dims
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
                .unwrap_or(usize::MAX);
            if found != expected {
                return Err(ConvertError::ByteCount {
                    path: path.to_path_buf(),
                    name,
                    dims,
                    dtype: dtype.name(),
                    found,
                    expected,
                });
            }
            let start = c.pos;
            c.take(found, || format!("data of {name}"))?;
            let var = Ct2Var {
                dims,
                dtype,
                data: start..start + found,
            };
            if vars.insert(name.clone(), var).is_some() {
                return Err(ConvertError::Malformed {
                    path: path.to_path_buf(),
                    what: format!("variable {name} appears twice"),
                });
            }
        }
        let n_aliases = c.u32(|| "alias count".into())?;
        let mut aliases = HashMap::new();
        for i in 0..n_aliases {
            let alias = c.string(|| format!("name of alias #{i}"))?;
            let target = c.string(|| format!("target of alias {alias}"))?;
            if !vars.contains_key(&target) {
                return Err(ConvertError::Malformed {
                    path: path.to_path_buf(),
                    what: format!("alias {alias} points to unknown variable {target}"),
                });
            }
            aliases.insert(alias, target);
        }
        if c.pos != bytes.len() {
            return Err(ConvertError::Malformed {
                path: path.to_path_buf(),
                what: format!(
                    "{} unexpected bytes after the aliases (two files joined twice?)",
                    bytes.len() - c.pos
                ),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            vars,
            aliases,
        })
    }

    pub(super) fn get(&self, name: &str) -> Option<&Ct2Var> {
        self.vars
            .get(name)
            .or_else(|| self.vars.get(self.aliases.get(name)?))
    }

    pub(super) fn require(&self, name: &str) -> Result<&Ct2Var, ConvertError> {
        self.get(name).ok_or_else(|| ConvertError::Missing {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    /// A variable that must have exactly `rank` dimensions; returns its dims.
    pub(super) fn dims(&self, name: &str, rank: usize) -> Result<&[usize], ConvertError> {
        let v = self.require(name)?;
        if v.dims.len() != rank {
            return Err(ConvertError::Malformed {
                path: self.path.clone(),
                what: format!("variable {name} has rank {}, expected {rank}", v.dims.len()),
            });
        }
        Ok(&v.dims)
    }

    pub(super) fn scalar_int(&self, name: &str) -> Result<i64, ConvertError> {
        let v = self.require(name)?;
        let b = &self.bytes[v.data.clone()];
        let value = match (v.dtype, b.len()) {
            (Ct2Dtype::I8, 1) => b[0] as i8 as i64,
            (Ct2Dtype::I16, 2) => i16::from_le_bytes([b[0], b[1]]) as i64,
            (Ct2Dtype::I32, 4) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
            _ => {
                return Err(ConvertError::Malformed {
                    path: self.path.clone(),
                    what: format!("{name} should be an integer scalar"),
                });
            }
        };
        Ok(value)
    }

    pub(super) fn count_layers(&self, stack: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.get(&format!("{stack}/layer_{i}/self_attention/linear_0/weight"))
                    .is_some()
            })
            .count()
    }
}
