//! Friction candidates: moments where the participant probably struggled,
//! each with its evidence (event seqs, transcript words, a short note in
//! Russian) and a confidence, for a researcher to accept or reject.
//!
//! One module per detector, each a pure function of the timeline (and the
//! journey steps) with its thresholds as documented constants:
//! [`rage_click`], [`dead_click`], [`backtrack`], [`hesitation`],
//! [`step_overtime`], [`field_struggle`], [`js_error`], [`verbal_confusion`],
//! [`question_to_moderator`]. [`detect_all`] runs them all.

use std::collections::HashMap;
use std::ops::Range;

use lab_model::Journey;
use lab_model::analysis::{Candidate, Evidence, StepAnalysis, Word};

pub use crate::lexicon::Lexicon;
use crate::steps::step_at;
use crate::timeline::{Timeline, maybe_participant};

pub mod backtrack;
pub mod dead_click;
pub mod field_struggle;
pub mod hesitation;
pub mod js_error;
pub mod question_to_moderator;
pub mod rage_click;
pub mod step_overtime;
pub mod verbal_confusion;

/// Every detector's candidates, sorted by start, with ids `<detector>-<n>`
/// numbered per detector in that order.
pub fn detect_all(
    journey: &Journey,
    timeline: &Timeline,
    steps: &StepAnalysis,
    lexicon: &Lexicon,
) -> Vec<Candidate> {
    let mut all = Vec::new();
    all.extend(rage_click::detect(timeline, steps));
    all.extend(dead_click::detect(timeline, steps));
    all.extend(backtrack::detect(journey, timeline, steps));
    all.extend(hesitation::detect(timeline, steps));
    all.extend(step_overtime::detect(steps));
    all.extend(field_struggle::detect(timeline, steps));
    all.extend(js_error::detect(timeline, steps));
    all.extend(verbal_confusion::detect(timeline, steps, lexicon));
    all.extend(question_to_moderator::detect(timeline, steps));
    number(&mut all);
    all
}

/// Sorts by start (then end, then detector) and gives ids `<detector>-<n>`.
pub(crate) fn number(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| {
        (a.start_ns, a.end_ns, &a.detector).cmp(&(b.start_ns, b.end_ns, &b.detector))
    });
    let mut counts: HashMap<String, usize> = HashMap::new();
    for c in candidates {
        let n = counts.entry(c.detector.clone()).or_default();
        *n += 1;
        c.id = format!("{}-{n}", c.detector);
    }
}

/// A candidate in the step that contains its start; confidence clamped to
/// 0-1 and rounded to hundredths (finer figures would only pretend precision).
pub(crate) fn candidate(
    detector: &str,
    steps: &StepAnalysis,
    start_ns: i64,
    end_ns: i64,
    confidence: f32,
    evidence: Evidence,
) -> Candidate {
    Candidate {
        id: String::new(),
        detector: detector.to_string(),
        start_ns,
        end_ns: end_ns.max(start_ns),
        step: step_at(steps, start_ns),
        confidence: (confidence.clamp(0.0, 1.0) * 100.0).round() / 100.0,
        evidence,
    }
}

/// Runs of consecutive words that may be the participant's, broken where
/// someone else speaks or the pause between two words exceeds `max_pause_ns`.
pub(crate) fn participant_runs(words: &[Word], max_pause_ns: i64) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    for (i, w) in words.iter().enumerate() {
        if !maybe_participant(w.speaker) {
            if let Some(s) = start.take() {
                runs.push(s..i);
            }
            continue;
        }
        if let Some(s) = start
            && w.start_ns - words[i - 1].end_ns > max_pause_ns
        {
            runs.push(s..i);
            start = None;
        }
        start.get_or_insert(i);
    }
    if let Some(s) = start {
        runs.push(s..words.len());
    }
    runs
}

/// A duration for a note: «1,2 с», «14 с», «2 мин 5 с».
pub(crate) fn duration_ru(ns: i64) -> String {
    let s = ns as f64 / 1e9;
    if s < 10.0 {
        format!("{:.1} с", s).replace('.', ",")
    } else if s < 60.0 {
        format!("{} с", s.round())
    } else {
        let total = s.round() as i64;
        match total % 60 {
            0 => format!("{} мин", total / 60),
            rest => format!("{} мин {rest} с", total / 60),
        }
    }
}

/// `n` with the Russian noun form for it: (клик, клика, кликов).
pub(crate) fn count_ru(n: usize, one: &str, few: &str, many: &str) -> String {
    let form = match (n % 10, n % 100) {
        (1, m) if m != 11 => one,
        (2..=4, m) if !(12..=14).contains(&m) => few,
        _ => many,
    };
    format!("{n} {form}")
}

/// Words as spoken, at most `max` of them.
pub(crate) fn quote(words: &[Word], max: usize) -> String {
    let mut text = words
        .iter()
        .take(max)
        .map(|w| w.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if words.len() > max {
        text.push('…');
    }
    text
}

/// A string cut to `max` characters for a note.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::segment;
    use crate::timeline::testkit::*;
    use lab_model::analysis::Speaker;

    #[test]
    fn russian_figures() {
        for (n, want) in [
            (1, "1 клик"),
            (3, "3 клика"),
            (5, "5 кликов"),
            (11, "11 кликов"),
            (21, "21 клик"),
            (22, "22 клика"),
            (112, "112 кликов"),
        ] {
            assert_eq!(count_ru(n, "клик", "клика", "кликов"), want);
        }
        for (s, want) in [
            (1.24, "1,2 с"),
            (14.4, "14 с"),
            (125.0, "2 мин 5 с"),
            (120.2, "2 мин"),
        ] {
            assert_eq!(duration_ru(secs(s)), want);
        }
        assert_eq!(clip("абвгд", 3), "абв…");
    }

    #[test]
    fn runs_break_on_other_speakers_and_pauses() {
        let mut w = words(0.0, "раз два");
        w.extend(words_by(1.0, Speaker::Moderator, "да"));
        w.extend(words(1.5, "три"));
        w.extend(words(5.0, "четыре"));
        w.extend(words_by(5.4, Speaker::Mixed, "пять"));
        assert_eq!(participant_runs(&w, secs(1.5)), vec![0..2, 3..4, 4..6]);
    }

    #[test]
    fn detect_all_sorts_and_numbers() {
        let t = tl_words(
            vec![
                nav(0.0, "https://gu.example/login"),
                click(1.0, "#a", 10, 10),
                click(1.3, "#a", 10, 10),
                click(1.6, "#a", 10, 10),
                js_error(2.0, "boom"),
                click(30.0, "#b", 10, 10),
                click(30.2, "#b", 10, 10),
                click(30.4, "#b", 12, 10),
            ],
            words(10.0, "не понимаю"),
        );
        let steps = segment(&journey(), &t);
        let all = detect_all(&journey(), &t, &steps, &Lexicon::builtin());
        let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            vec![
                "rage_click-1",
                "hesitation-1",
                "js_error-1",
                "verbal_confusion-1",
                "rage_click-2"
            ]
        );
        assert!(all.iter().all(|c| c.step.as_deref() == Some("login")));
    }
}
