//! Friction candidates: moments where the participant probably struggled,
//! each with its evidence (event seqs, transcript words, a short note in
//! Russian) and a confidence, for a researcher to accept or reject.
//!
//! One module per detector, each a pure function of the timeline (and the
//! journey steps) with its thresholds as documented constants:
//! [`rage_click`], [`dead_click`], [`backtrack`], [`hesitation`],
//! [`step_overtime`], [`field_struggle`], [`js_error`], [`verbal_confusion`],
//! [`question_to_moderator`], and [`arousal`] from the sensor signals, which
//! strengthens the others. [`detect_all`] runs them all.

use lab_model::Journey;
use lab_model::analysis::{Candidate, StepAnalysis};

pub use crate::lexicon::Lexicon;
use crate::timeline::Timeline;

pub mod arousal;
pub mod backtrack;
pub(crate) mod candidate;
pub mod dead_click;
pub mod field_struggle;
pub mod hesitation;
pub mod js_error;
pub(crate) mod notes;
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
    // A burst of clicks on a control that did nothing is one friction, not a
    // rage click and a dead click.
    all.extend(rage_click::absorb_dead_clicks(
        rage_click::detect(timeline, steps),
        dead_click::detect(timeline, steps),
    ));
    all.extend(backtrack::detect(journey, timeline, steps));
    all.extend(hesitation::detect(timeline, steps));
    all.extend(step_overtime::detect(steps));
    all.extend(field_struggle::detect(timeline, steps));
    all.extend(js_error::detect(timeline, steps));
    all.extend(verbal_confusion::detect(timeline, steps, lexicon));
    all.extend(question_to_moderator::detect(timeline, steps));
    // Arousal strengthens what it follows, and stands alone only with a
    // stimulus beside it.
    let responses = arousal::responses(&timeline.signals);
    let used = arousal::enrich(&mut all, &responses);
    all.extend(arousal::detect(timeline, steps, &responses, &used));
    candidate::number(&mut all);
    all
}

#[cfg(test)]
mod tests {
    use super::notes::{clip, count_ru, duration_ru};
    use super::*;
    use crate::steps::segment;
    use crate::timeline::participant_runs;
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
        all.iter().for_each(assert_basis_adds_up);
    }

    #[test]
    fn a_merged_burst_explains_both_rules() {
        let t = tl(vec![
            nav(0.0, "https://gu.example/login"),
            click(1.0, "#a", 10, 10),
            effect(1.0, 2, 0, false),
            click(1.3, "#a", 10, 10),
            effect(1.3, 4, 0, false),
            click(1.6, "#a", 10, 10),
            effect(1.6, 6, 0, false),
            click(1.9, "#a", 10, 10),
            effect(1.9, 8, 0, false),
        ]);
        let steps = segment(&journey(), &t);
        let all = detect_all(&journey(), &t, &steps, &Lexicon::builtin());
        let burst = all.iter().find(|c| c.detector == "rage_click").unwrap();
        assert_eq!(burst.also, ["dead_click"]);
        assert_basis_adds_up(burst);
        let why: Vec<&str> = burst
            .evidence
            .basis
            .iter()
            .map(|t| t.why.as_str())
            .collect();
        assert!(why[0].starts_with("3 клика в одно место"), "{why:?}");
        assert!(why.iter().any(|w| w.contains("два правила")), "{why:?}");
    }
}
