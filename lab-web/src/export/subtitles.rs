//! WebVTT and SRT subtitles from a session transcript, for players, for
//! review outside the app and for the subtitle track of clips. The cue rules
//! and writers are `lab_model::subtitles`' (shared with `lab-analyze
//! transcribe --format vtt|srt`); this module feeds it the stored transcript.

use lab_model::analysis::Speaker;
use lab_model::subtitles::{self, Cue, Segment, TimedWord};
#[cfg(test)]
use lab_model::subtitles::{MAX_CUE_CHARS, MAX_CUE_MS, MAX_LINE_CHARS, timestamp};

use crate::types::TranscriptView;

/// The transcript as WebVTT, each cue voiced (`<v Участник>`) by its speaker.
pub fn vtt(transcript: &TranscriptView) -> String {
    subtitles::vtt(&cues(transcript), &transcript.language)
}

/// The transcript as SRT. SRT has no voices, so moderator cues are prefixed
/// with the speaker's name and participant cues are left plain.
pub fn srt(transcript: &TranscriptView) -> String {
    subtitles::srt(&cues(transcript), &transcript.language)
}

/// The SRT of `[from_ms, to_ms)` only, shifted so `from_ms` is 0: the
/// subtitle track of a clip cut from that range.
pub fn srt_range(transcript: &TranscriptView, from_ms: i64, to_ms: i64) -> String {
    let clipped = subtitles::clip(cues(transcript), from_ms, to_ms);
    subtitles::srt(&clipped, &transcript.language)
}

/// All cues of the transcript in start order.
fn cues(transcript: &TranscriptView) -> Vec<Cue> {
    let segments: Vec<Segment> = transcript
        .segments
        .iter()
        .map(|s| Segment {
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            speaker: speaker(&s.speaker),
            text: &s.text,
            words: s
                .words
                .iter()
                .map(|w| TimedWord {
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                    text: &w.text,
                })
                .collect(),
        })
        .collect();
    subtitles::cues(&segments)
}

