//! The rows of an imported bundle, written in one transaction: the session
//! (unless its participant withdrew), its journey, the six derived tables
//! replaced, and the candidates merged so decisions and tags are kept.

use sqlx::Row;

use super::batch::{V, insert_rows};
use crate::types::{JourneyInfo, SpeechSpan, TimelineEvent};
use sqlx::AnyPool as Pool;

/// The session's own row.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub study: String,
    pub life_situation: String,
    pub journey_id: Option<String>,
    pub participant: String,
    pub station: String,
    pub consent: String,
    pub moderator: Option<String>,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: String,
    pub bundle_path: String,
    pub fingerprint: String,
    pub imported_at: i64,
    pub transcript_status: String,
    pub language: String,
    /// [`crate::types::MediaIndex`] as JSON.
    pub media: String,
    pub qa: Option<String>,
    pub tracks: String,
    /// [`crate::types::TranscriptView`] as JSON.
    pub transcript_json: Option<String>,
    /// The speech lane ([`SpeechSpan`]s) as JSON.
    pub speech_json: Option<String>,
}

/// A journey definition to store: `replace` = the lab's own (authoritative),
/// else only if the lab has none.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyRecord {
    pub info: JourneyInfo,
    pub replace: bool,
}

/// An event: its timeline entry and its payload (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedEvent {
    pub lane: TimelineEvent,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    pub idx: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub speaker: String,
    pub text: String,
    pub stems: String,
    /// `[[start_ms, end_ms, text, confidence], …]` as JSON.
    pub words: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRecord {
    pub step: String,
    pub visit: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepSummaryRecord {
    pub step: String,
    pub title: String,
    pub time_spent_ms: i64,
    pub visits: i64,
    pub completed: i64,
    pub expected_ms: i64,
    pub eda_per_min: Option<f64>,
    pub eda_amplitude_us: Option<f64>,
    pub hr_change_bpm: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CandidateRecord {
    pub id: String,
    pub detector: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step: Option<String>,
    pub confidence: f64,
    pub note: String,
    /// `{"events": [...], "words": [...]}`.
    pub evidence: String,
}

/// Everything an import writes. `None` tables are left empty (the analysis
/// file is missing); `candidates: None` leaves the candidates as they are.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRows {
    pub session: SessionRecord,
    pub journey: Option<JourneyRecord>,
    pub events: Vec<ImportedEvent>,
    pub segments: Vec<SegmentRecord>,
    pub speech: Vec<SpeechSpan>,
    pub intervals: Vec<IntervalRecord>,
    pub summaries: Vec<StepSummaryRecord>,
    pub candidates: Option<Vec<CandidateRecord>>,
    /// The numeric sensor channels' lanes.
    pub sensors: Vec<crate::sensors::Lane>,
}

/// The session already imported from `bundle_path` with files in state
/// `fingerprint`, if any (and not withdrawn).
pub async fn unchanged(
    pool: &Pool,
    bundle_path: &str,
    fingerprint: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query(
        "SELECT id FROM sessions WHERE bundle_path = $1 AND fingerprint = $2 AND withdrawn = 0",
    )
    .bind(bundle_path)
    .bind(fingerprint)
    .fetch_optional(pool)
    .await?
    .map(|r| r.try_get("id"))
    .transpose()
}

/// What the database knows of a session id from an earlier import.
pub struct Known {
    pub fingerprint: String,
    pub withdrawn: bool,
    pub bundle_path: String,
}

pub async fn known(pool: &Pool, id: &str) -> Result<Option<Known>, sqlx::Error> {
    sqlx::query("SELECT fingerprint, withdrawn, bundle_path FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| {
            Ok(Known {
                fingerprint: r.try_get("fingerprint")?,
                withdrawn: r.try_get::<i64, _>("withdrawn")? != 0,
                bundle_path: r.try_get("bundle_path")?,
            })
        })
        .transpose()
}

