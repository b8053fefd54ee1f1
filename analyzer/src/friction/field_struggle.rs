//! Field struggle: a form field the participant fought with, by its selector:
//! repeated validation errors, repeated attempts at a field that rejected
//! them, or far more keystrokes than the value needs (deleting and retyping).
//! The probe reports one `input` event per typing burst with its `edits`
//! (input events) and the resulting `value_length`, never the value.

use std::collections::BTreeMap;

use lab_model::Event;
use lab_model::analysis::{Candidate, Evidence, StepAnalysis};

use super::candidate::{Confidence, candidate, number};
use super::notes::{clip, count_ru};
use crate::timeline::{Timeline, data_f64, data_str, is_browser};

pub const NAME: &str = "field_struggle";

/// Validation errors on one field that count by themselves: one error is
/// the form doing its job; the second means the first did not help.
pub const MIN_ERRORS: usize = 2;

/// Separate attempts (typing bursts, or changes without typing such as a
/// select) that count when the field also showed an error: three goes at a
/// field that said "wrong" is trial and error.
pub const MIN_ATTEMPTS_WITH_ERROR: usize = 3;

/// Retyping: keystrokes beyond the final length must reach the final length
/// itself (at least double) and this many, so fixing a typo or two does not
/// count but clearing and retyping a field does.
pub const MIN_EXTRA_EDITS: u64 = 8;

/// Confidence for `MIN_ERRORS` errors, plus `PER_EXTRA_ERROR` for each more.
pub const CONFIDENCE_ERRORS: f32 = 0.5;
pub const PER_EXTRA_ERROR: f32 = 0.1;
/// Errors and repeated attempts.
pub const CONFIDENCE_ATTEMPTS: f32 = 0.6;
/// Retyping alone: may also be a participant changing their mind.
pub const CONFIDENCE_RETYPING: f32 = 0.45;
/// Added for each further rule the field triggers.
pub const PER_EXTRA_RULE: f32 = 0.1;
pub const MAX_CONFIDENCE: f32 = 0.95;

const KINDS: &[&str] = &["validation_error", "input", "change"];

pub fn detect(timeline: &Timeline, steps: &StepAnalysis) -> Vec<Candidate> {
    let mut fields: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &timeline.events {
        if KINDS.iter().any(|k| is_browser(e, k))
            && let Some(selector) = data_str(e, "selector").filter(|s| !s.is_empty())
        {
            fields.entry(selector).or_default().push(e);
        }
    }
    let mut out = Vec::new();
    for (selector, events) in fields {
        if let Some(c) = judge(timeline, steps, selector, &events) {
            out.push(c);
        }
    }
    number(&mut out);
    out
}

fn judge(
    timeline: &Timeline,
    steps: &StepAnalysis,
    selector: &str,
    events: &[&Event],
) -> Option<Candidate> {
    let errors: Vec<&Event> = events
        .iter()
        .copied()
        .filter(|e| e.kind == "validation_error")
        .collect();
    let mut attempts = 0;
    let mut typed_since_change = false;
    let mut edits = 0u64;
    let mut final_len = 0u64;
    for e in events {
        match e.kind.as_str() {
            "input" => {
                attempts += 1;
                typed_since_change = true;
                edits += data_f64(e, "edits").unwrap_or(0.0) as u64;
                final_len = data_f64(e, "value_length").unwrap_or(0.0) as u64;
            }
            "change" => {
                if !typed_since_change {
                    attempts += 1;
                }
                typed_since_change = false;
            }
            _ => {}
        }
    }
    let by_errors = errors.len() >= MIN_ERRORS;
    let by_attempts = !errors.is_empty() && attempts >= MIN_ATTEMPTS_WITH_ERROR;
    let retyping = edits.saturating_sub(final_len) >= final_len.max(MIN_EXTRA_EDITS);
    // Each rule that holds with its confidence; the strongest is the base,
    // each further one adds.
    let mut held: Vec<(f32, String)> = Vec::new();
    if by_errors {
        held.push((
            CONFIDENCE_ERRORS + PER_EXTRA_ERROR * (errors.len() - MIN_ERRORS) as f32,
            format!(
                "{} проверки на одном поле",
                count_ru(errors.len(), "ошибка", "ошибки", "ошибок")
            ),
        ));
    }
    if by_attempts {
        held.push((
            CONFIDENCE_ATTEMPTS,
            format!("поле отклоняло ввод, а попыток было {attempts}"),
        ));
    }
    if retyping {
        held.push((
            CONFIDENCE_RETYPING,
            "поле стирали и набирали заново (правок намного больше длины)".to_string(),
        ));
    }
    held.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut rules = held.into_iter();
    let (base, why) = rules.next()?;
    let mut confidence = Confidence::rule(why, base);
    for (_, why) in rules {
        confidence.add(PER_EXTRA_RULE, format!("ещё одно правило: {why}"));
    }
    confidence.cap(MAX_CONFIDENCE);

    let mut parts = Vec::new();
    if !errors.is_empty() {
        let mut part = count_ru(errors.len(), "ошибка", "ошибки", "ошибок") + " проверки";
        if let Some(message) = errors
            .iter()
            .rev()
            .find_map(|e| data_str(e, "message").filter(|m| !m.is_empty()))
        {
            part += &format!(" («{}»)", clip(message, 60));
        }
        parts.push(part);
    }
    if attempts >= 2 {
        parts.push(count_ru(attempts, "попытка", "попытки", "попыток") + " ввода");
    }
    if retyping {
        parts.push(format!(
            "{} при длине {final_len}",
            count_ru(edits as usize, "правка", "правки", "правок")
        ));
    }
    let note = format!(
        "поле {}: {}",
        field_name(timeline, selector, events),
        parts.join(", ")
    );
    let (first, last) = (events[0], events[events.len() - 1]);
    Some(candidate(
        NAME,
        steps,
        first.t_ns,
        last.t_ns,
        confidence,
        Evidence {
            events: events.iter().map(|e| e.seq).collect(),
            note,
            ..Evidence::default()
        },
    ))
}

