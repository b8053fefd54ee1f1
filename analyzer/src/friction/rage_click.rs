//! Rage clicks: the same spot clicked again and again in quick succession,
//! usually because the page does not respond the way the participant expects;
//! or clicked again and again at a slower pace (still at most [`WINDOW_NS`]
//! between clicks) while the page answered none of the clicks.

use lab_model::Event;
use lab_model::analysis::{Candidate, Evidence, StepAnalysis};

use super::candidate::{Confidence, adjust, candidate, number};
use super::dead_click::invites_click;
use super::notes::{clip, count_ru, duration_ru};
use crate::timeline::{Timeline, click_effects, data_f64, data_flag, data_str, unanswered};

pub const NAME: &str = "rage_click";

/// Fewest clicks that count. Two are a double-click or one impatient
/// re-click, both ordinary.
pub const MIN_CLICKS: usize = 3;

/// `MIN_CLICKS` clicks must fall within this span, and consecutive clicks of
/// a burst may be at most this far apart. 1.5 s is longer than a
/// double-click (≤ 0.5 s), so double-click + one more counts, and shorter
/// than the time someone takes to look, find nothing changed and decide to
/// try again deliberately.
pub const WINDOW_NS: i64 = 1_500_000_000;

/// Clicks within this many CSS pixels of the burst's first click hit "the
/// same spot": about the height of a button or a fingertip, so a trembling
/// hand stays inside while the neighbouring toolbar button is mostly out.
/// Clicks on the same selector count as the same spot wherever they land.
pub const RADIUS_PX: f64 = 40.0;

/// Confidence of a burst of exactly `MIN_CLICKS`; triple-clicking text to
/// select it looks the same, so not higher.
pub const BASE_CONFIDENCE: f32 = 0.5;

/// Each further click keeps this share of the remaining doubt: 4 clicks 0.65,
/// 5 clicks 0.76, 6 clicks 0.83.
pub const DOUBT_PER_CLICK: f32 = 0.7;

pub const MAX_CONFIDENCE: f32 = 0.95;

