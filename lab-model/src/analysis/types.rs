//! The shapes of the JSON files under `analysis/`, one type per file (and
//! the pieces they are made of). Which file each is, and how it is read and
//! written, is in `files.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::files::{ANALYSIS_FORMAT_VERSION, AnalysisDoc, AnalysisFile};
use super::stage::Stage;

/// Who is speaking, from the audio channel's role.
pub use crate::bundle::ChannelRole as Speaker;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub start_ns: i64,
    pub end_ns: i64,
    pub text: String,
    /// Mean token probability, 0-1.
    pub confidence: f32,
    pub speaker: Speaker,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptSegment {
    pub start_ns: i64,
    pub end_ns: i64,
    pub text: String,
    pub speaker: Speaker,
    pub words: Vec<Word>,
    /// The text may not be what was said: a repetition loop was cut from it,
    /// or every decoding attempt failed the quality rules. Detectors never
    /// read suspect text; people should listen before quoting it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspect: bool,
    /// Why the segment is suspect (present only when it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_reason: Option<SuspectReason>,
}

/// Why a transcript segment is [`TranscriptSegment::suspect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspectReason {
    /// A repeated token n-gram (or character run) survived every decoding
    /// attempt; the text was cut where the repetition began.
    Repetition,
    /// The best attempt's text still compresses too well (zlib ratio over
    /// the threshold): repetitive even without an exact run.
    Compression,
    /// Every attempt's mean token log-probability stayed under the threshold.
    LowLogprob,
}

/// `analysis/transcript.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub format_version: u32,
    pub language: String,
    /// Model file name and its size, for reproducibility.
    pub model: String,
    /// The model that made this transcript (name, size, weight type,
    /// SHA-256); absent in transcripts written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_info: Option<crate::models::WhisperModelInfo>,
    /// `ok`, or why there is no transcript (`skipped: no audio track`, `skipped: silent`).
    pub status: String,
    pub segments: Vec<TranscriptSegment>,
    /// The initial prompt Whisper was given (the journey's vocabulary and
    /// step titles), when there was one: it changes the words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_prompt: Option<String>,
}

impl Transcript {
    pub fn words(&self) -> impl Iterator<Item = &Word> {
        self.segments.iter().flat_map(|s| s.words.iter())
    }
}

/// A stretch of speech found by voice activity detection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpeechSpan {
    pub start_ns: i64,
    pub end_ns: i64,
    pub speaker: Speaker,
}

/// `analysis/speech.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeechActivity {
    pub format_version: u32,
    pub spans: Vec<SpeechSpan>,
}

/// One visit to a journey step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInterval {
    pub step: String,
    pub start_ns: i64,
    pub end_ns: i64,
    /// 1 for the first visit, 2 for the first revisit, ...
    pub visit: u32,
    /// Event seq that opened the interval.
    pub entered_by: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub step: String,
    pub title: String,
    pub time_spent_ns: i64,
    pub visits: u32,
    /// Reached and left forward (a later step was entered), or the session's last step
    /// ended with a task_end marker.
    pub completed: bool,
    pub expected_ns: i64,
    /// Event seqs that happened while in the step.
    pub events: Vec<u64>,
    /// The participant's physiological arousal in the step, when the
    /// session has sensor streams the analyzer reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arousal: Option<StepArousal>,
}

/// Arousal in one step's visits: skin-conductance responses (SCRs, the
/// arousal detector's rule) whose onset fell in them, and heart rate there
/// against the whole session's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepArousal {
    /// SCRs per minute in the step (`None` without skin conductance).
    #[serde(default)]
    pub eda_per_min: Option<f64>,
    /// Their mean amplitude, µS (`None` also when there were none).
    #[serde(default)]
    pub eda_amplitude_us: Option<f64>,
    /// Mean heart rate in the step minus the session's mean, bpm.
    #[serde(default)]
    pub hr_change_bpm: Option<f64>,
}

/// `analysis/steps.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepAnalysis {
    pub format_version: u32,
    pub journey_id: String,
    pub journey_version: String,
    pub intervals: Vec<StepInterval>,
    pub steps: Vec<StepSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Seqs of the events that show it.
    #[serde(default)]
    pub events: Vec<u64>,
    /// Transcript words that show it.
    #[serde(default)]
    pub words: Vec<Word>,
    /// Short human-readable explanation, in Russian.
    pub note: String,
    /// Why the confidence is what it is, in order: the rule that fired with
    /// its base value, then each adjustment with its signed change. The
    /// changes add up to the candidate's confidence (to rounding). Empty in
    /// analyses written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basis: Vec<ConfidenceTerm>,
}

/// One step of a candidate's confidence: the rule's base value (the first
/// term) or an adjustment to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceTerm {
    /// What it is, in Russian («клик по элементу управления без отклика»,
    /// «после паузы 12 с»).
    pub why: String,
    /// The base value, or the signed change this term made.
    pub delta: f32,
}

/// A proposed friction point for a researcher to accept or reject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Stable within the bundle: `<detector>-<n>`.
    pub id: String,
    /// `rage_click`, `dead_click`, `backtrack`, `hesitation`, `step_overtime`,
    /// `field_struggle`, `js_error`, `verbal_confusion`, `question_to_moderator`.
    pub detector: String,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Journey step the candidate happened in, if any.
    pub step: Option<String>,
    /// 0-1.
    pub confidence: f32,
    pub evidence: Evidence,
    /// Other detectors whose candidate for the same moment was merged into
    /// this one (a rage-click burst on a control that did nothing is also a
    /// dead click): one friction, one candidate, every rule that saw it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

