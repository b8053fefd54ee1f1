//! The rules on small hand-made sessions.

use lab_model::analysis::{
    Candidate, CandidateList, Evidence, Speaker, StepAnalysis, StepInterval, Transcript,
    TranscriptSegment,
};

use super::*;

const S: i64 = 1_000_000_000;

fn truth(frictions: serde_json::Value) -> Truth {
    serde_json::from_value(serde_json::json!({
        "format_version": 1,
        "persona": "elderly",
        "participant": "P-DEMO-03",
        "session_id": "20260101T000000Z-P-DEMO-03",
        "bundle": "/nowhere",
        "task": { "start_ns": 0, "end_ns": 30 * S },
        "steps": [
            { "step": "find", "visit": 1, "start_ns": 0, "end_ns": 10 * S },
            { "step": "documents", "visit": 1, "start_ns": 10 * S, "end_ns": 30 * S }
        ],
        "frictions": frictions,
        "speech": [ { "text": "Не понимаю, куда тут нажимать.", "start_ns": S, "end_ns": 3 * S } ],
        "markers": []
    }))
    .unwrap()
}

fn steps(second_start: i64) -> StepAnalysis {
    let interval = |step: &str, start_ns, end_ns| StepInterval {
        step: step.into(),
        start_ns,
        end_ns,
        visit: 1,
        entered_by: 0,
    };
    StepAnalysis {
        format_version: 1,
        journey_id: "child-benefit".into(),
        journey_version: "1".into(),
        intervals: vec![
            interval("find", 0, second_start),
            interval("documents", second_start, 30 * S),
        ],
        steps: Vec::new(),
    }
}

fn candidate(detector: &str, step: &str, start_ns: i64) -> Candidate {
    Candidate {
        id: format!("{detector}-1"),
        detector: detector.into(),
        start_ns,
        end_ns: start_ns + S,
        step: Some(step.into()),
        confidence: 0.8,
        evidence: Evidence {
            note: "n".into(),
            ..Evidence::default()
        },
        also: Vec::new(),
    }
}

fn transcript(text: &str) -> Transcript {
    Transcript {
        format_version: 1,
        language: "ru".into(),
        model: "m".into(),
        model_info: None,
        status: "ok".into(),
        segments: vec![TranscriptSegment {
            start_ns: S,
            end_ns: 3 * S,
            text: text.into(),
            speaker: Speaker::Participant,
            words: Vec::new(),
            suspect: false,
            suspect_reason: None,
        }],
        initial_prompt: None,
    }
}

fn list(candidates: Vec<Candidate>) -> CandidateList {
    CandidateList {
        format_version: 1,
        candidates,
    }
}

#[test]
fn a_session_that_matches_its_truth_has_no_problems() {
    let t = truth(serde_json::json!([
        { "kind": "stall", "detector": "rage_click", "also": ["dead_click"], "step": "documents",
          "start_ns": 20 * S, "end_ns": 21 * S },
        { "kind": "spoken_confusion", "detector": "verbal_confusion", "spoken": true, "match": "span",
          "step": "find", "start_ns": S, "end_ns": 3 * S }
    ]));
    let cands = list(vec![
        candidate("rage_click", "documents", 20 * S + S / 2),
        // `also` of the rage click, 1.5 s before it: not false.
        candidate("dead_click", "documents", 18 * S + S / 2),
        // Inside the utterance: 0 s off by the span rule.
        candidate("verbal_confusion", "find", 2 * S),
    ]);
    let m = measure(
        &t,
        &steps(10 * S + S / 2),
        &cands,
        &transcript("не понимаю куда тут нажимать"),
        &Bounds::default(),
    );
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    assert_eq!(m.step_errors, [0.0, 0.5, 0.5, 0.0]);
    assert_eq!(m.friction_errors, [0.5, 0.0]);
    assert_eq!((m.spoken, m.spoken_found), (1, 1));
    assert!(m.false_candidates.is_empty());
    assert_eq!((m.edits, m.ref_words, m.hits), (0, 5, 5));
    let pooled = pool(&[m], &Bounds::default());
    assert!(pooled.problems.is_empty(), "{:?}", pooled.problems);
}

#[test]
fn a_merged_candidate_proposes_each_detector_it_carries() {
    let t = truth(serde_json::json!([
        { "kind": "unresponsive", "detector": "rage_click", "also": ["dead_click"], "step": "documents",
          "start_ns": 20 * S, "end_ns": 21 * S },
        { "kind": "unresponsive", "detector": "dead_click", "also": ["rage_click"], "step": "documents",
          "start_ns": 20 * S, "end_ns": 21 * S },
        { "kind": "spoken_confusion", "detector": "verbal_confusion", "spoken": true, "match": "span",
          "step": "find", "start_ns": S, "end_ns": 3 * S }
    ]));
    let mut burst = candidate("rage_click", "documents", 20 * S);
    burst.also = vec!["dead_click".into()];
    let words = candidate("verbal_confusion", "find", 2 * S);
    let m = measure(
        &t,
        &steps(10 * S),
        &list(vec![burst.clone(), words.clone()]),
        &transcript("не понимаю куда тут нажимать"),
        &Bounds::default(),
    );
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    assert_eq!(m.friction_errors, [0.0, 0.0, 0.0]);
    // Without the merge the dead click is missed.
    burst.also.clear();
    let m = measure(
        &t,
        &steps(10 * S),
        &list(vec![burst, words]),
        &transcript("не понимаю куда тут нажимать"),
        &Bounds::default(),
    );
    assert_eq!(m.problems.len(), 1, "{:?}", m.problems);
}

