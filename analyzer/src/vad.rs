//! Speech activity with Silero VAD (ONNX, run by ONNX Runtime through `ort`).
//!
//! The model takes 512 new samples at 16 kHz plus the previous chunk's last
//! 64 samples as context, and carries a recurrent state between calls; it
//! answers a speech probability per 32 ms chunk. Turning probabilities into
//! spans (`spans`) is a pure function with hysteresis, minimum lengths and
//! padding, tested on synthetic probability tracks.

use std::path::Path;

use ort::session::Session;
use ort::value::Tensor;

pub const CHUNK: usize = 512;

/// A stretch of speech as (start, end) sample indices.
pub type SampleSpan = (usize, usize);
const CONTEXT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum VadError {
    #[error("failed to load ONNX Runtime from {path}: {message} (run `lab-setup models`)")]
    Runtime { path: String, message: String },
    #[error("failed to load the Silero VAD model {path}: {message} (run `lab-setup models`)")]
    Model { path: String, message: String },
    #[error("Silero VAD failed: {0}")]
    Run(String),
}

/// Loads ONNX Runtime once per process; later calls reuse it.
pub fn init_runtime(lib: &Path) -> Result<ort::environment::Environment, VadError> {
    static ENV: std::sync::OnceLock<Result<ort::environment::Environment, String>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        ort::init_from(lib)
            .map_err(|e| e.to_string())?
            .with_name("lab-analyze")
            .build()
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|message| VadError::Runtime {
        path: lib.display().to_string(),
        message,
    })
}

pub struct Vad {
    session: Session,
}

impl Vad {
    pub fn new(runtime: &Path, model: &Path) -> Result<Self, VadError> {
        let env = init_runtime(runtime)?;
        let merr = |e: &dyn std::fmt::Display| VadError::Model {
            path: model.display().to_string(),
            message: e.to_string(),
        };
        let session = Session::builder(&env)
            .map_err(|e| merr(&e))?
            .with_intra_threads(1)
            .map_err(|e| merr(&e))?
            .commit_from_file(model)
            .map_err(|e| merr(&e))?;
        Ok(Self { session })
    }

    /// Speech probability of every 512-sample chunk of `pcm` (16 kHz mono).
    pub fn probabilities(&mut self, pcm: &[f32]) -> Result<Vec<f32>, VadError> {
        let run = |e: ort::Error| VadError::Run(e.to_string());
        let mut state = vec![0f32; 2 * 128];
        let mut context = [0f32; CONTEXT];
        let mut probs = Vec::with_capacity(pcm.len() / CHUNK + 1);
        let mut input = vec![0f32; CONTEXT + CHUNK];
        for chunk in pcm.chunks(CHUNK) {
            input[..CONTEXT].copy_from_slice(&context);
            input[CONTEXT..CONTEXT + chunk.len()].copy_from_slice(chunk);
            input[CONTEXT + chunk.len()..].fill(0.0);
            let outputs = self
                .session
                .run(ort::inputs! {
                    "input" => Tensor::from_array(([1usize, CONTEXT + CHUNK], input.clone())).map_err(run)?,
                    "state" => Tensor::from_array(([2usize, 1, 128], state.clone())).map_err(run)?,
                    "sr" => Tensor::from_array(((), vec![16_000i64])).map_err(run)?,
                })
                .map_err(run)?;
            let (_, p) = outputs["output"].try_extract_tensor::<f32>().map_err(run)?;
            probs.push(p.first().copied().unwrap_or(0.0));
            let (_, s) = outputs["stateN"].try_extract_tensor::<f32>().map_err(run)?;
            let n = state.len();
            state.copy_from_slice(&s[..n]);
            context.copy_from_slice(&input[CHUNK..CHUNK + CONTEXT]);
        }
        Ok(probs)
    }
}

/// How probabilities become speech spans.
#[derive(Debug, Clone, Copy)]
pub struct SpanParams {
    /// Speech starts when a chunk's probability reaches this.
    pub threshold: f32,
    /// ... and ends after it stays below this for `min_silence_ms`.
    pub neg_threshold: f32,
    pub min_speech_ms: u32,
    pub min_silence_ms: u32,
    /// Added on both sides so word onsets and tails are not clipped.
    pub pad_ms: u32,
}

