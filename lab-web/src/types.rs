//! The JSON shapes of the API (`docs/lab-web-api.md`), shared by the
//! handlers, the exports and the tests. Session times are milliseconds on the
//! session timeline; `*_at` are Unix milliseconds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct AnalysisState {
    pub status: String,
    pub progress: f64,
    pub stage: String,
    pub message: String,
    pub job_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub study: String,
    pub life_situation: String,
    pub journey_id: Option<String>,
    pub participant: String,
    pub segment: String,
    pub station: String,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: String,
    pub analysis: AnalysisState,
    pub candidates_open: i64,
    pub candidates_total: i64,
    pub tags: i64,
    pub withdrawn: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JourneyStep {
    pub id: String,
    pub title: String,
    pub significance: i64,
    pub expected_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JourneyInfo {
    pub id: String,
    pub title: String,
    pub version: String,
    pub steps: Vec<JourneyStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepInterval {
    pub step: String,
    pub title: String,
    pub visit: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TimelineEvent {
    pub seq: i64,
    pub t_ms: i64,
    pub source: String,
    pub kind: String,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpeechSpan {
    pub start_ms: i64,
    pub end_ms: i64,
    pub speaker: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Marker {
    pub seq: i64,
    pub t_ms: i64,
    pub label: String,
}

/// What shows a candidate: the seqs of its events and its words' text.
/// Stored as JSON in `candidates.evidence` and served as is; missing parts
/// read as empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CandidateEvidence {
    #[serde(default)]
    pub events: Vec<i64>,
    #[serde(default)]
    pub words: Vec<String>,
    /// Other detectors merged into this candidate (see
    /// `lab_model::analysis::Candidate::also`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    /// Where each of `words` starts, session ms (same order; empty in
    /// candidates imported before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words_ms: Vec<i64>,
    /// Why the confidence is what it is: the rule, then each adjustment
    /// (`lab_model::analysis::Evidence::basis`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basis: Vec<lab_model::analysis::ConfidenceTerm>,
}

impl CandidateEvidence {
    /// The confidence explained in one Russian line, «уверенность 70 %:
    /// правило (0,60); причина (+0,10)», or `None` without a basis.
    pub fn explain(&self, confidence: f64) -> Option<String> {
        let (rule, rest) = self.basis.split_first()?;
        let figure = |x: f32, signed: bool| {
            let s = if signed {
                format!("{x:+.2}")
            } else {
                format!("{x:.2}")
            };
            s.replace('.', ",").replace('-', "−")
        };
        let mut line = format!(
            "уверенность {:.0} %: правило «{}» ({})",
            confidence * 100.0,
            rule.why,
            figure(rule.delta, false)
        );
        for t in rest {
            line += &format!("; {} ({})", t.why, figure(t.delta, true));
        }
        Some(line)
    }
}

/// A recorded track as `GET /sessions/{id}` shows it (stored as JSON in
/// `sessions.tracks` at import).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackView {
    pub channel_roles: Vec<lab_model::bundle::ChannelRole>,
    pub id: String,
    pub kind: lab_model::bundle::TrackKind,
}

/// One word of a stored transcript segment (`transcript_segments.words`):
/// `[start_ms, end_ms, text, confidence]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredWord(pub i64, pub i64, pub String, pub f32);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub detector: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step: Option<String>,
    pub confidence: f64,
    pub note: String,
    pub evidence: CandidateEvidence,
    pub status: String,
    pub reason: Option<String>,
    pub tag_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClipState {
    pub status: String,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tag {
    pub id: i64,
    pub session_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step: Option<String>,
    pub category: String,
    pub severity: i64,
    pub emotion: String,
    pub note: String,
    pub quote: String,
    pub url: Option<String>,
    pub selector: Option<String>,
    pub candidate_id: Option<String>,
    pub clip: Option<ClipState>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Word {
    pub i: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    pub confidence: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TranscriptSegment {
    pub id: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub speaker: String,
    pub text: String,
    pub words: Vec<Word>,
    /// Why the analyzer flagged the segment's text, if it did:
    /// `repetition` (a loop, cut) or `compression` (repetitive), which the
    /// detectors never read, or `low_logprob` (heard uncertainly), which
    /// they read at lower confidence; `unknown` for a flag without a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TranscriptView {
    pub status: String,
    pub language: String,
    pub segments: Vec<TranscriptSegment>,
}

/// One finding in the findings export (`docs/findings-schema.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    pub id: i64,
    pub journey_id: Option<String>,
    pub step: Option<String>,
    pub step_title: Option<String>,
    pub session_id: String,
    /// Pseudonymous participant code; empty after withdrawal.
    pub participant: String,
    pub segment: String,
    pub study: String,
    pub url: Option<String>,
    pub selector: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub category: String,
    pub severity: i64,
    pub emotion: String,
    pub quote: String,
    pub note: String,
    pub clip_url: Option<String>,
    pub session_url: String,
}

pub const FINDINGS_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FindingsExport {
    pub schema_version: u32,
    pub generated_at: String,
    pub filters: FindingsFilters,
    pub findings: Vec<Finding>,
}

/// The filters echoed in a findings export (keys in the order they were
/// always written).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FindingsFilters {
    pub from: String,
    pub journey: String,
    pub segment: String,
    pub study: String,
    pub to: String,
}

/// Journey map aggregate (`GET /journeys/{id}/map`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TimeStats {
    pub n: i64,
    pub median_ms: i64,
    pub p25_ms: i64,
    pub p75_ms: i64,
    pub min_ms: i64,
    pub max_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Completion {
    pub completed: i64,
    pub reached: i64,
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Emotions {
    pub positive: i64,
    pub neutral: i64,
    pub negative: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quote {
    pub text: String,
    /// Session time of the tag, for links to that moment.
    pub start_ms: i64,
    pub session_id: String,
    pub participant: String,
    pub tag_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    pub category: String,
    pub count: i64,
    pub max_severity: i64,
    pub quotes: Vec<Quote>,
    pub clips: Vec<String>,
}

/// Friction the analyzer proposed in a step (candidates not rejected),
/// per detector: what the map shows before anyone has tagged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProposedFriction {
    pub detector: String,
    pub count: i64,
    /// Of them, accepted into tags.
    pub accepted: i64,
    /// Participant codes, each once, with a link target.
    pub sessions: Vec<CandidateRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CandidateRef {
    pub session_id: String,
    pub participant: String,
    pub start_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MapStep {
    pub id: String,
    pub title: String,
    pub significance: i64,
    pub expected_ms: i64,
    pub time: TimeStats,
    pub completion: Completion,
    pub emotions: Emotions,
    pub problems: Vec<Problem>,
    #[serde(default)]
    pub proposed: Vec<ProposedFriction>,
    /// The participants' own emotion at this step (`self_report.step`),
    /// beside `emotions`, which researchers coded in tags.
    #[serde(default)]
    pub self_emotions: Emotions,
    /// The participants' own rating of how significant the step was (1–5),
    /// against the journey definition's `significance`; `None` without answers.
    #[serde(default)]
    pub self_significance: Option<Spread>,
    /// Physiological arousal across the sessions with sensors: skin-conductance
    /// responses per minute in the step and their amplitude (µS), heart-rate
    /// change against each session's mean (bpm); `None` without sensors.
    #[serde(default)]
    pub arousal: Option<StepArousalMap>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepArousalMap {
    pub eda_per_min: Option<MeanCi>,
    pub eda_amplitude_us: Option<MeanCi>,
    pub hr_change_bpm: Option<MeanCi>,
}

/// Mean, standard deviation and count of ratings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub mean: f64,
    /// Sample standard deviation; 0 for one answer.
    pub sd: f64,
    pub n: i64,
}

/// A mean with its 95 % confidence interval (Student's t); `ci95` is the
/// half-width, `None` below two values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MeanCi {
    pub mean: f64,
    pub ci95: Option<f64>,
    pub n: i64,
}

/// The Single Ease Question of one task over the selected sessions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskEase {
    pub task: String,
    pub seq: MeanCi,
}

/// One participant's SUS score (0–100).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SusScore {
    pub session_id: String,
    pub participant: String,
    pub score: f64,
}

/// What participants said themselves: SEQ per task, SUS per participant
/// and over the selection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SelfReported {
    pub tasks: Vec<TaskEase>,
    pub sus: Vec<SusScore>,
    pub sus_mean: Option<MeanCi>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JourneyMap {
    pub journey: JourneyInfo,
    pub sessions: i64,
    pub participants: Vec<String>,
    pub steps: Vec<MapStep>,
    /// How researchers' decisions bear out each detector's confidence over
    /// these sessions (absent in maps written before it existed).
    #[serde(default)]
    pub detectors: Vec<DetectorReliability>,
    /// The participants' questionnaires (SEQ, SUS).
    #[serde(default)]
    pub self_reported: SelfReported,
}

/// One detector's candidates over a journey's sessions against what
/// researchers decided: the lab's own calibration of its confidence. A
/// merged candidate counts under each detector it carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DetectorReliability {
    pub detector: String,
    pub proposed: i64,
    pub accepted: i64,
    pub rejected: i64,
    /// Accepted of the decided (accepted + rejected); `None` before any decision.
    pub accepted_share: Option<f64>,
    /// Mean confidence of the decided candidates.
    pub mean_confidence: Option<f64>,
    /// The decided candidates by confidence.
    pub bins: Vec<ReliabilityBin>,
}

/// Decided candidates whose confidence is in `[lower, upper)`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub decided: i64,
    pub accepted: i64,
}

/// Tag categories with their Russian and English names.
pub const CATEGORIES: &[(&str, &str, &str)] = &[
    ("navigation", "Навигация", "Navigation"),
    ("comprehension", "Понимание", "Comprehension"),
    ("form_input", "Ввод данных", "Form input"),
    ("error", "Ошибка", "Error"),
    ("content", "Контент", "Content"),
    ("trust", "Доверие", "Trust"),
    ("performance", "Скорость", "Performance"),
    ("accessibility", "Доступность", "Accessibility"),
    ("other", "Другое", "Other"),
];

pub fn category_name(id: &str, lang: &str) -> String {
    CATEGORIES
        .iter()
        .find(|c| c.0 == id)
        .map(|c| if lang == "en" { c.2 } else { c.1 }.to_string())
        .unwrap_or_else(|| id.to_string())
}

pub const EMOTIONS: &[&str] = &["positive", "neutral", "negative"];
pub const ROLES: &[&str] = &["admin", "researcher", "operator", "viewer", "observer"];

/// A background job (`GET /jobs`, the job event stream).
/// What a background job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// `lab-analyze run` on a session's bundle, then its re-import.
    Analyze,
    /// A tag's video clip.
    Clip,
}

impl JobKind {
    /// The name stored in `jobs.kind` and served in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analyze => "analyze",
            Self::Clip => "clip",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::Analyze, Self::Clip]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub session_id: Option<String>,
    pub tag_id: Option<i64>,
    pub status: String,
    pub progress: f64,
    pub stage: String,
    pub message: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The worker holding (or that last held) it (docs/worker-protocol.md).
    pub worker: Option<String>,
    /// Leases given so far; `dead` after `MAX_ATTEMPTS`.
    pub attempts: i64,
    /// A capability its worker must have, or "".
    pub requires: String,
}

