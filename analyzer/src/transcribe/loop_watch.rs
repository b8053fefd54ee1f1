//! Ends a decoding attempt early once every one of its decoders is stuck in
//! a repetition loop.
//!
//! whisper.cpp's beam search keeps its beams decoding until enough of them
//! have written the end token or the window's 224-token limit is reached,
//! and a beam caught in a loop («всю всю всю …») never writes the end token:
//! on clean espeak-ng speech three windows in five did that at T = 0, five
//! beams running to the limit, and most of our extra wall time against
//! faster-whisper was spent there (docs/transcription.md). Such an attempt is
//! rejected by the guards afterwards anyway ([`super::guards`]: a run of a
//! repeated n-gram is a loop), so nothing is lost by stopping it as soon as
//! the outcome is certain: when, at one step, *all* of the attempt's decoders
//! are alive and every one of them ends in the same n-gram said
//! [`TAIL_REPEATS`] times, and no hypothesis has ended yet (once one has, the
//! patched whisper.cpp stops polling the abort callback, so a clean ended
//! hypothesis waiting to be chosen is never thrown away:
//! `analyzer/whisper-patch/fixes.cmake`, fix 5).
//!
//! whisper.cpp calls [`observe`] for each live decoder at each step with the
//! decoder's tokens (its logits are left as they are), and polls
//! [`LoopWatch::aborted`] through its abort callback while it computes the
//! next step; the attempt then ends with an error that
//! [`super::Transcriber::transcribe`] reads as "looped", and the next
//! temperature is tried. The last temperature is never watched, so a window
//! always has a finished attempt.

