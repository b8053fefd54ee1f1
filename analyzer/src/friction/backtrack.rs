//! Backtracking: the participant went from a step back to an earlier step of
//! the journey (the browser's back button, a link, a breadcrumb, an operator
//! marker). Re-entering the current step is not a step at all (see
//! [`crate::steps`]), so it never shows up here.

use lab_model::Journey;
use lab_model::analysis::{Candidate, Evidence, StepAnalysis};

use super::candidate::{Confidence, candidate, number};
use super::notes::count_ru;
use crate::timeline::{Timeline, data_str, is_browser};

pub const NAME: &str = "backtrack";

/// One step back is often deliberate (checking an earlier answer), so a
/// plain backtrack is an even bet.
pub const BASE_CONFIDENCE: f32 = 0.5;
/// Each further step skipped backwards: going back several steps usually
/// means the participant got lost or had to redo something.
pub const PER_EXTRA_STEP: f32 = 0.1;
/// From the third visit of the step on: coming back again and again is a loop.
pub const REPEAT_BONUS: f32 = 0.1;
pub const MAX_CONFIDENCE: f32 = 0.9;

pub fn detect(journey: &Journey, timeline: &Timeline, steps: &StepAnalysis) -> Vec<Candidate> {
    let index = |id: &str| journey.steps.iter().position(|s| s.id == id);
    let title = |id: &str| journey.step(id).map_or(id.to_string(), |s| s.title.clone());
    let mut out = Vec::new();
    for pair in steps.intervals.windows(2) {
        let (prev, cur) = (&pair[0], &pair[1]);
        // A gap means a task_end closed the previous step: starting a task
        // over is not going back.
        if prev.end_ns != cur.start_ns {
            continue;
        }
        let (Some(from), Some(to)) = (index(&prev.step), index(&cur.step)) else {
            continue;
        };
        if to >= from {
            continue;
        }
        let entering = timeline.event(cur.entered_by);
        let how = match entering {
            Some(e) if is_browser(e, "navigation") && data_str(e, "reason") == Some("pop") => {
                " (кнопка «Назад» браузера)"
            }
            Some(e) if is_browser(e, "click") => " (переход по клику)",
            _ => "",
        };
        let note = format!(
            "возврат с шага «{}» на шаг «{}»{how}, посещение {}",
            title(&prev.step),
            title(&cur.step),
            cur.visit
        );
        let mut confidence = Confidence::rule("возврат на более ранний шаг пути", BASE_CONFIDENCE);
        if from - to > 1 {
            confidence.add(
                PER_EXTRA_STEP * (from - to - 1) as f32,
                format!(
                    "назад сразу на {}",
                    count_ru(from - to, "шаг", "шага", "шагов")
                ),
            );
        }
        if cur.visit >= 3 {
            confidence.add(REPEAT_BONUS, format!("шаг посещён уже {}-й раз", cur.visit));
        }
        confidence.cap(MAX_CONFIDENCE);
        out.push(candidate(
            NAME,
            steps,
            cur.start_ns,
            cur.end_ns,
            confidence,
            Evidence {
                events: vec![cur.entered_by],
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
    const FORM: &str = "https://gu.example/form";

    /// (start s, end s, step, entering seq, confidence, note)
    type Want = (f64, f64, &'static str, u64, f32, &'static str);

    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<Event>, Vec<Want>)> = vec![
            (
                "the browser's back button from login to the catalog",
                vec![
                    nav(1.0, CAT),
                    nav(5.0, LOGIN),
                    back(8.0, CAT),
                    nav(12.0, LOGIN),
                ],
                vec![(
                    8.0,
                    12.0,
                    "find",
                    3,
                    0.5,
                    "возврат с шага «Войти» на шаг «Найти услугу» (кнопка «Назад» браузера), посещение 2",
                )],
            ),
            (
                "two steps back by a link, then again: the third visit",
                vec![
                    nav(1.0, CAT),
                    nav(2.0, LOGIN),
                    nav(3.0, FORM),
                    nav(4.0, CAT),
                    nav(5.0, LOGIN),
                    back(6.0, CAT),
                ],
                vec![
                    (
                        4.0,
                        5.0,
                        "find",
                        4,
                        0.6,
                        "возврат с шага «Заполнить заявление» на шаг «Найти услугу», посещение 2",
                    ),
                    (
                        6.0,
                        7.0,
                        "find",
                        6,
                        0.6,
                        "возврат с шага «Войти» на шаг «Найти услугу» (кнопка «Назад» браузера), посещение 3",
                    ),
                ],
            ),
            (
                "re-entering the current step and moving forward are not backtracks",
                vec![
                    nav(1.0, CAT),
                    nav(3.0, CAT),
                    back(4.0, CAT),
                    nav(6.0, LOGIN),
                    nav(8.0, FORM),
                ],
                vec![],
            ),
            (
                "a new task after task_end starts over",
                vec![
                    nav(1.0, CAT),
                    nav(2.0, LOGIN),
                    marker(3.0, "task_end", "Задание 1"),
                    marker(4.0, "task_start", "Задание 2"),
                    nav(5.0, CAT),
                ],
                vec![],
            ),
        ];
        for (name, events, want) in cases {
            let t = tl(events);
            let got: Vec<(f64, f64, String, u64, f32, String)> =
                detect(&journey(), &t, &segment(&journey(), &t))
                    .into_iter()
                    .map(|c| {
                        assert_eq!(c.detector, NAME);
                        (
                            c.start_ns as f64 / 1e9,
                            c.end_ns as f64 / 1e9,
                            c.step.unwrap_or_default(),
                            c.evidence.events[0],
                            c.confidence,
                            c.evidence.note,
                        )
                    })
                    .collect();
            let want: Vec<(f64, f64, String, u64, f32, String)> = want
                .into_iter()
                .map(|(a, b, s, seq, conf, note)| (a, b, s.into(), seq, conf, note.into()))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
