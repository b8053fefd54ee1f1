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
    let windows: Vec<Window> = chunks::pack(audio, &speech.spans, &speech.tight);
    // Words are placed inside the tight spans by `word_times`.
    Ok(whisper.transcribe(audio, &windows, offset_ns, speaker, opts, progress)?)
}