use std::ffi::{c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use whisper_rs::{WhisperSysContext, WhisperSysState, WhisperTokenData};

/// How many copies of an n-gram at the end of a sequence make it a loop for
/// the watch: more than the guards' three (a spoken «да, да, да» must not end
/// an attempt), so a sequence the watch calls looping is one the guards
/// reject too, whatever it would have become.
pub const TAIL_REPEATS: usize = 4;

/// Longest n-gram (tokens) the watch looks for, as the guards' `max_unit`.
pub const MAX_UNIT: usize = 12;

/// Whether `ids` ends in a unit of 1 to `max_unit` items repeated at least
/// `repeats` times in a row.
pub fn ends_in_loop<T: PartialEq>(ids: &[T], repeats: usize, max_unit: usize) -> bool {
    let repeats = repeats.max(2);
    (1..=max_unit).any(|unit| {
        let span = unit * repeats;
        if span > ids.len() {
            return false;
        }
        let tail = &ids[ids.len() - span..];
        let first = &tail[..unit];
        tail.chunks(unit).all(|c| c == first)
    })
}

#[derive(Debug, Default)]
struct Step {
    /// Length of the sequences seen at this step (all live decoders of an
    /// attempt grow by one token per step).
    len: usize,
    seen: usize,
    looping: usize,
}

/// What one attempt's decoders have shown so far; shared with whisper.cpp's
/// decoder threads through [`observe`]'s user data.
#[derive(Debug)]
pub struct LoopWatch {
    decoders: usize,
    /// The first special token: text tokens are the ids below it.
    eot: i32,
    step: Mutex<Step>,
    abort: AtomicBool,
}

impl LoopWatch {
    /// `decoders`: how many decoders the attempt runs (the beam width at
    /// T = 0 with beam search, 1 greedy, best-of at T > 0).
    pub fn new(decoders: usize, eot: i32) -> Self {
        Self {
            decoders: decoders.max(1),
            eot,
            step: Mutex::new(Step::default()),
            abort: AtomicBool::new(false),
        }
    }

    /// One live decoder's sequence at the current step.
    pub fn see(&self, ids: &[i32]) {
        let text: Vec<i32> = ids.iter().copied().filter(|&id| id < self.eot).collect();
        let looping = ends_in_loop(&text, TAIL_REPEATS, MAX_UNIT);
        let Ok(mut step) = self.step.lock() else {
            return;
        };
        if step.len != ids.len() {
            *step = Step {
                len: ids.len(),
                ..Step::default()
            };
        }
        step.seen += 1;
        step.looping += usize::from(looping);
        if step.seen == self.decoders && step.looping == self.decoders {
            self.abort.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the attempt has been given up.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }
}

/// whisper.cpp's logits-filter callback: hands the decoder's token ids to
/// the [`LoopWatch`] behind `user_data`; the logits are not touched.
///
/// # Safety
/// `user_data` must point to a `LoopWatch` that outlives the
/// `whisper_full` call, and `tokens` to `n_tokens` token records (both as
/// whisper.cpp passes them).
pub unsafe extern "C" fn observe(
    _ctx: *mut WhisperSysContext,
    _state: *mut WhisperSysState,
    tokens: *const WhisperTokenData,
    n_tokens: c_int,
    _logits: *mut f32,
    user_data: *mut c_void,
) {
    if user_data.is_null() {
        return;
    }
    // SAFETY: the caller's contract above.
    let watch = unsafe { &*(user_data as *const LoopWatch) };
    // SAFETY: the caller's contract above.
    watch.see(&unsafe { token_ids(tokens, n_tokens) });
}

/// The ids of the `n_tokens` token records at `tokens`, as whisper.cpp
/// hands a decoder's tokens to its logits-filter callback.
///
/// # Safety
/// `tokens` must point to `n_tokens` token records (or be null).
pub unsafe fn token_ids(tokens: *const WhisperTokenData, n_tokens: c_int) -> Vec<i32> {
    let n = usize::try_from(n_tokens).unwrap_or(0);
    if tokens.is_null() || n == 0 {
        return Vec::new();
    }
    // SAFETY: the caller's contract above.
    unsafe { std::slice::from_raw_parts(tokens, n) }
        .iter()
        .map(|t| t.id)
        .collect()
}

/// whisper.cpp's (and ggml's) abort callback: whether the [`LoopWatch`]
/// behind `user_data` has given the attempt up.
///
/// # Safety
/// As [`observe`]: `user_data` points to a live `LoopWatch`.
pub unsafe extern "C" fn abort(user_data: *mut c_void) -> bool {
    if user_data.is_null() {
        return false;
    }
    // SAFETY: the caller's contract above.
    unsafe { &*(user_data as *const LoopWatch) }.aborted()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EOT: i32 = 50257;

    #[test]
    fn a_tail_loop_needs_the_repeats_at_the_end() {
        assert!(ends_in_loop(&[1, 2, 7, 7, 7, 7], 4, 12));
        assert!(!ends_in_loop(&[1, 2, 7, 7, 7], 4, 12));
        assert!(ends_in_loop(&[9, 3, 4, 3, 4, 3, 4, 3, 4], 4, 12));
        // A loop that ended is not a loop at the end.
        assert!(!ends_in_loop(&[7, 7, 7, 7, 7, 1, 2], 4, 12));
        // Units longer than max_unit are not looked for.
        let unit: Vec<i32> = (0..13).collect();
        let seq: Vec<i32> = unit.iter().cycle().take(13 * 4).copied().collect();
        assert!(!ends_in_loop(&seq, 4, 12));
        assert!(ends_in_loop(&seq, 4, 13));
        assert!(!ends_in_loop::<i32>(&[], 4, 12));
    }

    #[test]
    fn aborts_only_when_every_decoder_loops_at_one_step() {
        let looping = [1, 2, 5, 5, 5, 5];
        let clean = [1, 2, 3, 4, 5, 6];
        let w = LoopWatch::new(3, EOT);
        w.see(&looping);
        w.see(&clean);
        w.see(&looping);
        assert!(!w.aborted(), "one decoder is still clean");
        // Next step: all three loop.
        for _ in 0..3 {
            w.see(&[&looping[..], &[5]].concat());
        }
        assert!(w.aborted());
    }

    #[test]
    fn a_finished_decoder_keeps_the_attempt_alive() {
        // Two of three decoders call at this step: one finished (or failed)
        // and its sequence may be the clean one whisper.cpp chooses.
        let w = LoopWatch::new(3, EOT);
        let looping = [5, 5, 5, 5, 5];
        w.see(&looping);
        w.see(&looping);
        assert!(!w.aborted());
        // A new step with the two again: still not all three.
        w.see(&[&looping[..], &[5]].concat());
        w.see(&[&looping[..], &[5]].concat());
        assert!(!w.aborted());
    }

    #[test]
    fn timestamps_inside_the_loop_do_not_hide_it() {
        // Text tokens 11, 12 repeated with rising timestamp tokens between.
        let seq = [
            EOT + 10,
            11,
            12,
            EOT + 20,
            11,
            12,
            EOT + 30,
            11,
            12,
            EOT + 40,
            11,
            12,
        ];
        let w = LoopWatch::new(1, EOT);
        w.see(&seq);
        assert!(w.aborted());
    }
}
