//! Importing session bundles: the manifest, the events and whatever the
//! analyzer has written under `analysis/` become rows. Idempotent: a bundle
//! whose files have not changed since its last import (same fingerprint) is
//! skipped; a changed one has its derived rows replaced in one transaction,
//! while what researchers made (tags, candidate decisions) is kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use lab_model::analysis::{CandidateList, SpeechActivity, StepAnalysis, Transcript};
use lab_model::bundle::Manifest;
use lab_model::event::Event;
use lab_model::journey::Journey;
use serde_json::{Value, json};
use sqlx::{Any, Row, Transaction};

use crate::bundle_files;
use crate::db::now_ms;
use crate::limits;
use crate::search::stems;
use crate::state::AppState;
use crate::types::{
    JourneyInfo, JourneyStep, TimelineEvent, TranscriptSegment, TranscriptView, Word,
};

const NS_PER_MS: i64 = 1_000_000;

/// A session time from the bundle in milliseconds, bounded to the longest
/// session, so later arithmetic on it (durations, exports) cannot overflow
/// whatever a hostile analysis file holds.
fn ms(ns: i64) -> i64 {
    (ns / NS_PER_MS).clamp(-limits::MAX_SESSION_MS, limits::MAX_SESSION_MS)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Imported,
    Unchanged,
    /// The participant withdrew: the bundle is not read again.
    Withdrawn,
}

/// Every bundle folder directly inside `dir`. A symlink is never a bundle:
/// it could point anywhere on the server.
pub fn bundle_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .filter(|p| {
                    std::fs::symlink_metadata(p.join(lab_model::bundle::MANIFEST_FILE))
                        .is_ok_and(|m| m.file_type().is_file())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Bundles that failed to import: each is tried again when its files change
/// (its fingerprint), or after a delay that doubles per failure
/// ([`limits::IMPORT_RETRY_FIRST`] up to [`limits::IMPORT_RETRY_MAX`]), not
/// on every scan: a bad bundle must not cost CPU and log lines forever.
#[derive(Default)]
pub struct RetryBook {
    failed: HashMap<PathBuf, Failed>,
}

struct Failed {
    fingerprint: String,
    failures: u32,
    next_try: tokio::time::Instant,
}

impl RetryBook {
    /// Whether to try `bundle` (with files in state `fp`) at `now`.
    pub fn due(&self, bundle: &Path, fp: &str, now: tokio::time::Instant) -> bool {
        self.failed
            .get(bundle)
            .is_none_or(|f| f.fingerprint != fp || now >= f.next_try)
    }

    /// Records a failure; returns the attempt number and the delay to the next try.
    pub fn failed(
        &mut self,
        bundle: &Path,
        fp: &str,
        now: tokio::time::Instant,
    ) -> (u32, Duration) {
        let f = self.failed.entry(bundle.to_path_buf()).or_insert(Failed {
            fingerprint: String::new(),
            failures: 0,
            next_try: now,
        });
        if f.fingerprint != fp {
            f.failures = 0;
            f.fingerprint = fp.to_string();
        }
        f.failures += 1;
        let delay = limits::IMPORT_RETRY_FIRST
            .saturating_mul(1 << (f.failures - 1).min(16))
            .min(limits::IMPORT_RETRY_MAX);
        f.next_try = now + delay;
        (f.failures, delay)
    }

    pub fn succeeded(&mut self, bundle: &Path) {
        self.failed.remove(bundle);
    }

    /// Forgets bundles that are gone from the folder.
    pub fn keep_only(&mut self, present: &[PathBuf]) {
        self.failed.retain(|p, _| present.contains(p));
    }
}

/// Scans the sessions folder every `every` and imports what changed.
pub async fn watch(state: AppState) {
    let every = state.config.watch_every;
    if every.is_zero() {
        return;
    }
    let mut book = RetryBook::default();
    loop {
        let found = bundle_dirs(&state.config.sessions_dir);
        book.keep_only(&found);
        for bundle in found {
            let (fp, now) = (fingerprint(&bundle), tokio::time::Instant::now());
            if !book.due(&bundle, &fp, now) {
                continue;
            }
            match import_from_sessions_folder(&state, &bundle).await {
                Ok(_) => book.succeeded(&bundle),
                Err(e) => {
                    let (n, delay) = book.failed(&bundle, &fp, now);
                    tracing::warn!(
                        "import of {} failed (attempt {n}; next try when it changes or in {} s): {e:#}",
                        bundle.display(),
                        delay.as_secs()
                    );
                }
            }
        }
        tokio::time::sleep(every.max(Duration::from_millis(200))).await;
    }
}

/// Imports a bundle that must be a real folder inside the sessions folder
/// (the watcher and the import API; the CLI may import from anywhere).
pub async fn import_from_sessions_folder(
    state: &AppState,
    dir: &Path,
) -> anyhow::Result<(String, Outcome)> {
    anyhow::ensure!(
        bundle_files::is_bundle_folder_in(&state.config.sessions_dir, dir),
        "{} is not a folder inside the sessions folder {} (links are not followed)",
        dir.display(),
        state.config.sessions_dir.display()
    );
    import(state, dir).await
}

fn mtime_ns(p: &Path) -> i128 {
    std::fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(-1)
}

fn file_len(p: &Path) -> i64 {
    std::fs::symlink_metadata(p)
        .map(|m| m.len() as i64)
        .unwrap_or(-1)
}

/// What changes when the recorder or the analyzer writes.
fn fingerprint(dir: &Path) -> String {
    let a = dir.join(lab_model::analysis::ANALYSIS_DIR);
    format!(
        "{}:{}:{}:{}",
        mtime_ns(&dir.join(lab_model::bundle::MANIFEST_FILE)),
        file_len(&dir.join(lab_model::bundle::EVENTS_FILE)),
        mtime_ns(&a.join("state.json")),
        mtime_ns(&a.join("web").join("renditions.json")),
    )
}

/// Reads and parses a JSON file of the bundle (see [`bundle_files`]).
fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, rel: &str) -> anyhow::Result<Option<T>> {
    match bundle_files::read(dir, rel, limits::MAX_ANALYSIS_JSON_BYTES)? {
        Some(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("{}/{rel}", dir.display()))?,
        )),
        None => Ok(None),
    }
}

