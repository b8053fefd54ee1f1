//! Speech to text with whisper.cpp (through whisper-rs): a model loaded once,
//! a state per call; audio goes in as VAD-packed windows (`chunks`), words
//! come out with times on the original timeline.
//!
//! Words are assembled from tokens on raw bytes, not per-token strings: a
//! Cyrillic letter is two UTF-8 bytes and BPE tokens regularly split one.

use std::path::Path;

use lab_model::analysis::{Speaker, TranscriptSegment, Word};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use crate::audio::sample_to_ns;
use crate::chunks::Window;

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error(
        "failed to load the Whisper model {path}: {message} (run `lab-setup models`, or pass --model with a GGML file)"
    )]
    Model { path: String, message: String },
    #[error("whisper failed: {0}")]
    Run(String),
}

/// Beam width by default: 5, like faster-whisper's and whisper.cpp's own
/// command line. On scripts/bench-transcribe (six clips, 2 threads) it cuts
/// WER from 0.80 to 0.76 for ~45 % more time.
pub const DEFAULT_BEAM: usize = 5;

#[derive(Debug, Clone)]
pub struct Options {
    /// ISO code (`ru`, `en`) or `auto`.
    pub language: String,
    pub threads: usize,
    /// 1 = greedy decoding; more = beam search of that width.
    pub beam: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            language: "ru".into(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            beam: DEFAULT_BEAM,
        }
    }
}

pub struct Transcriber {
    ctx: WhisperContext,
    pub model_name: String,
}

impl Transcriber {
    pub fn new(model: &Path) -> Result<Self, TranscribeError> {
        whisper_rs::install_logging_hooks();
        let ctx = WhisperContext::new_with_params(model, WhisperContextParameters::default())
            .map_err(|e| TranscribeError::Model {
                path: model.display().to_string(),
                message: e.to_string(),
            })?;
        let size = std::fs::metadata(model).map(|m| m.len()).unwrap_or(0);
        let name = model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            ctx,
            model_name: format!("{name} ({size} bytes)"),
        })
    }

    /// Transcribes the windows of `audio` (16 kHz mono, whose sample 0 is at
    /// `offset_ns` on the session clock). `progress(done, total)` after each window.
    pub fn transcribe(
        &self,
        audio: &[f32],
        windows: &[Window],
        offset_ns: i64,
        speaker: Speaker,
        opts: &Options,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<TranscriptSegment>, TranscribeError> {
        let run = |e: whisper_rs::WhisperError| TranscribeError::Run(e.to_string());
        let mut state = self.ctx.create_state().map_err(run)?;
        let eot = self.ctx.token_eot();
        let mut out = Vec::new();
        for (wi, w) in windows.iter().enumerate() {
            let strategy = if opts.beam > 1 {
                SamplingStrategy::BeamSearch {
                    beam_size: opts.beam as i32,
                    patience: -1.0,
                }
            } else {
                SamplingStrategy::Greedy { best_of: 5 }
            };
            let mut params = FullParams::new(strategy);
            params.set_language(Some(if opts.language == "auto" {
                "auto"
            } else {
                &opts.language
            }));
            params.set_n_threads(opts.threads as i32);
            params.set_token_timestamps(true);
            // Windows are independent stretches of speech; carrying text over
            // invites repetition loops, the classic Whisper hallucination.
            params.set_no_context(true);
            params.set_suppress_nst(true);
            params.set_print_progress(false);
            params.set_print_realtime(false);
            params.set_print_special(false);
            params.set_print_timestamps(false);
            let samples = w.samples(audio);
            state.full(params, &samples).map_err(run)?;
            // Token times are in 10 ms units from the window start.
            let span = |t0: i64, t1: i64| {
                let (a, b) =
                    w.to_original_range((t0.max(0) as usize) * 160, (t1.max(0) as usize) * 160);
                (offset_ns + sample_to_ns(a), offset_ns + sample_to_ns(b))
            };
            for seg in state.as_iter() {
                let mut words: Vec<Word> = Vec::new();
                let mut cur: Option<(Vec<u8>, i64, i64, Vec<f32>)> = None;
                let flush = |cur: &mut Option<(Vec<u8>, i64, i64, Vec<f32>)>,
                             words: &mut Vec<Word>| {
                    if let Some((bytes, t0, t1, ps)) = cur.take() {
                        let text = String::from_utf8_lossy(&bytes).trim().to_string();
                        if !text.is_empty() {
                            let (start_ns, end_ns) = span(t0, t1.max(t0));
                            words.push(Word {
                                start_ns,
                                end_ns,
                                text,
                                confidence: ps.iter().sum::<f32>() / ps.len().max(1) as f32,
                                speaker,
                            });
                        }
                    }
                };
                for ti in 0..seg.n_tokens() {
                    let Some(tok) = seg.get_token(ti) else {
                        continue;
                    };
                    if tok.token_id() >= eot {
                        continue; // special and timestamp tokens
                    }
                    let data = tok.token_data();
                    let bytes = tok.to_bytes().unwrap_or_default();
                    let starts_word = bytes.first() == Some(&b' ') || cur.is_none();
                    if starts_word {
                        flush(&mut cur, &mut words);
                        cur = Some((bytes.to_vec(), data.t0, data.t1, vec![data.p]));
                    } else if let Some((b, _, t1, ps)) = cur.as_mut() {
                        b.extend_from_slice(bytes);
                        *t1 = data.t1;
                        ps.push(data.p);
                    }
                }
                flush(&mut cur, &mut words);
                let text = seg
                    .to_str_lossy()
                    .map(|t| t.trim().to_string())
                    .unwrap_or_default();
                if words.is_empty() || text.is_empty() {
                    continue;
                }
                out.push(TranscriptSegment {
                    start_ns: words[0].start_ns,
                    end_ns: words[words.len() - 1].end_ns,
                    text,
                    speaker,
                    words,
                });
            }
            progress(wi + 1, windows.len());
        }
        Ok(out)
    }
}
