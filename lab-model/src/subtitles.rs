//! WebVTT and SRT subtitles from a transcript: the one subtitle writer, used
//! by `lab-analyze transcribe --format vtt|srt` and lab-web's exports and
//! clips. Pure: segments in, text out.
//!
//! Whisper segments can run for half a minute; subtitles that long cannot be
//! read, so a segment is split into cues of at most [`MAX_CUE_MS`] and
//! [`MAX_CUE_CHARS`], at word boundaries and on the words' own timestamps
//! when the transcript has words that spell the segment's text (otherwise
//! the segment's time is shared out over its characters, so no text is
//! dropped); a cue longer than one line is broken into
//! two near its middle. Cues are in start order (WebVTT requires it, and two
//! speakers' segments may interleave). WebVTT voices a participant's or
//! moderator's cue (`<v Участник>`, `<v Moderator>` when the language is
//! `en`); SRT has no voices, so moderator cues are prefixed with the name.
//!
//! ```
//! use lab_model::subtitles::{self, Segment};
//! let seg = Segment { start_ms: 0, end_ms: 1_500, speaker: None, text: "Да", words: vec![] };
//! let cues = subtitles::cues(&[seg]);
//! assert_eq!(subtitles::srt(&cues, "ru"), "1\n00:00:00,000 --> 00:00:01,500\nДа\n\n");
//! ```

use std::fmt::Write;

use crate::analysis::{Speaker, TranscriptSegment};
use crate::bundle::limits::MAX_SESSION_NS;

/// Longest cue, in milliseconds.
pub const MAX_CUE_MS: i64 = 7_000;
/// Longest cue text, in characters (two lines of [`MAX_LINE_CHARS`]).
pub const MAX_CUE_CHARS: usize = 84;
/// Longest cue line, in characters.
pub const MAX_LINE_CHARS: usize = 42;
/// Times are bounded by the bundle contract's longest session, so the cue
/// arithmetic cannot overflow on a hostile time.
const MAX_MS: i64 = MAX_SESSION_NS / 1_000_000;

/// A transcript segment as subtitles see it (times in session milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment<'a> {
    pub start_ms: i64,
    pub end_ms: i64,
    /// `None` for a speaker the reader does not know.
    pub speaker: Option<Speaker>,
    pub text: &'a str,
    /// The segment's words with their times; empty when the transcript has none.
    pub words: Vec<TimedWord<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimedWord<'a> {
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: &'a str,
}

fn ms(ns: i64) -> i64 {
    ns / 1_000_000
}

impl<'a> From<&'a TranscriptSegment> for Segment<'a> {
    fn from(s: &'a TranscriptSegment) -> Self {
        Self {
            start_ms: ms(s.start_ns),
            end_ms: ms(s.end_ns),
            speaker: Some(s.speaker),
            text: &s.text,
            words: s
                .words
                .iter()
                .map(|w| TimedWord {
                    start_ms: ms(w.start_ns),
                    end_ms: ms(w.end_ns),
                    text: &w.text,
                })
                .collect(),
        }
    }
}

/// One subtitle cue.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start_ms: i64,
    pub end_ms: i64,
    pub speaker: Option<Speaker>,
    /// One or two lines.
    pub text: String,
}

/// All cues of the segments, in start order.
pub fn cues(segments: &[Segment<'_>]) -> Vec<Cue> {
    let mut cues: Vec<Cue> = segments.iter().flat_map(split_segment).collect();
    cues.sort_by_key(|c| c.start_ms);
    cues
}

/// The cues of `[from_ms, to_ms)` only, cut to it and shifted so `from_ms`
/// is 0: the subtitle track of a clip cut from that range.
pub fn clip(cues: Vec<Cue>, from_ms: i64, to_ms: i64) -> Vec<Cue> {
    cues.into_iter()
        .filter_map(|c| {
            let start = c.start_ms.max(from_ms);
            let end = c.end_ms.min(to_ms);
            (start < end).then(|| Cue {
                start_ms: start - from_ms,
                end_ms: end - from_ms,
                ..c
            })
        })
        .collect()
}

/// The cues as WebVTT, each participant or moderator cue voiced by its speaker.
pub fn vtt(cues: &[Cue], language: &str) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for cue in cues {
        let _ = writeln!(
            out,
            "{} --> {}",
            timestamp(cue.start_ms, '.'),
            timestamp(cue.end_ms, '.')
        );
        if let Some(voice) = speaker_label(cue.speaker, language) {
            let _ = write!(out, "<v {voice}>");
        }
        let _ = writeln!(out, "{}\n", vtt_escape(&cue.text));
    }
    out
}

