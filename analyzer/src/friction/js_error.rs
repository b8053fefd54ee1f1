//! Script errors on the page (`js_error`: uncaught exceptions and unhandled
//! promise rejections). Many are invisible to the participant, so the
//! confidence is low unless the error repeats or followed their own click.

use lab_model::Event;
use lab_model::analysis::{Candidate, Evidence, StepAnalysis};

use super::candidate::{Confidence, candidate, number};
use super::notes::{clip, duration_ru};
use crate::timeline::{Timeline, data_str};

pub const NAME: &str = "js_error";

/// Identical messages no further apart than this are one candidate: a
/// failing handler often throws on every frame or retry.
pub const GROUP_GAP_NS: i64 = 5_000_000_000;

/// An error this soon after a click was most likely caused by it, so the
/// participant's action failed.
pub const AFTER_CLICK_NS: i64 = 1_000_000_000;

/// Base confidence: third-party scripts throw constantly without any effect
/// the participant could see.
pub const BASE_CONFIDENCE: f32 = 0.3;
/// Added per repetition, at most `MAX_REPEATS` times.
pub const PER_REPEAT: f32 = 0.1;
pub const MAX_REPEATS: usize = 3;
/// Added when the error followed a click.
pub const CLICK_BONUS: f32 = 0.2;

pub fn detect(timeline: &Timeline, steps: &StepAnalysis) -> Vec<Candidate> {
    let mut groups: Vec<Vec<&Event>> = Vec::new();
    for e in timeline.browser("js_error") {
        let message = data_str(e, "message");
        let open = groups.iter_mut().rev().find(|g| {
            let last = g[g.len() - 1];
            data_str(last, "message") == message && e.t_ns - last.t_ns <= GROUP_GAP_NS
        });
        match open {
            Some(g) => g.push(e),
            None => groups.push(vec![e]),
        }
    }
    let mut out: Vec<Candidate> = groups
        .iter()
        .map(|g| {
            let (first, last) = (g[0], g[g.len() - 1]);
            let click = timeline
                .browser("click")
                .filter(|c| c.t_ns <= first.t_ns && first.t_ns - c.t_ns <= AFTER_CLICK_NS)
                .last();
            let mut note = format!(
                "ошибка JavaScript: «{}»",
                clip(data_str(first, "message").unwrap_or("?"), 120)
            );
            if g.len() > 1 {
                note += &format!(" (×{} за {})", g.len(), duration_ru(last.t_ns - first.t_ns));
            }
            if let Some(c) = click {
                note += &format!(
                    ", сразу после клика по \"{}\"",
                    data_str(c, "selector").unwrap_or("?")
                );
            }
            let mut confidence = Confidence::rule("ошибка JavaScript на странице", BASE_CONFIDENCE);
            if g.len() > 1 {
                confidence.add(
                    PER_REPEAT * (g.len() - 1).min(MAX_REPEATS) as f32,
                    format!("повторилась {} раз", g.len()),
                );
            }
            let mut events: Vec<u64> = g.iter().map(|e| e.seq).collect();
            if let Some(c) = click {
                confidence.add(
                    CLICK_BONUS,
                    "сразу после клика участника: его действие не сработало",
                );
                events.insert(0, c.seq);
            }
            candidate(
                NAME,
                steps,
                first.t_ns,
                last.t_ns,
                confidence,
                Evidence {
                    events,
                    note,
                    ..Evidence::default()
                },
            )
        })
        .collect();
    number(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::testkit::*;

    /// (start s, end s, evidence seqs, confidence, note)
    type Want = (f64, f64, Vec<u64>, f32, &'static str);

    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<Event>, Vec<Want>)> = vec![
            (
                "one error, by itself",
                vec![js_error(3.0, "x is undefined")],
                vec![(
                    3.0,
                    3.0,
                    vec![1],
                    0.3,
                    "ошибка JavaScript: «x is undefined»",
                )],
            ),
            (
                "the same message three times within 5 s of each other, interleaved with another",
                vec![
                    js_error(1.0, "boom"),
                    js_error(1.5, "other"),
                    js_error(4.0, "boom"),
                    js_error(8.5, "boom"),
                    js_error(20.0, "boom"), // 11.5 s later: a new candidate
                ],
                vec![
                    (
                        1.0,
                        8.5,
                        vec![1, 3, 4],
                        0.5,
                        "ошибка JavaScript: «boom» (×3 за 7,5 с)",
                    ),
                    (1.5, 1.5, vec![2], 0.3, "ошибка JavaScript: «other»"),
                    (20.0, 20.0, vec![5], 0.3, "ошибка JavaScript: «boom»"),
                ],
            ),
            (
                "right after a click",
                vec![
                    click(2.0, "#send", 1, 1),
                    js_error(2.3, "Cannot read properties of null"),
                ],
                vec![(
                    2.3,
                    2.3,
                    vec![1, 2],
                    0.5,
                    "ошибка JavaScript: «Cannot read properties of null», сразу после клика по \"#send\"",
                )],
            ),
            (
                "no errors, no candidates",
                vec![click(2.0, "#send", 1, 1)],
                vec![],
            ),
        ];
        for (name, events, want) in cases {
            let t = tl(events);
            assert_eq!(run_detector(&t, detect), expected(want), "{name}");
        }
    }
}
