//! Journey steps: which step of the life situation's journey the participant
//! was in, when, and how often, from the journey definition's entry rules.
//!
//! Which event enters which step, and how a tie is chosen:
//! `lab_model::step_tracker` (the recorder applies the same rules live).
//! A `task_end` marker closes the open interval; the events after it belong
//! to no step until a step is entered again.

use lab_model::analysis::{ANALYSIS_FORMAT_VERSION, StepAnalysis, StepInterval, StepSummary};
use lab_model::journey::Journey;
use lab_model::step_tracker::{StepChange, StepTracker};

use crate::timeline::Timeline;

/// How an interval ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ClosedBy {
    /// Another step (by index) was entered.
    Step(usize),
    TaskEnd,
    SessionEnd,
}

/// Splits the session into visits of journey steps. Pure.
pub fn segment(journey: &Journey, timeline: &Timeline) -> StepAnalysis {
    let n = journey.steps.len();
    let mut intervals: Vec<StepInterval> = Vec::new();
    // Parallel to `intervals`: the step's index and how the interval ended.
    let mut index_of: Vec<usize> = Vec::new();
    let mut ends: Vec<ClosedBy> = Vec::new();
    let mut events: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut tracker = StepTracker::default();

    fn close(intervals: &mut [StepInterval], ends: &mut Vec<ClosedBy>, t_ns: i64, how: ClosedBy) {
        if let Some(open) = intervals.last_mut() {
            open.end_ns = t_ns.max(open.start_ns);
            ends.push(how);
        }
    }

    for e in &timeline.events {
        match tracker.observe(journey, e) {
            StepChange::TaskEnd { from } => {
                events[from].push(e.seq);
                close(&mut intervals, &mut ends, e.t_ns, ClosedBy::TaskEnd);
                continue;
            }
            StepChange::Entered { step: next, from } => {
                if from.is_some() {
                    close(&mut intervals, &mut ends, e.t_ns, ClosedBy::Step(next));
                }
                let visit = index_of.iter().filter(|&&i| i == next).count() as u32 + 1;
                intervals.push(StepInterval {
                    step: journey.steps[next].id.clone(),
                    start_ns: e.t_ns,
                    end_ns: e.t_ns,
                    visit,
                    entered_by: e.seq,
                });
                index_of.push(next);
            }
            StepChange::Same => {}
        }
        if let Some(c) = tracker.current() {
            events[c].push(e.seq);
        }
    }
    if tracker.current().is_some() {
        close(
            &mut intervals,
            &mut ends,
            timeline.end_ns(),
            ClosedBy::SessionEnd,
        );
    }

    let mut completed = vec![false; n];
    for (&i, end) in index_of.iter().zip(&ends) {
        match *end {
            ClosedBy::Step(j) if j > i => completed[i] = true,
            ClosedBy::TaskEnd if i + 1 == n => completed[i] = true,
            _ => {}
        }
    }
    let steps = journey
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let mine = intervals.iter().filter(|v| v.step == step.id);
            StepSummary {
                step: step.id.clone(),
                title: step.title.clone(),
                time_spent_ns: mine.clone().map(|v| v.end_ns - v.start_ns).sum(),
                visits: mine.count() as u32,
                completed: completed[i],
                expected_ns: (step.expected_seconds * 1e9).round() as i64,
                events: std::mem::take(&mut events[i]),
                arousal: None,
            }
        })
        .collect();
    StepAnalysis {
        format_version: ANALYSIS_FORMAT_VERSION,
        journey_id: journey.id.clone(),
        journey_version: journey.version.clone(),
        intervals,
        steps,
    }
}

/// The step interval that contains `t_ns` (start inclusive, end exclusive).
pub fn interval_at(steps: &StepAnalysis, t_ns: i64) -> Option<&StepInterval> {
    steps
        .intervals
        .iter()
        .find(|v| v.start_ns <= t_ns && t_ns < v.end_ns)
}