pub fn detect(timeline: &Timeline, steps: &StepAnalysis) -> Vec<Candidate> {
    let clicks: Vec<&Event> = timeline.browser("click").collect();
    let effects = click_effects(timeline);
    // It pressed a disabled control, or it was on something that invites a
    // click and nothing changed after it. Fields and plain text change
    // nothing by design: clicking into a field three times to place the
    // caret is not frustration.
    let ignored = |c: &Event| {
        data_flag(c, "disabled")
            || (invites_click(c).is_some() && unanswered(effects.get(&c.seq).copied()))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < clicks.len() {
        let mut j = i + 1;
        while j < clicks.len()
            && clicks[j].t_ns - clicks[j - 1].t_ns <= WINDOW_NS
            && same_spot(clicks[i], clicks[j])
        {
            j += 1;
        }
        let burst = &clicks[i..j];
        let quick = burst
            .windows(MIN_CLICKS)
            .any(|w| w[MIN_CLICKS - 1].t_ns - w[0].t_ns <= WINDOW_NS);
        // Slower clicking counts when the page answered none of it: the
        // participant clicks again because nothing happened (an older
        // participant's "rage" is often a click a second).
        let unheeded = burst.len() >= MIN_CLICKS && burst.iter().all(|c| ignored(c));
        if !quick && !unheeded {
            i += 1;
            continue;
        }
        out.push(report(burst, quick, steps));
        i = j;
    }
    number(&mut out);
    out
}

/// Added to the larger confidence when a burst was also a dead click: two
/// rules saw the same friction.
pub const BOTH_BONUS: f32 = 0.05;

/// Merges each dead-click candidate that shares a click with a rage-click
/// burst into that burst: one candidate with both kinds of evidence (events,
/// notes, the dead click's wait for an effect), detector `rage_click`,
/// `dead_click` under `also`. Dead clicks outside every burst stay as they
/// are. Ids are left for the caller to number.
pub fn absorb_dead_clicks(mut rage: Vec<Candidate>, dead: Vec<Candidate>) -> Vec<Candidate> {
    let mut rest = Vec::new();
    for d in dead {
        let Some(r) = rage.iter_mut().find(|r| {
            d.evidence
                .events
                .iter()
                .any(|s| r.evidence.events.contains(s))
        }) else {
            rest.push(d);
            continue;
        };
        r.start_ns = r.start_ns.min(d.start_ns);
        r.end_ns = r.end_ns.max(d.end_ns);
        if d.confidence > r.confidence {
            adjust(
                r,
                d.confidence - r.confidence,
                "как у клика без отклика на этих же кликах",
            );
        }
        let bonus = BOTH_BONUS.min(MAX_CONFIDENCE - r.confidence).max(0.0);
        adjust(
            r,
            bonus,
            "два правила видят одно: яростные клики и клик без отклика",
        );
        r.evidence.events.extend(d.evidence.events);
        r.evidence.events.sort_unstable();
        r.evidence.events.dedup();
        r.evidence.note = format!("{}; {}", r.evidence.note, d.evidence.note);
        if !r.also.contains(&d.detector) {
            r.also.push(d.detector);
        }
    }
    rage.extend(rest);
    rage
}

fn same_spot(first: &Event, other: &Event) -> bool {
    let selector = |e| data_str(e, "selector").filter(|s| !s.is_empty());
    if selector(first).is_some() && selector(first) == selector(other) {
        return true;
    }
    let at = |e| Some((data_f64(e, "x")?, data_f64(e, "y")?));
    match (at(first), at(other)) {
        (Some((x0, y0)), Some((x1, y1))) => (x1 - x0).hypot(y1 - y0) <= RADIUS_PX,
        _ => false,
    }
}

fn report(burst: &[&Event], quick: bool, steps: &StepAnalysis) -> Candidate {
    let (first, last) = (burst[0], burst[burst.len() - 1]);
    let n = burst.len();
    let mut target = format!("\"{}\"", data_str(first, "selector").unwrap_or("?"));
    if let Some(text) = data_str(first, "text").filter(|t| !t.is_empty()) {
        target += &format!(" («{}»)", clip(text, 40));
    }
    let note = format!(
        "{} за {} по {target}",
        count_ru(n, "клик", "клика", "кликов"),
        duration_ru(last.t_ns - first.t_ns)
    );
    let rule = if quick {
        format!(
            "{} в одно место за {}",
            count_ru(MIN_CLICKS, "клик", "клика", "кликов"),
            duration_ru(WINDOW_NS)
        )
    } else {
        format!(
            "{} подряд в одно место без отклика страницы, не дольше {} между кликами",
            count_ru(MIN_CLICKS, "клик", "клика", "кликов"),
            duration_ru(WINDOW_NS)
        )
    };
    let mut confidence = Confidence::rule(rule, BASE_CONFIDENCE);
    if n > MIN_CLICKS {
        let doubt = (1.0 - BASE_CONFIDENCE) * DOUBT_PER_CLICK.powi((n - MIN_CLICKS) as i32);
        confidence.add(
            (1.0 - doubt) - BASE_CONFIDENCE,
            format!(
                "ещё {} в том же месте",
                count_ru(n - MIN_CLICKS, "клик", "клика", "кликов")
            ),
        );
    }
    confidence.cap(MAX_CONFIDENCE);
    candidate(
        NAME,
        steps,
        first.t_ns,
        last.t_ns,
        confidence,
        Evidence {
            events: burst.iter().map(|e| e.seq).collect(),
            note,
            ..Evidence::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::segment;
    use crate::timeline::testkit::*;

    /// (start s, end s, click seqs, confidence)
    type Want = (f64, f64, Vec<u64>, f32);

    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<Event>, Vec<Want>)> = vec![
            (
                "three on one button within 1.2 s",
                vec![
                    nav(0.0, "https://gu.example/form"),
                    click(10.0, "#submit", 100, 200),
                    click(10.5, "#submit", 101, 201),
                    click(11.2, "#submit", 99, 200),
                ],
                vec![(10.0, 11.2, vec![2, 3, 4], 0.5)],
            ),
            (
                "five near one spot on different elements, then a click elsewhere",
                vec![
                    click(1.0, "span.a", 100, 100),
                    click(1.2, "span.b", 120, 110),
                    click(1.4, "div", 90, 130),
                    click(1.6, "span.a", 100, 100),
                    click(1.8, "span.b", 110, 100),
                    click(2.0, "#far", 400, 100),
                ],
                vec![(1.0, 1.8, vec![1, 2, 3, 4, 5], 0.76)],
            ),
            (
                "two quick clicks (a double-click) are normal",
                vec![click(1.0, "#a", 10, 10), click(1.2, "#a", 10, 10)],
                vec![],
            ),
            (
                "three clicks on one button, but slow: deliberate retries",
                vec![
                    click(1.0, "#next", 10, 10),
                    click(2.2, "#next", 10, 10),
                    click(3.4, "#next", 10, 10),
                ],
                vec![],
            ),
            (
                "three quick clicks far apart: working through a list",
                vec![
                    click(1.0, "li:nth-of-type(1)", 10, 10),
                    click(1.4, "li:nth-of-type(2)", 10, 60),
                    click(1.8, "li:nth-of-type(3)", 10, 110),
                ],
                vec![],
            ),
            (
                "three slow clicks that nothing answered: retrying in vain",
                vec![
                    click(1.0, "li.suggestion", 10, 10),
                    effect(1.0, 1, 0, false),
                    click(2.1, "li.suggestion", 10, 10),
                    effect(2.1, 3, 0, false),
                    click(3.2, "li.suggestion", 10, 10),
                    effect(3.2, 5, 0, false),
                ],
                vec![(1.0, 3.2, vec![1, 3, 5], 0.5)],
            ),
            (
                "three slow clicks, one of them answered: paging on purpose",
                vec![
                    click(1.0, "#next-month", 10, 10),
                    effect(1.0, 1, 0, false),
                    click(2.1, "#next-month", 10, 10),
                    effect(2.1, 3, 12, false),
                    click(3.2, "#next-month", 10, 10),
                    effect(3.2, 5, 0, false),
                ],
                vec![],
            ),
            (
                "three slow clicks into a field (placing the caret): nothing to answer",
                vec![
                    browser(
                        1.0,
                        "click",
                        serde_json::json!({"selector": "#birth", "tag": "input", "x": 10, "y": 10}),
                    ),
                    effect(1.0, 1, 0, false),
                    browser(
                        2.1,
                        "click",
                        serde_json::json!({"selector": "#birth", "tag": "input", "x": 10, "y": 10}),
                    ),
                    effect(2.1, 3, 0, false),
                    browser(
                        3.2,
                        "click",
                        serde_json::json!({"selector": "#birth", "tag": "input", "x": 10, "y": 10}),
                    ),
                    effect(3.2, 5, 0, false),
                ],
                vec![],
            ),
            (
                "three slow clicks with no effect reports (an older probe): not enough",
                vec![
                    click(1.0, "#x", 10, 10),
                    click(2.1, "#x", 10, 10),
                    click(3.2, "#x", 10, 10),
                ],
                vec![],
            ),
            (
                "a slow lead-in click joins the burst it leads into",
                vec![
                    click(1.0, "#pay", 10, 10),
                    click(2.4, "#pay", 10, 10),
                    click(2.7, "#pay", 10, 10),
                    click(3.0, "#pay", 10, 10),
                ],
                vec![(1.0, 3.0, vec![1, 2, 3, 4], 0.65)],
            ),
        ];
        for (name, events, want) in cases {
            let t = tl(events);
            let got = detect(&t, &segment(&journey(), &t));
            let got: Vec<Want> = got
                .iter()
                .map(|c| {
                    assert_eq!(c.detector, NAME);
                    (
                        c.start_ns as f64 / 1e9,
                        c.end_ns as f64 / 1e9,
                        c.evidence.events.clone(),
                        c.confidence,
                    )
                })
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_burst_that_was_also_dead_is_one_candidate() {
        let t = tl(vec![
            nav(0.0, "https://gu.example/form"),
            click(10.0, "#next", 100, 200).with("disabled", true),
            click(10.4, "#next", 100, 200).with("disabled", true),
            click(10.8, "#next", 100, 200).with("disabled", true),
            effect(10.0, 2, 0, false),
            click(30.0, "div.card", 10, 10)
                .with("tag", "div")
                .with("affordance", serde_json::json!({"card": "div.card"})),
            effect(30.0, 6, 0, false),
        ]);
        let steps = segment(&journey(), &t);
        let rage = detect(&t, &steps);
        let dead = super::super::dead_click::detect(&t, &steps);
        assert_eq!((rage.len(), dead.len()), (1, 2));
        let merged = absorb_dead_clicks(rage, dead);
        assert_eq!(merged.len(), 2, "{merged:#?}");
        let burst = &merged[0];
        assert_eq!(burst.detector, NAME);
        assert_eq!(burst.also, vec!["dead_click".to_string()]);
        assert_eq!(burst.evidence.events, vec![2, 3, 4, 5]);
        assert_eq!((burst.start_ns, burst.end_ns), (secs(10.0), secs(11.8)));
        // max(0.5 for three clicks, 0.6 + 2 × 0.1 for three disabled) + 0.05
        assert_eq!(burst.confidence, 0.85);
        assert!(
            burst.evidence.note.starts_with("3 клика за 0,8 с"),
            "{}",
            burst.evidence.note
        );
        assert!(
            burst.evidence.note.contains("по неактивному элементу"),
            "{}",
            burst.evidence.note
        );
        let card = &merged[1];
        assert_eq!((card.detector.as_str(), card.also.len()), ("dead_click", 0));
    }

    #[test]
    fn note_step_and_id() {
        let t = tl(vec![
            nav(0.0, "https://gu.example/form"),
            click(10.0, "#submit", 100, 200).with("text", "Далее"),
            click(10.5, "#submit", 100, 200),
            click(11.2, "#submit", 100, 200),
        ]);
        let c = &detect(&t, &segment(&journey(), &t))[0];
        assert_eq!(c.id, "rage_click-1");
        assert_eq!(c.step.as_deref(), Some("form"));
        assert_eq!(c.evidence.note, "3 клика за 1,2 с по \"#submit\" («Далее»)");
    }
}