/// The stored speaker name (`import::speaker_name`) back as a channel role;
/// `None` for a name this version does not know.
fn speaker(name: &str) -> Option<Speaker> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TranscriptSegment, Word};

    fn transcript(segments: Vec<TranscriptSegment>) -> TranscriptView {
        TranscriptView {
            status: "ok".into(),
            language: "ru".into(),
            segments,
        }
    }

    fn segment(start_ms: i64, end_ms: i64, speaker: &str, text: &str) -> TranscriptSegment {
        TranscriptSegment {
            id: 1,
            start_ms,
            end_ms,
            speaker: speaker.into(),
            text: text.into(),
            words: vec![],
            suspect: None,
        }
    }

    /// A segment whose words are `n` copies of "слово", one every `step_ms`.
    fn worded(start_ms: i64, n: i64, step_ms: i64) -> TranscriptSegment {
        let words: Vec<Word> = (0..n)
            .map(|i| Word {
                i,
                start_ms: start_ms + i * step_ms,
                end_ms: start_ms + i * step_ms + step_ms - 50,
                text: format!("слово{i}"),
                confidence: 0.9,
            })
            .collect();
        TranscriptSegment {
            text: words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            end_ms: words.last().unwrap().end_ms,
            words,
            ..segment(start_ms, 0, "participant", "")
        }
    }

    #[test]
    fn timestamps_include_hours_past_one_and_past_ninety_nine() {
        assert_eq!(timestamp(0, '.'), "00:00:00.000");
        assert_eq!(timestamp(3_723_456, '.'), "01:02:03.456");
        assert_eq!(timestamp(3_723_456, ','), "01:02:03,456");
        assert_eq!(timestamp(100 * 3_600_000 + 5, '.'), "100:00:00.005");
        assert_eq!(timestamp(-5, '.'), "00:00:00.000");
    }

    #[test]
    fn vtt_has_header_voices_and_escapes() {
        let t = transcript(vec![
            segment(
                3_723_000,
                3_725_500,
                "participant",
                "Жму <b>Далее</b> & жду",
            ),
            segment(1_000, 2_000, "moderator", "Что ищете?"),
            segment(2_500, 2_600, "unknown", "мм"),
        ]);
        assert_eq!(
            vtt(&t),
            "WEBVTT\n\n\
             00:00:01.000 --> 00:00:02.000\n<v Модератор>Что ищете?\n\n\
             00:00:02.500 --> 00:00:02.600\nмм\n\n\
             01:02:03.000 --> 01:02:05.500\n<v Участник>Жму &lt;b&gt;Далее&lt;/b&gt; &amp; жду\n\n"
        );
    }

    #[test]
    fn srt_is_numbered_with_comma_milliseconds() {
        let t = transcript(vec![
            segment(1_000, 2_000, "moderator", "Что ищете?"),
            segment(3_723_000, 3_725_500, "participant", "Кнопку\n\nдалее"),
        ]);
        assert_eq!(
            srt(&t),
            "1\n00:00:01,000 --> 00:00:02,000\nМодератор: Что ищете?\n\n\
             2\n01:02:03,000 --> 01:02:05,500\nКнопку далее\n\n"
        );
    }

    #[test]
    fn long_segment_splits_on_word_timestamps() {
        // 20 words, one a second: 7 s per cue at most.
        let t = transcript(vec![worded(10_000, 20, 1_000)]);
        let cues = cues(&t);
        assert!(cues.len() >= 3, "{cues:?}");
        assert_eq!(cues[0].start_ms, 10_000);
        assert_eq!(cues.last().unwrap().end_ms, 29_950);
        for pair in cues.windows(2) {
            assert!(pair[0].end_ms <= pair[1].start_ms, "{pair:?}");
        }
        for cue in &cues {
            assert!(cue.end_ms - cue.start_ms <= MAX_CUE_MS, "{cue:?}");
            assert!(cue.text.chars().count() <= MAX_CUE_CHARS, "{cue:?}");
            assert!(
                cue.text
                    .lines()
                    .all(|l| l.chars().count() <= MAX_LINE_CHARS),
                "{cue:?}"
            );
        }
        // A cue starts where its first word starts.
        assert_eq!(
            cues[1].start_ms,
            10_000 + 1_000 * cues[0].text.split_whitespace().count() as i64
        );
        let words: Vec<String> = cues
            .iter()
            .flat_map(|c| c.text.split_whitespace().map(String::from))
            .collect();
        assert_eq!(words.len(), 20, "no word lost or doubled");
    }

    #[test]
    fn long_text_without_words_splits_by_characters() {
        let text = "очень длинная фраза ".repeat(12); // 240 chars in 3 s
        let t = transcript(vec![segment(0, 3_000, "participant", &text)]);
        let cues = cues(&t);
        assert!(cues.len() >= 3, "{cues:?}");
        assert_eq!(cues[0].start_ms, 0);
        assert_eq!(cues.last().unwrap().end_ms, 3_000);
        assert!(cues.iter().all(|c| c.text.chars().count() <= MAX_CUE_CHARS));
        assert!(cues.iter().all(|c| c.end_ms > c.start_ms));
    }

    #[test]
    fn srt_range_shifts_and_clips_to_the_range() {
        let t = transcript(vec![
            segment(1_000, 2_000, "participant", "до"),
            segment(9_000, 12_000, "participant", "на границе"),
            segment(13_000, 14_000, "participant", "внутри"),
            segment(30_000, 31_000, "participant", "после"),
        ]);
        assert_eq!(
            srt_range(&t, 10_000, 20_000),
            "1\n00:00:00,000 --> 00:00:02,000\nна границе\n\n\
             2\n00:00:03,000 --> 00:00:04,000\nвнутри\n\n"
        );
    }
}
