//! ELAN Annotation Format (EAF 3.0) export of one session, so researchers can
//! code a session in ELAN with the steps, both speakers' speech, the event
//! stream and the lab's tags already laid out as tiers.
//!
//! ELAN keeps annotations of one top-level tier from overlapping, so a tier
//! whose annotations overlap (tags usually do) is spread over extra tiers
//! named `Теги (2)`, `Теги (3)`, … rather than trimmed.

use super::escape;
use crate::types::{StepInterval, Tag, TimelineEvent, TranscriptView, category_name};
use std::fmt::Write;

/// Who and when, for the document header.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionMeta {
    pub session_id: String,
    /// Pseudonymous participant code, written as the speech tier's participant.
    pub participant: String,
    /// RFC 3339 date of the session (EAF's `DATE`, an `xsd:dateTime`).
    pub date: String,
}

pub const TIER_STEPS: &str = "Шаги";
pub const TIER_PARTICIPANT: &str = "Речь: участник";
pub const TIER_MODERATOR: &str = "Речь: модератор";
/// Only written when some speech has no known speaker.
pub const TIER_UNKNOWN_SPEAKER: &str = "Речь: говорящий не определён";
pub const TIER_EVENTS: &str = "События";
pub const TIER_TAGS: &str = "Теги";

/// How long an event's annotation lasts unless the next event comes sooner.
pub const EVENT_MS: i64 = 100;

const LINGUISTIC_TYPE: &str = "default-lt";

/// ELAN's four built-in constraints, written into every file as ELAN does.
const CONSTRAINTS: &[(&str, &str)] = &[
    (
        "Time_Subdivision",
        "Time subdivision of parent annotation's time interval, no time gaps allowed within this interval",
    ),
    (
        "Symbolic_Subdivision",
        "Symbolic subdivision of a parent annotation. Annotations refering to the same parent are ordered",
    ),
    (
        "Symbolic_Association",
        "1-1 association with a parent annotation",
    ),
    (
        "Included_In",
        "Time alignable annotations within the parent annotation's time interval, gaps are allowed",
    ),
];

struct Annotation {
    start: i64,
    end: i64,
    value: String,
}

struct Tier {
    id: String,
    participant: Option<String>,
    locale: bool,
    annotations: Vec<Annotation>,
}

