//! The aligned, in-memory input of every pure analysis stage: the session's
//! events and transcript words on the one session clock. Loading a bundle
//! and transcribing it produce a [`Timeline`]; journey segmentation and the
//! friction detectors only read it, so they can be tested on hand-written
//! timelines.

use std::collections::HashMap;
use std::ops::Range;

use lab_model::Event;
use lab_model::analysis::{Speaker, SuspectReason, Transcript, TranscriptSegment, Word};

#[cfg(test)]
pub(crate) mod testkit;

/// Events and words of one session, each sorted by time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline {
    /// Sorted by `t_ns`, ties by `seq`.
    pub events: Vec<Event>,
    /// Sorted by `start_ns`.
    pub words: Vec<Word>,
    /// Length of the recording (session end), ns.
    pub duration_ns: i64,
    /// Physiological signals recorded beside the media (sensor streams),
    /// each sorted by time; empty without sensors.
    pub signals: Vec<Signal>,
    /// Where the transcript's words are uncertain ([`uncertain_spans`]):
    /// a candidate whose words lie there says so and counts for less.
    pub uncertain: Vec<(i64, i64)>,
}

/// What a physiological signal measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// Skin conductance (EDA, GSR), µS.
    Eda,
    /// Heart rate, beats per minute.
    HeartRate,
}

/// One channel of a sensor stream on the session clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub kind: SignalKind,
    pub t_ns: Vec<i64>,
    pub v: Vec<f64>,
}

/// Which channel of a sensor stream is a signal the detectors read: skin
/// conductance by its type (`EDA`, `GSR`) or unit (µS), heart rate by its
/// type (`HR`, `HeartRate`, `PPG` rate) or unit (bpm). The stream's own type
/// counts when the channel says nothing.
pub fn signal_kind(stream_type: &str, channel_type: &str, unit: &str) -> Option<SignalKind> {
    let norm = |s: &str| s.to_lowercase().replace([' ', '_', '-'], "");
    let (st, ct, u) = (norm(stream_type), norm(channel_type), norm(unit));
    let eda = |s: &str| {
        matches!(
            s,
            "eda" | "gsr" | "scl" | "skinconductance" | "electrodermalactivity"
        )
    };
    let hr = |s: &str| matches!(s, "hr" | "heartrate" | "pulse" | "pulserate");
    if eda(&ct)
        || matches!(u.as_str(), "us" | "µs" | "μs" | "microsiemens")
        || (ct.is_empty() && eda(&st))
    {
        Some(SignalKind::Eda)
    } else if hr(&ct)
        || matches!(u.as_str(), "bpm" | "beatsperminute")
        || (ct.is_empty() && hr(&st))
    {
        Some(SignalKind::HeartRate)
    } else {
        None
    }
}

impl Timeline {
    /// Builds a timeline, sorting events by (`t_ns`, `seq`) and words by start.
    pub fn new(mut events: Vec<Event>, mut words: Vec<Word>, duration_ns: i64) -> Self {
        events.sort_by_key(|e| (e.t_ns, e.seq));
        words.sort_by_key(|w| (w.start_ns, w.end_ns));
        Timeline {
            events,
            words,
            duration_ns,
            signals: Vec::new(),
            uncertain: Vec::new(),
        }
    }

    /// The session end: the recording's duration, or the last event or word
    /// if one lies beyond it (a browser event mapped slightly after the stop).
    pub fn end_ns(&self) -> i64 {
        let last_event = self.events.last().map_or(i64::MIN, |e| e.t_ns);
        let last_word = self
            .words
            .iter()
            .map(|w| w.end_ns)
            .max()
            .unwrap_or(i64::MIN);
        self.duration_ns.max(last_event).max(last_word)
    }

    /// The event with this seq.
    pub fn event(&self, seq: u64) -> Option<&Event> {
        self.events.iter().find(|e| e.seq == seq)
    }

    /// Browser events of one kind, in time order.
    pub fn browser<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().filter(move |e| is_browser(e, kind))
    }

    /// Operator markers of one type (`task_end`, `help`, ...), in time order.
    pub fn markers<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events
            .iter()
            .filter(move |e| marker_of(e).is_some_and(|(t, _)| t == kind))
    }
}

