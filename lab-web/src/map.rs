//! The journey map: per step of a life situation, aggregated over its
//! sessions — time spent (median and spread against the expected time),
//! completion, the emotions researchers tagged, and the top problems.

use std::collections::{BTreeMap, HashMap};

use crate::error::{ApiError, ApiResult};
use crate::store::map::Decision;
use crate::store::{self, Pool};
use crate::types::{
    CandidateRef, Completion, DetectorReliability, Emotions, JourneyMap, MapStep, Problem,
    ProposedFriction, Quote, ReliabilityBin, SessionFilter, TimeStats,
};

/// Percentile `p` (0-100) of sorted values, interpolated linearly between
/// the two nearest ranks (numpy's and R's default, "type 7"), rounded to
/// the millisecond: the median of two times is their mean. Nearest-rank
/// rounding, used before, gave the larger of two times as their "median".
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    let Some(&last) = sorted.last() else {
        return 0;
    };
    let h = p.clamp(0.0, 100.0) / 100.0 * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    if lo >= sorted.len() - 1 {
        return last;
    }
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    (a + (b - a) * (h - lo as f64)).round() as i64
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

/// The map of journey `journey_id` over the sessions `f` selects (its
/// `journey` and `life_situation` are not used).
pub async fn journey_map(
    pool: &Pool,
    journey_id: &str,
    f: &SessionFilter,
) -> ApiResult<JourneyMap> {
    let journey = store::journeys::get(pool, journey_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("journey {journey_id} not found")))?;
    let participants = store::map::participants(pool, journey_id, f).await?;
    let summaries = store::map::step_summaries(pool, journey_id, f).await?;
    let mut times: HashMap<String, Vec<i64>> = HashMap::new();
    let mut completion: HashMap<String, Completion> = HashMap::new();
    for r in summaries {
        if r.visits == 0 {
            continue;
        }
        times
            .entry(r.step.clone())
            .or_default()
            .push(r.time_spent_ms);
        let c = completion.entry(r.step).or_default();
        c.reached += 1;
        c.completed += r.completed;
    }
    let tags = store::map::tags(pool, journey_id, f).await?;
    let mut emotions: HashMap<String, Emotions> = HashMap::new();
    let mut problems: HashMap<String, BTreeMap<String, Problem>> = HashMap::new();
    for r in tags {
        let Some(step) = r.step else {
            continue;
        };
        let id = r.id;
        let e = emotions.entry(step.clone()).or_default();
        match r.emotion.as_str() {
            "positive" => e.positive += 1,
            "negative" => e.negative += 1,
            _ => e.neutral += 1,
        }
        let category = r.category;
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
        p.max_severity = p.max_severity.max(r.severity);
        let quote = r.quote;
        if !quote.trim().is_empty() && p.quotes.len() < 3 {
            p.quotes.push(Quote {
                text: quote,
                start_ms: r.start_ms,
                session_id: r.session_id,
                participant: r.participant,
                tag_id: id,
            });
        }
        if r.clip_status.as_deref() == Some("done") && p.clips.len() < 3 {
            p.clips.push(format!("/api/v1/clips/{id}.mp4"));
        }
    }
    let cands = store::map::candidates(pool, journey_id, f).await?;
    let mut proposed: HashMap<String, BTreeMap<String, ProposedFriction>> = HashMap::new();
    for r in cands {
        // A merged candidate counts under each detector it carries.
        for detector in std::iter::once(&r.detector).chain(&r.also) {
            let p = proposed
                .entry(r.step.clone())
                .or_default()
                .entry(detector.clone())
                .or_insert(ProposedFriction {
                    detector: detector.clone(),
                    count: 0,
                    accepted: 0,
                    sessions: vec![],
                });
            p.count += 1;
            if r.status == "accepted" {
                p.accepted += 1;
            }
            if !p.sessions.iter().any(|s| s.session_id == r.session_id) {
                p.sessions.push(CandidateRef {
                    session_id: r.session_id.clone(),
                    participant: r.participant.clone(),
                    start_ms: r.start_ms,
                });
            }
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
    let detectors = reliability(&store::map::decisions(pool, journey_id, f).await?);
    Ok(JourneyMap {
        journey,
        sessions: participants.len() as i64,
        participants,
        steps,
        detectors,
    })
}

/// Confidence bins of the reliability table, `[lower, upper)`; the last
/// takes 1.0.
pub const RELIABILITY_BINS: &[(f64, f64)] = &[(0.0, 0.5), (0.5, 0.65), (0.65, 0.8), (0.8, 1.01)];

/// Per detector (by name), its candidates against the decisions on them.
pub fn reliability(decisions: &[Decision]) -> Vec<DetectorReliability> {
    let mut rows: BTreeMap<&str, (DetectorReliability, f64)> = BTreeMap::new();
    for d in decisions {
        for detector in std::iter::once(&d.detector).chain(&d.also) {
            let (r, sum) = rows.entry(detector.as_str()).or_insert_with(|| {
                (
                    DetectorReliability {
                        detector: detector.clone(),
                        bins: RELIABILITY_BINS
                            .iter()
                            .map(|&(lower, upper)| ReliabilityBin {
                                lower,
                                upper: upper.min(1.0),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    },
                    0.0,
                )
            });
            r.proposed += 1;
            let accepted = match d.status.as_str() {
                "accepted" => true,
                "rejected" => false,
                _ => continue,
            };
            if accepted {
                r.accepted += 1;
            } else {
                r.rejected += 1;
            }
            *sum += d.confidence;
            let i = RELIABILITY_BINS
                .iter()
                .position(|&(lo, hi)| d.confidence >= lo && d.confidence < hi)
                .unwrap_or(RELIABILITY_BINS.len() - 1);
            r.bins[i].decided += 1;
            r.bins[i].accepted += i64::from(accepted);
        }
    }
    rows.into_values()
        .map(|(mut r, sum)| {
            let decided = r.accepted + r.rejected;
            if decided > 0 {
                r.accepted_share = Some(r.accepted as f64 / decided as f64);
                r.mean_confidence = Some(sum / decided as f64);
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliability_counts_decisions_per_detector_and_bin() {
        let d = |detector: &str, also: &[&str], confidence, status: &str| Decision {
            detector: detector.into(),
            also: also.iter().map(|s| s.to_string()).collect(),
            confidence,
            status: status.into(),
        };
        let rows = reliability(&[
            d("rage_click", &["dead_click"], 0.9, "accepted"),
            d("rage_click", &[], 0.55, "rejected"),
            d("rage_click", &[], 0.6, "open"),
            d("hesitation", &[], 1.0, "accepted"),
        ]);
        let names: Vec<&str> = rows.iter().map(|r| r.detector.as_str()).collect();
        assert_eq!(names, ["dead_click", "hesitation", "rage_click"]);
        let rage = &rows[2];
        assert_eq!((rage.proposed, rage.accepted, rage.rejected), (3, 1, 1));
        assert_eq!(rage.accepted_share, Some(0.5));
        assert!((rage.mean_confidence.unwrap() - 0.725).abs() < 1e-9);
        let decided: Vec<(i64, i64)> = rage.bins.iter().map(|b| (b.decided, b.accepted)).collect();
        assert_eq!(decided, [(0, 0), (1, 0), (0, 0), (1, 1)]);
        // A confidence of 1.0 falls in the last bin; a merged candidate counts
        // under each detector it carries.
        assert_eq!(rows[1].bins[3].accepted, 1);
        assert_eq!((rows[0].proposed, rows[0].accepted), (1, 1));
    }

    #[test]
    fn stats_of_times() {
        let s = time_stats(vec![30, 10, 20, 40, 50]);
        assert_eq!((s.n, s.median_ms, s.min_ms, s.max_ms), (5, 30, 10, 50));
        assert_eq!((s.p25_ms, s.p75_ms), (20, 40));
        assert_eq!(time_stats(vec![]).n, 0);
    }

    /// Against numpy.percentile (linear interpolation) on the same values:
    /// (values, [P25, median, P75]) as numpy printed them.
    #[test]
    fn percentiles_match_numpy_for_any_n() {
        let reference: &[(&[i64], [f64; 3])] = &[
            (&[42], [42.0, 42.0, 42.0]),
            (&[10, 20], [12.5, 15.0, 17.5]),
            (&[30, 10, 20], [15.0, 20.0, 25.0]),
            (&[7, 1, 3, 9], [2.5, 5.0, 7.5]),
            (&[30, 10, 20, 40, 50], [20.0, 30.0, 40.0]),
            (&[5, 1, 100, 7, 3, 2], [2.25, 4.0, 6.5]),
            (
                &[1000, 2500, 1200, 900, 4000, 3100, 2000],
                [1100.0, 2000.0, 2800.0],
            ),
            (&[3, 3, 3, 8], [3.0, 3.0, 4.25]),
        ];
        for (values, want) in reference {
            let s = time_stats(values.to_vec());
            let got = [s.p25_ms, s.median_ms, s.p75_ms];
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (*g as f64 - w).abs() <= 0.5,
                    "{values:?}: {got:?} vs numpy {want:?}"
                );
            }
        }
        // Two participants: the median lies between them, not on the larger.
        assert_eq!(time_stats(vec![40_000, 100_000]).median_ms, 70_000);
    }
}
