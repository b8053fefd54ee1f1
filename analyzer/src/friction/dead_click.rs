//! Dead clicks: a click on something that looks clickable after which the
//! page did not change, or changed only after a noticeable delay, and clicks
//! on disabled controls. The probe reports each click's effect a second
//! later (`click_effect`: DOM mutations, time to the first change, whether
//! the URL changed), stamped with the click's own time.

use lab_model::Event;
use lab_model::analysis::{Candidate, Evidence, StepAnalysis};

use super::candidate::{Confidence, candidate, number};
use super::notes::{count_ru, duration_ru};
use crate::timeline::{Timeline, click_effects, data_f64, data_flag, data_str};

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

/// Nothing at all changed on a control (a button, a link, something with a
/// role): the clearest case.
pub const CONFIDENCE_DEAD: f32 = 0.7;
/// Nothing changed on something that only looks clickable (a card, a
/// pointer cursor, a button-like label): a participant reads it as a
/// control, but so may a researcher's scroll-and-click habit; a little less.
pub const CONFIDENCE_DEAD_LOOKS: f32 = 0.6;
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

/// A text this long or longer is a sentence, not a button's label.
const LABEL_MAX_CHARS: usize = 32;
/// First words (lower case, ё as е) of what buttons say on public-service
/// portals: an element whose whole text starts with one reads as a button.
/// Whole words, not stems: «Изменить» is a button, «Изменения в законе» a
/// heading.
const BUTTON_WORDS: &[&str] = &[
    "далее",
    "продолжить",
    "подать",
    "подайте",
    "отправить",
    "выбрать",
    "выберите",
    "подробнее",
    "записаться",
    "войти",
    "вход",
    "получить",
    "оформить",
    "перейти",
    "начать",
    "сохранить",
    "подтвердить",
    "оплатить",
    "заказать",
    "скачать",
    "изменить",
    "добавить",
    "удалить",
    "загрузить",
    "найти",
    "показать",
    "открыть",
    "назад",
    "готово",
    "согласен",
    "согласна",
    "принять",
    "отмена",
    "отменить",
    "закрыть",
    "ок",
    "next",
    "continue",
    "submit",
    "send",
    "choose",
    "select",
    "more",
    "sign",
    "log",
    "apply",
    "start",
    "save",
    "confirm",
    "pay",
    "download",
    "open",
    "back",
    "cancel",
    "close",
    "ok",
];

/// Why a click was expected to do something: the rule that made it a
/// candidate, named in its note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invite {
    /// A button, a link or a disclosure.
    Control,
    /// An ARIA role (button, tab, link, ...).
    Role,
    /// Inside a button or link (older probes described the inner element).
    InsideControl,
    /// The page gave it a click handler or a tab stop.
    Handler,
    /// The mouse pointer turned into a hand over it.
    Pointer,
    /// A card or tile: a drawn box among like boxes, or named so.
    Card,
    /// A picture (an image link's shape).
    Picture,
    /// Its whole text is what buttons say («Подробнее», «Выбрать»).
    ButtonLabel,
}

impl Invite {
    /// What makes it look clickable, in Russian for the note, when the page
    /// did not make it a control; `None` for a control, which needs no
    /// saying why it should have worked.
    pub fn looks(self) -> Option<&'static str> {
        match self {
            Invite::Control | Invite::Role | Invite::InsideControl | Invite::Handler => None,
            Invite::Pointer => Some("курсор над ним — указатель, как над ссылкой"),
            Invite::Card => Some("выглядит как карточка (рамка или тень, среди таких же)"),
            Invite::Picture => Some("картинка, похожая на ссылку"),
            Invite::ButtonLabel => Some("надпись как на кнопке"),
        }
    }
}

/// A click the detector reports, with what it was expected to do and what
/// the probe saw after it.
#[derive(Clone, Copy)]
struct Found<'a> {
    kind: Kind,
    invite: Option<Invite>,
    click: &'a Event,
    effect: Option<&'a Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dead,
    Disabled,
    Slow,
}

pub fn detect(timeline: &Timeline, steps: &StepAnalysis) -> Vec<Candidate> {
    let effects = click_effects(timeline);
    let mut found: Vec<Found> = Vec::new();
    for click in timeline.browser("click") {
        let effect = effects.get(&click.seq).copied();
        if let Some((kind, invite)) = classify(click, effect) {
            found.push(Found {
                kind,
                invite,
                click,
                effect,
            });
        }
    }

    let mut out = Vec::new();
    let mut i = 0;
    while i < found.len() {
        let first = found[i];
        let mut j = i + 1;
        while j < found.len()
            && found[j].kind == first.kind
            && data_str(found[j].click, "selector") == data_str(first.click, "selector")
            && found[j].click.t_ns - found[j - 1].click.t_ns <= MERGE_GAP_NS
        {
            j += 1;
        }
        out.push(report(&found[i..j], steps));
        i = j;
    }
    number(&mut out);
    out
}

