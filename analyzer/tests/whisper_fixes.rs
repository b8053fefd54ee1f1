//! The build-time fixes to whisper.cpp (`analyzer/whisper-patch/fixes.cmake`)
//! checked by what they change, with the real Whisper model on real speech:
//! a token's log-probability at T > 0 is the model's own (not that of the
//! sharpened distribution sampled from), a second call on the same state
//! and samples (the encoder's output reused) decodes what a fresh state does,
//! and beam search at T = 0 keeps five distinct beams alive at every step.

mod common;

use std::collections::HashSet;
use std::ffi::{c_int, c_void};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperSysContext,
    WhisperSysState, WhisperTokenData,
};

/// A few seconds of Russian from espeak-ng, 16 kHz mono. Each call has its
/// own folder: the tests run at once, and one removing a folder the other
/// still writes into would hand that one a truncated file.
fn speech() -> Vec<f32> {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "analyzer-whisper-fixes-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("speech.wav");
    common::require("espeak-ng");
    let status = Command::new("espeak-ng")
        .args(["-v", "ru", "-s", "150", "-w"])
        .arg(&wav)
        .arg("Так, ввожу номер СНИЛС. Не понимаю, что такое льготная категория.")
        .status()
        .unwrap();
    assert!(status.success(), "espeak-ng failed: {status}");
    let pcm = analyzer::audio::decode(&wav).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    pcm.mono()
}

fn params(temperature: f32) -> FullParams<'static, 'static> {
    with_strategy(SamplingStrategy::Greedy { best_of: 1 }, temperature)
}

fn with_strategy(strategy: SamplingStrategy, temperature: f32) -> FullParams<'static, 'static> {
    let mut p = FullParams::new(strategy);
    p.set_language(Some("ru"));
    p.set_n_threads(2);
    p.set_no_context(true);
    p.set_temperature(temperature);
    p.set_temperature_inc(0.0);
    p.set_print_progress(false);
    p.set_print_realtime(false);
    p.set_print_special(false);
    p.set_print_timestamps(false);
    p
}

