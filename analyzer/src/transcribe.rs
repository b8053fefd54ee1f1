//! Speech to text with whisper.cpp (through whisper-rs): a model loaded once,
//! a state per call; audio goes in as VAD-packed windows (`chunks`), words
//! come out with times on the original timeline.
//! Words are assembled and placed by `word_times`.

use std::path::Path;
use std::sync::Arc;

use lab_model::analysis::{Speaker, SuspectReason, TranscriptSegment, Word};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use crate::audio::sample_to_ns;
use crate::chunks::Window;
use crate::word_times::{self, Token, WindowWord};

pub mod alignment;
pub mod guards;
pub mod loop_watch;

/// Whisper's prompt holds at most 223 tokens (half its 448-token text
/// context, less the "previous text" marker); a little room is left.
pub const MAX_PROMPT_TOKENS: usize = 200;

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

/// Samples drawn per attempt at T > 0 in greedy mode, the most probable
/// kept (faster-whisper's `best_of`).
pub const BEST_OF: usize = 5;

#[derive(Debug, Clone)]
pub struct Options {
    /// ISO code (`ru`, `en`) or `auto`.
    pub language: String,
    pub threads: usize,
    /// 1 = greedy decoding; more = beam search of that width.
    pub beam: usize,
    /// Initial prompt for every window (domain vocabulary): Whisper spells
    /// what it has read. Dropped for a window whose decoding echoes it
    /// ([`guards::echoes_prompt`]). See [`crate::prompt`].
    pub prompt: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            language: "ru".into(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            beam: DEFAULT_BEAM,
            prompt: None,
        }
    }
}

pub struct Transcriber {
    ctx: WhisperContext,
    pub model_name: String,
}

/// Whether whisper.cpp was built with `analyzer/whisper-patch/fixes.cmake`
/// (its beam search takes the top-k tokens at T = 0 instead of sampling
/// them; its alignment pass computes no logits it does not read; a token's
/// log-probability at T > 0 is the model's, not the sharpened one's; the
/// encoder runs once for all the temperatures of a window; its T = 0 beam
/// stays five wide until five hypotheses have ended; the log-mel frames
/// after the audio are 0.0, as faster-whisper pads them). A build
/// made before the script (or an earlier version of it) lacks them: `cargo
/// clean -p whisper-rs-sys` rebuilds whisper.cpp with them.
pub fn whisper_fixes_in() -> bool {
    whisper_system_info().contains("LAB_WHISPER_FIXES = 6")
}

/// whisper.cpp's system-info line, read once per process. Its
/// `whisper_print_system_info` builds the line in one static string, so two
/// threads calling it at once corrupt the heap (seen: a test binary aborted
/// with `free(): invalid next size`); every caller goes through here.
pub fn whisper_system_info() -> &'static str {
    static INFO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INFO.get_or_init(|| whisper_rs::print_system_info().to_owned())
}

impl Transcriber {
    /// The model at `model`, with word times by alignment.
    pub fn new(model: &Path) -> Result<Self, TranscribeError> {
        Self::with_word_alignment(model, true)
    }

