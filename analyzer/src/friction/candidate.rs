//! Building and numbering candidates: what every detector shares.

use std::collections::HashMap;

use lab_model::analysis::{Candidate, Evidence, StepAnalysis, Word};

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

/// A candidate in the step that contains its start, its confidence
/// [`rounded`].
pub fn candidate(
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
        confidence: rounded(confidence),
        evidence,
        also: Vec::new(),
    }
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