impl Default for SpanParams {
    fn default() -> Self {
        // Silence under 2 s stays inside a span, with 400 ms of padding: the
        // natural pauses of think-aloud speech help Whisper segment and
        // spell. Measured on scripts/bench-transcribe: WER 0.86 with 300 ms /
        // 100 ms, 0.75 with these (faster-whisper's defaults), at the cost of
        // more audio sent (wall 14 -> 26 s) and coarser word starts
        // (median error 172 -> 472 ms).
        Self {
            threshold: 0.5,
            neg_threshold: 0.35,
            min_speech_ms: 250,
            min_silence_ms: 2000,
            pad_ms: 400,
        }
    }
}

impl SpanParams {
    /// Tight spans for telling where words can be: 300 ms of silence ends
    /// speech, 100 ms padding.
    pub fn tight() -> Self {
        Self {
            min_silence_ms: 300,
            pad_ms: 100,
            ..Self::default()
        }
    }
}

/// Speech spans as (start, end) sample indices, from per-chunk probabilities.
pub fn spans(probs: &[f32], total_samples: usize, p: SpanParams) -> Vec<SampleSpan> {
    let ms = |m: u32| (m as usize) * 16;
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    let mut silence_since: Option<usize> = None;
    for (i, &prob) in probs.iter().enumerate() {
        let at = i * CHUNK;
        match start {
            None if prob >= p.threshold => {
                start = Some(at);
                silence_since = None;
            }
            Some(s) => {
                if prob >= p.neg_threshold {
                    silence_since = None;
                } else {
                    let since = *silence_since.get_or_insert(at);
                    if at + CHUNK - since >= ms(p.min_silence_ms) {
                        if since - s >= ms(p.min_speech_ms) {
                            out.push((s, since));
                        }
                        start = None;
                        silence_since = None;
                    }
                }
            }
            None => {}
        }
    }
    if let Some(s) = start {
        let end = silence_since.unwrap_or(total_samples).min(total_samples);
        if end.saturating_sub(s) >= ms(p.min_speech_ms) {
            out.push((s, end));
        }
    }
    // Pad, clamp and merge spans the padding made touch.
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (s, e) in out {
        let s = s.saturating_sub(ms(p.pad_ms));
        let e = (e + ms(p.pad_ms)).min(total_samples);
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probability track from (chunks, probability) runs.
    fn track(runs: &[(usize, f32)]) -> Vec<f32> {
        runs.iter()
            .flat_map(|&(n, p)| std::iter::repeat_n(p, n))
            .collect()
    }

    #[test]
    fn span_table() {
        let p = SpanParams {
            pad_ms: 0,
            min_silence_ms: 300,
            ..SpanParams::default()
        };
        // 1 chunk = 512 samples = 32 ms; min speech 250 ms ≈ 8 chunks, min silence 300 ms ≈ 10 chunks.
        type Runs = &'static [(usize, f32)];
        let cases: &[(Runs, &[SampleSpan])] = &[
            (&[(20, 0.0)], &[]),
            (&[(5, 0.0), (20, 0.9), (20, 0.0)], &[(5 * 512, 25 * 512)]),
            // Too short to be speech.
            (&[(5, 0.0), (4, 0.9), (20, 0.0)], &[]),
            // A short dip below neg_threshold does not split a sentence.
            (
                &[(20, 0.9), (5, 0.1), (20, 0.9), (20, 0.0)],
                &[(0, 45 * 512)],
            ),
            // Hysteresis: 0.4 keeps speech going but does not start it.
            (
                &[(20, 0.4), (20, 0.9), (20, 0.4), (20, 0.0)],
                &[(20 * 512, 60 * 512)],
            ),
            // Speech running to the end of the file.
            (&[(10, 0.0), (30, 0.9)], &[(10 * 512, 40 * 512)]),
        ];
        for (runs, want) in cases {
            let t = track(runs);
            assert_eq!(spans(&t, t.len() * 512, p), *want, "{runs:?}");
        }
    }

    #[test]
    fn padding_merges_close_spans_and_clamps() {
        let p = SpanParams {
            pad_ms: 200,
            min_silence_ms: 300,
            ..SpanParams::default()
        };
        let t = track(&[(20, 0.9), (11, 0.0), (20, 0.9), (20, 0.0)]);
        assert_eq!(spans(&t, t.len() * 512, p), vec![(0, 51 * 512 + 3200)]);
    }
}
