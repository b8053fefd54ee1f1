//! Importing session bundles: the manifest, the events and whatever the
//! analyzer has written under `analysis/` become rows. Idempotent: a bundle
//! whose files have not changed since its last import (same fingerprint) is
//! skipped; a changed one has its derived rows replaced in one transaction,
//! while what researchers made (tags, candidate decisions) is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use lab_model::analysis::{CandidateList, SpeechActivity, StepAnalysis, Transcript};
use lab_model::bundle::{Bundle, Manifest};
use lab_model::event::Event;
use lab_model::journey::Journey;
use serde_json::{Value, json};
use sqlx::{Any, Row, Transaction};

use crate::db::now_ms;
use crate::search::stems;
use crate::state::AppState;
use crate::types::{
    JourneyInfo, JourneyStep, TimelineEvent, TranscriptSegment, TranscriptView, Word,
};

const NS_PER_MS: i64 = 1_000_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Imported,
    Unchanged,
    /// The participant withdrew: the bundle is not read again.
    Withdrawn,
}

/// Every bundle folder directly inside `dir`.
pub fn bundle_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join(lab_model::bundle::MANIFEST_FILE).is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Scans the sessions folder every `every` and imports what changed.
pub async fn watch(state: AppState) {
    let every = state.config.watch_every;
    if every.is_zero() {
        return;
    }
    loop {
        let dir = state.config.sessions_dir.clone();
        for bundle in bundle_dirs(&dir) {
            if let Err(e) = import(&state, &bundle).await {
                tracing::warn!("import of {} failed: {e:#}", bundle.display());
            }
        }
        tokio::time::sleep(every.max(Duration::from_millis(200))).await;
    }
}

fn mtime_ns(p: &Path) -> i128 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(-1)
}

fn file_len(p: &Path) -> i64 {
    std::fs::metadata(p).map(|m| m.len() as i64).unwrap_or(-1)
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

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("{}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("{}", path.display()))),
    }
}