/// Writes an import in one transaction. Returns false, writing nothing, if
/// the participant withdrew (the session row is marked so).
pub async fn write(pool: &Pool, rows: &ImportRows) -> anyhow::Result<bool> {
    let mut tx = pool.begin().await?;
    if let Some(j) = &rows.journey {
        super::journeys::upsert(&mut tx, &j.info, j.replace).await?;
    }
    let s = &rows.session;
    let upserted = sqlx::query(
        "INSERT INTO sessions (id, study, life_situation, journey_id, participant, station, consent, moderator, \
         started_at, duration_ms, status, bundle_path, fingerprint, imported_at, transcript_status, language, media, qa, tracks, \
         transcript_json, speech_json) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21) \
         ON CONFLICT (id) DO UPDATE SET study = excluded.study, life_situation = excluded.life_situation, \
         journey_id = excluded.journey_id, participant = excluded.participant, station = excluded.station, \
         consent = excluded.consent, moderator = excluded.moderator, started_at = excluded.started_at, \
         duration_ms = excluded.duration_ms, status = excluded.status, fingerprint = excluded.fingerprint, \
         imported_at = excluded.imported_at, transcript_status = excluded.transcript_status, \
         language = excluded.language, media = excluded.media, qa = excluded.qa, tracks = excluded.tracks, \
         transcript_json = excluded.transcript_json, speech_json = excluded.speech_json \
         WHERE sessions.withdrawn = 0",
    )
    .bind(&s.id)
    .bind(&s.study)
    .bind(&s.life_situation)
    .bind(&s.journey_id)
    .bind(&s.participant)
    .bind(&s.station)
    .bind(&s.consent)
    .bind(&s.moderator)
    .bind(s.started_at)
    .bind(s.duration_ms)
    .bind(&s.status)
    .bind(&s.bundle_path)
    .bind(&s.fingerprint)
    .bind(s.imported_at)
    .bind(&s.transcript_status)
    .bind(&s.language)
    .bind(&s.media)
    .bind(&s.qa)
    .bind(&s.tracks)
    .bind(&s.transcript_json)
    .bind(&s.speech_json)
    .execute(&mut *tx)
    .await?;
    if upserted.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    let id = &s.id;
    for table in [
        "events",
        "event_chunks",
        "transcript_segments",
        "speech_spans",
        "step_intervals",
        "step_summaries",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE session_id = $1"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let sid = || V::S(id.clone());
    let events: Vec<Vec<V>> = rows
        .events
        .iter()
        .map(|e| {
            let l = &e.lane;
            vec![
                sid(),
                V::I(l.seq),
                V::I(l.t_ms),
                V::S(l.source.clone()),
                V::S(l.kind.clone()),
                V::S(l.summary.clone()),
                V::S(e.data.clone()),
            ]
        })
        .collect();
    insert_rows(
        &mut tx,
        "INSERT INTO events (session_id, seq, t_ms, source, kind, summary, data)",
        7,
        &events,
    )
    .await?;
    let lane: Vec<TimelineEvent> = rows.events.iter().map(|e| e.lane.clone()).collect();
    super::timeline::write_event_chunks(&mut tx, id, &lane).await?;
    super::sensors::replace(&mut tx, id, &rows.sensors).await?;
    let segments: Vec<Vec<V>> = rows
        .segments
        .iter()
        .map(|s| {
            vec![
                sid(),
                V::I(s.idx),
                V::I(s.start_ms),
                V::I(s.end_ms),
                V::S(s.speaker.clone()),
                V::S(s.text.clone()),
                V::S(s.stems.clone()),
                V::S(s.words.clone()),
            ]
        })
        .collect();
    insert_rows(
        &mut tx,
        "INSERT INTO transcript_segments (session_id, idx, start_ms, end_ms, speaker, text, stems, words)",
        8,
        &segments,
    )
    .await?;
    let speech: Vec<Vec<V>> = rows
        .speech
        .iter()
        .map(|s| {
            vec![
                sid(),
                V::I(s.start_ms),
                V::I(s.end_ms),
                V::S(s.speaker.clone()),
            ]
        })
        .collect();
    insert_rows(
        &mut tx,
        "INSERT INTO speech_spans (session_id, start_ms, end_ms, speaker)",
        4,
        &speech,
    )
    .await?;
    let intervals: Vec<Vec<V>> = rows
        .intervals
        .iter()
        .map(|s| {
            vec![
                sid(),
                V::S(s.step.clone()),
                V::I(s.visit),
                V::I(s.start_ms),
                V::I(s.end_ms),
            ]
        })
        .collect();
    insert_rows(
        &mut tx,
        "INSERT INTO step_intervals (session_id, step, visit, start_ms, end_ms)",
        5,
        &intervals,
    )
    .await?;
    let summaries: Vec<Vec<V>> = rows
        .summaries
        .iter()
        .map(|s| {
            vec![
                sid(),
                V::S(s.step.clone()),
                V::S(s.title.clone()),
                V::I(s.time_spent_ms),
                V::I(s.visits),
                V::I(s.completed),
                V::I(s.expected_ms),
                s.eda_per_min.map_or(V::NF, V::F),
                s.eda_amplitude_us.map_or(V::NF, V::F),
                s.hr_change_bpm.map_or(V::NF, V::F),
            ]
        })
        .collect();
    insert_rows(
        &mut tx,
        "INSERT INTO step_summaries (session_id, step, title, time_spent_ms, visits, completed, expected_ms, \
         eda_per_min, eda_amplitude_us, hr_change_bpm)",
        10,
        &summaries,
    )
    .await?;
    if let Some(candidates) = &rows.candidates {
        // Keep decisions: mark all stale, upsert the current ones, then drop
        // stale ones nobody decided on.
        sqlx::query("UPDATE candidates SET stale = 1 WHERE session_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for c in candidates {
            sqlx::query(
                "INSERT INTO candidates (session_id, id, detector, start_ms, end_ms, step, confidence, note, evidence, stale) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,0) ON CONFLICT (session_id, id) DO UPDATE SET \
                 detector = excluded.detector, start_ms = excluded.start_ms, end_ms = excluded.end_ms, step = excluded.step, \
                 confidence = excluded.confidence, note = excluded.note, evidence = excluded.evidence, stale = 0",
            )
            .bind(id)
            .bind(&c.id)
            .bind(&c.detector)
            .bind(c.start_ms)
            .bind(c.end_ms)
            .bind(&c.step)
            .bind(c.confidence)
            .bind(&c.note)
            .bind(&c.evidence)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM candidates WHERE session_id = $1 AND stale = 1 AND status = 'open'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// A bare session row for `bench`'s search corpus.
pub async fn insert_bench_session(
    pool: &Pool,
    id: &str,
    participant: &str,
    started_at: i64,
    duration_ms: i64,
    bundle_path: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (id, study, life_situation, participant, station, consent, started_at, duration_ms, status, \
         bundle_path, fingerprint, imported_at) VALUES ($1, 'bench', 'test-benefit', $2, 'bench', 'bench', $3, $4, 'complete', $5, '', 0) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(participant)
    .bind(started_at)
    .bind(duration_ms)
    .bind(bundle_path)
    .execute(pool)
    .await?;
    Ok(())
}

/// Transcript segments for `bench`'s search corpus, in one transaction.
pub async fn insert_bench_segments(
    pool: &Pool,
    segments: &[(String, SegmentRecord)],
) -> Result<(), sqlx::Error> {
    let rows: Vec<Vec<V>> = segments
        .iter()
        .map(|(sid, s)| {
            vec![
                V::S(sid.clone()),
                V::I(s.idx),
                V::I(s.start_ms),
                V::I(s.end_ms),
                V::S(s.speaker.clone()),
                V::S(s.stems.clone()),
                V::S(s.text.clone()),
                V::S(s.words.clone()),
            ]
        })
        .collect();
    let mut tx = pool.begin().await?;
    insert_rows(
        &mut tx,
        "INSERT INTO transcript_segments (session_id, idx, start_ms, end_ms, speaker, stems, text, words)",
        8,
        &rows,
    )
    .await?;
    tx.commit().await
}