/// `analysis/candidates.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateList {
    pub format_version: u32,
    pub candidates: Vec<Candidate>,
}

/// One video rendition in `analysis/web/renditions.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenditionVideo {
    pub track: String,
    /// Path relative to the bundle.
    pub file: String,
    /// Video packets copied.
    pub frames: u64,
    /// Frames the manifest promises: each segment's `end_ns - start_ns` times the track's framerate.
    pub expected_frames: u64,
    /// First and last video time copied.
    pub start_ns: i64,
    pub end_ns: i64,
}

/// A film-strip thumbnail in `renditions.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thumbnail {
    pub t_ns: i64,
    /// JPEG, path relative to the bundle.
    pub file: String,
}

/// What reading one segment's video packets found, for the QA stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMedia {
    pub track: String,
    /// The segment's `file` (relative to the bundle).
    pub file: String,
    pub frames: u64,
    /// Time of the first video packet; `None` when none could be read.
    pub first_ns: Option<i64>,
    /// End of the last video packet (its time plus one frame).
    pub end_ns: Option<i64>,
    /// Why reading stopped before the end of the file, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `analysis/web/renditions.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Renditions {
    pub format_version: u32,
    pub videos: Vec<RenditionVideo>,
    #[serde(default)]
    pub thumbnails: Vec<Thumbnail>,
    /// `peaks.json`: max |sample| per 1/50 s, 0-255, from session time 0.
    pub peaks: Option<String>,
    /// What could not be read, with paths relative to the bundle.
    pub errors: Vec<String>,
    /// Per video track and segment, what its packets cover.
    #[serde(default)]
    pub segments: Vec<SegmentMedia>,
}

/// A segment whose media ends before the manifest says it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortSegment {
    pub track: String,
    pub file: String,
    /// The manifest's `end_ns`.
    pub expected_end_ns: i64,
    /// Where its video really ends (`None`: nothing readable).
    pub media_end_ns: Option<i64>,
    pub missing_ns: i64,
}

/// `analysis/qa.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QaReport {
    pub format_version: u32,
    pub status: String,
    pub clock_uncertainty_ms: Vec<(String, f64)>,
    pub gaps: Vec<crate::bundle::Gap>,
    /// Segments that were still open when the recorder stopped or died.
    pub recovered_segments: Vec<String>,
    /// Paths relative to the bundle.
    pub decode_errors: Vec<String>,
    /// Per video track: (track, frames read, frames the manifest promises).
    pub frames: Vec<(String, u64, u64)>,
    /// Segments whose media ends short of the manifest by more than the tolerance.
    #[serde(default)]
    pub short_segments: Vec<ShortSegment>,
    /// Every problem found, one sentence each (decode errors, gaps, short segments).
    #[serde(default)]
    pub issues: Vec<String>,
    pub events_rejected: u64,
    /// Torn lines skipped at the end of `events.jsonl`.
    #[serde(default)]
    pub events_torn: u64,
    pub transcript_status: String,
}

/// `analysis/web/peaks.json`: waveform peaks for the timeline's audio lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peaks {
    /// Peaks per second of session time.
    pub per_second: u32,
    /// Per audio channel: max |sample| per 1/`per_second` s, 0-255, from session time 0.
    pub channels: Vec<Vec<u8>>,
}

/// One finished stage in `analysis/state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage's [`Stage::version`] when it ran.
    pub version: u32,
    /// What it reported (`ok: …`, `skipped: …`).
    pub status: String,
}

/// `analysis/state.json`: which stages are done, at which stage version.
/// Keys are stage names; names this reader does not know are kept as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    pub stages: BTreeMap<String, StageRecord>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            format_version: ANALYSIS_FORMAT_VERSION,
            stages: BTreeMap::new(),
        }
    }
}

impl State {
    /// Whether `stage` finished at its current version (an older version is redone).
    pub fn is_done(&self, stage: Stage) -> bool {
        self.stages
            .get(stage.as_str())
            .is_some_and(|r| r.version == stage.version())
    }

    /// Records `stage` as finished now, at its current version.
    pub fn record(&mut self, stage: Stage, status: impl Into<String>) {
        self.stages.insert(
            stage.as_str().into(),
            StageRecord {
                version: stage.version(),
                status: status.into(),
            },
        );
    }
}

macro_rules! versioned_doc {
    ($($t:ty => $file:ident),* $(,)?) => {$(
        impl AnalysisDoc for $t {
            const FILE: AnalysisFile = AnalysisFile::$file;
            fn format_version(&self) -> Option<u32> {
                Some(self.format_version)
            }
        }
    )*};
}

versioned_doc!(
    State => State,
    SpeechActivity => Speech,
    Transcript => Transcript,
    StepAnalysis => Steps,
    CandidateList => Candidates,
    Renditions => Renditions,
    QaReport => Qa,
);

impl AnalysisDoc for Peaks {
    const FILE: AnalysisFile = AnalysisFile::Peaks;
    /// Compact: a two-hour session has 360,000 peaks per channel.
    const PRETTY: bool = false;
}
