//! The participant's own answers, recorded as events of source
//! `participant` on the session clock (`docs/bundle-format.md`, *Participant
//! self-report*): per journey step of a task, the emotion and how
//! significant the step was (the two rows labs' journey maps draw from the
//! participant, «сбор эмоций»); the Single Ease Question after each task;
//! the System Usability Scale at the end.
//!
//! | kind | data |
//! |---|---|
//! | `self_report.step` | `{task?, step, emotion: positive\|neutral\|negative, significance: 1–5}` |
//! | `self_report.seq` | `{task, score: 1–7}` (7: very easy) |
//! | `self_report.sus` | `{answers: [10 × 1–5]}` in item order |

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const STEP_KIND: &str = "self_report.step";
pub const SEQ_KIND: &str = "self_report.seq";
pub const SUS_KIND: &str = "self_report.sus";

/// The System Usability Scale's ten statements (Brooke, 1996), in order;
/// odd items are worded positively, even ones negatively. The Russian
/// wording is this project's translation kept close to the English; a lab
/// that uses a published Russian adaptation replaces it here.
pub const SUS_ITEMS_RU: [&str; 10] = [
    "Думаю, я хотел(а) бы пользоваться этим сервисом часто.",
    "Сервис показался мне излишне сложным.",
    "Сервисом было легко пользоваться.",
    "Думаю, чтобы пользоваться этим сервисом, мне понадобилась бы помощь специалиста.",
    "Функции сервиса хорошо связаны между собой.",
    "В сервисе слишком много несогласованности.",
    "Думаю, большинство людей очень быстро научились бы пользоваться этим сервисом.",
    "Сервисом было очень неудобно пользоваться.",
    "Я чувствовал(а) себя уверенно, пользуясь сервисом.",
    "Мне пришлось многому научиться, прежде чем я смог(ла) пользоваться сервисом.",
];

pub const SUS_ITEMS_EN: [&str; 10] = [
    "I think that I would like to use this system frequently.",
    "I found the system unnecessarily complex.",
    "I thought the system was easy to use.",
    "I think that I would need the support of a technical person to be able to use this system.",
    "I found the various functions in this system were well integrated.",
    "I thought there was too much inconsistency in this system.",
    "I would imagine that most people would learn to use this system very quickly.",
    "I found the system very cumbersome to use.",
    "I felt very confident using the system.",
    "I needed to learn a lot of things before I could get going with this system.",
];

/// The Single Ease Question, asked after each task.
pub const SEQ_QUESTION_RU: &str = "Насколько легко или трудно было выполнить это задание?";
pub const SEQ_QUESTION_EN: &str = "Overall, how difficult or easy was the task to complete?";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emotion {
    Positive,
    Neutral,
    Negative,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRating {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub step: String,
    pub emotion: Emotion,
    pub significance: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seq {
    pub task: String,
    pub score: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sus {
    pub answers: Vec<u8>,
}

impl Sus {
    /// The 0–100 score: odd items give `answer − 1`, even ones `5 − answer`,
    /// the sum times 2.5.
    pub fn score(&self) -> f64 {
        let sum: u32 = self
            .answers
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                if i % 2 == 0 {
                    u32::from(a) - 1
                } else {
                    5 - u32::from(a)
                }
            })
            .sum();
        f64::from(sum) * 2.5
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelfReport {
    Step(StepRating),
    Seq(Seq),
    Sus(Sus),
}

/// Ids of tasks and steps: what journey files allow for step ids.
fn plain_id(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
}

impl SelfReport {
    /// The answer an event of source `participant` carries, checked; the
    /// error says what is wrong.
    pub fn parse(kind: &str, data: &Value) -> Result<Self, String> {
        let shape = |e: serde_json::Error| format!("{kind}: {e}");
        let r = match kind {
            STEP_KIND => Self::Step(serde_json::from_value(data.clone()).map_err(shape)?),
            SEQ_KIND => Self::Seq(serde_json::from_value(data.clone()).map_err(shape)?),
            SUS_KIND => Self::Sus(serde_json::from_value(data.clone()).map_err(shape)?),
            _ => {
                return Err(format!(
                    "a participant sends {STEP_KIND}, {SEQ_KIND} or {SUS_KIND}, not {kind:?}"
                ));
            }
        };
        match &r {
            Self::Step(s) => {
                if !plain_id(&s.step) || s.task.as_deref().is_some_and(|t| !plain_id(t)) {
                    return Err(format!("{kind}: step and task are plain ids"));
                }
                if !(1..=5).contains(&s.significance) {
                    return Err(format!(
                        "{kind}: significance is 1–5, not {}",
                        s.significance
                    ));
                }
            }
            Self::Seq(s) => {
                if !plain_id(&s.task) {
                    return Err(format!("{kind}: task is a plain id"));
                }
                if !(1..=7).contains(&s.score) {
                    return Err(format!("{kind}: score is 1–7, not {}", s.score));
                }
            }
            Self::Sus(s) => {
                if s.answers.len() != 10 || s.answers.iter().any(|a| !(1..=5).contains(a)) {
                    return Err(format!("{kind}: answers are ten values of 1–5"));
                }
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_checked() {
        let ok = SelfReport::parse(
            STEP_KIND,
            &json!({"task": "t1", "step": "form", "emotion": "negative", "significance": 5}),
        )
        .unwrap();
        assert!(matches!(
            ok,
            SelfReport::Step(StepRating {
                significance: 5,
                ..
            })
        ));
        for (kind, data) in [
            (
                STEP_KIND,
                json!({"step": "form", "emotion": "angry", "significance": 3}),
            ),
            (
                STEP_KIND,
                json!({"step": "form", "emotion": "neutral", "significance": 6}),
            ),
            (
                STEP_KIND,
                json!({"step": "../x", "emotion": "neutral", "significance": 3}),
            ),
            (
                STEP_KIND,
                json!({"step": "f", "emotion": "neutral", "significance": 3, "x": 1}),
            ),
            (SEQ_KIND, json!({"task": "t1", "score": 0})),
            (SEQ_KIND, json!({"task": "t1", "score": 8})),
            (SUS_KIND, json!({"answers": [3, 3, 3]})),
            (SUS_KIND, json!({"answers": [3, 3, 3, 3, 3, 3, 3, 3, 3, 6]})),
            ("self_report.mood", json!({})),
        ] {
            assert!(SelfReport::parse(kind, &data).is_err(), "{kind} {data}");
        }
    }

    #[test]
    fn sus_scores_by_the_standard_rule() {
        let best = Sus {
            answers: vec![5, 1, 5, 1, 5, 1, 5, 1, 5, 1],
        };
        assert_eq!(best.score(), 100.0);
        let worst = Sus {
            answers: vec![1, 5, 1, 5, 1, 5, 1, 5, 1, 5],
        };
        assert_eq!(worst.score(), 0.0);
        assert_eq!(
            Sus {
                answers: vec![3; 10]
            }
            .score(),
            50.0
        );
        assert_eq!(
            Sus {
                answers: vec![4, 2, 4, 1, 4, 2, 5, 2, 4, 3]
            }
            .score(),
            77.5
        );
    }
}
