//! WebVTT and SRT subtitles from a session transcript, for players, for
//! review outside the app and for the subtitle track of clips.
//!
//! Whisper segments can run for half a minute; subtitles that long cannot be
//! read, so a segment is split into cues of at most [`MAX_CUE_MS`] and
//! [`MAX_CUE_CHARS`], at word boundaries and on the words' own timestamps
//! when the transcript has them.

use crate::types::{TranscriptSegment, TranscriptView};
use std::fmt::Write;

/// Longest cue, in milliseconds.
pub const MAX_CUE_MS: i64 = 7_000;
/// Longest cue text, in characters (two lines of 42).
pub const MAX_CUE_CHARS: usize = 84;
const MAX_LINE_CHARS: usize = 42;

#[derive(Debug, Clone, PartialEq)]
struct Cue {
    start_ms: i64,
    end_ms: i64,
    speaker: String,
    text: String,
}

/// The transcript as WebVTT, each cue voiced (`<v Участник>`) by its speaker.
pub fn vtt(transcript: &TranscriptView) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for cue in cues(transcript) {
        let _ = writeln!(
            out,
            "{} --> {}",
            timestamp(cue.start_ms, '.'),
            timestamp(cue.end_ms, '.')
        );
        if let Some(voice) = speaker_label(&cue.speaker, &transcript.language) {
            let _ = write!(out, "<v {voice}>");
        }
        let _ = writeln!(out, "{}\n", vtt_escape(&cue.text));
    }
    out
}

/// The transcript as SRT. SRT has no voices, so moderator cues are prefixed
/// with the speaker's name and participant cues are left plain.
pub fn srt(transcript: &TranscriptView) -> String {
    srt_cues(transcript, cues(transcript))
}

/// The SRT of `[from_ms, to_ms)` only, shifted so `from_ms` is 0: the
/// subtitle track of a clip cut from that range.
pub fn srt_range(transcript: &TranscriptView, from_ms: i64, to_ms: i64) -> String {
    let clipped = cues(transcript)
        .into_iter()
        .filter_map(|c| {
            let start = c.start_ms.max(from_ms);
            let end = c.end_ms.min(to_ms);
            (start < end).then(|| Cue {
                start_ms: start - from_ms,
                end_ms: end - from_ms,
                ..c
            })
        })
        .collect();
    srt_cues(transcript, clipped)
}

fn srt_cues(transcript: &TranscriptView, cues: Vec<Cue>) -> String {
    let mut out = String::new();
    for (i, cue) in cues.into_iter().enumerate() {
        let prefix = match speaker_label(&cue.speaker, &transcript.language) {
            Some(name) if cue.speaker == "moderator" => format!("{name}: "),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "{}\n{} --> {}\n{prefix}{}\n\n",
            i + 1,
            timestamp(cue.start_ms, ','),
            timestamp(cue.end_ms, ','),
            cue.text
        );
    }
    out
}

/// All cues of the transcript in start order (WebVTT requires it, and the two
/// speakers' segments may interleave).
fn cues(transcript: &TranscriptView) -> Vec<Cue> {
    let mut cues: Vec<Cue> = transcript.segments.iter().flat_map(split_segment).collect();
    cues.sort_by_key(|c| c.start_ms);
    cues
}

/// Splits one segment into readable cues, at word boundaries.
fn split_segment(seg: &TranscriptSegment) -> Vec<Cue> {
    // Bounded first, so the arithmetic below cannot overflow on a hostile time.
    let start = seg.start_ms.clamp(0, crate::limits::MAX_SESSION_MS);
    let end = seg
        .end_ms
        .clamp(start + 1, crate::limits::MAX_SESSION_MS + 1);
    // (text, start, end) of each word; without word timestamps, time is
    // shared out in proportion to the characters before each word.
    let words: Vec<(String, i64, i64)> = if seg.words.is_empty() {
        let text = clean(&seg.text);
        let words: Vec<&str> = text.split_whitespace().collect();
        let total: usize = words.iter().map(|w| w.chars().count() + 1).sum();
        let mut before = 0;
        words
            .into_iter()
            .map(|w| {
                let len = w.chars().count() + 1;
                let at = |chars: usize| start + (end - start) * chars as i64 / total.max(1) as i64;
                let word = (w.to_string(), at(before), at(before + len));
                before += len;
                word
            })
            .collect()
    } else {
        seg.words
            .iter()
            .map(|w| {
                let text = clean(&w.text);
                let s = w.start_ms.clamp(start, end);
                (text, s, w.end_ms.clamp(s, end))
            })
            .filter(|w| !w.0.is_empty())
            .collect()
    };

    let mut cues: Vec<Cue> = Vec::new();
    let mut current: Option<Cue> = None;
    for (text, w_start, w_end) in words {
        if let Some(cue) = current.as_mut() {
            let fits = cue.text.chars().count() + 1 + text.chars().count() <= MAX_CUE_CHARS
                && w_end - cue.start_ms <= MAX_CUE_MS;
            if fits {
                cue.text.push(' ');
                cue.text.push_str(&text);
                cue.end_ms = w_end;
                continue;
            }
            cues.extend(current.take());
        }
        current = Some(Cue {
            // The first cue opens with the segment, not its first word.
            start_ms: if cues.is_empty() { start } else { w_start },
            end_ms: w_end,
            speaker: seg.speaker.clone(),
            text,
        });
    }
    cues.extend(current);
    if let Some(last) = cues.last_mut() {
        last.end_ms = last.end_ms.max(end);
    }
    for cue in &mut cues {
        cue.end_ms = cue.end_ms.max(cue.start_ms + 1);
        cue.text = two_lines(&cue.text);
    }
    cues
}

/// Breaks a cue longer than one line at the space nearest its middle.
fn two_lines(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= MAX_LINE_CHARS {
        return text.to_string();
    }
    let middle = chars / 2;
    let best = text
        .char_indices()
        .enumerate()
        .filter(|(_, (_, c))| *c == ' ')
        .min_by_key(|(n, _)| n.abs_diff(middle))
        .map(|(_, (byte, _))| byte);
    match best {
        Some(at) => format!("{}\n{}", &text[..at], &text[at + 1..]),
        None => text.to_string(),
    }
}

/// One line of words: whitespace collapsed (a blank line would end the cue)
/// and control characters dropped.
fn clean(text: &str) -> String {
    text.split_whitespace()
        .map(|w| w.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn speaker_label(speaker: &str, language: &str) -> Option<&'static str> {
    let en = language == "en";
    match speaker {
        "participant" => Some(if en {
            "Participant"
        } else {
            "Участник"
        }),
        "moderator" => Some(if en {
            "Moderator"
        } else {
            "Модератор"
        }),
        _ => None,
    }
}

/// `HH:MM:SS.mmm` (`,` before the milliseconds in SRT); hours grow past 99.
fn timestamp(ms: i64, separator: char) -> String {
    let ms = ms.max(0);
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000
    )
}

/// Cue text may not hold `<` or `&` unescaped; `>` is escaped too so that
/// `-->` can never appear.
fn vtt_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Word;

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
