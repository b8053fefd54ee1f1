//! File names of the installed models and runtimes, shared by `lab-setup
//! models` (which installs them into one folder) and `lab-analyze` (which
//! loads them from it). Only names: where the folder is, is each binary's
//! business.

/// The default Whisper model: base (multilingual), GGML, mostly f16.
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