/// The field's visible label (from its focus events), else its name, else its selector.
fn field_name(timeline: &Timeline, selector: &str, events: &[&Event]) -> String {
    let label = timeline
        .browser("focus")
        .filter(|e| data_str(e, "selector") == Some(selector))
        .find_map(|e| data_str(e, "label").filter(|l| !l.is_empty()));
    if let Some(label) = label {
        return format!("«{}»", clip(label, 60));
    }
    match events
        .iter()
        .find_map(|e| data_str(e, "field").filter(|f| !f.is_empty()))
    {
        Some(name) => format!("«{name}»"),
        None => format!("\"{selector}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::testkit::*;
    use serde_json::json;

    const SNILS: &str = "input[name=\"snils\"]";

    /// (start s, end s, evidence seqs, confidence, note)
    type Want = (f64, f64, Vec<u64>, f32, &'static str);

    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<Event>, Vec<Want>)> = vec![
            (
                "two validation errors, with the label from focus",
                vec![
                    browser(1.0, "focus", json!({"selector": SNILS, "label": "СНИЛС"})),
                    input(2.0, SNILS, 11, 11),
                    invalid(5.0, SNILS, "Неверный СНИЛС"),
                    invalid(9.0, SNILS, "Неверный СНИЛС"),
                ],
                vec![(
                    2.0,
                    9.0,
                    vec![2, 3, 4],
                    0.5,
                    "поле «СНИЛС»: 2 ошибки проверки («Неверный СНИЛС»)",
                )],
            ),
            (
                "one error and three typing bursts",
                vec![
                    input(1.0, "#birth", 10, 10),
                    change(3.0, "#birth"),
                    invalid(3.1, "#birth", "Дата в будущем"),
                    input(6.0, "#birth", 2, 10),
                    change(7.0, "#birth"),
                    input(9.0, "#birth", 2, 10),
                ],
                vec![(
                    1.0,
                    9.0,
                    vec![1, 2, 3, 4, 5, 6],
                    0.6,
                    "поле \"#birth\": 1 ошибка проверки («Дата в будущем»), 3 попытки ввода",
                )],
            ),
            (
                "deleting and retyping: 31 keystrokes for 11 characters",
                vec![
                    input(1.0, "#phone", 15, 4).with("field", "phone"),
                    input(4.0, "#phone", 16, 11),
                ],
                vec![(
                    1.0,
                    4.0,
                    vec![1, 2],
                    0.45,
                    "поле «phone»: 2 попытки ввода, 31 правка при длине 11",
                )],
            ),
            (
                "all three rules",
                vec![
                    input(1.0, "#inn", 30, 12),
                    invalid(2.0, "#inn", ""),
                    input(3.0, "#inn", 12, 12),
                    invalid(4.0, "#inn", "Проверьте ИНН"),
                    input(5.0, "#inn", 1, 12),
                ],
                vec![(
                    1.0,
                    5.0,
                    vec![1, 2, 3, 4, 5],
                    0.8,
                    "поле \"#inn\": 2 ошибки проверки («Проверьте ИНН»), 3 попытки ввода, 43 правки при длине 12",
                )],
            ),
            (
                "normal filling: a typo fixed, one error then fixed once",
                vec![
                    input(1.0, "#name", 9, 7), // two backspaces
                    change(2.0, "#name"),
                    input(3.0, "#email", 14, 14),
                    invalid(4.0, "#email", "Введите e-mail"),
                    input(5.0, "#email", 3, 17),
                    change(6.0, "#email"),
                    change(7.0, "select#region"),
                ],
                vec![],
            ),
        ];
        for (name, events, want) in cases {
            let t = tl(events);
            assert_eq!(run_detector(&t, detect), expected(want), "{name}");
        }
    }
}