fn classify(click: &Event, effect: Option<&Event>) -> Option<(Kind, Option<Invite>)> {
    if let Some(e) = effect
        && (data_flag(e, "url_changed") || data_flag(e, "page_unloaded"))
    {
        return None;
    }
    if data_flag(click, "disabled") {
        return Some((Kind::Disabled, None));
    }
    let invite = invites_click(click)?;
    let effect = effect?;
    if data_f64(effect, "mutations").unwrap_or(0.0) == 0.0 {
        Some((Kind::Dead, Some(invite)))
    } else if data_f64(effect, "first_change_ms").is_some_and(|ms| ms > SLOW_MS) {
        Some((Kind::Slow, Some(invite)))
    } else {
        None
    }
}

/// Why `click` was expected to do something, or `None` for fields (clicking
/// into them changes nothing by design) and plain text (clicked while
/// reading, selecting or to focus the window). Controls first, then what
/// the probe saw that makes an element look clickable (`affordance`), then
/// a button-like text.
pub fn invites_click(click: &Event) -> Option<Invite> {
    let tag = data_str(click, "tag").unwrap_or("").to_ascii_lowercase();
    if FIELD_TAGS.contains(&tag.as_str()) {
        return None;
    }
    let given = |key| data_str(click, key).is_some_and(|v| !v.trim().is_empty());
    if given("href") || CONTROL_TAGS.contains(&tag.as_str()) {
        return Some(Invite::Control);
    }
    if given("role") {
        return Some(Invite::Role);
    }
    let in_control = data_str(click, "selector").is_some_and(|s| {
        s.split(['>', ' ', '+', '~'])
            .map(|part| part.split(['[', ':', '#', '.']).next().unwrap_or(""))
            .any(|t| CONTROL_TAGS.contains(&t.to_ascii_lowercase().as_str()))
    });
    if in_control {
        return Some(Invite::InsideControl);
    }
    let seen = |key: &str| {
        click
            .data
            .get("affordance")
            .and_then(|a| a.get(key))
            .is_some_and(|v| !v.is_null() && v != &serde_json::Value::Bool(false))
    };
    if seen("handler") || seen("tabindex") {
        return Some(Invite::Handler);
    }
    if seen("card") {
        return Some(Invite::Card);
    }
    if seen("cursor") {
        return Some(Invite::Pointer);
    }
    if seen("picture") {
        return Some(Invite::Picture);
    }
    data_str(click, "text")
        .filter(|t| button_label(t))
        .map(|_| Invite::ButtonLabel)
}

/// Whether `text` as a whole is what a button says: short, and its first
/// word one of [`BUTTON_WORDS`].
fn button_label(text: &str) -> bool {
    let text = text.trim();
    if text.is_empty()
        || text.chars().count() > LABEL_MAX_CHARS
        || text.split_whitespace().count() > 4
    {
        return false;
    }
    let first = text
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_lowercase()
        .replace('ё', "е");
    BUTTON_WORDS.contains(&first.as_str())
}

