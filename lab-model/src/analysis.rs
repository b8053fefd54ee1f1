//! What the analyzer adds to a bundle under `analysis/`. Every file carries
//! `format_version`; times are session nanoseconds like everything else in
//! the bundle. Documented in `docs/bundle-format.md` ("Analysis outputs").

use serde::{Deserialize, Serialize};

pub const ANALYSIS_FORMAT_VERSION: u32 = 1;
pub const ANALYSIS_DIR: &str = "analysis";

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
}

/// `analysis/transcript.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub format_version: u32,
    pub language: String,
    /// Model file name and its size, for reproducibility.
    pub model: String,
    /// `ok`, or why there is no transcript (`skipped: no audio track`, `skipped: silent`).
    pub status: String,
    pub segments: Vec<TranscriptSegment>,
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
}

/// `analysis/candidates.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateList {
    pub format_version: u32,
    pub candidates: Vec<Candidate>,
}
