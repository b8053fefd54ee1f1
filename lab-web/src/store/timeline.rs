//! What lies on a session's timeline: events (raw and the pre-rendered
//! per-minute lane), markers and step intervals.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::batch::{V, insert_rows};
use crate::types::{EventRecord, Marker, StepInterval, TimelineEvent};
use sqlx::AnyConnection as Conn;
use sqlx::AnyPool as Pool;

/// Step intervals overlapping `[from, to]`, titled from the session's step
/// summaries.
pub async fn step_intervals(
    pool: &Pool,
    session: &str,
    from: i64,
    to: i64,
) -> Result<Vec<StepInterval>, sqlx::Error> {
    let titles: HashMap<String, String> =
        sqlx::query("SELECT step, title FROM step_summaries WHERE session_id = $1")
            .bind(session)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("step")?, r.try_get("title")?)))
            .collect::<Result<_, sqlx::Error>>()?;
    sqlx::query(
        "SELECT step, visit, start_ms, end_ms FROM step_intervals WHERE session_id = $1 AND end_ms >= $2 AND start_ms <= $3 ORDER BY start_ms",
    )
    .bind(session)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let step: String = r.try_get("step")?;
        Ok(StepInterval {
            title: titles.get(&step).cloned().unwrap_or_else(|| step.clone()),
            step,
            visit: r.try_get("visit")?,
            start_ms: r.try_get("start_ms")?,
            end_ms: r.try_get("end_ms")?,
        })
    })
    .collect()
}

/// One minute of the pre-rendered event lane.
pub struct EventChunk {
    pub minute: i64,
    pub n: i64,
    /// A JSON array of [`TimelineEvent`]s.
    pub events: String,
}

/// The lane's minutes `from_minute..=to_minute`, in order.
pub async fn event_chunks(
    pool: &Pool,
    session: &str,
    from_minute: i64,
    to_minute: i64,
) -> Result<Vec<EventChunk>, sqlx::Error> {
    sqlx::query(
        "SELECT minute, n, events FROM event_chunks WHERE session_id = $1 AND minute >= $2 AND minute <= $3 ORDER BY minute",
    )
    .bind(session)
    .bind(from_minute)
    .bind(to_minute)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(EventChunk {
            minute: r.try_get("minute")?,
            n: r.try_get("n")?,
            events: r.try_get("events")?,
        })
    })
    .collect()
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
    conn: &mut Conn,
    session: &str,
    events: &[TimelineEvent],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM event_chunks WHERE session_id = $1")
        .bind(session)
        .execute(&mut *conn)
        .await?;
    let rows: Vec<Vec<V>> = chunk_events(events)
        .into_iter()
        .map(|(m, n, json)| vec![V::S(session.to_string()), V::I(m), V::I(n), V::S(json)])
        .collect();
    insert_rows(
        conn,
        "INSERT INTO event_chunks (session_id, minute, n, events)",
        4,
        &rows,
    )
    .await
}

/// Operator markers in `[from, to]`.
pub async fn markers(
    pool: &Pool,
    session: &str,
    from: i64,
    to: i64,
) -> Result<Vec<Marker>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, t_ms, summary FROM events WHERE session_id = $1 AND kind = 'marker' AND t_ms >= $2 AND t_ms <= $3 ORDER BY t_ms",
    )
    .bind(session)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(Marker {
            seq: r.try_get("seq")?,
            t_ms: r.try_get("t_ms")?,
            label: r.try_get("summary")?,
        })
    })
    .collect()
}

fn lane_event(r: &AnyRow) -> Result<TimelineEvent, sqlx::Error> {
    Ok(TimelineEvent {
        seq: r.try_get("seq")?,
        t_ms: r.try_get("t_ms")?,
        source: r.try_get("source")?,
        kind: r.try_get("kind")?,
        summary: r.try_get("summary")?,
    })
}

/// Every event of a session as a timeline entry, in time order.
pub async fn lane(conn: &mut Conn, session: &str) -> Result<Vec<TimelineEvent>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, t_ms, source, kind, summary FROM events WHERE session_id = $1 ORDER BY t_ms, seq",
    )
    .bind(session)
    .fetch_all(conn)
    .await?
    .iter()
    .map(lane_event)
    .collect()
}

/// Raw events in `[from, to]`, of one kind unless `kind` is empty; at most 50,000.
pub async fn events(
    pool: &Pool,
    session: &str,
    from: i64,
    to: i64,
    kind: &str,
) -> Result<Vec<EventRecord>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, t_ms, source, kind, data FROM events WHERE session_id = $1 AND t_ms >= $2 AND t_ms <= $3 \
         AND ($4 = '' OR kind = $4) ORDER BY t_ms, seq LIMIT 50000",
    )
    .bind(session)
    .bind(from)
    .bind(to)
    .bind(kind)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(EventRecord {
            seq: r.try_get("seq")?,
            t_ms: r.try_get("t_ms")?,
            source: r.try_get("source")?,
            kind: r.try_get("kind")?,
            data: serde_json::from_str(&r.try_get::<String, _>("data")?)
                .unwrap_or(serde_json::Value::Null),
        })
    })
    .collect()
}

/// A browser event's time and payload, for where a tag happened.
pub struct BrowserEvent {
    pub seq: i64,
    pub t_ms: i64,
    pub data: serde_json::Value,
}

/// The last 400 browser events up to `to`, newest first.
pub async fn browser_events_before(
    pool: &Pool,
    session: &str,
    to: i64,
) -> Result<Vec<BrowserEvent>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, t_ms, data FROM events WHERE session_id = $1 AND source = 'browser' AND t_ms <= $2 ORDER BY t_ms DESC, seq DESC LIMIT 400",
    )
    .bind(session)
    .bind(to)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(BrowserEvent {
            seq: r.try_get("seq")?,
            t_ms: r.try_get("t_ms")?,
            data: serde_json::from_str(&r.try_get::<String, _>("data")?)
                .unwrap_or(serde_json::Value::Null),
        })
    })
    .collect()
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
}
