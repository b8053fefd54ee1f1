//! Step overtime: a journey step took far longer than its benchmark
//! (хронометраж, `expected_seconds` in the journey definition), over all its
//! visits.

use lab_model::analysis::{Candidate, Evidence, StepAnalysis};

use super::candidate::{Confidence, candidate, number};
use super::notes::{count_ru, duration_ru};

pub const NAME: &str = "step_overtime";

/// Time spent must exceed this multiple of the benchmark. Benchmarks are
/// medians; participants commonly take up to half as long again, so only
/// twice the benchmark is clearly outside the normal spread.
pub const MIN_RATIO: f64 = 2.0;

/// ... and exceed the benchmark by at least this much. A 10-second step
/// taking 20 s is a re-read, not a problem; 20 s extra is a noticeable stall
/// whatever the step.
pub const MIN_EXCESS_NS: i64 = 20_000_000_000;

/// Confidence at `MIN_RATIO`, rising linearly to `MAX_CONFIDENCE` at
/// `FULL_RATIO` times the benchmark.
pub const BASE_CONFIDENCE: f32 = 0.5;
pub const FULL_RATIO: f64 = 4.0;
pub const MAX_CONFIDENCE: f32 = 0.85;

pub fn detect(steps: &StepAnalysis) -> Vec<Candidate> {
    let mut out = Vec::new();
    for s in &steps.steps {
        if s.visits == 0 || s.expected_ns <= 0 {
            continue;
        }
        let ratio = s.time_spent_ns as f64 / s.expected_ns as f64;
        if ratio <= MIN_RATIO || s.time_spent_ns - s.expected_ns <= MIN_EXCESS_NS {
            continue;
        }
        let visits: Vec<_> = steps
            .intervals
            .iter()
            .filter(|v| v.step == s.step)
            .collect();
        let (Some(first), Some(last)) = (visits.first(), visits.last()) else {
            continue;
        };
        let times = format!("{ratio:.1}").replace('.', ",");
        let mut note = format!(
            "на шаге «{}» {} при норме {} (в {times} раза дольше)",
            s.title,
            duration_ru(s.time_spent_ns),
            duration_ru(s.expected_ns),
        );
        if s.visits > 1 {
            let visits = count_ru(s.visits as usize, "заход", "захода", "заходов");
            note += &format!(", за {visits}");
        }
        let progress = ((ratio - MIN_RATIO) / (FULL_RATIO - MIN_RATIO)).clamp(0.0, 1.0) as f32;
        let mut confidence = Confidence::rule(
            "шаг занял больше двух норм времени и на 20 с дольше нормы",
            BASE_CONFIDENCE,
        );
        confidence.add(
            (MAX_CONFIDENCE - BASE_CONFIDENCE) * progress,
            format!("в {times} раза дольше нормы (предел уверенности — в 4 раза)"),
        );
        out.push(candidate(
            NAME,
            steps,
            first.start_ns,
            last.end_ns,
            confidence,
            Evidence {
                events: visits.iter().map(|v| v.entered_by).collect(),
                note,
                ..Evidence::default()
            },
        ));
    }
    number(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::segment;
    use crate::timeline::testkit::*;
    use lab_model::Event;

    const CAT: &str = "https://gu.example/catalog";
    const LOGIN: &str = "https://gu.example/login";

    /// (step, start s, end s, entering seqs, confidence, note)
    type Want = (&'static str, f64, f64, Vec<u64>, f32, &'static str);

    #[test]
    fn table() {
        // Benchmarks: find 60 s, login 45 s, form 120 s.
        let cases: Vec<(&str, Vec<Event>, Vec<Want>)> = vec![
            (
                "login took 130 s against 45 s",
                vec![nav(0.0, LOGIN), nav(130.0, "https://gu.example/form")],
                vec![(
                    "login",
                    0.0,
                    130.0,
                    vec![1],
                    0.66,
                    "на шаге «Войти» 2 мин 10 с при норме 45 с (в 2,9 раза дольше)",
                )],
            ),
            (
                "over two visits, far over: capped",
                vec![
                    nav(0.0, LOGIN),
                    nav(100.0, CAT),
                    nav(110.0, LOGIN),
                    nav(210.0, "https://gu.example/form"),
                ],
                vec![(
                    "login",
                    0.0,
                    210.0,
                    vec![1, 3],
                    0.85,
                    "на шаге «Войти» 3 мин 20 с при норме 45 с (в 4,4 раза дольше), за 2 захода",
                )],
            ),
            (
                "twice the benchmark is not enough",
                vec![nav(0.0, LOGIN), nav(89.0, "https://gu.example/form")],
                vec![],
            ),
            (
                "a short step: over twice but less than 20 s extra",
                vec![
                    nav(0.0, "https://gu.example/form"),
                    click(1.0, "#send", 1, 1),
                    nav(26.0, "https://gu.example/form/sent").with("title", "Заявление отправлено"),
                ],
                vec![],
            ),
        ];
        for (name, events, want) in cases {
            let t = tl(events);
            let got: Vec<(String, f64, f64, Vec<u64>, f32, String)> =
                detect(&segment(&journey(), &t))
                    .into_iter()
                    .map(|c| {
                        let (start, end) = (c.start_ns as f64 / 1e9, c.end_ns as f64 / 1e9);
                        let step = c.step.unwrap_or_default();
                        (
                            step,
                            start,
                            end,
                            c.evidence.events,
                            c.confidence,
                            c.evidence.note,
                        )
                    })
                    .collect();
            let want: Vec<(String, f64, f64, Vec<u64>, f32, String)> = want
                .into_iter()
                .map(|(s, a, b, seqs, conf, note)| (s.into(), a, b, seqs, conf, note.into()))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
