//! Arousal per journey step ([`StepArousal`]), for the journey map's sensor
//! view: skin-conductance responses found by the arousal detector's rule
//! ([`crate::friction::arousal::scrs`]) whose onset fell in the step's
//! visits, per minute of the step and their mean amplitude; and the mean
//! heart rate in the visits minus the session's mean.

use lab_model::analysis::{StepAnalysis, StepArousal};

use crate::friction::arousal::scrs;
use crate::timeline::{Signal, SignalKind};

fn inside(visits: &[(i64, i64)], t: i64) -> bool {
    visits.iter().any(|(a, b)| t >= *a && t < *b)
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = v.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| sum / n as f64)
}

/// Sets each step summary's `arousal` from the session's signals (left
/// `None` without skin conductance or heart rate, or for a step never
/// visited).
pub fn annotate(steps: &mut StepAnalysis, signals: &[Signal]) {
    let eda: Vec<&Signal> = signals
        .iter()
        .filter(|s| s.kind == SignalKind::Eda)
        .collect();
    let hr: Vec<&Signal> = signals
        .iter()
        .filter(|s| s.kind == SignalKind::HeartRate)
        .collect();
    if eda.is_empty() && hr.is_empty() {
        return;
    }
    let responses: Vec<_> = eda.iter().flat_map(|s| scrs(s)).collect();
    let session_hr = mean(hr.iter().flat_map(|s| s.v.iter().copied()));
    for summary in &mut steps.steps {
        let visits: Vec<(i64, i64)> = steps
            .intervals
            .iter()
            .filter(|v| v.step == summary.step && v.end_ns > v.start_ns)
            .map(|v| (v.start_ns, v.end_ns))
            .collect();
        let total_ns: i64 = visits.iter().map(|(a, b)| b - a).sum();
        if total_ns <= 0 {
            continue;
        }
        let mut a = StepArousal::default();
        if !eda.is_empty() {
            let mine: Vec<f64> = responses
                .iter()
                .filter(|r| inside(&visits, r.onset_ns))
                .map(|r| r.amplitude)
                .collect();
            a.eda_per_min = Some(mine.len() as f64 / (total_ns as f64 / 60e9));
            a.eda_amplitude_us = mean(mine.iter().copied());
        }
        if let Some(base) = session_hr {
            let step_hr = mean(hr.iter().flat_map(|s| {
                s.t_ns
                    .iter()
                    .zip(&s.v)
                    .filter(|(t, _)| inside(&visits, **t))
                    .map(|(_, v)| *v)
            }));
            a.hr_change_bpm = step_hr.map(|m| m - base);
        }
        summary.arousal = Some(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_model::analysis::{StepInterval, StepSummary};

    fn summary(step: &str) -> StepSummary {
        StepSummary {
            step: step.into(),
            title: step.into(),
            time_spent_ns: 0,
            visits: 1,
            completed: true,
            expected_ns: 0,
            events: vec![],
            arousal: None,
        }
    }

    #[test]
    fn responses_and_heart_rate_land_in_the_steps_they_happen_in() {
        // 60 s: step a for 0-30 s, b for 30-60 s. Skin conductance at 32 Hz
        // answers twice in b (0.2 µS each); the pulse is 10 bpm higher in b.
        let t: Vec<i64> = (0..60 * 32).map(|i| i * 1_000_000_000 / 32).collect();
        let eda: Vec<f64> = t
            .iter()
            .map(|&t| {
                let s = t as f64 / 1e9;
                let bump = |at: f64| {
                    let d = s - at;
                    if d < 0.0 {
                        0.0
                    } else if d < 1.0 {
                        0.2 * d
                    } else {
                        0.2 * (-(d - 1.0) / 3.0).exp()
                    }
                };
                2.0 + bump(35.0) + bump(48.0)
            })
            .collect();
        let hr: Vec<f64> = t
            .iter()
            .map(|&t| if t < 30_000_000_000 { 70.0 } else { 80.0 })
            .collect();
        let signals = vec![
            Signal {
                kind: SignalKind::Eda,
                t_ns: t.clone(),
                v: eda,
            },
            Signal {
                kind: SignalKind::HeartRate,
                t_ns: t,
                v: hr,
            },
        ];
        let mut steps = StepAnalysis {
            format_version: 1,
            journey_id: "j".into(),
            journey_version: "1".into(),
            intervals: vec![
                StepInterval {
                    step: "a".into(),
                    visit: 1,
                    entered_by: 1,
                    start_ns: 0,
                    end_ns: 30_000_000_000,
                },
                StepInterval {
                    step: "b".into(),
                    visit: 1,
                    entered_by: 1,
                    start_ns: 30_000_000_000,
                    end_ns: 60_000_000_000,
                },
            ],
            steps: vec![summary("a"), summary("b"), summary("never")],
        };
        annotate(&mut steps, &signals);
        let a = steps.steps[0].arousal.clone().unwrap();
        let b = steps.steps[1].arousal.clone().unwrap();
        assert_eq!(a.eda_per_min, Some(0.0));
        assert_eq!(a.eda_amplitude_us, None);
        assert_eq!(b.eda_per_min, Some(4.0));
        let amp = b.eda_amplitude_us.unwrap();
        assert!((amp - 0.2).abs() < 0.03, "{amp}");
        assert!((a.hr_change_bpm.unwrap() + 5.0).abs() < 0.1);
        assert!((b.hr_change_bpm.unwrap() - 5.0).abs() < 0.1);
        assert_eq!(steps.steps[2].arousal, None);
        // No signals: nothing is said.
        let mut plain = steps.clone();
        plain.steps.iter_mut().for_each(|s| s.arousal = None);
        annotate(&mut plain, &[]);
        assert!(plain.steps.iter().all(|s| s.arousal.is_none()));
    }
}
