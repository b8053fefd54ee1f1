//! The rows the journey map aggregates: a journey's sessions (filtered),
//! their step summaries, tags and proposed friction.

use sqlx::Row;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::types::{CandidateEvidence, SessionFilter};
use sqlx::AnyPool as Pool;

/// The sessions `f` selects of a journey: `{SESSIONS}` in the SQL below,
/// with its five parameters bound first.
const SESSIONS: &str = "s.journey_id = $1 AND ($2 = '' OR s.study = $2) AND ($3 = '' OR s.segment = $3) \
    AND ($4 = 0 OR s.started_at >= $4) AND ($5 = 0 OR s.started_at <= $5)";

fn filtered<'q>(
    journey_id: &str,
    f: &SessionFilter,
    sql: String,
) -> Query<'q, sqlx::Any, AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(journey_id.to_string())
        .bind(f.study.clone())
        .bind(f.segment.clone())
        .bind(f.from)
        .bind(f.to)
}

/// Participant codes of the selected sessions, oldest session first.
pub async fn participants(
    pool: &Pool,
    journey_id: &str,
    f: &SessionFilter,
) -> Result<Vec<String>, sqlx::Error> {
    filtered(
        journey_id,
        f,
        format!(
            "SELECT s.id, s.participant FROM sessions s WHERE {SESSIONS} ORDER BY s.started_at"
        ),
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| r.try_get("participant"))
    .collect()
}

pub struct StepSummaryRow {
    pub step: String,
    pub time_spent_ms: i64,
    pub visits: i64,
    pub completed: i64,
    pub eda_per_min: Option<f64>,
    pub eda_amplitude_us: Option<f64>,
    pub hr_change_bpm: Option<f64>,
}

pub async fn step_summaries(
    pool: &Pool,
    journey_id: &str,
    f: &SessionFilter,
) -> Result<Vec<StepSummaryRow>, sqlx::Error> {
    filtered(journey_id, f, format!(
        "SELECT m.step, m.time_spent_ms, m.visits, m.completed, m.eda_per_min, m.eda_amplitude_us, m.hr_change_bpm \
         FROM step_summaries m JOIN sessions s ON s.id = m.session_id WHERE {SESSIONS}"
    ))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(StepSummaryRow {
            step: r.try_get("step")?,
            time_spent_ms: r.try_get("time_spent_ms")?,
            visits: r.try_get("visits")?,
            completed: r.try_get("completed")?,
            eda_per_min: r.try_get("eda_per_min")?,
            eda_amplitude_us: r.try_get("eda_amplitude_us")?,
            hr_change_bpm: r.try_get("hr_change_bpm")?,
        })
    })
    .collect()
}

pub struct MapTag {
    pub id: i64,
    pub step: Option<String>,
    pub category: String,
    pub severity: i64,
    pub emotion: String,
    pub quote: String,
    pub session_id: String,
    pub participant: String,
    pub clip_status: Option<String>,
    pub start_ms: i64,
}

/// Tags of the selected sessions, most severe first.
pub async fn tags(
    pool: &Pool,
    journey_id: &str,
    f: &SessionFilter,
) -> Result<Vec<MapTag>, sqlx::Error> {
    filtered(journey_id, f, format!(
        "SELECT t.id, t.step, t.category, t.severity, t.emotion, t.quote, t.session_id, s.participant, \
         c.status AS clip_status, t.start_ms \
         FROM tags t JOIN sessions s ON s.id = t.session_id LEFT JOIN clips c ON c.tag_id = t.id \
         WHERE t.deleted = 0 AND {SESSIONS} ORDER BY t.severity DESC, t.id"
    ))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(MapTag {
            id: r.try_get("id")?,
            step: r.try_get("step")?,
            category: r.try_get("category")?,
            severity: r.try_get("severity")?,
            emotion: r.try_get("emotion")?,
            quote: r.try_get("quote")?,
            session_id: r.try_get("session_id")?,
            participant: r.try_get("participant")?,
            clip_status: r.try_get("clip_status")?,
            start_ms: r.try_get("start_ms")?,
        })
    })
    .collect()
}

pub struct MapCandidate {
    pub step: String,
    pub detector: String,
    /// Detectors merged into it (`CandidateEvidence::also`).
    pub also: Vec<String>,
    pub status: String,
    pub session_id: String,
    pub participant: String,
    pub start_ms: i64,
}

/// Candidates not rejected, with a step, of the selected sessions.
pub async fn candidates(
    pool: &Pool,
    journey_id: &str,
    f: &SessionFilter,
) -> Result<Vec<MapCandidate>, sqlx::Error> {
    filtered(journey_id, f, format!(
        "SELECT c.step, c.detector, c.evidence, c.status, c.session_id, s.participant, c.start_ms \
         FROM candidates c JOIN sessions s ON s.id = c.session_id \
         WHERE c.status <> 'rejected' AND c.step IS NOT NULL AND {SESSIONS} ORDER BY s.started_at, c.start_ms"
    ))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let evidence: CandidateEvidence =
            serde_json::from_str(&r.try_get::<String, _>("evidence")?)
                .map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(MapCandidate {
            step: r.try_get("step")?,
            detector: r.try_get("detector")?,
            also: evidence.also,
            status: r.try_get("status")?,
            session_id: r.try_get("session_id")?,
            participant: r.try_get("participant")?,
            start_ms: r.try_get("start_ms")?,
        })
    })
    .collect()
}

/// A candidate of the selected sessions as researchers decided it: its
/// detector, the detectors merged into it, its confidence and status.
pub struct Decision {
    pub detector: String,
    pub also: Vec<String>,
    pub confidence: f64,
    pub status: String,
}

/// Every candidate of the selected sessions, whatever its status and step.
pub async fn decisions(
    pool: &Pool,
    journey_id: &str,
    f: &SessionFilter,
) -> Result<Vec<Decision>, sqlx::Error> {
    filtered(
        journey_id,
        f,
        format!(
            "SELECT c.detector, c.evidence, c.confidence, c.status \
         FROM candidates c JOIN sessions s ON s.id = c.session_id WHERE {SESSIONS}"
        ),
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let evidence: CandidateEvidence =
            serde_json::from_str(&r.try_get::<String, _>("evidence")?)
                .map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(Decision {
            detector: r.try_get("detector")?,
            also: evidence.also,
            confidence: r.try_get("confidence")?,
            status: r.try_get("status")?,
        })
    })
    .collect()
}

/// A participant's own answer (an event of source `participant`).
pub struct SelfReportRow {
    pub session_id: String,
    pub participant: String,
    pub kind: String,
    pub data: String,
}

/// The participants' self-report events of the selected sessions, in
/// session and time order.
pub async fn self_reports(
    pool: &Pool,
    journey_id: &str,
    f: &SessionFilter,
) -> Result<Vec<SelfReportRow>, sqlx::Error> {
    filtered(journey_id, f, format!(
        "SELECT e.session_id, s.participant, e.kind, e.data FROM events e JOIN sessions s ON s.id = e.session_id \
         WHERE e.source = 'participant' AND {SESSIONS} ORDER BY s.started_at, e.session_id, e.t_ms, e.seq"
    ))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(SelfReportRow {
            session_id: r.try_get("session_id")?,
            participant: r.try_get("participant")?,
            kind: r.try_get("kind")?,
            data: r.try_get("data")?,
        })
    })
    .collect()
}
