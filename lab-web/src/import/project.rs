//! The projection step of an import: what was read from a bundle becomes
//! the rows to write. Pure: no files, no database, no clock (the import
//! time comes in), so it is tested on values.

use lab_model::event::Event;
use lab_model::journey::Journey;
use serde_json::Value;

use super::read::{BundleRead, JourneySource};
use crate::limits;
use crate::search::stems;
use crate::store::import::{
    CandidateRecord, ImportRows, ImportedEvent, IntervalRecord, JourneyRecord, SegmentRecord,
    SessionRecord, StepSummaryRecord,
};
use crate::types::{
    CandidateEvidence, JourneyInfo, JourneyStep, SpeechSpan, StoredWord, TimelineEvent, TrackView,
    TranscriptSegment, TranscriptView, Word,
};
use lab_model::analysis::Transcript;

const NS_PER_MS: i64 = 1_000_000;

use crate::limits::session_ms as ms;

/// The rows an import of `b` writes, stamped `imported_at`.
pub fn project(b: &BundleRead, imported_at: i64) -> anyhow::Result<ImportRows> {
    let manifest = &b.manifest;
    let a = &b.analysis;
    let journey = b.journey.as_ref().map(|j| {
        // The lab's journeys folder defines a journey for every session; a
        // bundle's own copy only fills in a journey the lab does not have, so
        // one imported bundle can never retitle a journey for all sessions.
        JourneyRecord {
            info: journey_info(&j.journey),
            replace: j.source == JourneySource::Lab,
        }
    });
    let duration_ms = ms(manifest.duration_ns.unwrap_or_else(|| {
        manifest
            .segments
            .iter()
            .filter_map(|s| s.end_ns)
            .max()
            .unwrap_or(0)
    }));
    let tracks: Vec<TrackView> = manifest
        .tracks
        .iter()
        .map(|t| TrackView {
            channel_roles: t.channel_roles.clone(),
            id: t.id.clone(),
            kind: t.kind,
        })
        .collect();
    let transcript = a.transcript.as_ref();
    let speech: Vec<SpeechSpan> = a
        .speech
        .iter()
        .flat_map(|sp| &sp.spans)
        .map(|s| SpeechSpan {
            start_ms: ms(s.start_ns),
            end_ms: ms(s.end_ns),
            speaker: speaker_name(&s.speaker),
        })
        .collect();
    let session = SessionRecord {
        id: manifest.session_id.clone(),
        study: manifest.study.clone().unwrap_or_default(),
        life_situation: manifest.life_situation.clone().unwrap_or_default(),
        journey_id: b.journey.as_ref().map(|j| j.journey.id.clone()),
        participant: manifest.participant.clone(),
        station: manifest.station.clone(),
        consent: manifest.consent.clone(),
        moderator: manifest.moderator.clone(),
        started_at: manifest.clock.session_zero_unix_ns.div_euclid(NS_PER_MS),
        duration_ms,
        status: wire_name(&manifest.status).unwrap_or_else(|| "unknown".into()),
        bundle_path: b.dir.to_string_lossy().to_string(),
        fingerprint: b.fingerprint.clone(),
        imported_at,
        transcript_status: transcript.map(|t| t.status.clone()).unwrap_or_default(),
        language: transcript.map(|t| t.language.clone()).unwrap_or_default(),
        media: serde_json::to_string(&a.media)?,
        qa: a.qa.as_ref().map(serde_json::to_string).transpose()?,
        tracks: serde_json::to_string(&tracks)?,
        transcript_json: transcript
            .map(|t| serde_json::to_string(&transcript_view(t)))
            .transpose()?,
        speech_json: a
            .speech
            .as_ref()
            .map(|_| serde_json::to_string(&speech))
            .transpose()?,
    };
    // The lane (time, source, kind, summary) and the full rows share one pass.
    let events = b
        .events
        .iter()
        .map(|e| ImportedEvent {
            lane: TimelineEvent {
                seq: e.seq as i64,
                t_ms: ms(e.t_ns),
                source: wire_name(&e.source).unwrap_or_default(),
                kind: e.kind.clone(),
                summary: summarize(e),
            },
            data: e.data.to_string(),
        })
        .collect();
    let segments = transcript
        .iter()
        .flat_map(|t| t.segments.iter().enumerate())
        .map(|(i, s)| {
            let words: Vec<StoredWord> = s
                .words
                .iter()
                .map(|w| {
                    StoredWord(
                        ms(w.start_ns),
                        ms(w.end_ns),
                        w.text.clone(),
                        (w.confidence * 1000.0).round() / 1000.0,
                    )
                })
                .collect();
            Ok(SegmentRecord {
                idx: i as i64,
                start_ms: ms(s.start_ns),
                end_ms: ms(s.end_ns),
                speaker: speaker_name(&s.speaker),
                text: s.text.trim().to_string(),
                stems: stems(&s.text),
                words: serde_json::to_string(&words)?,
            })
        })
        .collect::<serde_json::Result<_>>()?;
    let intervals = a
        .steps
        .iter()
        .flat_map(|st| &st.intervals)
        .map(|s| IntervalRecord {
            step: s.step.clone(),
            visit: i64::from(s.visit),
            start_ms: ms(s.start_ns),
            end_ms: ms(s.end_ns),
        })
        .collect();
    let summaries = a
        .steps
        .iter()
        .flat_map(|st| &st.steps)
        .map(|s| StepSummaryRecord {
            step: s.step.clone(),
            title: s.title.clone(),
            time_spent_ms: ms(s.time_spent_ns),
            visits: i64::from(s.visits),
            completed: i64::from(s.completed),
            expected_ms: ms(s.expected_ns),
            eda_per_min: s.arousal.as_ref().and_then(|a| a.eda_per_min),
            eda_amplitude_us: s.arousal.as_ref().and_then(|a| a.eda_amplitude_us),
            hr_change_bpm: s.arousal.as_ref().and_then(|a| a.hr_change_bpm),
        })
        .collect();
    let candidates = a
        .candidates
        .as_ref()
        .map(|c| {
            c.candidates
                .iter()
                .map(|cand| {
                    Ok(CandidateRecord {
                        id: cand.id.clone(),
                        detector: cand.detector.clone(),
                        start_ms: ms(cand.start_ns),
                        end_ms: ms(cand.end_ns),
                        step: cand.step.clone(),
                        confidence: f64::from(cand.confidence),
                        note: cand.evidence.note.clone(),
                        evidence: serde_json::to_string(&CandidateEvidence {
                            events: cand.evidence.events.iter().map(|&e| e as i64).collect(),
                            words: cand
                                .evidence
                                .words
                                .iter()
                                .map(|w| w.text.trim().to_string())
                                .collect(),
                            also: cand.also.clone(),
                            words_ms: cand.evidence.words.iter().map(|w| ms(w.start_ns)).collect(),
                            basis: cand.evidence.basis.clone(),
                        })?,
                    })
                })
                .collect::<serde_json::Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(ImportRows {
        session,
        journey,
        events,
        segments,
        speech,
        intervals,
        summaries,
        candidates,
        sensors: b.sensors.clone(),
    })
}

pub fn journey_info(j: &Journey) -> JourneyInfo {
    JourneyInfo {
        id: j.id.clone(),
        title: j.title.clone(),
        version: j.version.clone(),
        steps: j
            .steps
            .iter()
            .map(|s| JourneyStep {
                id: s.id.clone(),
                title: s.title.clone(),
                significance: i64::from(s.significance),
                expected_ms: ((s.expected_seconds * 1000.0).round() as i64)
                    .clamp(0, limits::MAX_SESSION_MS),
            })
            .collect(),
    }
}

/// A one-line description of an event for the timeline.
pub fn summarize(e: &Event) -> String {
    let d = &e.data;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
    let text = match e.kind.as_str() {
        "click" => {
            let t = s("text");
            if t.is_empty() {
                s("selector").to_string()
            } else {
                format!("«{t}» {}", s("selector"))
            }
        }
        "navigation" | "navigate" | "page" => s("url").to_string(),
        "input" | "change" | "focus" | "blur" => {
            let name = s("name");
            if name.is_empty() {
                s("selector").to_string()
            } else {
                name.to_string()
            }
        }
        "validation_error" | "invalid" => format!("{} {}", s("selector"), s("message")),
        "js_error" | "error" => s("message").to_string(),
        lab_model::self_report::STEP_KIND => format!(
            "{}: {}, {}/5",
            s("step"),
            s("emotion"),
            d.get("significance").and_then(Value::as_u64).unwrap_or(0)
        ),
        lab_model::self_report::SEQ_KIND => format!(
            "SEQ {}: {}/7",
            s("task"),
            d.get("score").and_then(Value::as_u64).unwrap_or(0)
        ),
        lab_model::self_report::SUS_KIND => {
            match lab_model::self_report::SelfReport::parse(&e.kind, d) {
                Ok(lab_model::self_report::SelfReport::Sus(sus)) => format!("SUS {}", sus.score()),
                _ => "SUS".into(),
            }
        }
        "marker" => [s("type"), s("label"), s("text")]
            .iter()
            .filter(|x| !x.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" "),
        _ => ["url", "selector", "message", "type"]
            .iter()
            .map(|k| s(k))
            .find(|v| !v.is_empty())
            .unwrap_or("")
            .to_string(),
    };
    text.chars().take(160).collect()
}

/// The transcript as the API serves it.
pub fn transcript_view(t: &Transcript) -> TranscriptView {
    let mut i = 0;
    TranscriptView {
        status: t.status.clone(),
        language: t.language.clone(),
        segments: t
            .segments
            .iter()
            .enumerate()
            .map(|(n, s)| TranscriptSegment {
                id: n as i64,
                start_ms: ms(s.start_ns),
                end_ms: ms(s.end_ns),
                speaker: speaker_name(&s.speaker),
                text: s.text.trim().to_string(),
                suspect: s.suspect.then(|| {
                    s.suspect_reason
                        .as_ref()
                        .and_then(wire_name)
                        .unwrap_or_else(|| "unknown".into())
                }),
                words: s
                    .words
                    .iter()
                    .map(|w| {
                        i += 1;
                        Word {
                            i: i - 1,
                            start_ms: ms(w.start_ns),
                            end_ms: ms(w.end_ns),
                            text: w.text.trim().to_string(),
                            confidence: (f64::from(w.confidence) * 1000.0).round() / 1000.0,
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub fn speaker_name(s: &lab_model::analysis::Speaker) -> String {
    wire_name(s).unwrap_or_else(|| "unknown".into())
}

/// How a unit enum is spelled in the bundle's JSON (`browser`, `participant`, …).
fn wire_name<T: serde::Serialize>(v: &T) -> Option<String> {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::read;

    /// A synthetic bundle read from disk (no database), for the projection.
    fn read_synthetic(name: &str) -> BundleRead {
        let parent = std::env::temp_dir().join(format!("project-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        std::fs::create_dir_all(&parent).unwrap();
        let dir =
            crate::synth::write_bundle(&parent, &crate::synth::Spec::small("P1", "p-01")).unwrap();
        let (dir, fp) = read::locate(&dir).unwrap();
        let manifest = read::manifest(&dir).unwrap();
        read::bundle(dir, fp, manifest, &[]).unwrap()
    }

    #[test]
    fn a_bundle_projects_to_its_rows() {
        let b = read_synthetic("rows");
        let rows = project(&b, 42).unwrap();
        let s = &rows.session;
        assert_eq!(s.id, "P1");
        assert_eq!(s.participant, "p-01");
        assert_eq!(s.imported_at, 42);
        assert_eq!(s.fingerprint, b.fingerprint);
        assert_eq!(s.bundle_path, b.dir.to_string_lossy());
        assert_eq!(
            s.journey_id.as_deref(),
            Some(b.journey.as_ref().unwrap().journey.id.as_str())
        );
        // No renditions yet: an empty media index, which reads as "not analysed".
        assert_eq!(s.media, "{}");
        // One row per event, with the lane entry in time units of the API.
        assert_eq!(rows.events.len(), b.events.len());
        for (r, e) in rows.events.iter().zip(&b.events) {
            assert_eq!(r.lane.seq, e.seq as i64);
            assert_eq!(r.lane.t_ms, e.t_ns / 1_000_000);
            assert_eq!(r.data, e.data.to_string());
        }
        let t = b.analysis.transcript.as_ref().unwrap();
        assert_eq!(rows.segments.len(), t.segments.len());
        assert!(rows.segments.iter().all(|s| s.stems == stems(&s.text)));
        let view: TranscriptView =
            serde_json::from_str(s.transcript_json.as_deref().unwrap()).unwrap();
        assert_eq!(view, transcript_view(t));
        let c = b.analysis.candidates.as_ref().unwrap();
        assert_eq!(rows.candidates.as_ref().unwrap().len(), c.candidates.len());
        let st = b.analysis.steps.as_ref().unwrap();
        assert_eq!(rows.intervals.len(), st.intervals.len());
        assert_eq!(rows.summaries.len(), st.steps.len());
    }

    #[test]
    fn a_flagged_segment_keeps_its_reason_in_the_view() {
        use lab_model::analysis::SuspectReason;
        let b = read_synthetic("suspect");
        let mut t = b.analysis.transcript.clone().unwrap();
        assert!(t.segments.len() >= 4, "{}", t.segments.len());
        t.segments[0].suspect = true;
        t.segments[0].suspect_reason = Some(SuspectReason::LowLogprob);
        t.segments[1].suspect = true;
        t.segments[1].suspect_reason = Some(SuspectReason::Repetition);
        t.segments[2].suspect = true;
        let view = transcript_view(&t);
        let flags: Vec<Option<&str>> = view.segments.iter().map(|s| s.suspect.as_deref()).collect();
        assert_eq!(
            flags[..3],
            [Some("low_logprob"), Some("repetition"), Some("unknown")]
        );
        assert!(flags[3..].iter().all(Option::is_none), "{flags:?}");
        // Unflagged segments carry no field; a stored view without it reads.
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["segments"][0]["suspect"], "low_logprob");
        assert!(json["segments"][3].get("suspect").is_none());
        let mut old = json.clone();
        old["segments"][0]
            .as_object_mut()
            .unwrap()
            .remove("suspect");
        let read: TranscriptView = serde_json::from_value(old).unwrap();
        assert_eq!(read.segments[0].suspect, None);
    }

    #[test]
    fn a_bundles_journey_copy_never_overrides_the_labs() {
        let mut b = read_synthetic("journey");
        let j = b.journey.as_mut().unwrap();
        assert_eq!(j.source, JourneySource::Bundle);
        // Only the bundle's copy: it fills in, never replaces.
        let rows = project(&b, 0).unwrap();
        let rec = rows.journey.unwrap();
        assert!(!rec.replace);
        // The lab has its own definition: that one is written, and replaces.
        let j = b.journey.as_mut().unwrap();
        j.journey.title = "Лабораторное название".into();
        j.source = JourneySource::Lab;
        let rec = project(&b, 0).unwrap().journey.unwrap();
        assert!(rec.replace);
        assert_eq!(rec.info.title, "Лабораторное название");
    }

    #[test]
    fn times_are_bounded_to_the_longest_session() {
        assert_eq!(ms(1_500_000), 1);
        assert_eq!(ms(i64::MAX), limits::MAX_SESSION_MS);
        assert_eq!(ms(i64::MIN), -limits::MAX_SESSION_MS);
    }
}