#[test]
fn broken_bounds_are_problems_not_panics() {
    let t = truth(serde_json::json!([
        { "kind": "stall", "detector": "hesitation", "step": "documents",
          "start_ns": 20 * S, "end_ns": 25 * S },
        { "kind": "question", "detector": "question_to_moderator", "spoken": true, "match": "span",
          "step": "find", "start_ns": S, "end_ns": 3 * S }
    ]));
    let cands = list(vec![
        // 2.5 s late: beyond the friction tolerance, and so false.
        candidate("hesitation", "documents", 22 * S + S / 2),
        candidate("rage_click", "find", 5 * S),
        candidate("dead_click", "find", 6 * S),
    ]);
    let m = measure(
        &t,
        &steps(12 * S),
        &cands,
        &transcript("совсем другое"),
        &Bounds::default(),
    );
    assert_eq!(m.problems.len(), 4, "{:#?}", m.problems);
    assert!(m.problems[0].starts_with("step find visit 1: end_ns off by +2.000 s"));
    assert!(m.problems[2].contains("\"stall\" (hesitation at documents, 20.00 s) not proposed"));
    assert_eq!(m.problems[3], "3 false candidates (at most 2)");
    // A missed spoken friction is judged over all sessions.
    assert_eq!(m.missed_spoken.len(), 1);
    assert_eq!((m.edits, m.ref_words, m.hits), (5, 5, 0));
    let pooled = pool(&[m], &Bounds::default());
    assert_eq!(
        pooled.problems,
        [
            "only 0 of 1 spoken frictions were proposed (at least two thirds)",
            "only 0.00 of the spoken words are in the transcripts (at least 0.3)"
        ]
    );
}

#[test]
fn visits_in_another_order_are_one_problem() {
    let t = truth(serde_json::json!([]));
    let mut found = steps(10 * S);
    found.intervals.swap(0, 1);
    let m = measure(
        &t,
        &found,
        &list(Vec::new()),
        &transcript("не понимаю куда тут нажимать"),
        &Bounds::default(),
    );
    assert_eq!(m.problems.len(), 1, "{:?}", m.problems);
    assert!(m.problems[0].starts_with("steps: walked"));
    assert!(m.step_errors.is_empty());
}

#[test]
fn words_edits_and_hits() {
    assert_eq!(words("Всё, ЁЖ-ёж!"), ["все", "еж", "еж"]);
    assert_eq!(edits("a b c", "a x c d"), (2, 3));
    assert_eq!(hits("a a b", "a b b"), 2);
}

#[test]
fn detectors_are_scored_apart_and_confidence_is_binned() {
    let t = truth(serde_json::json!([
        { "kind": "stall", "detector": "rage_click", "step": "documents",
          "start_ns": 20 * S, "end_ns": 21 * S },
        { "kind": "missed", "detector": "dead_click", "step": "documents",
          "start_ns": 25 * S, "end_ns": 26 * S }
    ]));
    let mut right = candidate("rage_click", "documents", 21 * S);
    right.confidence = 0.9;
    let mut wrong = candidate("hesitation", "find", 5 * S);
    wrong.confidence = 0.5;
    let m = measure(
        &t,
        &steps(10 * S),
        &list(vec![right, wrong]),
        &transcript("не понимаю куда тут нажимать"),
        &Bounds::default(),
    );
    let rows = by_detector(std::slice::from_ref(&m));
    let row = |d: &str| rows.iter().find(|r| r.detector == d).unwrap().clone();
    assert_eq!(row("rage_click").recall(), Some(1.0));
    assert_eq!(row("rage_click").errors, [1.0]);
    assert_eq!(row("dead_click").recall(), Some(0.0));
    assert_eq!(row("dead_click").precision(), None);
    assert_eq!(row("hesitation").precision(), Some(0.0));
    let all = row("all");
    assert_eq!(
        (all.injected, all.found, all.proposed, all.right),
        (2, 1, 2, 1)
    );
    let table = detector_table(&rows);
    assert!(
        table.contains("| rage_click | 1 | 1 | 1.00 | 1 | 1 | 1.00 | 1.00 / 1.00 |"),
        "{table}"
    );

    let (bins, ece) = calibration(&[m]);
    let bin = |c: f32| bins.iter().find(|b| c >= b.lower && c < b.upper).unwrap();
    assert_eq!((bin(0.9).n, bin(0.9).right), (1, 1));
    assert_eq!((bin(0.5).n, bin(0.5).right), (1, 0));
    // |1 − 0.9| and |0 − 0.5|, each half the candidates.
    assert!((ece - 0.3).abs() < 1e-6, "{ece}");
}
