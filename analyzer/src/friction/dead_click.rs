//! Dead clicks: a click on something that looks clickable after which the
//! page did not change, or changed only after a noticeable delay, and clicks
//! on disabled controls. The probe reports each click's effect a second
//! later (`click_effect`: DOM mutations, time to the first change, whether
//! the URL changed), stamped with the click's own time.

use std::collections::HashMap;

use lab_model::Event;
use lab_model::analysis::{Candidate, Evidence, StepAnalysis};

use super::candidate::{candidate, number};
use super::notes::{count_ru, duration_ru};
use crate::timeline::{Timeline, data_f64, data_flag, data_str};

pub const NAME: &str = "dead_click";

/// How long the probe watches for an effect (its `EFFECT_WINDOW_MS`); a dead
/// click's range covers this wait.
pub const EFFECT_WINDOW_NS: i64 = 1_000_000_000;

/// A first change later than this is a slow response, not a live one: about
/// a second is where a participant stops feeling the page reacted to them
/// and starts wondering whether the click registered.
pub const SLOW_MS: f64 = 1000.0;

/// Dead clicks on the same element no further apart than this are one
/// candidate (the rage-click detector reports the burst as such too).
pub const MERGE_GAP_NS: i64 = 2_000_000_000;

/// Nothing at all changed: the clearest case.
pub const CONFIDENCE_DEAD: f32 = 0.7;
/// A disabled control: the participant expected it to work, but a disabled
/// "Далее" is also the page's way to say a field is missing, often understood.
pub const CONFIDENCE_DISABLED: f32 = 0.6;
/// The page reacted, only late: friction, but milder.
pub const CONFIDENCE_SLOW: f32 = 0.4;
/// Added for each repeated click on the same element.
pub const PER_REPEAT: f32 = 0.1;
pub const MAX_CONFIDENCE: f32 = 0.9;

/// Clicking a field, its label or a list is how one starts typing or
/// choosing, and changes nothing in the DOM by design.
const FIELD_TAGS: &[&str] = &["input", "textarea", "select", "option", "label"];
/// Elements that are controls by themselves.
const CONTROL_TAGS: &[&str] = &["a", "button", "summary"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dead,
    Disabled,
    Slow,
}

pub fn detect(timeline: &Timeline, steps: &StepAnalysis) -> Vec<Candidate> {
    // click_effect by (client, click_id): click ids restart on every page load.
    let mut effects: HashMap<(Option<&str>, i64), Vec<&Event>> = HashMap::new();
    for e in timeline.browser("click_effect") {
        if let Some(id) = data_f64(e, "click_id") {
            effects
                .entry((e.client.as_deref(), id as i64))
                .or_default()
                .push(e);
        }
    }
    let mut found: Vec<(Kind, &Event, Option<&Event>)> = Vec::new();
    for click in timeline.browser("click") {
        let effect = data_f64(click, "click_id").and_then(|id| {
            effects
                .get(&(click.client.as_deref(), id as i64))?
                .iter()
                .min_by_key(|e| (e.t_ns - click.t_ns).abs())
                .copied()
        });
        if let Some(kind) = classify(click, effect) {
            found.push((kind, click, effect));
        }
    }

    let mut out = Vec::new();
    let mut i = 0;
    while i < found.len() {
        let (kind, first, _) = found[i];
        let mut j = i + 1;
        while j < found.len()
            && found[j].0 == kind
            && data_str(found[j].1, "selector") == data_str(first, "selector")
            && found[j].1.t_ns - found[j - 1].1.t_ns <= MERGE_GAP_NS
        {
            j += 1;
        }
        out.push(report(kind, &found[i..j], steps));
        i = j;
    }
    number(&mut out);
    out
}

