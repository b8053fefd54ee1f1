//! Sessions: the list, one session, the parts the handlers and services read.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use lab_model::analysis::QaReport;

use crate::types::{
    AnalysisState, Job, MediaIndex, SessionFilter, SessionRow, StudySummary, TrackView,
    TranscriptView,
};
use sqlx::AnyPool as Pool;

const ROW_SELECT: &str = "SELECT s.id, s.study, s.life_situation, s.journey_id, s.participant, s.segment, s.station, \
    s.started_at, s.duration_ms, s.status, s.withdrawn, s.transcript_status, s.media, \
    (SELECT COUNT(*) FROM candidates c WHERE c.session_id = s.id AND c.status = 'open') AS candidates_open, \
    (SELECT COUNT(*) FROM candidates c WHERE c.session_id = s.id) AS candidates_total, \
    (SELECT COUNT(*) FROM tags t WHERE t.session_id = s.id AND t.deleted = 0) AS tags \
    FROM sessions s";

/// The `media` column.
pub fn media_index(text: &str) -> Result<MediaIndex, sqlx::Error> {
    json_column(text)
}

/// A JSON column read into its type; a malformed one is a decode error.
fn json_column<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(e.into()))
}

/// A session row; its analysis state is its latest analysis job's, else
/// "done" when anything was analysed.
fn session_row(r: &AnyRow, jobs: &HashMap<String, Job>) -> Result<SessionRow, sqlx::Error> {
    let id: String = r.try_get("id")?;
    let transcript_status: String = r.try_get("transcript_status")?;
    let media: String = r.try_get("media")?;
    let analysed = !transcript_status.is_empty() || media != "{}";
    let analysis = match jobs.get(&id) {
        Some(j) => AnalysisState {
            status: j.status.clone(),
            progress: j.progress,
            stage: j.stage.clone(),
            message: j.message.clone(),
            job_id: Some(j.id),
        },
        None => AnalysisState {
            status: if analysed { "done" } else { "none" }.into(),
            ..Default::default()
        },
    };
    Ok(SessionRow {
        id,
        study: r.try_get("study")?,
        life_situation: r.try_get("life_situation")?,
        journey_id: r.try_get("journey_id")?,
        participant: r.try_get("participant")?,
        segment: r.try_get("segment")?,
        station: r.try_get("station")?,
        started_at: r.try_get("started_at")?,
        duration_ms: r.try_get("duration_ms")?,
        status: r.try_get("status")?,
        withdrawn: r.try_get::<i64, _>("withdrawn")? != 0,
        analysis,
        candidates_open: r.try_get("candidates_open")?,
        candidates_total: r.try_get("candidates_total")?,
        tags: r.try_get("tags")?,
    })
}

pub async fn get(pool: &Pool, id: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    let jobs = super::jobs::latest_analysis_per_session(pool).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("{ROW_SELECT} WHERE s.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| session_row(&r, &jobs))
        .transpose()
}

/// Newest first, at most 2000.
pub async fn list(pool: &Pool, f: &SessionFilter) -> Result<Vec<SessionRow>, sqlx::Error> {
    let jobs = super::jobs::latest_analysis_per_session(pool).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{ROW_SELECT} WHERE ($1 = '' OR s.study = $1) AND ($2 = '' OR s.life_situation = $2) \
         AND ($3 = '' OR s.segment = $3) AND ($4 = 0 OR s.started_at >= $4) AND ($5 = 0 OR s.started_at <= $5) \
         AND ($6 = '' OR s.journey_id = $6) ORDER BY s.started_at DESC LIMIT 2000"
    )))
    .bind(&f.study)
    .bind(&f.life_situation)
    .bind(&f.segment)
    .bind(f.from)
    .bind(f.to)
    .bind(&f.journey)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| session_row(r, &jobs))
    .collect()
}

