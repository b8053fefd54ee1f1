//! Hand-written timelines for the table tests. Times are seconds; seqs are
//! given in list order from 1, so a test names an event by its position.

use lab_model::analysis::{Candidate, Speaker, StepAnalysis, Word};
use lab_model::{Event, EventSource, Journey};
use serde_json::{Value, json};

use super::Timeline;

pub fn secs(t_s: f64) -> i64 {
    (t_s * 1e9).round() as i64
}

fn event(t_s: f64, source: EventSource, kind: &str, data: Value) -> Event {
    Event {
        seq: 0,
        t_ns: secs(t_s),
        source,
        kind: kind.into(),
        data,
        client: Some("tab-1".into()),
        client_time_ms: None,
        uncertainty_ns: None,
    }
}

pub fn browser(t_s: f64, kind: &str, data: Value) -> Event {
    event(t_s, EventSource::Browser, kind, data)
}

/// A click on a button; `click_id` becomes the event's seq unless set.
pub fn click(t_s: f64, selector: &str, x: i64, y: i64) -> Event {
    browser(
        t_s,
        "click",
        json!({"selector": selector, "text": "", "tag": "button", "x": x, "y": y,
               "role": null, "href": null, "disabled": false}),
    )
}

/// What the probe says a second after the click with this `click_id`; stamped at the click's time.
pub fn effect(t_s: f64, click_id: u64, mutations: u64, url_changed: bool) -> Event {
    let first = if mutations > 0 {
        json!(40.0)
    } else {
        Value::Null
    };
    browser(
        t_s,
        "click_effect",
        json!({"click_id": click_id, "selector": "", "mutations": mutations,
               "first_change_ms": first, "url_changed": url_changed}),
    )
}

pub fn nav(t_s: f64, url: &str) -> Event {
    browser(
        t_s,
        "navigation",
        json!({"url": url, "title": "", "reason": "push"}),
    )
}

/// The browser's back button.
pub fn back(t_s: f64, url: &str) -> Event {
    nav(t_s, url).with("reason", "pop")
}

pub fn marker(t_s: f64, kind: &str, label: &str) -> Event {
    let mut data = json!({ "type": kind });
    if !label.is_empty() {
        data["label"] = json!(label);
    }
    event(t_s, EventSource::Operator, "marker", data)
}

/// A typing burst: `edits` input events, leaving `len` characters.
pub fn input(t_s: f64, selector: &str, edits: u64, len: u64) -> Event {
    browser(
        t_s,
        "input",
        json!({"selector": selector, "field": null, "type": "text", "masked": true,
               "value_length": len, "value_kind": "mixed", "edits": edits, "duration_ms": 500}),
    )
}

pub fn change(t_s: f64, selector: &str) -> Event {
    browser(
        t_s,
        "change",
        json!({"selector": selector, "field": null, "type": "text", "masked": true,
               "value_length": 5, "value_kind": "mixed"}),
    )
}

pub fn invalid(t_s: f64, selector: &str, message: &str) -> Event {
    browser(
        t_s,
        "validation_error",
        json!({"selector": selector, "field": null, "message": message, "kind": "aria"}),
    )
}

pub fn js_error(t_s: f64, message: &str) -> Event {
    browser(
        t_s,
        "js_error",
        json!({"message": message, "source": null, "line": null, "col": null}),
    )
}

pub fn scroll(t_s: f64) -> Event {
    browser(t_s, "scroll", json!({"x": 0, "y": 300, "max_y": 2000}))
}

/// Participant words from `t_s`, 0.3 s each with 0.1 s between.
pub fn words(t_s: f64, text: &str) -> Vec<Word> {
    words_by(t_s, Speaker::Participant, text)
}

pub fn words_by(t_s: f64, speaker: Speaker, text: &str) -> Vec<Word> {
    text.split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            let start = t_s + 0.4 * i as f64;
            Word {
                start_ns: secs(start),
                end_ns: secs(start + 0.3),
                text: w.into(),
                confidence: 0.9,
                speaker,
            }
        })
        .collect()
}