/// One study × life situation with its session count (`GET /studies`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StudySummary {
    pub study: String,
    pub life_situation: String,
    pub journey_id: Option<String>,
    pub journey_title: Option<String>,
    pub sessions: i64,
}

/// A journey with its session count (`GET /journeys`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JourneySummary {
    pub id: String,
    pub title: String,
    pub version: String,
    pub sessions: i64,
}

/// One raw event with its payload (`GET /sessions/{id}/events`); the
/// payload is the recorder's free-form event data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    pub seq: i64,
    pub t_ms: i64,
    pub source: String,
    pub kind: String,
    pub data: Value,
}

/// One change of a tag (`GET /tags/{tag}/history`); `before` and `after` are
/// the tag as it was stored then (null after a withdrawal).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagHistoryEntry {
    pub at: i64,
    pub user: Option<String>,
    pub action: String,
    pub before: Value,
    pub after: Value,
}

/// A user as the admin list shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserAccount {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: i64,
}

/// An API token without its secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub scope: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub user: String,
    pub action: String,
    pub object: String,
    pub detail: String,
}

/// A transcript segment found by search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchHit {
    pub session_id: String,
    pub participant: String,
    pub segment_id: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub speaker: String,
    pub text: String,
}

/// Where a session's renditions lie in its bundle (the `media` column),
/// paths relative to the bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct MediaIndex {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<MediaFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<MediaFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnails: Option<Vec<Thumbnail>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peaks: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MediaFile {
    pub file: String,
    #[serde(default)]
    pub start_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Thumbnail {
    #[serde(default)]
    pub t_ms: i64,
    #[serde(default)]
    pub file: Option<String>,
}

