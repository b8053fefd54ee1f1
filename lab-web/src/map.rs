//! The journey map: per step of a life situation, aggregated over its
//! sessions — time spent (median and spread against the expected time),
//! completion, the emotions researchers tagged, and the top problems; beside
//! them what participants said themselves (emotion and significance per
//! step, SEQ per task, SUS).

use std::collections::{BTreeMap, HashMap};

use crate::error::{ApiError, ApiResult};
use crate::store::map::Decision;
use crate::store::{self, Pool};
use crate::types::{
    CandidateRef, Completion, DetectorReliability, Emotions, JourneyMap, MapStep, MeanCi, Problem,
    ProposedFriction, Quote, ReliabilityBin, SelfReported, SessionFilter, Spread, StepArousalMap,
    SusScore, TaskEase, TimeStats,
};
use lab_model::self_report::{Emotion, SelfReport, StepRating};

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
    let mut arousal: HashMap<String, [Vec<f64>; 3]> = HashMap::new();
    for r in summaries {
        if r.visits == 0 {
            continue;
        }
        let a = arousal.entry(r.step.clone()).or_default();
        for (v, x) in a
            .iter_mut()
            .zip([r.eda_per_min, r.eda_amplitude_us, r.hr_change_bpm])
        {
            v.extend(x.filter(|x| x.is_finite()));
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
    let reports = parse_reports(store::map::self_reports(pool, journey_id, f).await?);
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
            let (self_emotions, self_significance) = step_self_reports(&reports, &s.id);
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
                self_emotions,
                self_significance,
                arousal: arousal.remove(&s.id).and_then(|[eda, amp, hr]| {
                    (!eda.is_empty() || !hr.is_empty()).then(|| StepArousalMap {
                        eda_per_min: mean_ci(&eda),
                        eda_amplitude_us: mean_ci(&amp),
                        hr_change_bpm: mean_ci(&hr),
                    })
                }),
            }
        })
        .collect();
    let detectors = reliability(&store::map::decisions(pool, journey_id, f).await?);
    let self_reported = self_reported(&reports);
    Ok(JourneyMap {
        journey,
        sessions: participants.len() as i64,
        participants,
        steps,
        detectors,
        self_reported,
    })
}

/// The participants' answers of the selected sessions, parsed; answers that
/// do not parse (a bundle written by hand) are left out.
fn parse_reports(rows: Vec<store::map::SelfReportRow>) -> Vec<(String, String, SelfReport)> {
    rows.into_iter()
        .filter_map(|r| {
            let data: serde_json::Value = serde_json::from_str(&r.data).ok()?;
            let report = SelfReport::parse(&r.kind, &data).ok()?;
            Some((r.session_id, r.participant, report))
        })
        .collect()
}

/// A step's self-reported emotions and significance. A participant who
/// rated a step twice (it came up in two tasks) counts with the later one.
fn step_self_reports(
    reports: &[(String, String, SelfReport)],
    step: &str,
) -> (Emotions, Option<Spread>) {
    let mut last: BTreeMap<&str, &StepRating> = BTreeMap::new();
    for (session, _, r) in reports {
        if let SelfReport::Step(s) = r
            && s.step == step
        {
            last.insert(session, s);
        }
    }
    let mut e = Emotions::default();
    let mut sig = vec![];
    for s in last.values() {
        match s.emotion {
            Emotion::Positive => e.positive += 1,
            Emotion::Neutral => e.neutral += 1,
            Emotion::Negative => e.negative += 1,
        }
        sig.push(f64::from(s.significance));
    }
    (e, spread(&sig))
}

