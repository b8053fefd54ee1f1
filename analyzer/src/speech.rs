//! Audio in, transcript segments out: speech activity first (silence is
//! never sent to Whisper), then VAD-packed windows through whisper.cpp, with
//! every time mapped back to the input's timeline.

use lab_model::analysis::{Speaker, SpeechSpan, TranscriptSegment};

use crate::audio::sample_to_ns;
use crate::chunks::{self, Window};
use crate::transcribe::{Options, TranscribeError, Transcriber};
use crate::vad::{self, SampleSpan, Vad, VadError};

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error(transparent)]
    Vad(#[from] VadError),
    #[error(transparent)]
    Transcribe(#[from] TranscribeError),
}

/// Speech found in one channel.
#[derive(Debug, Clone)]
pub struct Speech {
    /// Spans for Whisper: pauses under 2 s kept inside (they help it spell).
    pub spans: Vec<SampleSpan>,
    /// Tight spans (300 ms pauses split them): where words can be.
    pub tight: Vec<SampleSpan>,
    /// The tight spans on the session clock, for the speech-activity lane.
    pub timed: Vec<SpeechSpan>,
}

/// Finds speech in `audio` (16 kHz mono, sample 0 at `offset_ns`).
pub fn detect(
    vad: &mut Vad,
    audio: &[f32],
    offset_ns: i64,
    speaker: Speaker,
) -> Result<Speech, VadError> {
    let probs = vad.probabilities(audio)?;
    let spans = vad::spans(&probs, audio.len(), vad::SpanParams::default());
    let tight = vad::spans(&probs, audio.len(), vad::SpanParams::tight());
    tracing::debug!(
        "speech spans (s): {:?}",
        spans
            .iter()
            .map(|&(s, e)| (s as f64 / 16e3, e as f64 / 16e3))
            .collect::<Vec<_>>()
    );
    let timed = tight
        .iter()
        .map(|&(s, e)| SpeechSpan {
            start_ns: offset_ns + sample_to_ns(s),
            end_ns: offset_ns + sample_to_ns(e),
            speaker,
        })
        .collect();
    Ok(Speech {
        spans,
        tight,
        timed,
    })
}

/// Whisper's token times drift into the pauses a window contains; a word
/// that starts in silence is moved to the start of the speech that follows
/// (within 2 s), keeping its order. Pure, on session times.
pub fn snap_to_speech(segments: &mut [TranscriptSegment], speech: &[SpeechSpan]) {
    const REACH_NS: i64 = 2_000_000_000;
    let mut floor = i64::MIN;
    for seg in segments.iter_mut() {
        for w in &mut seg.words {
            let inside = speech
                .iter()
                .any(|s| (s.start_ns..s.end_ns).contains(&w.start_ns));
            if !inside
                && let Some(next) = speech
                    .iter()
                    .find(|s| s.start_ns > w.start_ns && s.start_ns - w.start_ns <= REACH_NS)
            {
                let len = (w.end_ns - w.start_ns).max(0);
                w.start_ns = next.start_ns;
                w.end_ns = w
                    .end_ns
                    .max(w.start_ns + len.min(next.end_ns - next.start_ns));
            }
            // Moving a word must not put it before the one it followed.
            w.start_ns = w.start_ns.max(floor);
            w.end_ns = w.end_ns.max(w.start_ns);
            floor = w.start_ns;
        }
        if let (Some(first), Some(last)) = (seg.words.first(), seg.words.last()) {
            seg.start_ns = first.start_ns;
            seg.end_ns = seg.end_ns.max(last.end_ns);
        }
    }
}

/// Transcribes the speech in `audio` (16 kHz mono, sample 0 at `offset_ns`).
pub fn transcribe_speech(
    whisper: &Transcriber,
    audio: &[f32],
    speech: &Speech,
    offset_ns: i64,
    speaker: Speaker,
    opts: &Options,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<TranscriptSegment>, SpeechError> {
    let windows: Vec<Window> = chunks::pack(audio, &speech.spans);
    let mut segments = whisper.transcribe(audio, &windows, offset_ns, speaker, opts, progress)?;
    snap_to_speech(&mut segments, &speech.timed);
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_model::analysis::Word;

    fn word(t: f64, text: &str) -> Word {
        let ns = (t * 1e9) as i64;
        Word {
            start_ns: ns,
            end_ns: ns + 300_000_000,
            text: text.into(),
            confidence: 1.0,
            speaker: Speaker::Mixed,
        }
    }

    #[test]
    fn words_in_silence_move_to_the_speech_after_them() {
        let speech = [(1.0, 2.0), (4.0, 5.0)].map(|(a, b)| SpeechSpan {
            start_ns: (a * 1e9) as i64,
            end_ns: (b * 1e9) as i64,
            speaker: Speaker::Mixed,
        });
        let mut segs = vec![TranscriptSegment {
            start_ns: 1_200_000_000,
            end_ns: 4_500_000_000,
            text: "a b c".into(),
            speaker: Speaker::Mixed,
            words: vec![
                word(1.2, "a"),
                word(2.5, "b"),
                word(3.9, "c"),
                word(9.0, "far"),
            ],
        }];
        snap_to_speech(&mut segs, &speech);
        let starts: Vec<f64> = segs[0]
            .words
            .iter()
            .map(|w| w.start_ns as f64 / 1e9)
            .collect();
        // "a" was in speech; "b" and "c" were in the pause before 4.0; "far" has no speech within reach.
        assert_eq!(starts, [1.2, 4.0, 4.0, 9.0]);
        assert!(segs[0].words.iter().all(|w| w.end_ns >= w.start_ns));
    }
}