/// The journey this bundle was analysed against: its own copy
/// (`analysis/journey.toml`), else `<journeys dir>/<life_situation>.toml`.
/// The life situation is a validated journey id (`lab_model::journey::valid_id`,
/// checked when the manifest is parsed), so it names a file in the folder.
pub fn find_journey(
    state: &AppState,
    dir: &Path,
    manifest: &Manifest,
) -> anyhow::Result<Option<(Journey, JourneySource)>> {
    if let Some(bytes) =
        bundle_files::read(dir, "analysis/journey.toml", limits::MAX_JOURNEY_BYTES)?
    {
        let text = String::from_utf8(bytes).context("analysis/journey.toml is not UTF-8")?;
        let j = Journey::from_toml(&text)
            .with_context(|| format!("{}/analysis/journey.toml", dir.display()))?;
        return Ok(Some((j, JourneySource::Bundle)));
    }
    match &manifest.life_situation {
        Some(ls) => {
            anyhow::ensure!(
                lab_model::journey::valid_id(ls),
                "life situation {ls:?} is not a journey id"
            );
            lab_journey(state, ls).map(|j| j.map(|j| (j, JourneySource::Lab)))
        }
        None => Ok(None),
    }
}

/// Where a session's journey definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneySource {
    /// The lab's journeys folder: authoritative for the journey's row.
    Lab,
    /// The bundle's own copy: defines the journey only if the lab has none.
    Bundle,
}