fn spread(xs: &[f64]) -> Option<Spread> {
    let (mean, _) = mean_ci95(xs)?;
    let sd = if xs.len() > 1 {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some(Spread {
        mean,
        sd,
        n: xs.len() as i64,
    })
}

fn mean_ci(xs: &[f64]) -> Option<MeanCi> {
    mean_ci95(xs).map(|(mean, ci95)| MeanCi {
        mean,
        ci95,
        n: xs.len() as i64,
    })
}

/// SEQ per task (in the order tasks first appear) and SUS per session: a
/// later answer of the same session replaces an earlier one.
fn self_reported(reports: &[(String, String, SelfReport)]) -> SelfReported {
    let mut order: Vec<&str> = vec![];
    let mut seq: HashMap<&str, BTreeMap<&str, f64>> = HashMap::new();
    let mut sus: BTreeMap<&str, (&str, f64)> = BTreeMap::new();
    for (session, participant, r) in reports {
        match r {
            SelfReport::Seq(s) => {
                if !order.contains(&s.task.as_str()) {
                    order.push(&s.task);
                }
                seq.entry(&s.task)
                    .or_default()
                    .insert(session, f64::from(s.score));
            }
            SelfReport::Sus(s) => {
                sus.insert(session, (participant, s.score()));
            }
            SelfReport::Step(_) => {}
        }
    }
    let tasks = order
        .into_iter()
        .filter_map(|t| {
            let xs: Vec<f64> = seq.get(t)?.values().copied().collect();
            Some(TaskEase {
                task: t.to_string(),
                seq: mean_ci(&xs)?,
            })
        })
        .collect();
    let scores: Vec<f64> = sus.values().map(|(_, s)| *s).collect();
    SelfReported {
        tasks,
        sus: sus
            .iter()
            .map(|(session, (participant, score))| SusScore {
                session_id: session.to_string(),
                participant: participant.to_string(),
                score: *score,
            })
            .collect(),
        sus_mean: mean_ci(&scores),
    }
}

/// Mean and the half-width of its 95 % confidence interval (Student's t),
/// `None` for the half-width below two values.
pub fn mean_ci95(xs: &[f64]) -> Option<(f64, Option<f64>)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return Some((mean, None));
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, Some(t95(xs.len() - 1) * (var / n).sqrt())))
}

/// Two-sided 95 % Student's t for `df` degrees of freedom.
fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
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
    fn confidence_intervals_use_students_t() {
        assert_eq!(mean_ci95(&[]), None);
        assert_eq!(mean_ci95(&[4.0]), Some((4.0, None)));
        let (m, h) = mean_ci95(&[2.0, 4.0]).unwrap();
        assert_eq!(m, 3.0);
        // sd √2, se 1, t(1) 12.706
        assert!((h.unwrap() - 12.706).abs() < 1e-9);
        let (m, h) = mean_ci95(&[60.0, 70.0, 80.0, 90.0, 75.0]).unwrap();
        assert_eq!(m, 75.0);
        assert!((h.unwrap() - 2.776 * (125.0f64 / 5.0).sqrt()).abs() < 1e-9);
    }

    #[test]
    fn self_reports_count_each_session_once_and_keep_the_later_answer() {
        use lab_model::self_report::{Seq, Sus};
        let step = |sig, emotion| {
            SelfReport::Step(StepRating {
                task: None,
                step: "form".into(),
                emotion,
                significance: sig,
            })
        };
        let seq = |task: &str, score| {
            SelfReport::Seq(Seq {
                task: task.into(),
                score,
            })
        };
        let r = |s: &str, p: &str, x| (s.to_string(), p.to_string(), x);
        let reports = vec![
            r("S1", "P1", step(2, Emotion::Neutral)),
            r("S1", "P1", step(4, Emotion::Negative)),
            r("S2", "P2", step(5, Emotion::Negative)),
            r("S3", "P3", step(3, Emotion::Positive)),
            r("S1", "P1", seq("t2", 3)),
            r("S1", "P1", seq("t1", 6)),
            r("S2", "P2", seq("t2", 5)),
            r(
                "S2",
                "P2",
                SelfReport::Sus(Sus {
                    answers: vec![3; 10],
                }),
            ),
            r(
                "S1",
                "P1",
                SelfReport::Sus(Sus {
                    answers: vec![5, 1, 5, 1, 5, 1, 5, 1, 5, 1],
                }),
            ),
        ];
        let (e, sig) = step_self_reports(&reports, "form");
        assert_eq!((e.positive, e.neutral, e.negative), (1, 0, 2));
        let sig = sig.unwrap();
        assert_eq!(sig.n, 3);
        assert_eq!(sig.mean, 4.0);
        assert_eq!(sig.sd, 1.0);
        assert_eq!(step_self_reports(&reports, "other").1, None);
        let s = self_reported(&reports);
        let tasks: Vec<(&str, f64, i64)> = s
            .tasks
            .iter()
            .map(|t| (t.task.as_str(), t.seq.mean, t.seq.n))
            .collect();
        assert_eq!(tasks, vec![("t2", 4.0, 2), ("t1", 6.0, 1)]);
        assert_eq!(s.tasks[1].seq.ci95, None);
        assert_eq!(
            s.sus.iter().map(|x| x.score).collect::<Vec<_>>(),
            vec![100.0, 50.0]
        );
        let m = s.sus_mean.unwrap();
        assert_eq!((m.mean, m.n), (75.0, 2));
        assert!((m.ci95.unwrap() - 12.706 * 25.0).abs() < 1e-9);
    }

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
