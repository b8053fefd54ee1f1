//! Which journey step a session is in, event by event: the one place the
//! journey's entry rules are applied, by the analyzer afterwards
//! (`analyzer::steps::segment`) and by the recorder live (the observation
//! room shows the step the participant is in as it happens).
//!
//! How events match entry rules (the fields of one rule are AND-ed, the
//! rules of a step OR-ed, patterns are [`glob_match`]es):
//! - a **navigation** matches a rule made only of `url` / `title`, against its
//!   own `url` and `title`. A title update (`reason: "title"`, the URL did not
//!   change) matches only rules that have a `title` pattern, so a page that
//!   retitles itself does not re-enter the step its URL belongs to;
//! - a **click** matches a rule with a `selector` and/or `click_text`; the
//!   rule's `url` / `title` then test the page the click was on (the last
//!   navigation's). A rule of `url` alone does not match clicks: otherwise
//!   every click on a page would re-enter that page's step, and a step entered
//!   by a button on the same page could never be left forward;
//! - an **operator marker** matches a rule with `marker`, tried against
//!   `type:label` and the bare `label` (`type` alone when there is no label);
//!   `url` / `title` in the same rule test the current page;
//! - a modal **dialog** opening (a single-page app's step without a URL of
//!   its own) matches a rule with `dialog`, against the dialog's title;
//!   `url` / `title` in the same rule test the page under it.
//!
//! When one event matches several steps, the step after the current one wins,
//! then the current step itself (re-entering it is not a new visit, and this
//! keeps a page shared by two steps from looking like a step back), then the
//! earliest defined. A `task_end` marker leaves the current step; the events
//! after it belong to no step until a step is entered again.

use crate::event::{Event, EventSource};
use crate::journey::{EntryRule, Journey, glob_match};

/// Whether `e` is the participant's browser's event of `kind`.
pub fn is_browser(e: &Event, kind: &str) -> bool {
    e.source == EventSource::Browser && e.kind == kind
}

/// An operator marker's `(type, label)`; an empty label is none.
pub fn marker_of(e: &Event) -> Option<(&str, Option<&str>)> {
    if e.source != EventSource::Operator || e.kind != "marker" {
        return None;
    }
    let kind = data_str(e, "type")?;
    Some((kind, data_str(e, "label").filter(|l| !l.is_empty())))
}

/// A string field of the event's data.
pub fn data_str<'a>(e: &'a Event, key: &str) -> Option<&'a str> {
    e.data.get(key)?.as_str()
}

impl EntryRule {
    /// Whether event `e` enters a step by this rule, on the page last
    /// navigated to (`page_url`, `page_title`).
    pub fn matches(&self, e: &Event, page_url: Option<&str>, page_title: Option<&str>) -> bool {
        // An absent pattern matches anything; a present one needs text that it matches.
        let glob = |pattern: &Option<String>, text: Option<&str>| {
            pattern
                .as_deref()
                .is_none_or(|p| text.is_some_and(|t| glob_match(p, t)))
        };
        let wants_click = self.selector.is_some() || self.click_text.is_some();
        let wants_dialog = self.dialog.is_some();
        if is_browser(e, "dialog") {
            return wants_dialog
                && !wants_click
                && self.marker.is_none()
                && data_str(e, "action") == Some("open")
                && glob(&self.dialog, data_str(e, "title"))
                && glob(&self.url, page_url)
                && glob(&self.title, page_title);
        }
        if wants_dialog {
            return false;
        }
        if let Some((kind, label)) = marker_of(e) {
            let Some(pattern) = self.marker.as_deref() else {
                return false;
            };
            let named = match label {
                Some(label) => {
                    glob_match(pattern, &format!("{kind}:{label}")) || glob_match(pattern, label)
                }
                None => glob_match(pattern, kind),
            };
            !wants_click && named && glob(&self.url, page_url) && glob(&self.title, page_title)
        } else if is_browser(e, "navigation") {
            if wants_click || self.marker.is_some() {
                return false;
            }
            if data_str(e, "reason") == Some("title") && self.title.is_none() {
                return false;
            }
            glob(&self.url, data_str(e, "url")) && glob(&self.title, data_str(e, "title"))
        } else if is_browser(e, "click") {
            wants_click
                && self.marker.is_none()
                && glob(&self.selector, data_str(e, "selector"))
                && glob(&self.click_text, data_str(e, "text"))
                && glob(&self.url, page_url)
                && glob(&self.title, page_title)
        } else {
            false
        }
    }
}

/// What one event did to the step the session is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepChange {
    /// Still in the same step (or in none).
    Same,
    /// Step `step` (an index into the journey's steps) entered, leaving `from`.
    Entered { step: usize, from: Option<usize> },
    /// A `task_end` marker left step `from`.
    TaskEnd { from: usize },
}

/// Follows one session's events in order.
#[derive(Debug, Clone, Default)]
pub struct StepTracker {
    current: Option<usize>,
    page_url: Option<String>,
    page_title: Option<String>,
}

impl StepTracker {
    /// The step (index) the session is in now.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// Takes the session's next event.
    pub fn observe(&mut self, journey: &Journey, e: &Event) -> StepChange {
        if marker_of(e).is_some_and(|(kind, _)| kind == "task_end") {
            return match self.current.take() {
                Some(from) => StepChange::TaskEnd { from },
                None => StepChange::Same,
            };
        }
        let (url, title) = (self.page_url.as_deref(), self.page_title.as_deref());
        let matched: Vec<usize> = (0..journey.steps.len())
            .filter(|&i| {
                journey.steps[i]
                    .enter
                    .iter()
                    .any(|r| r.matches(e, url, title))
            })
            .collect();
        let mut change = StepChange::Same;
        if let Some(next) = choose(&matched, self.current)
            && Some(next) != self.current
        {
            change = StepChange::Entered {
                step: next,
                from: self.current,
            };
            self.current = Some(next);
        }
        if is_browser(e, "navigation") {
            if let Some(u) = data_str(e, "url") {
                self.page_url = Some(u.to_string());
            }
            if let Some(t) = data_str(e, "title") {
                self.page_title = Some(t.to_string());
            }
        }
        change
    }
}

/// The step after the current one, else the current one, else the earliest.
fn choose(matched: &[usize], current: Option<usize>) -> Option<usize> {
    let next = current.map_or(0, |c| c + 1);
    if matched.contains(&next) {
        return Some(next);
    }
    if let Some(c) = current
        && matched.contains(&c)
    {
        return Some(c);
    }
    matched.first().copied()
}