/// (id, p, plog) of every token of the last decoding.
fn tokens(state: &whisper_rs::WhisperState) -> Vec<(i32, f32, f32)> {
    state
        .as_iter()
        .flat_map(|seg| {
            (0..seg.n_tokens())
                .filter_map(|i| seg.get_token(i))
                .map(|t| (t.token_id(), t.token_data().p, t.token_data().plog))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The installed Whisper model on a whisper.cpp built with the fixes, and
/// the speech to decode.
fn fixed_model_and_speech() -> (WhisperContext, Vec<f32>) {
    assert!(
        analyzer::transcribe::whisper_fixes_in(),
        "whisper.cpp lacks the build fixes: {}",
        analyzer::transcribe::whisper_system_info()
    );
    // whisper.cpp's own log lines go to the `log` crate (silent here).
    whisper_rs::install_logging_hooks();
    let model = common::models().whisper();
    let ctx = WhisperContext::new_with_params(&model, WhisperContextParameters::default()).unwrap();
    (ctx, speech())
}

#[test]
fn log_probabilities_at_t_above_zero_are_the_models_and_the_encoder_is_reused() {
    let (ctx, samples) = fixed_model_and_speech();

    // At T = 0.5 a token is sampled from softmax(logits / 0.5): its `p` is
    // that distribution's, its `plog` must be log softmax(logits). Unfixed,
    // plog = ln p for every token.
    let mut state = ctx.create_state().unwrap();
    state.full(params(0.5), &samples).unwrap();
    let toks = tokens(&state);
    assert!(toks.len() > 5, "too few tokens: {toks:?}");
    let apart = toks
        .iter()
        .filter(|(_, p, plog)| *p > 0.0 && (plog - p.ln()).abs() > 0.01)
        .count();
    // (Unfixed, no token at all is apart: ln(exp(x)) = x to 1e-6.)
    assert!(
        apart >= 3,
        "plog is the sharpened distribution's on {} of {} tokens: {toks:?}",
        toks.len() - apart,
        toks.len()
    );
    // Sharpening raises a likely token's probability: the model's own
    // log-probability of a sampled token is never above it by much.
    assert!(
        toks.iter()
            .all(|(_, p, plog)| *plog <= p.ln() + 0.05 || *p < 0.5),
        "{toks:?}"
    );

    // At T = 0 (greedy, no sampling) the same samples decode alike on a
    // fresh state and on one that has just encoded them (reused encoder).
    let mut fresh = ctx.create_state().unwrap();
    fresh.full(params(0.0), &samples).unwrap();
    let mut reused = ctx.create_state().unwrap();
    reused.full(params(0.0), &samples).unwrap();
    reused.full(params(0.0), &samples).unwrap();
    let ids = |s: &whisper_rs::WhisperState| tokens(s).into_iter().map(|t| t.0).collect::<Vec<_>>();
    assert_eq!(ids(&fresh), ids(&reused));
    // And different samples on that state are encoded anew, not mistaken
    // for the last ones.
    let tail = &samples[samples.len() / 2..];
    let mut other = ctx.create_state().unwrap();
    other.full(params(0.0), tail).unwrap();
    reused.full(params(0.0), tail).unwrap();
    assert_eq!(ids(&other), ids(&reused));
    assert_ne!(ids(&other), ids(&fresh));
}

/// Every live decoder's token ids, as whisper.cpp hands them to the
/// logits-filter callback before each step.
struct Seen(Mutex<Vec<Vec<i32>>>);

/// # Safety
/// `user_data` points to a `Seen` that outlives the `whisper_full` call;
/// `tokens` to `n_tokens` token records.
unsafe extern "C" fn record(
    _ctx: *mut WhisperSysContext,
    _state: *mut WhisperSysState,
    tokens: *const WhisperTokenData,
    n_tokens: c_int,
    _logits: *mut f32,
    user_data: *mut c_void,
) {
    // SAFETY: the contract above (whisper.cpp's arguments, our user data).
    let seen = unsafe { &*(user_data as *const Seen) };
    // SAFETY: whisper.cpp passes the decoder's `n_tokens` tokens.
    let ids = unsafe { analyzer::transcribe::loop_watch::token_ids(tokens, n_tokens) };
    seen.0.lock().unwrap().push(ids);
}

#[test]
fn beam_search_at_t0_keeps_five_distinct_beams_alive_at_every_step() {
    let (ctx, samples) = fixed_model_and_speech();

    let seen = Seen(Mutex::new(Vec::new()));
    let mut p = with_strategy(
        SamplingStrategy::BeamSearch {
            beam_size: 5,
            patience: -1.0,
        },
        0.0,
    );
    // SAFETY: `seen` outlives `full` below; `record` only appends to it.
    unsafe {
        p.set_filter_logits_callback(Some(record));
        p.set_filter_logits_callback_user_data(&seen as *const Seen as *mut c_void);
    }
    let mut state = ctx.create_state().unwrap();
    state.full(p, &samples).unwrap();
    let text: String = state.as_iter().map(|s| s.to_string()).collect();
    let calls = seen.0.into_inner().unwrap();

    // One pass per 30 s window whisper.cpp decodes: each starts with decoder
    // 0 alone after the prompt (no tokens yet), then every live beam is
    // handed over before each step.
    let mut passes: Vec<Vec<Vec<i32>>> = Vec::new();
    for ids in calls {
        if ids.is_empty() {
            passes.push(Vec::new());
        } else {
            passes
                .last_mut()
                .expect("a beam before the prompt's call")
                .push(ids);
        }
    }
    assert!(!passes.is_empty(), "no call at all");
    for (pi, pass) in passes.iter().enumerate() {
        let last = pass.iter().map(Vec::len).max().unwrap_or(0);
        assert!(last >= 5, "pass {pi}: only {last} steps ({text:?})");
        for n in 1..=last {
            let beams: Vec<&Vec<i32>> = pass.iter().filter(|b| b.len() == n).collect();
            // Unfixed, the five beams all take the same first token (the
            // decoders are copies at the first step) and a beam that ends
            // keeps its slot, so the search narrows.
            assert_eq!(
                beams.len(),
                5,
                "pass {pi}, step {n}: {} live beams ({text:?})",
                beams.len()
            );
            let distinct: HashSet<&Vec<i32>> = beams.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                5,
                "pass {pi}, step {n}: beams alike: {beams:?}"
            );
        }
    }
    assert!(!text.trim().is_empty(), "nothing kept");
}

unsafe extern "C" {
    /// `analyzer/whisper-patch/fixes.cmake`'s LAB_MEL_GETTER: the state's
    /// log-mel (`*n_mel` bins of the returned number of frames each).
    fn lab_whisper_state_mel(
        state: *mut WhisperSysState,
        data: *mut *const f32,
        n_mel: *mut c_int,
    ) -> c_int;
}

/// The log-mel whisper.cpp decodes from, as (bins, frames per bin, data).
type Mel = Mutex<Option<(usize, usize, Vec<f32>)>>;

/// # Safety
/// As [`record`], with `user_data` pointing to a [`Mel`].
unsafe extern "C" fn read_mel(
    _ctx: *mut WhisperSysContext,
    state: *mut WhisperSysState,
    _tokens: *const WhisperTokenData,
    _n_tokens: c_int,
    _logits: *mut f32,
    user_data: *mut c_void,
) {
    // SAFETY: the contract above.
    let mel = unsafe { &*(user_data as *const Mel) };
    let mut mel = mel.lock().unwrap();
    if mel.is_some() {
        return;
    }
    let mut data: *const f32 = std::ptr::null();
    let mut n_mel: c_int = 0;
    // SAFETY: `state` is whisper.cpp's live state, its mel computed before
    // any decoding; the getter hands out its buffer and sizes.
    let n_len = unsafe { lab_whisper_state_mel(state, &mut data, &mut n_mel) };
    let (n_mel, n_len) = (n_mel as usize, n_len as usize);
    // SAFETY: the buffer holds n_mel x n_len floats while the state lives.
    let all = unsafe { std::slice::from_raw_parts(data, n_mel * n_len) };
    *mel = Some((n_mel, n_len, all.to_vec()));
}

#[test]
fn the_log_mel_after_the_audio_is_zero_as_faster_whisper_pads_it() {
    let (ctx, samples) = fixed_model_and_speech();

    let mel: Mel = Mutex::new(None);
    let mut p = params(0.0);
    // SAFETY: `mel` outlives `full` below; `read_mel` only fills it.
    unsafe {
        p.set_filter_logits_callback(Some(read_mel));
        p.set_filter_logits_callback_user_data(&mel as *const Mel as *mut c_void);
    }
    let mut state = ctx.create_state().unwrap();
    state.full(p, &samples).unwrap();
    let (n_mel, n_len, data) = mel.into_inner().unwrap().expect("no decoding step");

    // One frame per 160 samples (10 ms), as fixes.cmake keeps them; whisper.cpp
    // pads the samples with 30 s (3000 frames) of zeros before the log-mel.
    let audio = samples.len() / 160 + 1;
    assert_eq!(n_mel, 80, "Whisper base has 80 mel bins");
    assert!(n_len >= audio + 2900, "{n_len} frames for {audio} of audio");
    for bin in 0..n_mel {
        let frames = &data[bin * n_len..(bin + 1) * n_len];
        // Unfixed, these frames sit at the window's clamp level (about -0.7).
        let padded = &frames[audio..];
        assert!(
            padded.iter().all(|&v| v == 0.0),
            "bin {bin}: a padding frame of {:?} is not 0.0",
            padded.iter().find(|&&v| v != 0.0)
        );
        // The speech's own frames are left as they were.
        let spoken = &frames[..audio - 1];
        assert!(
            spoken.iter().any(|&v| v != 0.0),
            "bin {bin}: the audio's frames are all 0.0"
        );
    }
    let spoken_max = (0..n_mel)
        .flat_map(|b| &data[b * n_len..b * n_len + audio - 1])
        .fold(f32::MIN, |m, &v| m.max(v));
    assert!(spoken_max > 0.5, "speech's loudest frame {spoken_max}");
}
