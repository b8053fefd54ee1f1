//! Building and numbering candidates: what every detector shares.

use std::collections::HashMap;

use lab_model::analysis::{Candidate, ConfidenceTerm, Evidence, StepAnalysis, Word};

use crate::steps::step_at;

/// Sorts by start (then end, then detector) and gives ids `<detector>-<n>`.
pub fn number(candidates: &mut [Candidate]) {
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

/// A confidence clamped to 0-1 and rounded to hundredths (finer figures
/// would only pretend precision).
pub fn rounded(confidence: f32) -> f32 {
    (confidence.clamp(0.0, 1.0) * 100.0).round() / 100.0
}

/// A candidate's confidence with the reasons for it: the rule that fired
/// with its base value, then every adjustment in the order it was made. The
/// terms become the candidate's `evidence.basis`, so a researcher reads why
/// a candidate is at 0.6 and another at 0.85.
#[derive(Debug, Clone, PartialEq)]
pub struct Confidence {
    value: f32,
    terms: Vec<ConfidenceTerm>,
}

impl Confidence {
    /// The rule that fired (in Russian) and its base value.
    pub fn rule(why: impl Into<String>, base: f32) -> Self {
        Self {
            value: base,
            terms: vec![ConfidenceTerm {
                why: why.into(),
                delta: base,
            }],
        }
    }

    /// Adds `delta` for `why`; nothing when `delta` is 0.
    pub fn add(&mut self, delta: f32, why: impl Into<String>) {
        if delta != 0.0 {
            self.value += delta;
            self.terms.push(ConfidenceTerm {
                why: why.into(),
                delta,
            });
        }
    }

    /// Multiplies by `factor` for `why` (the term holds the change it made).
    pub fn scale(&mut self, factor: f32, why: impl Into<String>) {
        self.add(self.value * (factor - 1.0), why);
    }

    /// Lowers to the rule's ceiling `max` when above it.
    pub fn cap(&mut self, max: f32) {
        if self.value > max {
            self.add(
                max - self.value,
                format!(
                    "не выше {} для этого правила",
                    format!("{max:.2}").replace('.', ",")
                ),
            );
        }
    }

    pub fn value(&self) -> f32 {
        self.value
    }

    /// The terms, each rounded to hundredths like the confidence.
    pub fn terms(&self) -> Vec<ConfidenceTerm> {
        self.terms
            .iter()
            .map(|t| ConfidenceTerm {
                why: t.why.clone(),
                delta: (t.delta * 100.0).round() / 100.0,
            })
            .collect()
    }
}

/// A candidate in the step that contains its start, its confidence
/// [`rounded`], the confidence's terms as its evidence's `basis`.
pub fn candidate(
    detector: &str,
    steps: &StepAnalysis,
    start_ns: i64,
    end_ns: i64,
    confidence: Confidence,
    mut evidence: Evidence,
) -> Candidate {
    evidence.basis = confidence.terms();
    Candidate {
        id: String::new(),
        detector: detector.to_string(),
        start_ns,
        end_ns: end_ns.max(start_ns),
        step: step_at(steps, start_ns),
        confidence: rounded(confidence.value()),
        evidence,
        also: Vec::new(),
    }
}

/// Changes a built candidate's confidence by `delta` for `why` (the result
/// [`rounded`]), and says so in its basis; nothing when the rounded
/// confidence does not change.
pub fn adjust(c: &mut Candidate, delta: f32, why: impl Into<String>) {
    let new = rounded(c.confidence + delta);
    let change = ((new - c.confidence) * 100.0).round() / 100.0;
    if change != 0.0 {
        c.confidence = new;
        c.evidence.basis.push(ConfidenceTerm {
            why: why.into(),
            delta: change,
        });
    }
}

/// Change to a spoken candidate (a confusion cue, a question) whose words
/// come from text the recogniser heard uncertainly (a window under the
/// log-probability rule at every temperature,
/// [`crate::timeline::uncertain_spans`]): read, but ranked below the same
/// words heard clearly.
pub const UNCERTAIN_TEXT: f32 = -0.1;
/// Why, in the candidate's basis.
pub const UNCERTAIN_WHY: &str = "слова из места, которое распознаватель расшифровал неуверенно \
     (средняя лог-вероятность ниже порога при всех температурах)";

/// Whether any of `words` lies in one of the `uncertain` spans (start, end ns).
pub fn in_uncertain_text(words: &[Word], uncertain: &[(i64, i64)]) -> bool {
    words.iter().any(|w| {
        uncertain
            .iter()
            .any(|&(s, e)| w.start_ns < e && w.end_ns > s)
    })
}

/// Mean recogniser probability of words below which they are weak evidence
/// (a hallucinated sentence is often made of such words); a candidate built
/// on them says so ([`WEAK_NOTE`]).
pub const WEAK_WORDS: f32 = 0.5;
/// What a note on weak words adds.
pub const WEAK_NOTE: &str = "; слова распознаны неуверенно";

/// Mean recogniser probability of `words` (each clamped to 0-1); 0 for none.
pub fn heard(words: &[Word]) -> f32 {
    if words.is_empty() {
        return 0.0;
    }
    words
        .iter()
        .map(|w| w.confidence.clamp(0.0, 1.0))
        .sum::<f32>()
        / words.len() as f32
}