/// The lab's own definition of journey `id`, from the first journeys folder
/// that has `<id>.toml`.
pub fn lab_journey(state: &AppState, id: &str) -> anyhow::Result<Option<Journey>> {
    anyhow::ensure!(
        lab_model::journey::valid_id(id),
        "{id:?} is not a journey id"
    );
    for d in &state.config.journeys_dirs {
        let path = d.join(format!("{id}.toml"));
        if path.is_file() {
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
            let j = Journey::from_toml(&text).with_context(|| format!("{}", path.display()))?;
            anyhow::ensure!(
                j.id == id,
                "{} defines journey {:?}, not {id:?}",
                path.display(),
                j.id
            );
            return Ok(Some(j));
        }
    }
    Ok(None)
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

/// The timeline's event lane in per-minute JSON chunks: `(minute, count, json array)`,
/// each in `(t_ms, seq)` order. `events.jsonl` is in acceptance order, which is
/// not time order: a browser's events are stamped through its clock offset.
pub fn chunk_events(events: &[TimelineEvent]) -> Vec<(i64, i64, String)> {
    let mut sorted: Vec<&TimelineEvent> = events.iter().collect();
    sorted.sort_by_key(|e| (e.t_ms, e.seq));
    let mut out: Vec<(i64, i64, String)> = vec![];
    let mut current: Vec<&TimelineEvent> = vec![];
    let mut minute = i64::MIN;
    let flush =
        |minute: i64, current: &mut Vec<&TimelineEvent>, out: &mut Vec<(i64, i64, String)>| {
            if !current.is_empty() {
                let json = serde_json::to_string(&current).unwrap_or_else(|_| "[]".into());
                out.push((minute, current.len() as i64, json));
                current.clear();
            }
        };
    for e in sorted {
        let m = e.t_ms.div_euclid(60_000);
        if m != minute {
            flush(minute, &mut current, &mut out);
            minute = m;
        }
        current.push(e);
    }
    flush(minute, &mut current, &mut out);
    out
}

/// Replaces a session's event chunks.
pub async fn write_event_chunks(
    tx: &mut Transaction<'_, Any>,
    session: &str,
    events: &[TimelineEvent],
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM event_chunks WHERE session_id = $1")
        .bind(session)
        .execute(&mut **tx)
        .await?;
    let rows = chunk_events(events)
        .into_iter()
        .map(|(m, n, json)| vec![V::S(session.to_string()), V::I(m), V::I(n), V::S(json)])
        .collect();
    insert_rows(
        tx,
        "INSERT INTO event_chunks (session_id, minute, n, events)",
        4,
        rows,
    )
    .await
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

/// Multi-row `INSERT … VALUES ($1,…),(…)` text for `rows` rows of `cols` columns.
fn values_sql(head: &str, rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * cols * 5);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", r * cols + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// A bindable value for the batched inserts.
#[derive(Clone)]
pub enum V {
    I(i64),
    F(f64),
    S(String),
    N,
}

/// Inserts rows in batches that stay under both databases' parameter limits.
pub async fn insert_rows(
    tx: &mut Transaction<'_, Any>,
    head: &str,
    cols: usize,
    rows: Vec<Vec<V>>,
) -> anyhow::Result<()> {
    let per_batch = (30_000 / cols).clamp(1, 1000);
    for chunk in rows.chunks(per_batch) {
        let sql = values_sql(head, chunk.len(), cols);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            debug_assert_eq!(row.len(), cols);
            for v in row {
                q = match v {
                    V::I(i) => q.bind(*i),
                    V::F(f) => q.bind(*f),
                    V::S(s) => q.bind(s.clone()),
                    V::N => q.bind(Option::<String>::None),
                };
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Imports one bundle folder.
pub async fn import(state: &AppState, dir: &Path) -> anyhow::Result<(String, Outcome)> {
    // The stored path is the canonical parent joined with the bundle's own
    // name, never a resolved link: every file below is then opened from the
    // parent without following links (`bundle_files`), so a folder swapped
    // for a link at any moment is refused rather than read.
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| bundle_files::check_relative(n).is_ok())
        .with_context(|| format!("bundle folder {} has no usable name", dir.display()))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .canonicalize()
        .with_context(|| format!("bundle folder {}", dir.display()))?;
    let dir = parent.join(name);
    anyhow::ensure!(
        std::fs::symlink_metadata(&dir)
            .with_context(|| format!("bundle folder {}", dir.display()))?
            .file_type()
            .is_dir(),
        "bundle folder {} is not a folder (links are not followed)",
        dir.display()
    );
    // An unchanged bundle costs a few stats per scan, not a manifest parse.
    let fp = fingerprint(&dir);
    let same = sqlx::query(
        "SELECT id FROM sessions WHERE bundle_path = $1 AND fingerprint = $2 AND withdrawn = 0",
    )
    .bind(dir.to_string_lossy().as_ref())
    .bind(&fp)
    .fetch_optional(&state.db.pool)
    .await?;
    if let Some(r) = same {
        return Ok((r.try_get(0)?, Outcome::Unchanged));
    }
    let manifest_path = dir.join(lab_model::bundle::MANIFEST_FILE);
    let manifest = {
        let bytes = bundle_files::read(
            &dir,
            lab_model::bundle::MANIFEST_FILE,
            limits::MAX_MANIFEST_BYTES,
        )?
        .with_context(|| format!("{} has no manifest.json", dir.display()))?;
        lab_model::bundle::parse_manifest(&bytes).map_err(|e| e.at(&manifest_path))?
    };
    let id = manifest.session_id.clone();
    let known =
        sqlx::query("SELECT fingerprint, withdrawn, bundle_path FROM sessions WHERE id = $1")
            .bind(&id)
            .fetch_optional(&state.db.pool)
            .await?;
    if let Some(row) = &known {
        let old_fp: String = row.try_get(0)?;
        let withdrawn: i64 = row.try_get(1)?;
        let path: String = row.try_get(2)?;
        if withdrawn != 0 {
            // The participant withdrew: a copy that turns up again (a station
            // re-sending its bundle) is deleted, never read.
            crate::withdrawal::purge_bundle_files(&dir);
            return Ok((id, Outcome::Withdrawn));
        }
        if path != dir.to_string_lossy() {
            anyhow::bail!(
                "session {id} is already imported from {path}; {} is a copy",
                dir.display()
            );
        }
        if old_fp == fp {
            return Ok((id, Outcome::Unchanged));
        }
    }

    // Read everything before opening the transaction.
    let events_path = dir.join(lab_model::bundle::EVENTS_FILE);
    let (events, _torn) = match bundle_files::read(
        &dir,
        lab_model::bundle::EVENTS_FILE,
        limits::MAX_EVENTS_BYTES,
    )? {
        Some(bytes) => lab_model::bundle::parse_events(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", events_path.display()))?,
        None => (Vec::new(), 0),
    };
    let transcript: Option<Transcript> = read_json(&dir, "analysis/transcript.json")?;
    let speech: Option<SpeechActivity> = read_json(&dir, "analysis/speech.json")?;
    let steps: Option<StepAnalysis> = read_json(&dir, "analysis/steps.json")?;
    let candidates: Option<CandidateList> = read_json(&dir, "analysis/candidates.json")?;
    let qa: Option<Value> = read_json(&dir, "analysis/qa.json")?;
    let renditions: Option<Value> = read_json(&dir, "analysis/web/renditions.json")?;
    let journey = find_journey(state, &dir, &manifest)?;

    let started_at = manifest.clock.session_zero_unix_ns.div_euclid(NS_PER_MS);
    let duration_ms = ms(manifest.duration_ns.unwrap_or_else(|| {
        manifest
            .segments
            .iter()
            .filter_map(|s| s.end_ns)
            .max()
            .unwrap_or(0)
    }));
    let media = media_json(renditions.as_ref());
    let tracks = json!(
        manifest
            .tracks
            .iter()
            .map(|t| json!({
                "id": t.id, "kind": t.kind, "channel_roles": t.channel_roles,
            }))
            .collect::<Vec<_>>()
    );
    let status = wire_name(&manifest.status).unwrap_or_else(|| "unknown".into());

    let mut tx = state.db.pool.begin().await?;
    if let Some((j, source)) = &journey {
        // The lab's journeys folder defines a journey for every session; a
        // bundle's own copy only fills in a journey the lab does not have, so
        // one imported bundle can never retitle a journey for all sessions.
        let lab = match source {
            JourneySource::Lab => Some(j.clone()),
            JourneySource::Bundle => lab_journey(state, &j.id)?,
        };
        let (info, conflict) = match &lab {
            Some(l) => (
                journey_info(l),
                "ON CONFLICT (id) DO UPDATE SET title = excluded.title, version = excluded.version, definition = excluded.definition",
            ),
            None => (journey_info(j), "ON CONFLICT (id) DO NOTHING"),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO journeys (id, title, version, definition) VALUES ($1, $2, $3, $4) {conflict}"
        )))
        .bind(&info.id)
        .bind(&info.title)
        .bind(&info.version)
        .bind(serde_json::to_string(&info)?)
        .execute(&mut *tx)
        .await?;
    }
    let journey_id = journey.as_ref().map(|(j, _)| j.id.clone());
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
    .bind(&id)
    .bind(manifest.study.clone().unwrap_or_default())
    .bind(manifest.life_situation.clone().unwrap_or_default())
    .bind(&journey_id)
    .bind(&manifest.participant)
    .bind(&manifest.station)
    .bind(&manifest.consent)
    .bind(&manifest.moderator)
    .bind(started_at)
    .bind(duration_ms)
    .bind(&status)
    .bind(dir.to_string_lossy().to_string())
    .bind(&fp)
    .bind(now_ms())
    .bind(transcript.as_ref().map(|t| t.status.clone()).unwrap_or_default())
    .bind(transcript.as_ref().map(|t| t.language.clone()).unwrap_or_default())
    .bind(media.to_string())
    .bind(qa.map(|q| q.to_string()))
    .bind(tracks.to_string())
    .bind(transcript.as_ref().map(|t| serde_json::to_string(&transcript_view(t))).transpose()?)
    .bind(speech.as_ref().map(|sp| {
        let lane: Vec<crate::types::SpeechSpan> = sp
            .spans
            .iter()
            .map(|s| crate::types::SpeechSpan { start_ms: ms(s.start_ns), end_ms: ms(s.end_ns), speaker: speaker_name(&s.speaker) })
            .collect();
        serde_json::to_string(&lane)
    }).transpose()?)
    .execute(&mut *tx)
    .await?;
    if upserted.rows_affected() == 0 {
        // The participant withdrew while this import was reading: write
        // nothing, and delete the bundle the withdrawal may have missed.
        tx.rollback().await?;
        crate::withdrawal::purge_bundle_files(&dir);
        return Ok((id, Outcome::Withdrawn));
    }

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
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    }
    // The lane (time, source, kind, summary) and the full rows share one pass.
    let lane: Vec<TimelineEvent> = events
        .iter()
        .map(|e| TimelineEvent {
            seq: e.seq as i64,
            t_ms: ms(e.t_ns),
            source: wire_name(&e.source).unwrap_or_default(),
            kind: e.kind.clone(),
            summary: summarize(e),
        })
        .collect();
    let rows = lane
        .iter()
        .zip(&events)
        .map(|(l, e)| {
            vec![
                V::S(id.clone()),
                V::I(l.seq),
                V::I(l.t_ms),
                V::S(l.source.clone()),
                V::S(l.kind.clone()),
                V::S(l.summary.clone()),
                V::S(e.data.to_string()),
            ]
        })
        .collect();
    insert_rows(
        &mut tx,
        "INSERT INTO events (session_id, seq, t_ms, source, kind, summary, data)",
        7,
        rows,
    )
    .await?;
    write_event_chunks(&mut tx, &id, &lane).await?;

    if let Some(t) = &transcript {
        let rows = t
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let words: Vec<Value> = s
                    .words
                    .iter()
                    .map(|w| {
                        json!([
                            ms(w.start_ns),
                            ms(w.end_ns),
                            w.text,
                            (w.confidence * 1000.0).round() / 1000.0
                        ])
                    })
                    .collect();
                vec![
                    V::S(id.clone()),
                    V::I(i as i64),
                    V::I(ms(s.start_ns)),
                    V::I(ms(s.end_ns)),
                    V::S(speaker_name(&s.speaker)),
                    V::S(s.text.trim().to_string()),
                    V::S(stems(&s.text)),
                    V::S(Value::Array(words).to_string()),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO transcript_segments (session_id, idx, start_ms, end_ms, speaker, text, stems, words)",
            8,
            rows,
        )
        .await?;
    }
    if let Some(sp) = &speech {
        let rows = sp
            .spans
            .iter()
            .map(|s| {
                vec![
                    V::S(id.clone()),
                    V::I(ms(s.start_ns)),
                    V::I(ms(s.end_ns)),
                    V::S(speaker_name(&s.speaker)),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO speech_spans (session_id, start_ms, end_ms, speaker)",
            4,
            rows,
        )
        .await?;
    }
    if let Some(st) = &steps {
        let rows = st
            .intervals
            .iter()
            .map(|s| {
                vec![
                    V::S(id.clone()),
                    V::S(s.step.clone()),
                    V::I(i64::from(s.visit)),
                    V::I(ms(s.start_ns)),
                    V::I(ms(s.end_ns)),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO step_intervals (session_id, step, visit, start_ms, end_ms)",
            5,
            rows,
        )
        .await?;
        let rows = st
            .steps
            .iter()
            .map(|s| {
                vec![
                    V::S(id.clone()),
                    V::S(s.step.clone()),
                    V::S(s.title.clone()),
                    V::I(ms(s.time_spent_ns)),
                    V::I(i64::from(s.visits)),
                    V::I(i64::from(s.completed)),
                    V::I(ms(s.expected_ns)),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO step_summaries (session_id, step, title, time_spent_ms, visits, completed, expected_ms)",
            7,
            rows,
        )
        .await?;
    }
    if let Some(c) = &candidates {
        // Keep decisions: mark all stale, upsert the current ones, then drop
        // stale ones nobody decided on.
        sqlx::query("UPDATE candidates SET stale = 1 WHERE session_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        for cand in &c.candidates {
            let evidence = json!({
                "events": cand.evidence.events,
                "words": cand.evidence.words.iter().map(|w| w.text.trim().to_string()).collect::<Vec<_>>(),
            });
            sqlx::query(
                "INSERT INTO candidates (session_id, id, detector, start_ms, end_ms, step, confidence, note, evidence, stale) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,0) ON CONFLICT (session_id, id) DO UPDATE SET \
                 detector = excluded.detector, start_ms = excluded.start_ms, end_ms = excluded.end_ms, step = excluded.step, \
                 confidence = excluded.confidence, note = excluded.note, evidence = excluded.evidence, stale = 0",
            )
            .bind(&id)
            .bind(&cand.id)
            .bind(&cand.detector)
            .bind(ms(cand.start_ns))
            .bind(ms(cand.end_ns))
            .bind(&cand.step)
            .bind(f64::from(cand.confidence))
            .bind(&cand.evidence.note)
            .bind(evidence.to_string())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM candidates WHERE session_id = $1 AND stale = 1 AND status = 'open'",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((id, Outcome::Imported))
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

/// The renditions the player needs, with paths relative to the bundle.
fn media_json(renditions: Option<&Value>) -> Value {
    let Some(r) = renditions else {
        return json!({});
    };
    let mut m = serde_json::Map::new();
    if let Some(videos) = r.get("videos").and_then(Value::as_array) {
        for v in videos {
            if let (Some(track), Some(file)) = (
                v.get("track").and_then(Value::as_str),
                v.get("file").and_then(Value::as_str),
            ) {
                let key = if track == "screen" {
                    "screen"
                } else if track.starts_with("camera") {
                    "camera"
                } else {
                    continue;
                };
                m.insert(
                    key.into(),
                    json!({
                        "file": file,
                        "start_ms": ms(v.get("start_ns").and_then(Value::as_i64).unwrap_or(0)),
                    }),
                );
            }
        }
    }
    if let Some(thumbs) = r.get("thumbnails").and_then(Value::as_array) {
        m.insert(
            "thumbnails".into(),
            Value::Array(
                thumbs
                    .iter()
                    .map(|t| {
                        json!({
                            "t_ms": ms(t.get("t_ns").and_then(Value::as_i64).unwrap_or(0)),
                            "file": t.get("file").cloned().unwrap_or(Value::Null),
                        })
                    })
                    .collect(),
            ),
        );
    }
    if let Some(p) = r.get("peaks").and_then(Value::as_str) {
        m.insert("peaks".into(), json!(p));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_bundle_is_retried_when_it_changes_or_after_a_growing_delay() {
        let mut book = RetryBook::default();
        let b = Path::new("/s/bad");
        let t0 = tokio::time::Instant::now();
        assert!(book.due(b, "fp1", t0));
        assert_eq!(book.failed(b, "fp1", t0), (1, limits::IMPORT_RETRY_FIRST));
        // Not on the next scans (the watcher scans every few seconds) ...
        assert!(!book.due(b, "fp1", t0 + Duration::from_secs(2)));
        assert!(!book.due(
            b,
            "fp1",
            t0 + limits::IMPORT_RETRY_FIRST - Duration::from_millis(1)
        ));
        // ... but at once when its files change, and when the delay is over.
        assert!(book.due(b, "fp2", t0 + Duration::from_secs(2)));
        assert!(book.due(b, "fp1", t0 + limits::IMPORT_RETRY_FIRST));
        let t1 = t0 + limits::IMPORT_RETRY_FIRST;
        assert_eq!(
            book.failed(b, "fp1", t1),
            (2, limits::IMPORT_RETRY_FIRST * 2)
        );
        let mut t = t1;
        for _ in 0..30 {
            t += limits::IMPORT_RETRY_MAX;
            let (_, d) = book.failed(b, "fp1", t);
            assert!(d <= limits::IMPORT_RETRY_MAX);
        }
        // A change starts the count over.
        assert_eq!(book.failed(b, "fp3", t).0, 1);
        book.keep_only(&[]);
        assert!(book.due(b, "fp3", t));
    }

    #[test]
    fn symlinked_folders_are_not_bundles() {
        let root = std::env::temp_dir().join(format!("import-links-{}", std::process::id()));
        let outside = root.with_extension("outside");
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&outside);
        for d in [root.join("real"), outside.join("evil")] {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(lab_model::bundle::MANIFEST_FILE), "{}").unwrap();
        }
        std::os::unix::fs::symlink(outside.join("evil"), root.join("link")).unwrap();
        std::fs::create_dir_all(root.join("linked-manifest")).unwrap();
        std::os::unix::fs::symlink(
            outside.join("evil").join(lab_model::bundle::MANIFEST_FILE),
            root.join("linked-manifest")
                .join(lab_model::bundle::MANIFEST_FILE),
        )
        .unwrap();
        assert_eq!(bundle_dirs(&root), vec![root.join("real")]);
        assert!(bundle_files::is_bundle_folder_in(&root, &root.join("real")));
        assert!(!bundle_files::is_bundle_folder_in(
            &root,
            &root.join("link")
        ));
        assert!(!bundle_files::is_bundle_folder_in(&root, &root));
        assert!(!bundle_files::is_bundle_folder_in(
            &root,
            &outside.join("evil")
        ));
    }

    #[test]
    fn chunks_are_per_minute_in_time_order_whatever_the_input_order() {
        let ev = |seq: i64, t_ms: i64| TimelineEvent {
            seq,
            t_ms,
            source: "browser".into(),
            kind: "click".into(),
            summary: String::new(),
        };
        // Acceptance order crosses a minute boundary back and forth.
        let chunks = chunk_events(&[ev(1, 59_990), ev(2, 60_010), ev(3, 59_995), ev(4, 130_000)]);
        let minutes: Vec<(i64, i64)> = chunks.iter().map(|c| (c.0, c.1)).collect();
        assert_eq!(minutes, [(0, 2), (1, 1), (2, 1)]);
        let first: Vec<TimelineEvent> = serde_json::from_str(&chunks[0].2).unwrap();
        assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn values_sql_numbers_placeholders_row_by_row() {
        assert_eq!(
            values_sql("INSERT INTO t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4)"
        );
    }
}