/// Filters of session lists, findings and the journey map; 0 / "" = any.
#[derive(Debug, Default, Clone)]
pub struct SessionFilter {
    pub study: String,
    pub life_situation: String,
    pub journey: String,
    pub segment: String,
    /// Unix ms; 0 = no bound.
    pub from: i64,
    pub to: i64,
}

/// How a background job ended.
pub enum JobOutcome {
    Done(String),
    Cancelled,
}

/// What a job is asked to do (the `args` column): an analysis names its
/// session and optionally a stage to redo; a clip names its tag.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct JobArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_id: Option<i64>,
    /// A capability the worker must have (`gpu`, `large-model`): only a
    /// worker listing it leases the job (docs/worker-protocol.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<String>,
}

#[cfg(test)]
mod explain_tests {
    use super::CandidateEvidence;
    use lab_model::analysis::ConfidenceTerm;

    #[test]
    fn a_basis_reads_as_one_russian_line() {
        let term = |why: &str, delta| ConfidenceTerm {
            why: why.into(),
            delta,
        };
        let e = CandidateEvidence {
            basis: vec![
                term("клик без отклика по элементу управления", 0.7),
                term("ещё 2 клика по тому же элементу", 0.2),
                term("общий микрофон", -0.18),
            ],
            ..Default::default()
        };
        assert_eq!(
            e.explain(0.72).unwrap(),
            "уверенность 72 %: правило «клик без отклика по элементу управления» (0,70); \
             ещё 2 клика по тому же элементу (+0,20); общий микрофон (−0,18)"
        );
        assert_eq!(CandidateEvidence::default().explain(0.5), None);
    }
}
