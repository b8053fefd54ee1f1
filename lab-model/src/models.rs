//! File names of the installed models and runtimes, shared by `lab-setup
//! models` (which installs them into one folder) and `lab-analyze` (which
//! loads them from it). Only names, the record of the default Whisper model
//! and the description of a Whisper model file: where the folder is, is each
//! binary's business.

use serde::{Deserialize, Serialize};

/// The Whisper model installed by a plain `lab-setup models`: base
/// (multilingual), GGML, mostly f16. Also the fallback when no default is
/// recorded ([`WHISPER_DEFAULT`] is absent: installs older than the record).
pub const WHISPER_BASE: &str = "ggml-base.bin";
/// Whisper tiny.en (English only), GGML; installed with `lab-setup models --tiny-en`.
pub const WHISPER_TINY_EN: &str = "ggml-tiny.en.bin";
/// The CTranslate2 checkpoint folder Whisper base is converted from (faster-whisper can run it).
pub const WHISPER_BASE_CT2_DIR: &str = "whisper-base-ct2";
/// The CTranslate2 checkpoint folder of tiny.en.
pub const WHISPER_TINY_EN_CT2_DIR: &str = "whisper-tiny.en-ct2";
/// Silero VAD, ONNX.
pub const VAD_MODEL: &str = "silero_vad.onnx";
/// ONNX Runtime's shared library: `ort` with `api-31` needs exactly 1.32.0.
pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.32.0";
/// The unversioned link to [`ORT_LIBRARY`] in the same folder.
pub const ORT_LIBRARY_LINK: &str = "libonnxruntime.so";
/// liblsl (Lab Streaming Layer), as the pylsl wheel ships it: its SONAME,
/// the same for liblsl 1.16-1.18.
pub const LSL_LIBRARY: &str = "liblsl.so.2";
/// The record of the Whisper model `lab-analyze` uses when given no
/// `--model`: a [`WhisperModelInfo`] as JSON, written by `lab-setup models`.
pub const WHISPER_DEFAULT: &str = "whisper-default.json";

/// The file name a Whisper model installed as `name` gets: `ggml-<name>.bin`,
/// as whisper.cpp's own downloads are named (`ggml-large-v3-turbo-q5_0.bin`).
pub fn whisper_file_name(name: &str) -> String {
    format!("ggml-{name}.bin")
}

/// What identifies a Whisper model file: recorded in [`WHISPER_DEFAULT`] for
/// the default model, and in every transcript for the model that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhisperModelInfo {
    /// File name inside the models folder (the record), or as given (`--model`).
    pub file: String,
    /// Model name: `base`, `large-v3-turbo-q5_0`, or what the lab chose.
    pub name: String,
    /// File size in bytes.
    pub bytes: u64,
    /// Type of the matrices, from the GGML header's `ftype`: `f32`, `f16`,
    /// `q8_0`, `q5_0`, ... (see [`ggml_ftype_name`]).
    pub weights: String,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    /// Modification time (ns since the Unix epoch) when `sha256` was taken:
    /// with `bytes`, what lets the analyzer reuse the checksum of an unchanged
    /// file instead of hashing it on every run. Absent in transcripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ns: Option<i128>,
}

impl WhisperModelInfo {
    /// Parses a [`WHISPER_DEFAULT`] record.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain struct") + "\n"
    }
}

/// The name of a GGML Whisper file's `ftype` (the header's last field;
/// quantized files add ggml's quantization version times 1000, which is
/// ignored here as whisper.cpp ignores it): what its matrices are stored as.
pub fn ggml_ftype_name(ftype: i32) -> &'static str {
    match ftype % 1000 {
        0 => "f32",
        1 => "f16",
        2 => "q4_0",
        3 => "q4_1",
        4 => "q4_1_some_f16",
        7 => "q8_0",
        8 => "q5_0",
        9 => "q5_1",
        10 => "q2_k",
        11 => "q3_k",
        12 => "q4_k",
        13 => "q5_k",
        14 => "q6_k",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_record_round_trips_and_old_transcripts_lack_the_time() {
        let info = WhisperModelInfo {
            file: whisper_file_name("large-v3-turbo-q5_0"),
            name: "large-v3-turbo-q5_0".into(),
            bytes: 574_041_195,
            weights: ggml_ftype_name(2008).into(),
            sha256: "ab".repeat(32),
            modified_ns: Some(1_764_000_000_000_000_000),
        };
        assert_eq!(info.file, "ggml-large-v3-turbo-q5_0.bin");
        assert_eq!(info.weights, "q5_0");
        assert_eq!(WhisperModelInfo::from_json(&info.to_json()).unwrap(), info);
        let bare = WhisperModelInfo {
            modified_ns: None,
            ..info
        };
        assert!(!bare.to_json().contains("modified_ns"));
        assert_eq!(WhisperModelInfo::from_json(&bare.to_json()).unwrap(), bare);
        assert_eq!(ggml_ftype_name(1), "f16");
        assert_eq!(ggml_ftype_name(2007), "q8_0");
        assert_eq!(ggml_ftype_name(99), "unknown");
    }
}