/// The transcript words the detectors read: every word except those of
/// segments whose text loops (a repetition that survived every temperature,
/// cut, or text that still compresses too well). A loop is the decoder
/// talking to itself, so no finding is ever built on it; researchers still
/// see it, flagged, in the transcript. Text flagged only for its low
/// log-probability is read: it is most often real speech heard roughly
/// («А где тут меню?» in a window of garbled words), and faster-whisper
/// keeps it too; each candidate built on it says so ([`uncertain_spans`]).
pub fn detector_words(transcript: &Transcript) -> Vec<Word> {
    transcript
        .segments
        .iter()
        .filter(|s| !loops(s))
        .flat_map(|s| s.words.iter().cloned())
        .collect()
}

/// The spans (start, end ns) of segments flagged for their low
/// log-probability alone, whose words the detectors read but trust less.
pub fn uncertain_spans(transcript: &Transcript) -> Vec<(i64, i64)> {
    transcript
        .segments
        .iter()
        .filter(|s| s.suspect && !loops(s))
        .map(|s| (s.start_ns, s.end_ns))
        .collect()
}

/// Whether a segment is flagged for looping (or flagged without a reason,
/// as the first transcripts with the flag were).
fn loops(s: &TranscriptSegment) -> bool {
    s.suspect && s.suspect_reason != Some(SuspectReason::LowLogprob)
}

/// Whether a transcript word may be the participant's: their own channel, or
/// a mixed channel when speakers cannot be told apart.
pub fn maybe_participant(speaker: Speaker) -> bool {
    matches!(speaker, Speaker::Participant | Speaker::Mixed)
}

/// Runs of consecutive words that may be the participant's, broken where
/// someone else speaks or the pause between two words exceeds `max_pause_ns`.
pub fn participant_runs(words: &[Word], max_pause_ns: i64) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    for (i, w) in words.iter().enumerate() {
        if !maybe_participant(w.speaker) {
            if let Some(s) = start.take() {
                runs.push(s..i);
            }
            continue;
        }
        if let Some(s) = start
            && w.start_ns - words[i - 1].end_ns > max_pause_ns
        {
            runs.push(s..i);
            start = None;
        }
        start.get_or_insert(i);
    }
    if let Some(s) = start {
        runs.push(s..words.len());
    }
    runs
}

pub use lab_model::step_tracker::{data_str, is_browser, marker_of};

/// Browser event kinds that are the participant acting on the page.
/// Scrolling counts: a participant scrolling a long page is reading or
/// searching. Page-driven events (title updates, click effects, script and
/// validation errors) do not.
pub const ACTIVITY: &[&str] = &[
    "click",
    "input",
    "change",
    "focus",
    "scroll",
    "submit",
    "navigation",
    "visibility",
];

/// Whether `e` is the participant acting on the page ([`ACTIVITY`], less a
/// page retitling itself).
pub fn is_activity(e: &Event) -> bool {
    ACTIVITY.iter().any(|k| is_browser(e, k))
        && !(e.kind == "navigation" && data_str(e, "reason") == Some("title"))
}

/// A numeric field of the event's data.
pub fn data_f64(e: &Event, key: &str) -> Option<f64> {
    e.data.get(key)?.as_f64()
}

/// A boolean field of the event's data; absent or not a boolean is `false`.
pub fn data_flag(e: &Event, key: &str) -> bool {
    e.data.get(key).and_then(|v| v.as_bool()).unwrap_or(false)
}

/// What the probe saw after each click (`click_effect`, stamped with the
/// click's own time), by the click's seq. Click ids restart on every page
/// load, so a click's effect is the one of its client with its id nearest
/// in time.
pub fn click_effects(timeline: &Timeline) -> HashMap<u64, &Event> {
    let mut effects: HashMap<(Option<&str>, i64), Vec<&Event>> = HashMap::new();
    for e in timeline.browser("click_effect") {
        if let Some(id) = data_f64(e, "click_id") {
            effects
                .entry((e.client.as_deref(), id as i64))
                .or_default()
                .push(e);
        }
    }
    timeline
        .browser("click")
        .filter_map(|click| {
            let id = data_f64(click, "click_id")? as i64;
            let effect = effects
                .get(&(click.client.as_deref(), id))?
                .iter()
                .min_by_key(|e| (e.t_ns - click.t_ns).abs())?;
            Some((click.seq, *effect))
        })
        .collect()
}