fn classify(click: &Event, effect: Option<&Event>) -> Option<Kind> {
    if let Some(e) = effect
        && (data_flag(e, "url_changed") || data_flag(e, "page_unloaded"))
    {
        return None;
    }
    if data_flag(click, "disabled") {
        return Some(Kind::Disabled);
    }
    if !looks_clickable(click) {
        return None;
    }
    let effect = effect?;
    if data_f64(effect, "mutations").unwrap_or(0.0) == 0.0 {
        Some(Kind::Dead)
    } else if data_f64(effect, "first_change_ms").is_some_and(|ms| ms > SLOW_MS) {
        Some(Kind::Slow)
    } else {
        None
    }
}

/// A control, a link, something with a role, or an element inside a button
/// or link (the selector path names it); not fields and not plain text, where
/// clicking to read, select or focus is ordinary.
fn looks_clickable(click: &Event) -> bool {
    let tag = data_str(click, "tag").unwrap_or("").to_ascii_lowercase();
    if FIELD_TAGS.contains(&tag.as_str()) {
        return false;
    }
    let given = |key| data_str(click, key).is_some_and(|v| !v.trim().is_empty());
    if given("role") || given("href") || CONTROL_TAGS.contains(&tag.as_str()) {
        return true;
    }
    data_str(click, "selector").is_some_and(|s| {
        s.split(['>', ' ', '+', '~'])
            .map(|part| part.split(['[', ':', '#', '.']).next().unwrap_or(""))
            .any(|t| CONTROL_TAGS.contains(&t.to_ascii_lowercase().as_str()))
    })
}