pub async fn studies(pool: &Pool) -> Result<Vec<StudySummary>, sqlx::Error> {
    sqlx::query(
        "SELECT s.study, s.life_situation, s.journey_id, j.title AS journey_title, COUNT(*) AS sessions FROM sessions s \
         LEFT JOIN journeys j ON j.id = s.journey_id GROUP BY s.study, s.life_situation, s.journey_id, j.title \
         ORDER BY s.study, s.life_situation",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(StudySummary {
            study: r.try_get("study")?,
            life_situation: r.try_get("life_situation")?,
            journey_id: r.try_get("journey_id")?,
            journey_title: r.try_get("journey_title")?,
            sessions: r.try_get("sessions")?,
        })
    })
    .collect()
}

/// Whether the session is withdrawn; None for an unknown session.
pub async fn withdrawn(pool: &Pool, id: &str) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query("SELECT withdrawn FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| Ok(r.try_get::<i64, _>("withdrawn")? != 0))
        .transpose()
}

/// What the session page shows besides the row.
pub struct SessionPaperwork {
    pub consent: String,
    pub moderator: Option<String>,
    /// The recorded tracks.
    pub tracks: Vec<TrackView>,
    pub media: MediaIndex,
    /// The analyzer's QA report.
    pub qa: Option<QaReport>,
}

pub async fn paperwork(pool: &Pool, id: &str) -> Result<SessionPaperwork, sqlx::Error> {
    let r = sqlx::query("SELECT consent, moderator, tracks, media, qa FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(SessionPaperwork {
        consent: r.try_get("consent")?,
        moderator: r.try_get("moderator")?,
        tracks: json_column(&r.try_get::<String, _>("tracks")?)?,
        media: media_index(&r.try_get::<String, _>("media")?)?,
        qa: r
            .try_get::<Option<String>, _>("qa")?
            .as_deref()
            .map(json_column)
            .transpose()?,
    })
}

pub async fn set_segment(pool: &Pool, id: &str, segment: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET segment = $2 WHERE id = $1")
        .bind(id)
        .bind(segment)
        .execute(pool)
        .await?;
    Ok(())
}

/// The recorded length (0 = unknown) and the pre-rendered speech lane.
pub async fn duration_and_speech(
    pool: &Pool,
    id: &str,
) -> Result<(i64, Option<String>), sqlx::Error> {
    let r = sqlx::query("SELECT duration_ms, speech_json FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok((r.try_get("duration_ms")?, r.try_get("speech_json")?))
}

/// A session's transcript as the API serves it (JSON, pre-rendered at import).
pub async fn transcript_json(pool: &Pool, id: &str) -> anyhow::Result<String> {
    let r = sqlx::query(
        "SELECT transcript_status, language, transcript_json FROM sessions WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(match r.try_get::<Option<String>, _>("transcript_json")? {
        Some(json) => json,
        None => serde_json::to_string(&TranscriptView {
            status: r.try_get("transcript_status")?,
            language: r.try_get("language")?,
            segments: vec![],
        })?,
    })
}

/// A session's transcript.
pub async fn transcript(pool: &Pool, id: &str) -> anyhow::Result<TranscriptView> {
    Ok(serde_json::from_str(&transcript_json(pool, id).await?)?)
}

/// Where a session's files are.
pub struct SessionFiles {
    pub bundle_path: String,
    pub life_situation: String,
    pub media: MediaIndex,
    pub withdrawn: bool,
    /// The manifest's status at the last import: `recording`, `complete`,
    /// `interrupted`.
    pub status: String,
}

pub async fn files(pool: &Pool, id: &str) -> Result<Option<SessionFiles>, sqlx::Error> {
    sqlx::query(
        "SELECT bundle_path, life_situation, media, withdrawn, status FROM sessions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .map(|r| {
        Ok(SessionFiles {
            bundle_path: r.try_get("bundle_path")?,
            life_situation: r.try_get("life_situation")?,
            media: media_index(&r.try_get::<String, _>("media")?)?,
            withdrawn: r.try_get::<i64, _>("withdrawn")? != 0,
            status: r.try_get("status")?,
        })
    })
    .transpose()
}

/// The participant code and start (Unix ms), for export headers.
pub async fn participant_and_start(pool: &Pool, id: &str) -> Result<(String, i64), sqlx::Error> {
    let r = sqlx::query("SELECT participant, started_at FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok((r.try_get("participant")?, r.try_get("started_at")?))
}