/// One candidate for `group`: clicks of one kind on one element.
fn report(group: &[Found], steps: &StepAnalysis) -> Candidate {
    let Found {
        kind,
        invite,
        click: first,
        ..
    } = group[0];
    let last = group[group.len() - 1].click;
    let n = group.len();
    let clicks = if n == 1 {
        "клик".to_string()
    } else {
        count_ru(n, "клик", "клика", "кликов")
    };
    let selector = data_str(first, "selector").unwrap_or("?");
    let mut note = match kind {
        Kind::Dead => {
            format!("{clicks} по \"{selector}\" без отклика: страница не изменилась за 1 с")
        }
        Kind::Disabled => format!("{clicks} по неактивному элементу \"{selector}\""),
        Kind::Slow => {
            let ms = group
                .iter()
                .filter_map(|f| data_f64(f.effect?, "first_change_ms"))
                .fold(0.0, f64::max);
            format!(
                "{clicks} по \"{selector}\": страница ответила только через {}",
                duration_ru((ms * 1e6) as i64)
            )
        }
    };
    // A control needs no saying why it should have worked; what only looks
    // like one does.
    let looks = invite.and_then(Invite::looks);
    if let Some(why) = looks {
        note += &format!("; не элемент управления, но {why}");
        if invite == Some(Invite::ButtonLabel)
            && let Some(t) = data_str(first, "text")
        {
            note += &format!(" («{}»)", t.trim());
        }
    }
    let mut confidence = match kind {
        Kind::Dead if looks.is_some() => Confidence::rule(
            "клик без отклика по тому, что только выглядит кликабельным",
            CONFIDENCE_DEAD_LOOKS,
        ),
        Kind::Dead => Confidence::rule("клик без отклика по элементу управления", CONFIDENCE_DEAD),
        Kind::Disabled => Confidence::rule(
            "клик по неактивному элементу управления",
            CONFIDENCE_DISABLED,
        ),
        Kind::Slow => Confidence::rule(
            "страница ответила на клик позже чем через 1 с",
            CONFIDENCE_SLOW,
        ),
    };
    if n > 1 {
        confidence.add(
            PER_REPEAT * (n - 1) as f32,
            format!(
                "ещё {} по тому же элементу",
                count_ru(n - 1, "клик", "клика", "кликов")
            ),
        );
    }
    confidence.cap(MAX_CONFIDENCE);
    let mut events: Vec<u64> = group
        .iter()
        .flat_map(|f| [Some(f.click.seq), f.effect.map(|e| e.seq)])
        .flatten()
        .collect();
    events.sort_unstable();
    candidate(
        NAME,
        steps,
        first.t_ns,
        last.t_ns + EFFECT_WINDOW_NS,
        confidence,
        Evidence {
            events,
            note,
            ..Evidence::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::testkit::*;
    use serde_json::json;

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
                "what only looks clickable: a card, a hand cursor, a button's words",
                vec![
                    click(1.0, "div.services > div:nth-of-type(2)", 10, 10)
                        .with("tag", "div")
                        .with(
                            "affordance",
                            json!({"card": "div.services > div:nth-of-type(2)"}),
                        ),
                    effect(1.0, 1, 0, false),
                    click(4.0, "span.more", 10, 10)
                        .with("tag", "span")
                        .with("affordance", json!({"cursor": "pointer"})),
                    effect(4.0, 3, 0, false),
                    click(7.0, "div.footer > span", 10, 10)
                        .with("tag", "span")
                        .with("text", "Подробнее "),
                    effect(7.0, 5, 0, false),
                ],
                vec![
                    (
                        1.0,
                        2.0,
                        vec![1, 2],
                        0.6,
                        "клик по \"div.services > div:nth-of-type(2)\" без отклика: страница не изменилась за 1 с; не элемент управления, но выглядит как карточка (рамка или тень, среди таких же)",
                    ),
                    (
                        4.0,
                        5.0,
                        vec![3, 4],
                        0.6,
                        "клик по \"span.more\" без отклика: страница не изменилась за 1 с; не элемент управления, но курсор над ним — указатель, как над ссылкой",
                    ),
                    (
                        7.0,
                        8.0,
                        vec![5, 6],
                        0.6,
                        "клик по \"div.footer > span\" без отклика: страница не изменилась за 1 с; не элемент управления, но надпись как на кнопке («Подробнее»)",
                    ),
                ],
            ),
            (
                "text read, not pressed: a sentence, a bordered notice, a word that is not a label",
                vec![
                    click(1.0, "main > p", 10, 10).with("tag", "p").with(
                        "text",
                        "Далее вы сможете выбрать способ получения выплаты и указать реквизиты",
                    ),
                    effect(1.0, 1, 0, false),
                    click(3.0, "div.notice > p", 10, 10)
                        .with("tag", "p")
                        .with("text", "Пособие назначается на 12 месяцев"),
                    effect(3.0, 3, 0, false),
                    click(5.0, "td", 10, 10)
                        .with("tag", "td")
                        .with("text", "Сумма"),
                    effect(5.0, 5, 0, false),
                    click(6.0, "h3", 10, 10)
                        .with("tag", "h3")
                        .with("text", "Изменения в законе"),
                    effect(6.0, 7, 0, false),
                    click(7.0, "span", 10, 10)
                        .with("tag", "span")
                        .with("affordance", json!({"cursor": null, "card": false})),
                    effect(7.0, 9, 0, false),
                ],
                vec![],
            ),
            (
                "a tab stop or a handler makes a control",
                vec![
                    click(1.0, "div.toggle", 10, 10)
                        .with("tag", "div")
                        .with("affordance", json!({"tabindex": true})),
                    effect(1.0, 1, 0, false),
                ],
                vec![(
                    1.0,
                    2.0,
                    vec![1, 2],
                    0.7,
                    "клик по \"div.toggle\" без отклика: страница не изменилась за 1 с",
                )],
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