fn report(kind: Kind, group: &[(Kind, &Event, Option<&Event>)], steps: &StepAnalysis) -> Candidate {
    let first = group[0].1;
    let last = group[group.len() - 1].1;
    let n = group.len();
    let clicks = if n == 1 {
        "клик".to_string()
    } else {
        count_ru(n, "клик", "клика", "кликов")
    };
    let selector = data_str(first, "selector").unwrap_or("?");
    let note = match kind {
        Kind::Dead => {
            format!("{clicks} по \"{selector}\" без отклика: страница не изменилась за 1 с")
        }
        Kind::Disabled => format!("{clicks} по неактивному элементу \"{selector}\""),
        Kind::Slow => {
            let ms = group
                .iter()
                .filter_map(|(_, _, e)| data_f64((*e)?, "first_change_ms"))
                .fold(0.0, f64::max);
            format!(
                "{clicks} по \"{selector}\": страница ответила только через {}",
                duration_ru((ms * 1e6) as i64)
            )
        }
    };
    let base = match kind {
        Kind::Dead => CONFIDENCE_DEAD,
        Kind::Disabled => CONFIDENCE_DISABLED,
        Kind::Slow => CONFIDENCE_SLOW,
    };
    let mut events: Vec<u64> = group
        .iter()
        .flat_map(|(_, c, e)| [Some(c.seq), e.map(|e| e.seq)])
        .flatten()
        .collect();
    events.sort_unstable();
    candidate(
        NAME,
        steps,
        first.t_ns,
        last.t_ns + EFFECT_WINDOW_NS,
        (base + PER_REPEAT * (n - 1) as f32).min(MAX_CONFIDENCE),
        Evidence {
            events,
            words: Vec::new(),
            note,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::testkit::*;

    fn in_client(mut e: Event, client: &str) -> Event {
        e.client = Some(client.into());
        e
    }

    /// (start s, end s, evidence seqs, confidence, note)
    type Want = (f64, f64, Vec<u64>, f32, &'static str);

    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<Event>, Vec<Want>)> = vec![
            (
                "a button click that changed nothing",
                vec![click(5.0, "#send", 10, 10), effect(5.0, 1, 0, false)],
                vec![(
                    5.0,
                    6.0,
                    vec![1, 2],
                    0.7,
                    "клик по \"#send\" без отклика: страница не изменилась за 1 с",
                )],
            ),
            (
                "a click that caused a DOM change is live",
                vec![click(5.0, "#send", 10, 10), effect(5.0, 1, 12, false)],
                vec![],
            ),
            (
                "a click that navigated is live, even without mutations",
                vec![
                    click(5.0, "a.next", 10, 10).with("tag", "a"),
                    effect(5.0, 1, 0, true),
                ],
                vec![],
            ),
            (
                "a click that unloaded the page is live",
                vec![
                    click(5.0, "#send", 10, 10),
                    effect(5.0, 1, 0, false).with("page_unloaded", true),
                ],
                vec![],
            ),
            (
                "a slow response",
                vec![
                    click(5.0, "#send", 10, 10),
                    effect(5.0, 1, 3, false).with("first_change_ms", 1400.0),
                ],
                vec![(
                    5.0,
                    6.0,
                    vec![1, 2],
                    0.4,
                    "клик по \"#send\": страница ответила только через 1,4 с",
                )],
            ),
            (
                "clicks into fields, labels and plain text are not dead",
                vec![
                    click(1.0, "input[name=\"snils\"]", 10, 10).with("tag", "input"),
                    effect(1.0, 1, 0, false),
                    click(2.0, "label", 10, 10).with("tag", "label"),
                    effect(2.0, 3, 0, false),
                    click(3.0, "main > p:nth-of-type(2)", 10, 10).with("tag", "p"),
                    effect(3.0, 5, 0, false),
                ],
                vec![],
            ),
            (
                "text inside a button or link, or with a role, counts",
                vec![
                    click(1.0, "#form > button:nth-of-type(2) > span", 10, 10).with("tag", "span"),
                    effect(1.0, 1, 0, false),
                    click(4.0, "div.tile", 10, 10)
                        .with("tag", "div")
                        .with("role", "button"),
                    effect(4.0, 3, 0, false),
                ],
                vec![
                    (
                        1.0,
                        2.0,
                        vec![1, 2],
                        0.7,
                        "клик по \"#form > button:nth-of-type(2) > span\" без отклика: страница не изменилась за 1 с",
                    ),
                    (
                        4.0,
                        5.0,
                        vec![3, 4],
                        0.7,
                        "клик по \"div.tile\" без отклика: страница не изменилась за 1 с",
                    ),
                ],
            ),
            (
                "a disabled button, even if something else on the page moved",
                vec![
                    click(1.0, "#next", 10, 10).with("disabled", true),
                    effect(1.0, 1, 4, false),
                ],
                vec![(
                    1.0,
                    2.0,
                    vec![1, 2],
                    0.6,
                    "клик по неактивному элементу \"#next\"",
                )],
            ),
            (
                "repeated dead clicks on one element are one candidate",
                vec![
                    click(1.0, "#send", 10, 10),
                    click(1.8, "#send", 10, 10),
                    click(3.5, "#send", 10, 10),
                    effect(1.0, 1, 0, false),
                    effect(1.8, 2, 0, false),
                    effect(3.5, 3, 0, false),
                    click(9.0, "#send", 10, 10),
                    effect(9.0, 7, 0, false),
                ],
                vec![
                    (
                        1.0,
                        4.5,
                        vec![1, 2, 3, 4, 5, 6],
                        0.9,
                        "3 клика по \"#send\" без отклика: страница не изменилась за 1 с",
                    ),
                    (
                        9.0,
                        10.0,
                        vec![7, 8],
                        0.7,
                        "клик по \"#send\" без отклика: страница не изменилась за 1 с",
                    ),
                ],
            ),
            (
                "click ids restart in a new page: effects match by client",
                vec![
                    click(1.0, "#a", 10, 10).with("click_id", 1),
                    effect(1.0, 1, 5, false),
                    in_client(click(8.0, "#a", 10, 10).with("click_id", 1), "tab-2"),
                    in_client(effect(8.0, 1, 0, false), "tab-2"),
                ],
                vec![(
                    8.0,
                    9.0,
                    vec![3, 4],
                    0.7,
                    "клик по \"#a\" без отклика: страница не изменилась за 1 с",
                )],
            ),
            (
                "no effect reported: unknown, not dead",
                vec![click(1.0, "#a", 10, 10)],
                vec![],
            ),
        ];
        for (name, events, want) in cases {
            let t = tl(events);
            assert_eq!(run_detector(&t, detect), expected(want), "{name}");
        }
    }
}