    /// `align`: time words by DTW over the model's alignment heads (what
    /// word times are read for; 7-18 % more time on two bench clips,
    /// docs/transcription.md), else by whisper.cpp's token-time heuristic,
    /// enough where only segment text is wanted (`--format txt`).
    pub fn with_word_alignment(model: &Path, align: bool) -> Result<Self, TranscribeError> {
        whisper_rs::install_logging_hooks();
        if !whisper_fixes_in() {
            tracing::warn!(
                "whisper.cpp was built without analyzer/whisper-patch/fixes.cmake: its beam search samples at T = 0 and DTW word times are slow (run `cargo clean -p whisper-rs-sys` and build again)"
            );
        }
        // Word times by alignment (DTW over the model's alignment heads).
        let mut cp = WhisperContextParameters::default();
        if let Some(shape) = read_shape(model).filter(|_| align) {
            cp.dtw_parameters(whisper_rs::DtwParameters {
                mode: alignment::heads(&shape),
                ..Default::default()
            });
        }
        let ctx =
            WhisperContext::new_with_params(model, cp).map_err(|e| TranscribeError::Model {
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

    /// Tokens of `text` for Whisper's prompt, at most [`MAX_PROMPT_TOKENS`]
    /// from its start (whisper.cpp itself would keep the *end* of a longer one).
    pub fn prompt_tokens(&self, text: &str) -> Result<Vec<i32>, TranscribeError> {
        let text = text.replace('\0', " ");
        let text = text.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        // A token is at least one byte, so this bound is never exceeded
        // (whisper-rs mishandles whisper.cpp's "buffer too small" answer).
        let mut tokens = self
            .ctx
            .tokenize(text, text.len() + 8)
            .map_err(|e| TranscribeError::Run(e.to_string()))?;
        tokens.truncate(MAX_PROMPT_TOKENS);
        Ok(tokens)
    }

    /// Transcribes the windows of `audio` (16 kHz mono, whose sample 0 is at
    /// `offset_ns` on the session clock). `progress(done, total)` after each window.
    ///
    /// Each window is decoded at temperature 0, then, while the rules of
    /// [`guards`] reject the result, at 0.2, 0.4 … 1.0; the first accepted
    /// attempt is kept, else the best one ([`guards::best_attempt`]). A loop
    /// that survives every attempt is cut where it begins and its segment
    /// marked suspect, as is a window whose best attempt still fails a rule.
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
        let eot = self.ctx.token_eot();
        let prompt = match &opts.prompt {
            Some(p) => self.prompt_tokens(p)?,
            None => Vec::new(),
        };
        let prompt_terms = opts
            .prompt
            .as_deref()
            .map(guards::prompt_terms)
            .unwrap_or_default();
        let th = guards::Thresholds::default();
        let mut out = Vec::new();
        for (wi, w) in windows.iter().enumerate() {
            let samples = w.samples(audio);
            // A fresh state per window: whisper.cpp seeds its first decoder's
            // random generator once per state, and its beam search draws its
            // candidates from it even at T = 0, so a shared state would make a
            // window's words depend on the windows before it.
            let mut state = self.ctx.create_state().map_err(run)?;
            let mut attempts: Vec<(Vec<RawSegment>, guards::Quality)> = Vec::new();
            // Dropped for the rest of the window once a decoding echoes it.
            let mut with_prompt = !prompt.is_empty();
            let mut ti = 0;
            while let Some(&temperature) = guards::TEMPERATURES.get(ti) {
                // Under the beam strategy whisper.cpp runs a single sampling
                // decoder at T > 0 (its best-of count is unset there), where
                // faster-whisper draws best_of 5. Five samples were measured:
                // no better on the bench's TUNE clips, 45 % slower (docs/transcription.md).
                let strategy = if opts.beam > 1 {
                    SamplingStrategy::BeamSearch {
                        beam_size: opts.beam as i32,
                        patience: -1.0,
                    }
                } else {
                    SamplingStrategy::Greedy {
                        best_of: BEST_OF as i32,
                    }
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
                if with_prompt {
                    // whisper.cpp drops it itself at temperatures >= 0.5, as
                    // faster-whisper's prompt_reset_on_temperature.
                    params.set_tokens(&prompt);
                }
                params.set_suppress_nst(true);
                // One temperature per call: the choice among attempts is ours.
                params.set_temperature(temperature);
                params.set_temperature_inc(0.0);
                params.set_logprob_thold(th.avg_logprob);
                params.set_no_speech_thold(th.no_speech);
                params.set_print_progress(false);
                params.set_print_realtime(false);
                params.set_print_special(false);
                params.set_print_timestamps(false);
                // Every attempt but the last may end early, once all its
                // decoders loop (`loop_watch`): the guards would reject it.
                let decoders = match (opts.beam > 1, temperature > 0.0) {
                    (true, false) => opts.beam,
                    (false, true) => BEST_OF,
                    _ => 1,
                };
                let watch = Arc::new(loop_watch::LoopWatch::new(decoders, eot));
                if ti + 1 < guards::TEMPERATURES.len() {
                    let user_data = Arc::as_ptr(&watch) as *mut std::ffi::c_void;
                    // SAFETY: `watch` lives until after `full` returns (it is
                    // held here); the callbacks only read through it. (Not
                    // whisper-rs's `set_abort_callback_safe`: its trampoline
                    // reads the boxed closure as the wrong type.)
                    unsafe {
                        params.set_filter_logits_callback(Some(loop_watch::observe));
                        params.set_filter_logits_callback_user_data(user_data);
                        params.set_abort_callback(Some(loop_watch::abort));
                        params.set_abort_callback_user_data(user_data);
                    }
                }
                match state.full(params, &samples) {
                    Ok(_) => {}
                    Err(_) if watch.aborted() => {
                        tracing::debug!(
                            "window {wi} T={temperature}: every decoder looped; attempt ended early"
                        );
                        ti += 1;
                        continue;
                    }
                    Err(e) => return Err(run(e)),
                }
                let segs = raw_segments(&state, eot);
                if with_prompt && guards::echoes_prompt(&window_text(&segs, eot), &prompt_terms) {
                    tracing::debug!(
                        "window {wi} T={temperature}: the prompt echoed, decoding again without it: {:?}",
                        window_text(&segs, eot)
                    );
                    with_prompt = false;
                    continue;
                }
                ti += 1;
                let quality = quality(&segs, eot, &th);
                let accepted = quality.accepted(&th);
                tracing::debug!(
                    "window {wi} T={temperature}: {quality:?} accepted={accepted} {:?}",
                    window_text(&segs, eot)
                );
                attempts.push((segs, quality));
                if accepted {
                    break;
                }
            }
            let qualities: Vec<guards::Quality> = attempts.iter().map(|a| a.1).collect();
            let best = if qualities.last().is_some_and(|q| q.accepted(&th)) {
                qualities.len() - 1
            } else {
                guards::best_attempt(&qualities, &th).unwrap_or(0)
            };
            let (mut segs, quality) = attempts.swap_remove(best);
            if quality.is_no_speech(&th) {
                progress(wi + 1, windows.len());
                continue;
            }
            let cut = cut_loops(&mut segs, eot, &th);

            if !cut.is_empty() {
                tracing::warn!("window {wi}: a repetition loop survived every temperature; cut");
            }
            // Judged on what is left after a cut.
            let window_reason =
                if guards::compression_ratio(&window_text(&segs, eot)) > th.compression_ratio {
                    Some(SuspectReason::Compression)
                } else if quality.avg_logprob < th.avg_logprob {
                    Some(SuspectReason::LowLogprob)
                } else {
                    None
                };
            // Words of the whole window first: they are placed together
            // (`word_times::place_words`), by the speech the window holds.
            let mut kept: Vec<(String, usize, usize)> = Vec::new();
            let mut words: Vec<WindowWord> = Vec::new();
            // Token times from the alignment, in window order.
            let text = || segs.iter().flat_map(|s| &s.tokens).filter(|t| t.id < eot);
            let dtw: Vec<i64> = text().map(|t| t.t_dtw).collect();
            let heuristic: Vec<(i64, i64)> = text().map(|t| (t.t0, t.t1)).collect();
            let mut times = alignment::token_times(&dtw, &heuristic).into_iter();
            for (si, seg) in segs.iter().enumerate() {
                let tokens: Vec<Token> = seg
                    .tokens
                    .iter()
                    .filter(|tok| tok.id < eot) // special and timestamp tokens
                    .map(|tok| {
                        let (t0, t1) = times.next().unwrap_or((tok.t0, tok.t1));
                        Token {
                            bytes: tok.bytes.clone(),
                            t0,
                            t1,
                            p: tok.p,
                        }
                    })
                    .collect();
                let text = seg.text(eot);
                let seg_words = word_times::assemble(&tokens);
                // (A cut can leave a segment of punctuation alone.)
                if seg_words.is_empty() || !text.chars().any(char::is_alphanumeric) {
                    continue;
                }
                kept.push((text, seg_words.len(), si));
                words.extend(seg_words);
            }
            let placed = word_times::place_words(w, &words);
            let mut placed_words = words.into_iter().zip(placed).map(|(x, (a, b))| Word {
                start_ns: offset_ns + sample_to_ns(a),
                end_ns: offset_ns + sample_to_ns(b),
                text: x.text,
                confidence: x.confidence,
                speaker,
            });
            for (text, n, si) in kept {
                let words: Vec<Word> = placed_words.by_ref().take(n).collect();
                // A cut flags the segment it happened in; the other rules
                // judge the whole window's text, so every segment of it.
                let reason = if cut.contains(&si) {
                    Some(SuspectReason::Repetition)
                } else {
                    window_reason
                };
                out.push(TranscriptSegment {
                    start_ns: words[0].start_ns,
                    end_ns: words[words.len() - 1].end_ns,
                    text,
                    speaker,
                    words,
                    suspect: reason.is_some(),
                    suspect_reason: reason,
                });
            }
            progress(wi + 1, windows.len());
        }
        Ok(out)
    }
}

/// The shape of the GGML Whisper model at `path`, from its header; `None`
/// if it cannot be read (the model load then reports the problem).
fn read_shape(path: &Path) -> Option<alignment::Shape> {
    use std::io::Read;
    let mut head = [0u8; 48];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    alignment::Shape::from_header(&head)
}

/// One token of a decoding, copied out of whisper.cpp's state (the next
/// attempt overwrites it).
#[derive(Debug, Clone)]
struct RawToken {
    id: i32,
    bytes: Vec<u8>,
    t0: i64,
    t1: i64,
    p: f32,
    plog: f32,
    t_dtw: i64,
}

#[derive(Debug, Clone)]
struct RawSegment {
    tokens: Vec<RawToken>,
    no_speech: f32,
}

impl RawSegment {
    /// The segment's text: its text tokens' bytes (as whisper.cpp's own
    /// segment text, which a cut would make stale).
    fn text(&self, eot: i32) -> String {
        let bytes: Vec<u8> = self
            .tokens
            .iter()
            .filter(|t| t.id < eot)
            .flat_map(|t| t.bytes.iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

fn raw_segments(state: &whisper_rs::WhisperState, eot: i32) -> Vec<RawSegment> {
    state
        .as_iter()
        .map(|seg| RawSegment {
            no_speech: seg.no_speech_probability(),
            tokens: (0..seg.n_tokens())
                .filter_map(|ti| seg.get_token(ti))
                .map(|tok| {
                    let d = tok.token_data();
                    RawToken {
                        id: tok.token_id(),
                        bytes: if tok.token_id() < eot {
                            tok.to_bytes().unwrap_or_default().to_vec()
                        } else {
                            Vec::new()
                        },
                        t0: d.t0,
                        t1: d.t1,
                        p: d.p,
                        plog: d.plog,
                        t_dtw: d.t_dtw,
                    }
                })
                .collect(),
        })
        .collect()
}

fn window_text(segs: &[RawSegment], eot: i32) -> String {
    segs.iter()
        .map(|s| s.text(eot))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The window's text tokens in order, as (segment, token index, id).
fn text_tokens(segs: &[RawSegment], eot: i32) -> Vec<(usize, usize, i32)> {
    segs.iter()
        .enumerate()
        .flat_map(|(si, s)| {
            s.tokens
                .iter()
                .enumerate()
                .filter(|(_, t)| t.id < eot)
                .map(move |(ti, t)| (si, ti, t.id))
        })
        .collect()
}

/// The window's first loop, as a range of its text tokens in window order
/// ([`guards::loop_span`]).
fn loop_span(segs: &[RawSegment], eot: i32, th: &guards::Thresholds) -> Option<(usize, usize)> {
    let toks = text_tokens(segs, eot);
    let ids: Vec<i32> = toks.iter().map(|t| t.2).collect();
    let bytes: Vec<&[u8]> = toks
        .iter()
        .map(|&(si, ti, _)| segs[si].tokens[ti].bytes.as_slice())
        .collect();
    guards::loop_span(&ids, &bytes, th)
}

fn quality(segs: &[RawSegment], eot: i32, th: &guards::Thresholds) -> guards::Quality {
    let text = window_text(segs, eot);
    let (sum, n) = segs
        .iter()
        .flat_map(|s| &s.tokens)
        .fold((0.0f64, 0usize), |(s, n), t| (s + f64::from(t.plog), n + 1));
    guards::Quality {
        compression_ratio: guards::compression_ratio(&text),
        // faster-whisper divides by the token count plus one (the end token).
        avg_logprob: (sum / (n + 1) as f64) as f32,
        no_speech: segs.iter().map(|s| s.no_speech).fold(0.0, f32::max),
        loops: loop_span(segs, eot, th).is_some(),
        empty: text.is_empty(),
    }
}

/// Cuts every loop of the window: its extra copies go, wherever they are
/// (whisper.cpp often writes a loop one segment per copy); the words before
/// it, one copy, and what the decoder wrote once out of it stay. Returns the
/// indices of the segments that lost tokens.
fn cut_loops(segs: &mut [RawSegment], eot: i32, th: &guards::Thresholds) -> Vec<usize> {
    let mut cut = Vec::new();
    // Each pass removes at least one token; the bound only guards the loop.
    for _ in 0..segs.iter().map(|s| s.tokens.len()).sum::<usize>() {
        let Some((a, b)) = loop_span(segs, eot, th) else {
            break;
        };
        let drop: Vec<(usize, usize)> = text_tokens(segs, eot)[a..b]
            .iter()
            .map(|&(si, ti, _)| (si, ti))
            .collect();
        // Later tokens first, so the indices of the others hold.
        for &(si, ti) in drop.iter().rev() {
            segs[si].tokens.remove(ti);
            if !cut.contains(&si) {
                cut.push(si);
            }
        }
    }
    cut.sort_unstable();
    cut
}

#[cfg(test)]
mod tests {
    #[test]
    fn whisper_cpp_is_built_with_our_fixes() {
        // .cargo/config.toml runs analyzer/whisper-patch/fixes.cmake
        // when whisper-rs-sys builds whisper.cpp; without it beam search
        // samples its candidates at T = 0 and DTW computes unread logits.
        assert!(
            super::whisper_fixes_in(),
            "whisper.cpp lacks analyzer/whisper-patch/fixes.cmake: {}",
            super::whisper_system_info()
        );
    }

    #[test]
    fn threads_reading_the_system_info_at_once_all_get_the_whole_line() {
        // Straight through whisper.cpp this corrupted the heap now and then.
        let lines: Vec<&'static str> = std::thread::scope(|s| {
            let readers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..200)
                            .map(|_| super::whisper_system_info())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            readers
                .into_iter()
                .flat_map(|r| r.join().unwrap())
                .collect()
        });
        assert!(lines[0].contains("WHISPER : "), "{}", lines[0]);
        assert!(lines.iter().all(|l| *l == lines[0]));
    }
}
