//! Transcript renderings: JSON (seconds, for `lab-analyze transcribe`),
//! WebVTT, SRT and plain text. Subtitles are `lab_model::subtitles`' (the
//! same cues as lab-web's exports).

use lab_model::analysis::{Speaker, TranscriptSegment};
use lab_model::subtitles::{self, Segment};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Vtt,
    Srt,
    Txt,
}

fn secs(ns: i64) -> f64 {
    (ns as f64 / 1e6).round() / 1e3
}

fn speaker_name(s: Speaker) -> &'static str {
    match s {
        Speaker::Participant => "participant",
        Speaker::Moderator => "moderator",
        Speaker::Mixed => "mixed",
        Speaker::Ambient => "ambient",
    }
}

pub fn render(
    format: Format,
    segments: &[TranscriptSegment],
    language: &str,
    model: &str,
) -> String {
    match format {
        Format::Json => {
            let segs: Vec<_> = segments
                .iter()
                .map(|s| {
                    let mut seg = json!({
                        "start": secs(s.start_ns),
                        "end": secs(s.end_ns),
                        "speaker": speaker_name(s.speaker),
                        "text": s.text,
                        "words": s.words.iter().map(|w| json!({
                            "start": secs(w.start_ns),
                            "end": secs(w.end_ns),
                            "word": w.text,
                            "confidence": (f64::from(w.confidence) * 1000.0).round() / 1000.0,
                        })).collect::<Vec<_>>(),
                    });
                    // As in transcript.json: present only on suspect text.
                    if s.suspect {
                        seg["suspect"] = json!(true);
                        seg["suspect_reason"] = json!(s.suspect_reason);
                    }
                    seg
                })
                .collect();
            let v = json!({ "language": language, "model": model, "segments": segs });
            serde_json::to_string_pretty(&v).expect("json") + "\n"
        }
        Format::Vtt => subtitles::vtt(&cues(segments), language),
        Format::Srt => subtitles::srt(&cues(segments), language),
        Format::Txt => {
            segments
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        }
    }
}

fn cues(segments: &[TranscriptSegment]) -> Vec<subtitles::Cue> {
    let segments: Vec<Segment> = segments.iter().map(Segment::from).collect();
    subtitles::cues(&segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_model::analysis::Word;

    fn seg() -> Vec<TranscriptSegment> {
        vec![TranscriptSegment {
            suspect: false,
            suspect_reason: None,
            start_ns: 1_500_000_000,
            end_ns: 3_250_000_000,
            text: "Не понимаю <куда> нажимать".into(),
            speaker: Speaker::Participant,
            words: vec![Word {
                start_ns: 1_500_000_000,
                end_ns: 1_700_000_000,
                text: "Не".into(),
                confidence: 0.91234,
                speaker: Speaker::Participant,
            }],
        }]
    }

    #[test]
    fn subtitle_formats() {
        let vtt = render(Format::Vtt, &seg(), "ru", "m");
        // lab_model::subtitles' rules (lab-web's): no cue numbers in WebVTT, and
        // voices by their Russian or English name. This assertion read
        // "WEBVTT\n\n1\n00:00:01.500 --> 00:00:03.250\n<v participant>Не понимаю …"
        // before the two subtitle writers became one (issue 11).
        assert!(vtt.starts_with("WEBVTT\n\n00:00:01.500 --> 00:00:03.250\n<v Участник>Не понимаю &lt;куда&gt; нажимать\n"), "{vtt}");
        let srt = render(Format::Srt, &seg(), "ru", "m");
        assert!(
            srt.starts_with("1\n00:00:01,500 --> 00:00:03,250\nНе понимаю"),
            "{srt}"
        );
        assert_eq!(
            render(Format::Txt, &seg(), "ru", "m"),
            "Не понимаю <куда> нажимать\n"
        );
    }

    #[test]
    fn json_has_seconds_words_and_confidence() {
        let v: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &seg(), "ru", "m")).unwrap();
        assert_eq!(v["segments"][0]["start"], 1.5);
        assert_eq!(v["segments"][0]["words"][0]["word"], "Не");
        assert_eq!(v["segments"][0]["words"][0]["confidence"], 0.912);
        assert_eq!(v["language"], "ru");
        assert!(v["segments"][0].get("suspect").is_none());
        let mut suspect = seg();
        suspect[0].suspect = true;
        suspect[0].suspect_reason = Some(lab_model::analysis::SuspectReason::Repetition);
        let v: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &suspect, "ru", "m")).unwrap();
        assert_eq!(v["segments"][0]["suspect"], true);
        assert_eq!(v["segments"][0]["suspect_reason"], "repetition");
    }
}