pub trait With {
    /// Sets one field of the event's data.
    fn with(self, key: &str, value: impl Into<Value>) -> Self;
}

impl With for Event {
    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data[key] = value.into();
        self
    }
}

/// Events get seqs in list order; the session ends a second after the last one.
pub fn tl(events: Vec<Event>) -> Timeline {
    tl_words(events, Vec::new())
}

pub fn tl_words(events: Vec<Event>, words: Vec<Word>) -> Timeline {
    let events: Vec<Event> = events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.seq = i as u64 + 1;
            if e.kind == "click" && e.data.get("click_id").is_none() {
                e.data["click_id"] = json!(e.seq);
            }
            e
        })
        .collect();
    let last = events
        .iter()
        .map(|e| e.t_ns)
        .chain(words.iter().map(|w| w.end_ns))
        .max()
        .unwrap_or(0);
    Timeline::new(events, words, last + secs(1.0))
}

/// A five-step journey used across the tests.
pub const JOURNEY: &str = r##"
format_version = 1
id = "birth-benefit"
title = "Рождение ребёнка: единое пособие"
version = "2026.1"

[[steps]]
id = "find"
title = "Найти услугу"
significance = 3
expected_seconds = 60
enter = [{ url = "*/catalog*" }]

[[steps]]
id = "login"
title = "Войти"
significance = 5
expected_seconds = 45
enter = [{ url = "*/login*" }, { marker = "step:Вход" }]

[[steps]]
id = "form"
title = "Заполнить заявление"
significance = 5
expected_seconds = 120
enter = [{ url = "*/form*" }]

[[steps]]
id = "send"
title = "Отправить"
significance = 4
expected_seconds = 10
enter = [{ url = "*/form*", selector = "#send" }, { click_text = "Отправить заявление" }]

[[steps]]
id = "done"
title = "Получить подтверждение"
significance = 2
expected_seconds = 10
enter = [{ title = "*отправлено*" }]
"##;

pub fn journey() -> Journey {
    Journey::from_toml(JOURNEY).unwrap()
}

/// A candidate reduced to what the detector tables compare:
/// (start s, end s, evidence event seqs, confidence, note).
pub type Summary = (f64, f64, Vec<u64>, f32, String);

/// Runs a detector over `t`, segmented into the steps of `journey()`.
pub fn run_detector(
    t: &Timeline,
    detect: fn(&Timeline, &StepAnalysis) -> Vec<Candidate>,
) -> Vec<Summary> {
    detect(t, &crate::steps::segment(&journey(), t))
        .into_iter()
        .map(|c| {
            assert_basis_adds_up(&c);
            (
                c.start_ns as f64 / 1e9,
                c.end_ns as f64 / 1e9,
                c.evidence.events,
                c.confidence,
                c.evidence.note,
            )
        })
        .collect()
}

/// A table's expected rows as `Summary`s.
pub fn expected(want: Vec<(f64, f64, Vec<u64>, f32, &str)>) -> Vec<Summary> {
    want.into_iter()
        .map(|(a, b, seqs, conf, note)| (a, b, seqs, conf, note.to_string()))
        .collect()
}

/// Every candidate explains its confidence: a rule first, then adjustments
/// that add up to the confidence (each term and the total rounded to
/// hundredths).
pub fn assert_basis_adds_up(c: &Candidate) {
    let basis = &c.evidence.basis;
    assert!(!basis.is_empty(), "{}: no basis", c.id);
    assert!(basis.iter().all(|t| !t.why.trim().is_empty()), "{basis:?}");
    let sum: f32 = basis.iter().map(|t| t.delta).sum();
    assert!(
        (sum - c.confidence).abs() <= 0.006 * basis.len() as f32,
        "{} at {}: basis {basis:?} adds up to {sum}",
        c.detector,
        c.confidence
    );
}