/// Writes the session as an EAF 3.0 document; `media_url` (absolute) becomes
/// the linked `video/mp4` media.
pub fn write(
    meta: &SessionMeta,
    steps: &[StepInterval],
    transcript: &TranscriptView,
    events: &[TimelineEvent],
    tags: &[Tag],
    media_url: Option<&str>,
) -> String {
    let language = locale_code(&transcript.language);
    let tiers: Vec<Tier> = logical_tiers(meta, steps, transcript, events, tags)
        .into_iter()
        .flat_map(without_overlaps)
        .collect();

    // Two slots per annotation, numbered in time order as ELAN numbers them.
    let times: Vec<i64> = tiers
        .iter()
        .flat_map(|t| &t.annotations)
        .flat_map(|a| [a.start, a.end])
        .collect();
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&i| times[i]);
    let mut slot = vec![0; times.len()];
    for (rank, &i) in order.iter().enumerate() {
        slot[i] = rank + 1;
    }
    let annotation_count = times.len() / 2;

    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<ANNOTATION_DOCUMENT AUTHOR=\"lab-web\" DATE=\"{}\" FORMAT=\"3.0\" VERSION=\"3.0\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:noNamespaceSchemaLocation=\"http://www.mpi.nl/tools/elan/EAFv3.0.xsd\">",
        escape::xml(&meta.date)
    );
    out.push_str("    <HEADER MEDIA_FILE=\"\" TIME_UNITS=\"milliseconds\">\n");
    if let Some(url) = media_url {
        // ELAN cannot send the app's credentials, so it also looks for the
        // file, saved under its own name, next to the .eaf.
        let file = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next());
        let _ = write!(
            out,
            "        <MEDIA_DESCRIPTOR MEDIA_URL=\"{}\" MIME_TYPE=\"video/mp4\"",
            escape::xml(url)
        );
        if let Some(file) = file.filter(|f| !f.is_empty()) {
            let _ = write!(out, " RELATIVE_MEDIA_URL=\"./{}\"", escape::xml(file));
        }
        out.push_str("/>\n");
    }
    let _ = writeln!(
        out,
        "        <PROPERTY NAME=\"lab:session_id\">{}</PROPERTY>",
        escape::xml(&meta.session_id)
    );
    let _ = writeln!(
        out,
        "        <PROPERTY NAME=\"lastUsedAnnotationId\">{annotation_count}</PROPERTY>"
    );
    out.push_str("    </HEADER>\n    <TIME_ORDER>\n");
    for (rank, &i) in order.iter().enumerate() {
        let _ = writeln!(
            out,
            "        <TIME_SLOT TIME_SLOT_ID=\"ts{}\" TIME_VALUE=\"{}\"/>",
            rank + 1,
            times[i]
        );
    }
    out.push_str("    </TIME_ORDER>\n");

    let mut n = 0;
    for tier in &tiers {
        out.push_str("    <TIER");
        if tier.locale {
            let _ = write!(out, " DEFAULT_LOCALE=\"{language}\"");
        }
        let _ = write!(out, " LINGUISTIC_TYPE_REF=\"{LINGUISTIC_TYPE}\"");
        if let Some(p) = &tier.participant {
            let _ = write!(out, " PARTICIPANT=\"{}\"", escape::xml(p));
        }
        let _ = writeln!(out, " TIER_ID=\"{}\">", escape::xml(&tier.id));
        for a in &tier.annotations {
            let _ = writeln!(
                out,
                "        <ANNOTATION>\n            \
                 <ALIGNABLE_ANNOTATION ANNOTATION_ID=\"a{}\" TIME_SLOT_REF1=\"ts{}\" TIME_SLOT_REF2=\"ts{}\">\n                \
                 <ANNOTATION_VALUE>{}</ANNOTATION_VALUE>\n            \
                 </ALIGNABLE_ANNOTATION>\n        \
                 </ANNOTATION>",
                n + 1,
                slot[2 * n],
                slot[2 * n + 1],
                escape::xml(&a.value)
            );
            n += 1;
        }
        out.push_str("    </TIER>\n");
    }
    let _ = writeln!(
        out,
        "    <LINGUISTIC_TYPE GRAPHIC_REFERENCES=\"false\" LINGUISTIC_TYPE_ID=\"{LINGUISTIC_TYPE}\" TIME_ALIGNABLE=\"true\"/>"
    );
    let _ = writeln!(out, "    <LOCALE LANGUAGE_CODE=\"{language}\"/>");
    for (stereotype, description) in CONSTRAINTS {
        let _ = writeln!(
            out,
            "    <CONSTRAINT DESCRIPTION=\"{}\" STEREOTYPE=\"{stereotype}\"/>",
            escape::xml(description)
        );
    }
    out.push_str("</ANNOTATION_DOCUMENT>\n");
    out
}

fn logical_tiers(
    meta: &SessionMeta,
    steps: &[StepInterval],
    transcript: &TranscriptView,
    events: &[TimelineEvent],
    tags: &[Tag],
) -> Vec<Tier> {
    let tier = |id: &str, participant: Option<&str>, locale: bool, annotations| Tier {
        id: id.to_string(),
        participant: participant.map(str::to_string),
        locale,
        annotations,
    };
    let speech = |keep: &dyn Fn(&str) -> bool| {
        transcript
            .segments
            .iter()
            .filter(|s| keep(&s.speaker))
            .map(|s| annotation(s.start_ms, s.end_ms, s.text.trim().to_string()))
            .collect::<Vec<_>>()
    };
    let unknown = speech(&|s| s != "participant" && s != "moderator");
    let mut tiers = vec![
        tier(
            TIER_STEPS,
            None,
            false,
            steps
                .iter()
                .map(|s| {
                    let value = if s.visit > 1 {
                        format!("{} (заход {})", s.title, s.visit)
                    } else {
                        s.title.clone()
                    };
                    annotation(s.start_ms, s.end_ms, value)
                })
                .collect(),
        ),
        tier(
            TIER_PARTICIPANT,
            Some(&meta.participant),
            true,
            speech(&|s| s == "participant"),
        ),
        tier(
            TIER_MODERATOR,
            Some("moderator"),
            true,
            speech(&|s| s == "moderator"),
        ),
    ];
    if !unknown.is_empty() {
        tiers.push(tier(TIER_UNKNOWN_SPEAKER, None, true, unknown));
    }
    tiers.push(tier(TIER_EVENTS, None, false, event_annotations(events)));
    tiers.push(tier(
        TIER_TAGS,
        None,
        false,
        tags.iter()
            .map(|t| {
                let mut value = format!("{} / {}", category_name(&t.category, "ru"), t.severity);
                if !t.note.trim().is_empty() {
                    let _ = write!(value, " / {}", t.note.trim());
                }
                annotation(t.start_ms, t.end_ms, value)
            })
            .collect(),
    ));
    tiers
}

