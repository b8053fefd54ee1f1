//! The typed bodies of API responses (`docs/lab-web-api.md`). Field names
//! and types are the API's; the row types inside come from [`crate::types`].

use serde::Serialize;

use crate::types::{
    ApiToken, AuditEntry, Candidate, EventRecord, Job, JourneyInfo, JourneySummary, Marker,
    SearchHit, SessionRow, StepInterval, StudySummary, Tag, TagHistoryEntry, TrackView, User,
    UserAccount,
};

#[derive(Serialize)]
pub struct Category {
    pub id: &'static str,
    pub ru: &'static str,
    pub en: &'static str,
}

#[derive(Serialize)]
pub struct Categories {
    pub categories: Vec<Category>,
}

/// `POST /login`, `GET /me`.
#[derive(Serialize)]
pub struct Me {
    pub user: User,
    pub csrf: Option<String>,
}

/// An error with its own code (a failed log-in).
#[derive(Serialize)]
pub struct ErrorBody {
    pub error: &'static str,
    pub message: &'static str,
}

#[derive(Serialize)]
pub struct Sessions {
    pub sessions: Vec<SessionRow>,
}

#[derive(Serialize)]
pub struct Studies {
    pub studies: Vec<StudySummary>,
}

/// `GET /sessions/{id}`: the row, the paperwork for roles that see
/// recordings, media links, the journey and the QA report.
#[derive(Serialize)]
pub struct SessionDetail {
    #[serde(flatten)]
    pub row: SessionRow,
    pub consent: Option<String>,
    pub moderator: Option<String>,
    /// The recorded tracks as stored at import.
    pub tracks: Vec<TrackView>,
    pub media: MediaLinks,
    pub journey: Option<JourneyInfo>,
    /// The analyzer's QA report as stored at import (null before the QA stage ran).
    pub qa: Option<lab_model::analysis::QaReport>,
}

#[derive(Serialize)]
pub struct MediaLinks {
    pub screen: Option<String>,
    pub camera: Option<String>,
    pub screen_start_ms: i64,
    pub camera_start_ms: i64,
    pub thumbnails: Vec<ThumbnailLink>,
    pub peaks: Option<String>,
}

#[derive(Serialize)]
pub struct ThumbnailLink {
    pub t_ms: i64,
    pub url: String,
}

/// `GET /sessions/{id}/timeline` without the two pre-rendered lanes
/// (`events`, `speech`), which are spliced in as stored.
#[derive(Serialize)]
pub struct TimelineRest {
    pub duration_ms: i64,
    pub steps: Vec<StepInterval>,
    pub candidates: Vec<Candidate>,
    pub tags: Vec<Tag>,
    pub markers: Vec<Marker>,
    pub truncated: bool,
}

#[derive(Serialize)]
pub struct Events {
    pub events: Vec<EventRecord>,
}

/// A queued job; `already` when an equal job was queued or running.
#[derive(Serialize)]
pub struct JobQueued {
    pub job_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub already: Option<bool>,
}

#[derive(Serialize)]
pub struct Imported {
    pub session_id: String,
    pub imported: bool,
}

#[derive(Serialize)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    pub took_ms: f64,
}

#[derive(Serialize)]
pub struct Tags {
    pub tags: Vec<Tag>,
}

#[derive(Serialize)]
pub struct Accepted {
    pub tag: Tag,
}

#[derive(Serialize)]
pub struct History {
    pub history: Vec<TagHistoryEntry>,
}

#[derive(Serialize)]
pub struct Journeys {
    pub journeys: Vec<JourneySummary>,
}

/// `GET /setups`: every study set-up, as stations read them.
#[derive(Serialize)]
pub struct Setups {
    pub setups: Vec<lab_model::study::Study>,
}

/// One finding as the prototype overlay shows it.
#[derive(Serialize)]
pub struct OverlayFinding {
    pub id: i64,
    pub step: Option<String>,
    pub url: Option<String>,
    pub selector: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub category: String,
    pub severity: i64,
    pub emotion: String,
    pub quote: String,
    pub clip_url: Option<String>,
    pub session_id: String,
    pub participant: String,
}

#[derive(Serialize)]
pub struct OverlayFindings {
    pub findings: Vec<OverlayFinding>,
}

#[derive(Serialize)]
pub struct Jobs {
    pub jobs: Vec<Job>,
}

#[derive(Serialize)]
pub struct Users {
    pub users: Vec<UserAccount>,
}

#[derive(Serialize)]
pub struct Created {
    pub id: i64,
}

#[derive(Serialize)]
pub struct Tokens {
    pub tokens: Vec<ApiToken>,
}

/// A new API token: its secret is shown once.
#[derive(Serialize)]
pub struct NewTokenCreated {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub token: String,
}

#[derive(Serialize)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}