/// The cues as SRT, numbered from 1. SRT has no voices, so moderator cues
/// are prefixed with the speaker's name and participant cues are left plain.
pub fn srt(cues: &[Cue], language: &str) -> String {
    let mut out = String::new();
    for (i, cue) in cues.iter().enumerate() {
        let prefix = match speaker_label(cue.speaker, language) {
            Some(name) if cue.speaker == Some(Speaker::Moderator) => format!("{name}: "),
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

/// Splits one segment into readable cues, at word boundaries.
fn split_segment(seg: &Segment<'_>) -> Vec<Cue> {
    // Bounded first, so the arithmetic below cannot overflow on a hostile time.
    let start = seg.start_ms.clamp(0, MAX_MS);
    let end = seg.end_ms.clamp(start + 1, MAX_MS + 1);
    // (text, start, end) of each word. Word timestamps are used when the
    // words spell the segment's text; otherwise (none, or a transcript whose
    // words miss some of it) the segment's time is shared out in proportion
    // to the characters before each word, so no text is ever dropped.
    let words: Vec<(String, i64, i64)> = if !spelled_by_words(seg) {
        let text = clean(seg.text);
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
                let text = clean(w.text);
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
            speaker: seg.speaker,
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

/// Whether the segment's words, joined, are its text (whitespace and
/// control characters aside).
fn spelled_by_words(seg: &Segment<'_>) -> bool {
    let letters = |t: &str| -> String {
        t.chars()
            .filter(|c| !c.is_whitespace() && !c.is_control())
            .collect()
    };
    !seg.words.is_empty()
        && seg
            .words
            .iter()
            .map(|w| letters(w.text))
            .collect::<String>()
            == letters(seg.text)
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

/// The name a cue is voiced by: participants and moderators, in Russian
/// unless the transcript's language is English.
pub fn speaker_label(speaker: Option<Speaker>, language: &str) -> Option<&'static str> {
    let en = language == "en";
    match speaker? {
        Speaker::Participant => Some(if en {
            "Participant"
        } else {
            "Участник"
        }),
        Speaker::Moderator => Some(if en {
            "Moderator"
        } else {
            "Модератор"
        }),
        Speaker::Mixed | Speaker::Ambient => None,
    }
}

/// `HH:MM:SS.mmm` (`,` before the milliseconds in SRT); hours grow past 99.
pub fn timestamp(ms: i64, separator: char) -> String {
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
    use crate::analysis::Word;

    #[test]
    fn a_transcript_segment_becomes_millisecond_cues_with_its_speaker() {
        let seg = TranscriptSegment {
            suspect: false,
            suspect_reason: None,
            start_ns: 1_500_000_000,
            end_ns: 3_250_999_999,
            text: "Не понимаю <куда> нажимать".into(),
            speaker: Speaker::Participant,
            words: vec![Word {
                start_ns: 1_500_000_000,
                end_ns: 1_700_000_000,
                text: " Не".into(),
                confidence: 0.9,
                speaker: Speaker::Participant,
            }],
        };
        // One word of four: the words do not spell the text, so the text is kept.
        let cues = cues(&[Segment::from(&seg)]);
        assert_eq!(
            cues,
            vec![Cue {
                start_ms: 1_500,
                end_ms: 3_250,
                speaker: Some(Speaker::Participant),
                text: "Не понимаю <куда> нажимать".into(),
            }]
        );
        assert_eq!(
            vtt(&cues, "en"),
            "WEBVTT\n\n00:00:01.500 --> 00:00:03.250\n<v Participant>Не понимаю &lt;куда&gt; нажимать\n\n"
        );
    }

    #[test]
    fn words_that_spell_the_text_give_the_cue_times() {
        let words = |texts: &[&'static str]| -> Vec<TimedWord<'static>> {
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| TimedWord {
                    start_ms: 1_000 * i as i64,
                    end_ms: 1_000 * i as i64 + 500,
                    text: t,
                })
                .collect()
        };
        // 12 words of 7 characters at one a second: cut at 7 s.
        let texts: Vec<&'static str> = (0..12).map(|_| "слово").collect();
        let text = texts.join(" ");
        let seg = Segment {
            start_ms: 0,
            end_ms: 11_500,
            speaker: None,
            text: &text,
            words: words(&texts),
        };
        let c = cues(&[seg]);
        assert_eq!((c[0].start_ms, c[0].end_ms), (0, 6_500));
        assert_eq!((c[1].start_ms, c[1].end_ms), (7_000, 11_500));
        // Words split differently from the text (" Кно" + "пка.") still spell it.
        let seg = Segment {
            start_ms: 0,
            end_ms: 3_000,
            speaker: None,
            text: " Кнопка. Да",
            words: words(&[" Кно", "пка.", " Да"]),
        };
        assert!(spelled_by_words(&seg));
    }

    #[test]
    fn mixed_and_ambient_speech_is_not_voiced() {
        for speaker in [Speaker::Mixed, Speaker::Ambient] {
            let seg = Segment {
                start_ms: 0,
                end_ms: 1_000,
                speaker: Some(speaker),
                text: "a & b",
                words: vec![],
            };
            let c = cues(&[seg]);
            assert_eq!(
                vtt(&c, "ru"),
                "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\na &amp; b\n\n"
            );
            assert_eq!(srt(&c, "ru"), "1\n00:00:00,000 --> 00:00:01,000\na & b\n\n");
        }
    }
}