/// Events at the same millisecond share one annotation; each lasts
/// [`EVENT_MS`] or until the next event, so a burst stays on one tier.
fn event_annotations(events: &[TimelineEvent]) -> Vec<Annotation> {
    let mut sorted: Vec<&TimelineEvent> = events.iter().collect();
    sorted.sort_by_key(|e| (e.t_ms, e.seq));
    let mut groups: Vec<(i64, Vec<String>)> = Vec::new();
    for e in sorted {
        let text = if e.summary.trim().is_empty() {
            e.kind.clone()
        } else {
            format!("{}: {}", e.kind, e.summary.trim())
        };
        match groups.last_mut() {
            Some((t, texts)) if *t == e.t_ms => texts.push(text),
            _ => groups.push((e.t_ms, vec![text])),
        }
    }
    let next_starts: Vec<Option<i64>> = groups
        .iter()
        .skip(1)
        .map(|g| Some(g.0))
        .chain([None])
        .collect();
    groups
        .into_iter()
        .zip(next_starts)
        .map(|((t, texts), next)| {
            let end = next.map_or(t.saturating_add(EVENT_MS), |n| {
                n.min(t.saturating_add(EVENT_MS))
            });
            annotation(t, end, texts.join("; "))
        })
        .collect()
}

/// Times become non-negative and every annotation at least 1 ms long, since
/// ELAN needs BEGIN < END and unsigned time values; no time lies past the
/// longest session, whatever a bundle or an old row holds.
fn annotation(start_ms: i64, end_ms: i64, value: String) -> Annotation {
    let start = start_ms.clamp(0, crate::limits::MAX_SESSION_MS);
    Annotation {
        start,
        end: end_ms.clamp(start + 1, crate::limits::MAX_SESSION_MS + 1),
        value,
    }
}

/// Splits a tier into lanes with no overlapping annotations, first fit in
/// time order; lane 1 keeps the tier's name even when empty.
fn without_overlaps(mut tier: Tier) -> Vec<Tier> {
    tier.annotations.sort_by_key(|a| (a.start, a.end));
    let mut lanes: Vec<Vec<Annotation>> = vec![Vec::new()];
    for a in tier.annotations.drain(..) {
        let free = lanes
            .iter()
            .position(|l| l.last().is_none_or(|last| last.end <= a.start));
        match free {
            Some(i) => lanes[i].push(a),
            None => lanes.push(vec![a]),
        }
    }
    lanes
        .into_iter()
        .enumerate()
        .map(|(i, annotations)| Tier {
            id: if i == 0 {
                tier.id.clone()
            } else {
                format!("{} ({})", tier.id, i + 1)
            },
            participant: tier.participant.clone(),
            locale: tier.locale,
            annotations,
        })
        .collect()
}

