//! The journey map: per step of a life situation, aggregated over its
//! sessions — time spent (median and spread against the expected time),
//! completion, the emotions researchers tagged, and the top problems.

use std::collections::{BTreeMap, HashMap};

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::types::{
    CandidateRef, Completion, Emotions, JourneyMap, MapStep, Problem, ProposedFriction, Quote,
    TimeStats,
};

#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub study: String,
    pub segment: String,
    pub from: i64,
    pub to: i64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn time_stats(mut v: Vec<i64>) -> TimeStats {
    v.sort_unstable();
    if v.is_empty() {
        return TimeStats::default();
    }
    TimeStats {
        n: v.len() as i64,
        median_ms: percentile(&v, 50.0),
        p25_ms: percentile(&v, 25.0),
        p75_ms: percentile(&v, 75.0),
        min_ms: v[0],
        max_ms: v[v.len() - 1],
    }
}

/// The sessions `f` selects of a journey: `{session_filter}` in the SQL
/// below, with its five parameters bound first.
fn filtered<'q>(journey_id: &str, f: &Filters, sql: String) -> Query<'q, Any, AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(journey_id.to_string())
        .bind(f.study.clone())
        .bind(f.segment.clone())
        .bind(f.from)
        .bind(f.to)
}

pub async fn journey_map(state: &AppState, journey_id: &str, f: &Filters) -> ApiResult<JourneyMap> {
    let journey = crate::api::journey_info(state, journey_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("journey {journey_id} not found")))?;
    let session_filter = "s.journey_id = $1 AND ($2 = '' OR s.study = $2) AND ($3 = '' OR s.segment = $3) \
        AND ($4 = 0 OR s.started_at >= $4) AND ($5 = 0 OR s.started_at <= $5)";
    let sessions = filtered(journey_id, f, format!(
        "SELECT s.id, s.participant FROM sessions s WHERE {session_filter} ORDER BY s.started_at"
    ))
    .fetch_all(&state.db.pool)
    .await?;
    let participants: Vec<String> = sessions
        .iter()
        .map(|r| r.try_get(1))
        .collect::<Result<_, _>>()?;
    let summaries = filtered(journey_id, f, format!(
        "SELECT m.step, m.time_spent_ms, m.visits, m.completed FROM step_summaries m JOIN sessions s ON s.id = m.session_id WHERE {session_filter}"
    ))
    .fetch_all(&state.db.pool)
    .await?;
    let mut times: HashMap<String, Vec<i64>> = HashMap::new();
    let mut completion: HashMap<String, Completion> = HashMap::new();
    for r in &summaries {
        let step: String = r.try_get(0)?;
        let visits: i64 = r.try_get(2)?;
        if visits == 0 {
            continue;
        }
        times.entry(step.clone()).or_default().push(r.try_get(1)?);
        let c = completion.entry(step).or_default();
        c.reached += 1;
        c.completed += r.try_get::<i64, _>(3)?;
    }
    let tags = filtered(journey_id, f, format!(
        "SELECT t.id, t.step, t.category, t.severity, t.emotion, t.quote, t.session_id, s.participant, c.status, t.start_ms \
         FROM tags t JOIN sessions s ON s.id = t.session_id LEFT JOIN clips c ON c.tag_id = t.id \
         WHERE t.deleted = 0 AND {session_filter} ORDER BY t.severity DESC, t.id"
    ))
    .fetch_all(&state.db.pool)
    .await?;
    let mut emotions: HashMap<String, Emotions> = HashMap::new();
    let mut problems: HashMap<String, BTreeMap<String, Problem>> = HashMap::new();
    for r in &tags {
        let Some(step) = r.try_get::<Option<String>, _>(1)? else {
            continue;
        };
        let id: i64 = r.try_get(0)?;
        let e = emotions.entry(step.clone()).or_default();
        match r.try_get::<String, _>(4)?.as_str() {
            "positive" => e.positive += 1,
            "negative" => e.negative += 1,
            _ => e.neutral += 1,
        }
        let category: String = r.try_get(2)?;
        let p = problems
            .entry(step)
            .or_default()
            .entry(category.clone())
            .or_insert(Problem {
                category,
                count: 0,
                max_severity: 0,
                quotes: vec![],
                clips: vec![],
            });
        p.count += 1;
        p.max_severity = p.max_severity.max(r.try_get(3)?);
        let quote: String = r.try_get(5)?;
        if !quote.trim().is_empty() && p.quotes.len() < 3 {
            p.quotes.push(Quote {
                text: quote,
                start_ms: r.try_get(9)?,
                session_id: r.try_get(6)?,
                participant: r.try_get(7)?,
                tag_id: id,
            });
        }
        if r.try_get::<Option<String>, _>(8)?.as_deref() == Some("done") && p.clips.len() < 3 {
            p.clips.push(format!("/api/v1/clips/{id}.mp4"));
        }
    }
    let cands = filtered(journey_id, f, format!(
        "SELECT c.step, c.detector, c.status, c.session_id, s.participant, c.start_ms \
         FROM candidates c JOIN sessions s ON s.id = c.session_id \
         WHERE c.status <> 'rejected' AND c.step IS NOT NULL AND {session_filter} ORDER BY s.started_at, c.start_ms"
    ))
    .fetch_all(&state.db.pool)
    .await?;
    let mut proposed: HashMap<String, BTreeMap<String, ProposedFriction>> = HashMap::new();
    for r in &cands {
        let step: String = r.try_get(0)?;
        let detector: String = r.try_get(1)?;
        let p = proposed
            .entry(step)
            .or_default()
            .entry(detector.clone())
            .or_insert(ProposedFriction {
                detector,
                count: 0,
                accepted: 0,
                sessions: vec![],
            });
        p.count += 1;
        if r.try_get::<String, _>(2)? == "accepted" {
            p.accepted += 1;
        }
        let session_id: String = r.try_get(3)?;
        if !p.sessions.iter().any(|s| s.session_id == session_id) {
            p.sessions.push(CandidateRef {
                session_id,
                participant: r.try_get(4)?,
                start_ms: r.try_get(5)?,
            });
        }
    }
    let steps = journey
        .steps
        .iter()
        .map(|s| {
            let mut c = completion.remove(&s.id).unwrap_or_default();
            c.rate = if c.reached > 0 {
                c.completed as f64 / c.reached as f64
            } else {
                0.0
            };
            let mut ps: Vec<Problem> = problems
                .remove(&s.id)
                .map(|m| m.into_values().collect())
                .unwrap_or_default();
            ps.sort_by_key(|p| std::cmp::Reverse((p.count, p.max_severity)));
            ps.truncate(5);
            MapStep {
                id: s.id.clone(),
                title: s.title.clone(),
                significance: s.significance,
                expected_ms: s.expected_ms,
                time: time_stats(times.remove(&s.id).unwrap_or_default()),
                completion: c,
                emotions: emotions.remove(&s.id).unwrap_or_default(),
                problems: ps,
                proposed: {
                    let mut v: Vec<ProposedFriction> = proposed
                        .remove(&s.id)
                        .map(|m| m.into_values().collect())
                        .unwrap_or_default();
                    v.sort_by_key(|p| std::cmp::Reverse(p.sessions.len()));
                    v
                },
            }
        })
        .collect();
    Ok(JourneyMap {
        journey,
        sessions: sessions.len() as i64,
        participants,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_times() {
        let s = time_stats(vec![30, 10, 20, 40, 50]);
        assert_eq!((s.n, s.median_ms, s.min_ms, s.max_ms), (5, 30, 10, 50));
        assert_eq!((s.p25_ms, s.p75_ms), (20, 40));
        assert_eq!(time_stats(vec![]).n, 0);
    }
}