/// Id of the step the participant spent most of `start_ns..end_ns` in (the
/// earliest of equals); the step at `start_ns` when no interval overlaps it.
/// A stall that begins with the click that opened the next step belongs to
/// that next step.
pub fn step_over(steps: &StepAnalysis, start_ns: i64, end_ns: i64) -> Option<String> {
    let mut best: Option<(i64, &StepInterval)> = None;
    for v in &steps.intervals {
        let overlap = end_ns.min(v.end_ns) - start_ns.max(v.start_ns);
        if overlap > 0 && best.is_none_or(|(o, _)| overlap > o) {
            best = Some((overlap, v));
        }
    }
    best.map(|(_, v)| v.step.clone())
        .or_else(|| step_at(steps, start_ns))
}

/// Id of the step the participant was in at `t_ns`.
pub fn step_at(steps: &StepAnalysis, t_ns: i64) -> Option<String> {
    interval_at(steps, t_ns).map(|v| v.step.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::testkit::*;

    const CAT: &str = "https://gu.example/catalog";
    const LOGIN: &str = "https://gu.example/login?next=form";
    const FORM: &str = "https://gu.example/form/birth";

    /// (step, start s, end s, visit, entered_by)
    type Want = (&'static str, f64, f64, u32, u64);

    struct Case {
        name: &'static str,
        events: Vec<lab_model::Event>,
        intervals: Vec<Want>,
        /// Steps that must be completed; the others must not be.
        completed: &'static [&'static str],
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "straight through, the last step closed by task_end",
                events: vec![
                    scroll(0.5), // before the first step: no step
                    nav(1.0, CAT),
                    nav(5.0, LOGIN),
                    nav(10.0, FORM),
                    click(20.0, "#send", 100, 200),
                    nav(22.0, "https://gu.example/form/birth/sent")
                        .with("title", "Заявление отправлено"),
                    marker(25.0, "task_end", "Задание 1"),
                    scroll(27.0), // after task_end: no step
                ],
                intervals: vec![
                    ("find", 1.0, 5.0, 1, 2),
                    ("login", 5.0, 10.0, 1, 3),
                    ("form", 10.0, 20.0, 1, 4),
                    ("send", 20.0, 22.0, 1, 5),
                    ("done", 22.0, 25.0, 1, 6),
                ],
                completed: &["find", "login", "form", "send", "done"],
            },
            Case {
                name: "re-entering the current step is not a new visit; a title update does not re-enter",
                events: vec![
                    nav(1.0, FORM),
                    nav(4.0, "https://gu.example/form/birth?page=2"),
                    nav(6.0, FORM)
                        .with("reason", "title")
                        .with("title", "Шаг 2"),
                    click(8.0, "#other", 1, 1),
                ],
                intervals: vec![("form", 1.0, 9.0, 1, 1)],
                completed: &[],
            },
            Case {
                name: "browser back revisits an earlier step, then forward again",
                events: vec![
                    nav(1.0, CAT),
                    nav(5.0, LOGIN),
                    back(8.0, CAT),
                    nav(12.0, LOGIN),
                ],
                intervals: vec![
                    ("find", 1.0, 5.0, 1, 1),
                    ("login", 5.0, 8.0, 1, 2),
                    ("find", 8.0, 12.0, 2, 3),
                    ("login", 12.0, 13.0, 2, 4),
                ],
                completed: &["find"],
            },
            Case {
                name: "operator markers enter steps (type:label); the session end closes without completing",
                events: vec![
                    marker(0.5, "task_start", "Задание 1"),
                    marker(2.0, "step", "Вход"),
                    marker(3.0, "note", "Вход"), // the rule wants step:Вход, not any Вход
                    nav(4.0, FORM),
                ],
                intervals: vec![("login", 2.0, 4.0, 1, 2), ("form", 4.0, 5.0, 1, 4)],
                completed: &["login"],
            },
            Case {
                name: "a click rule needs its page: #send elsewhere does not enter; click text does",
                events: vec![
                    nav(1.0, LOGIN),
                    click(2.0, "#send", 1, 1),
                    click(3.0, "button", 1, 1).with("text", "Отправить заявление"),
                ],
                intervals: vec![("login", 1.0, 3.0, 1, 1), ("send", 3.0, 4.0, 1, 3)],
                completed: &["login"],
            },
            Case {
                name: "a URL-only rule does not match clicks on that page",
                events: vec![
                    nav(1.0, FORM),
                    click(2.0, "#send", 1, 1),
                    click(3.0, "#other", 1, 1),
                ],
                intervals: vec![("form", 1.0, 2.0, 1, 1), ("send", 2.0, 4.0, 1, 2)],
                completed: &["form"],
            },
            Case {
                name: "no events match: no intervals",
                events: vec![nav(1.0, "https://elsewhere/"), click(2.0, "#x", 1, 1)],
                intervals: vec![],
                completed: &[],
            },
        ]
    }

    #[test]
    fn segment_table() {
        let j = journey();
        for case in cases() {
            let a = segment(&j, &tl(case.events));
            let got: Vec<(String, i64, i64, u32, u64)> = a
                .intervals
                .iter()
                .map(|v| (v.step.clone(), v.start_ns, v.end_ns, v.visit, v.entered_by))
                .collect();
            let want: Vec<(String, i64, i64, u32, u64)> = case
                .intervals
                .iter()
                .map(|&(s, a, b, visit, by)| (s.to_string(), secs(a), secs(b), visit, by))
                .collect();
            assert_eq!(got, want, "{}", case.name);
            for s in &a.steps {
                assert_eq!(
                    s.completed,
                    case.completed.contains(&s.step.as_str()),
                    "{}: completed of {}",
                    case.name,
                    s.step
                );
            }
        }
    }

    #[test]
    fn summaries_sum_visits_and_collect_events() {
        let t = tl(vec![
            scroll(0.5),
            nav(1.0, CAT),
            nav(5.0, LOGIN),
            back(8.0, CAT),
            scroll(9.0),
            nav(12.0, LOGIN),
            marker(20.0, "task_end", ""),
        ]);
        let a = segment(&journey(), &t);
        assert_eq!(a.format_version, ANALYSIS_FORMAT_VERSION);
        assert_eq!(
            (a.journey_id.as_str(), a.journey_version.as_str()),
            ("birth-benefit", "2026.1")
        );
        let find = &a.steps[0];
        assert_eq!(find.time_spent_ns, secs(4.0) + secs(4.0));
        assert_eq!(find.visits, 2);
        assert_eq!(find.events, vec![2, 4, 5]);
        assert_eq!(find.expected_ns, secs(60.0));
        let login = &a.steps[1];
        assert_eq!(
            (login.visits, login.time_spent_ns),
            (2, secs(3.0) + secs(8.0))
        );
        assert_eq!(login.events, vec![3, 6, 7]);
        assert!(!login.completed, "task_end completes only the last step");
        assert_eq!(a.steps[4].visits, 0);
        assert_eq!(step_at(&a, secs(9.0)).as_deref(), Some("find"));
        assert_eq!(step_at(&a, secs(5.0)).as_deref(), Some("login"));
        assert_eq!(step_at(&a, secs(0.5)), None);
        assert_eq!(step_at(&a, secs(21.0)), None);
    }

    #[test]
    fn ambiguous_matches_prefer_next_then_current_then_earliest() {
        let j = Journey::from_toml(
            r#"
format_version = 1
id = "j"
title = "t"
version = "1"
[[steps]]
id = "a"
title = "A"
significance = 1
expected_seconds = 1
enter = [{ marker = "next" }, { url = "*/shared*" }]
[[steps]]
id = "b"
title = "B"
significance = 1
expected_seconds = 1
enter = [{ marker = "next" }, { url = "*/shared*" }]
[[steps]]
id = "c"
title = "C"
significance = 1
expected_seconds = 1
enter = [{ marker = "next" }]
"#,
        )
        .unwrap();
        let t = tl(vec![
            marker(1.0, "next", ""),      // a: nothing current, the first
            marker(2.0, "next", ""),      // b: after a
            nav(3.0, "https://x/shared"), // a or b: b is current, stay
            marker(4.0, "next", ""),      // c: after b
            marker(5.0, "next", ""),      // a, b or c: c is current, stay
            nav(6.0, "https://x/shared"), // a or b: neither next nor current, the earliest
        ]);
        let a = segment(&j, &t);
        let got: Vec<(&str, u64)> = a
            .intervals
            .iter()
            .map(|v| (v.step.as_str(), v.entered_by))
            .collect();
        assert_eq!(got, vec![("a", 1), ("b", 2), ("c", 4), ("a", 6)]);
    }
}