/// The transcript's language as the ISO 639 code of the speech tiers'
/// locale; Russian when unknown (`auto`, empty).
fn locale_code(language: &str) -> &str {
    let plausible =
        (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase());
    if plausible { language } else { "ru" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TranscriptSegment, Word};
    use std::collections::HashMap;

    const HOSTILE: &str = "<script>alert(\"x\")</script> & 'q' \u{0}\u{7}\u{1b}\r\n\ttab";
    const HOSTILE_CLEAN: &str = "<script>alert(\"x\")</script> & 'q' \r\n\ttab";

    fn meta() -> SessionMeta {
        SessionMeta {
            session_id: "s-1".into(),
            participant: "P01".into(),
            date: "2025-03-01T10:00:00+03:00".into(),
        }
    }

    fn segment(
        id: i64,
        start_ms: i64,
        end_ms: i64,
        speaker: &str,
        text: &str,
    ) -> TranscriptSegment {
        TranscriptSegment {
            id,
            start_ms,
            end_ms,
            speaker: speaker.into(),
            text: text.into(),
            suspect: None,
            words: vec![Word {
                i: 0,
                start_ms,
                end_ms,
                text: text.into(),
                confidence: 0.9,
            }],
        }
    }

    fn tag(id: i64, start_ms: i64, end_ms: i64, note: &str) -> Tag {
        Tag {
            id,
            session_id: "s-1".into(),
            start_ms,
            end_ms,
            step: Some("login".into()),
            category: "navigation".into(),
            severity: 3,
            emotion: "negative".into(),
            note: note.into(),
            quote: String::new(),
            url: None,
            selector: None,
            candidate_id: None,
            clip: None,
            created_by: "r".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn event(seq: i64, t_ms: i64, kind: &str, summary: &str) -> TimelineEvent {
        TimelineEvent {
            seq,
            t_ms,
            source: "browser".into(),
            kind: kind.into(),
            summary: summary.into(),
        }
    }

    fn sample() -> String {
        let steps = [
            StepInterval {
                step: "login".into(),
                title: "Вход".into(),
                visit: 1,
                start_ms: 0,
                end_ms: 60_000,
            },
            StepInterval {
                step: "form".into(),
                title: HOSTILE.into(),
                visit: 2,
                start_ms: 60_000,
                end_ms: 60_000, // zero length: must be widened
            },
        ];
        let transcript = TranscriptView {
            status: "ok".into(),
            language: "ru".into(),
            segments: vec![
                segment(1, 1_000, 4_000, "participant", "Где тут кнопка «Войти»?"),
                segment(2, 4_500, 6_000, "moderator", HOSTILE),
                segment(3, 7_000, 8_000, "unknown", "угу"),
            ],
        };
        let events = [
            event(1, 2_000, "click", "button#login"),
            event(2, 2_000, "navigation", "/form?a=1&b=2"),
            event(3, 2_050, "input", HOSTILE),
        ];
        let tags = [tag(1, 1_000, 5_000, HOSTILE), tag(2, 3_000, 3_000, "")];
        write(
            &meta(),
            &steps,
            &transcript,
            &events,
            &tags,
            Some("https://lab.example/api/v1/sessions/s-1/media/screen.mp4?x=1&y=2"),
        )
    }

    #[test]
    fn tags_at_extreme_times_export_without_panicking() {
        let transcript = TranscriptView {
            status: "ok".into(),
            language: "ru".into(),
            segments: vec![segment(1, i64::MAX - 1, i64::MAX, "participant", "x")],
        };
        let events = [
            event(1, i64::MAX, "click", "a"),
            event(2, i64::MIN, "click", "b"),
        ];
        let tags = [
            tag(1, i64::MAX, i64::MAX, "late"),
            tag(2, i64::MIN, i64::MAX, "everything"),
        ];
        let eaf = write(&meta(), &[], &transcript, &events, &tags, None);
        let tiers = parse(&eaf);
        let max = crate::limits::MAX_SESSION_MS as u64 + 1;
        for (b, e, _) in tiers.values().flatten() {
            assert!(b < e && *e <= max, "{b}..{e}");
        }
    }

    /// Tier id → its annotations as (begin, end, value).
    fn parse(eaf: &str) -> HashMap<String, Vec<(u64, u64, String)>> {
        let doc = roxmltree::Document::parse(eaf).expect("EAF is well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "ANNOTATION_DOCUMENT");
        let slots: HashMap<&str, u64> = root
            .descendants()
            .filter(|n| n.has_tag_name("TIME_SLOT"))
            .map(|n| {
                (
                    n.attribute("TIME_SLOT_ID").unwrap(),
                    n.attribute("TIME_VALUE").unwrap().parse().unwrap(),
                )
            })
            .collect();
        let declared = root
            .descendants()
            .filter(|n| n.has_tag_name("TIME_SLOT"))
            .count();
        assert_eq!(slots.len(), declared, "TIME_SLOT ids are unique");
        let types: Vec<&str> = root
            .children()
            .filter(|n| n.has_tag_name("LINGUISTIC_TYPE"))
            .map(|n| n.attribute("LINGUISTIC_TYPE_ID").unwrap())
            .collect();
        let mut tiers = HashMap::new();
        for tier in root.children().filter(|n| n.has_tag_name("TIER")) {
            assert!(types.contains(&tier.attribute("LINGUISTIC_TYPE_REF").unwrap()));
            let annotations = tier
                .descendants()
                .filter(|n| n.has_tag_name("ALIGNABLE_ANNOTATION"))
                .map(|a| {
                    let begin = slots[a.attribute("TIME_SLOT_REF1").unwrap()];
                    let end = slots[a.attribute("TIME_SLOT_REF2").unwrap()];
                    assert!(
                        begin < end,
                        "annotation {:?} has BEGIN < END",
                        a.attribute("ANNOTATION_ID")
                    );
                    let value = a
                        .first_element_child()
                        .unwrap()
                        .text()
                        .unwrap_or("")
                        .to_string();
                    (begin, end, value)
                })
                .collect();
            tiers.insert(tier.attribute("TIER_ID").unwrap().to_string(), annotations);
        }
        tiers
    }

    #[test]
    fn document_has_the_eaf_3_header_and_media() {
        let eaf = sample();
        let doc = roxmltree::Document::parse(&eaf).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("FORMAT"), Some("3.0"));
        assert_eq!(root.attribute("VERSION"), Some("3.0"));
        assert_eq!(root.attribute("DATE"), Some("2025-03-01T10:00:00+03:00"));
        assert_eq!(
            root.attribute((
                "http://www.w3.org/2001/XMLSchema-instance",
                "noNamespaceSchemaLocation"
            )),
            Some("http://www.mpi.nl/tools/elan/EAFv3.0.xsd")
        );
        let header = root.first_element_child().unwrap();
        assert_eq!(header.tag_name().name(), "HEADER");
        assert_eq!(header.attribute("TIME_UNITS"), Some("milliseconds"));
        let media = header.first_element_child().unwrap();
        assert_eq!(
            media.attribute("MEDIA_URL"),
            Some("https://lab.example/api/v1/sessions/s-1/media/screen.mp4?x=1&y=2")
        );
        assert_eq!(media.attribute("MIME_TYPE"), Some("video/mp4"));
        assert_eq!(media.attribute("RELATIVE_MEDIA_URL"), Some("./screen.mp4"));
        let constraints = root
            .children()
            .filter(|n| n.has_tag_name("CONSTRAINT"))
            .count();
        assert_eq!(constraints, 4);
        // Every annotation id is unique and counted in lastUsedAnnotationId.
        let ids: Vec<&str> = root
            .descendants()
            .filter_map(|n| n.attribute("ANNOTATION_ID"))
            .collect();
        let last = header
            .children()
            .find(|n| n.attribute("NAME") == Some("lastUsedAnnotationId"))
            .and_then(|n| n.text())
            .unwrap();
        assert_eq!(last, ids.len().to_string());
    }

    #[test]
    fn tiers_carry_steps_speech_events_and_tags() {
        let tiers = parse(&sample());
        for name in [
            TIER_STEPS,
            TIER_PARTICIPANT,
            TIER_MODERATOR,
            TIER_UNKNOWN_SPEAKER,
            TIER_EVENTS,
            TIER_TAGS,
        ] {
            assert!(
                tiers.contains_key(name),
                "tier {name} missing: {:?}",
                tiers.keys()
            );
        }
        assert_eq!(
            tiers[TIER_STEPS],
            vec![
                (0, 60_000, "Вход".to_string()),
                (60_000, 60_001, format!("{HOSTILE_CLEAN} (заход 2)")),
            ]
        );
        assert_eq!(
            tiers[TIER_PARTICIPANT],
            vec![(1_000, 4_000, "Где тут кнопка «Войти»?".to_string())]
        );
        assert_eq!(
            tiers[TIER_EVENTS],
            vec![
                (
                    2_000,
                    2_050,
                    "click: button#login; navigation: /form?a=1&b=2".to_string()
                ),
                (2_050, 2_150, format!("input: {}", HOSTILE_CLEAN.trim())),
            ]
        );
        // The zero-length tag overlaps the first one, so it moves to a second lane.
        assert_eq!(
            tiers[TIER_TAGS],
            vec![(
                1_000,
                5_000,
                format!("Навигация / 3 / {}", HOSTILE_CLEAN.trim())
            )]
        );
        assert_eq!(
            tiers[&format!("{TIER_TAGS} (2)")],
            vec![(3_000, 3_001, "Навигация / 3".to_string())]
        );
    }

    #[test]
    fn hostile_text_is_escaped_and_round_trips() {
        let eaf = sample();
        assert!(!eaf.contains("<script>"));
        assert!(!eaf.contains('\u{0}') && !eaf.contains('\u{7}') && !eaf.contains('\u{1b}'));
        let tiers = parse(&eaf);
        assert_eq!(
            tiers[TIER_MODERATOR],
            vec![(4_500, 6_000, HOSTILE_CLEAN.trim().to_string())]
        );
    }

    #[test]
    fn empty_session_is_still_a_valid_document() {
        let transcript = TranscriptView {
            status: "skipped: no audio track".into(),
            language: String::new(),
            segments: vec![],
        };
        let eaf = write(&meta(), &[], &transcript, &[], &[], None);
        let tiers = parse(&eaf);
        assert!(tiers.values().all(Vec::is_empty));
        assert!(!tiers.contains_key(TIER_UNKNOWN_SPEAKER));
        assert!(!eaf.contains("MEDIA_DESCRIPTOR"));
        assert!(eaf.contains("<LOCALE LANGUAGE_CODE=\"ru\"/>"));
    }
}