/// Whether the probe saw nothing at all change after a click: no DOM
/// mutation, no navigation. `false` when there is no effect report.
pub fn unanswered(effect: Option<&Event>) -> bool {
    effect.is_some_and(|e| {
        data_f64(e, "mutations").unwrap_or(0.0) == 0.0
            && !data_flag(e, "url_changed")
            && !data_flag(e, "page_unloaded")
    })
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn sorts_and_finds_the_end() {
        let t = tl_words(
            vec![click(5.0, "#b", 0, 0), nav(1.0, "https://x/a")],
            words(9.0, "ну вот"),
        );
        assert_eq!(
            t.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(t.end_ns(), secs(10.7));
        assert_eq!(t.browser("click").count(), 1);
        assert_eq!(t.event(2).unwrap().kind, "navigation");
    }

    #[test]
    fn looping_text_never_reaches_the_detectors_and_uncertain_text_counts_less() {
        use crate::friction::detect_all;
        use crate::lexicon::Lexicon;
        use lab_model::analysis::{Candidate, SuspectReason, TranscriptSegment};
        let seg = |t: f64, text: &str| {
            let words = words(t, text);
            TranscriptSegment {
                start_ns: words[0].start_ns,
                end_ns: words[words.len() - 1].end_ns,
                text: text.into(),
                speaker: Speaker::Participant,
                words,
                suspect: false,
                suspect_reason: None,
            }
        };
        let mut transcript = Transcript {
            format_version: 1,
            language: "ru".into(),
            model: String::new(),
            model_info: None,
            status: "ok".into(),
            segments: vec![
                seg(5.0, "Не понимаю, что такое льготная категория"),
                seg(20.0, "Мне не надо писать, как паниль?"),
            ],
            initial_prompt: None,
        };
        let spoken = |transcript: &Transcript| -> Vec<Candidate> {
            let mut t = tl_words(
                vec![nav(1.0, "https://x/login")],
                detector_words(transcript),
            );
            t.uncertain = uncertain_spans(transcript);
            let steps = crate::steps::segment(&journey(), &t);
            detect_all(&journey(), &t, &steps, &Lexicon::builtin())
                .into_iter()
                .filter(|c| {
                    c.detector == "verbal_confusion" || c.detector == "question_to_moderator"
                })
                .collect()
        };
        // Trusted text: a confusion and a question.
        let trusted = spoken(&transcript);
        let detectors: Vec<&str> = trusted.iter().map(|c| c.detector.as_str()).collect();
        assert_eq!(detectors, ["verbal_confusion", "question_to_moderator"]);

        // Flagged for its log-probability only: read, each candidate a
        // tenth lower and saying why.
        for s in &mut transcript.segments {
            s.suspect = true;
            s.suspect_reason = Some(SuspectReason::LowLogprob);
        }
        let uncertain = spoken(&transcript);
        assert_eq!(uncertain.len(), trusted.len(), "{uncertain:?}");
        for (u, t) in uncertain.iter().zip(&trusted) {
            assert_eq!(u.detector, t.detector);
            assert!(
                (t.confidence - u.confidence - 0.1).abs() < 1e-4,
                "{} -> {}",
                t.confidence,
                u.confidence
            );
            assert!(
                u.evidence
                    .basis
                    .iter()
                    .any(|b| b.why.contains("неуверенно") && b.delta < 0.0),
                "{:?}",
                u.evidence.basis
            );
        }

        // Flagged as a loop (or flagged without a reason): neither
        // detector fires on it.
        for reason in [
            Some(SuspectReason::Repetition),
            Some(SuspectReason::Compression),
            None,
        ] {
            for s in &mut transcript.segments {
                s.suspect_reason = reason;
            }
            let looping = spoken(&transcript);
            assert!(looping.is_empty(), "{reason:?}: {looping:?}");
        }
    }

    #[test]
    fn markers_have_type_and_label() {
        let t = tl(vec![marker(1.0, "step", "Вход"), marker(2.0, "help", "")]);
        assert_eq!(marker_of(&t.events[0]), Some(("step", Some("Вход"))));
        assert_eq!(marker_of(&t.events[1]), Some(("help", None)));
        assert_eq!(t.markers("help").count(), 1);
    }
}