/// The journey this bundle was analysed against: its own copy
/// (`analysis/journey.toml`), else `<journeys dir>/<life_situation>.toml`.
pub fn find_journey(
    state: &AppState,
    dir: &Path,
    manifest: &Manifest,
) -> anyhow::Result<Option<Journey>> {
    let own = dir
        .join(lab_model::analysis::ANALYSIS_DIR)
        .join("journey.toml");
    let mut candidates = vec![own];
    if let Some(ls) = &manifest.life_situation {
        for d in &state.config.journeys_dirs {
            candidates.push(d.join(format!("{ls}.toml")));
        }
    }
    for path in candidates {
        if path.is_file() {
            let text = std::fs::read_to_string(&path)?;
            return Journey::from_toml(&text)
                .map(Some)
                .with_context(|| format!("{}", path.display()));
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
                expected_ms: (s.expected_seconds * 1000.0).round() as i64,
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
                start_ms: s.start_ns / NS_PER_MS,
                end_ms: s.end_ns / NS_PER_MS,
                speaker: speaker_name(&s.speaker),
                text: s.text.trim().to_string(),
                words: s
                    .words
                    .iter()
                    .map(|w| {
                        i += 1;
                        Word {
                            i: i - 1,
                            start_ms: w.start_ns / NS_PER_MS,
                            end_ms: w.end_ns / NS_PER_MS,
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
    let dir = dir
        .canonicalize()
        .with_context(|| format!("bundle folder {}", dir.display()))?;
    let bundle = Bundle::new(&dir);
    let manifest = bundle.read_manifest()?;
    let id = manifest.session_id.clone();
    let fp = fingerprint(&dir);
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
    let (events, _torn) = bundle.read_events()?;
    let a = dir.join(lab_model::analysis::ANALYSIS_DIR);
    let transcript: Option<Transcript> = read_json(&a.join("transcript.json"))?;
    let speech: Option<SpeechActivity> = read_json(&a.join("speech.json"))?;
    let steps: Option<StepAnalysis> = read_json(&a.join("steps.json"))?;
    let candidates: Option<CandidateList> = read_json(&a.join("candidates.json"))?;
    let qa: Option<Value> = read_json(&a.join("qa.json"))?;
    let renditions: Option<Value> = read_json(&a.join("web").join("renditions.json"))?;
    let journey = find_journey(state, &dir, &manifest)?;

    let started_at = manifest.clock.session_zero_unix_ns / NS_PER_MS;
    let duration_ms = manifest.duration_ns.unwrap_or_else(|| {
        manifest
            .segments
            .iter()
            .filter_map(|s| s.end_ns)
            .max()
            .unwrap_or(0)
    }) / NS_PER_MS;
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
    if let Some(j) = &journey {
        let info = journey_info(j);
        sqlx::query(
            "INSERT INTO journeys (id, title, version, definition) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, version = excluded.version, definition = excluded.definition",
        )
        .bind(&info.id)
        .bind(&info.title)
        .bind(&info.version)
        .bind(serde_json::to_string(&info)?)
        .execute(&mut *tx)
        .await?;
    }
    let journey_id = journey.as_ref().map(|j| j.id.clone());
    sqlx::query(
        "INSERT INTO sessions (id, study, life_situation, journey_id, participant, station, consent, moderator, \
         started_at, duration_ms, status, bundle_path, fingerprint, imported_at, transcript_status, language, media, qa, tracks, \
         transcript_json, speech_json) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21) \
         ON CONFLICT (id) DO UPDATE SET study = excluded.study, life_situation = excluded.life_situation, \
         journey_id = excluded.journey_id, participant = excluded.participant, station = excluded.station, \
         consent = excluded.consent, moderator = excluded.moderator, started_at = excluded.started_at, \
         duration_ms = excluded.duration_ms, status = excluded.status, fingerprint = excluded.fingerprint, \
         imported_at = excluded.imported_at, transcript_status = excluded.transcript_status, \
         language = excluded.language, media = excluded.media, qa = excluded.qa, tracks = excluded.tracks, \
         transcript_json = excluded.transcript_json, speech_json = excluded.speech_json",
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
            .map(|s| crate::types::SpeechSpan { start_ms: s.start_ns / NS_PER_MS, end_ms: s.end_ns / NS_PER_MS, speaker: speaker_name(&s.speaker) })
            .collect();
        serde_json::to_string(&lane)
    }).transpose()?)
    .execute(&mut *tx)
    .await?;

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
            t_ms: e.t_ns / NS_PER_MS,
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
                            w.start_ns / NS_PER_MS,
                            w.end_ns / NS_PER_MS,
                            w.text,
                            (w.confidence * 1000.0).round() / 1000.0
                        ])
                    })
                    .collect();
                vec![
                    V::S(id.clone()),
                    V::I(i as i64),
                    V::I(s.start_ns / NS_PER_MS),
                    V::I(s.end_ns / NS_PER_MS),
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
                    V::I(s.start_ns / NS_PER_MS),
                    V::I(s.end_ns / NS_PER_MS),
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
                    V::I(s.start_ns / NS_PER_MS),
                    V::I(s.end_ns / NS_PER_MS),
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
                    V::I(s.time_spent_ns / NS_PER_MS),
                    V::I(i64::from(s.visits)),
                    V::I(i64::from(s.completed)),
                    V::I(s.expected_ns / NS_PER_MS),
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
            .bind(cand.start_ns / NS_PER_MS)
            .bind(cand.end_ns / NS_PER_MS)
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
                m.insert(key.into(), json!({
                    "file": file,
                    "start_ms": v.get("start_ns").and_then(Value::as_i64).unwrap_or(0) / NS_PER_MS,
                }));
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
                            "t_ms": t.get("t_ns").and_then(Value::as_i64).unwrap_or(0) / NS_PER_MS,
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
