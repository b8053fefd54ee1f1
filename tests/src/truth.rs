//! The demo's ground truth against what the analyzer found: one set of rules
//! for the end-to-end test `tests/tests/demo_personas.rs` and the
//! `lab-demo-truth` binary.
//!
//! The scripted participants (`demo/personas.js`, run by
//! `demo/run-personas`) write `<out>/truth/<session_id>.json` (session time,
//! outside the bundle); the bundle's analysis is read through lab-model's
//! typed readers. Per session:
//!
//! - the journey steps found are the visits walked, in order, each boundary
//!   within [`Bounds::step_tolerance_s`];
//! - every injected friction is proposed by its detector, at its step,
//!   starting within [`Bounds::friction_tolerance_s`] of the truth (of the
//!   utterance, for a spoken friction with `match: "span"`). A spoken friction
//!   that is missed is not a problem of its session: two thirds of the spoken
//!   ones, over all sessions, are required (see [`pool`]);
//! - at most [`Bounds::max_false`] candidates match no injected friction (a
//!   detector a friction lists under `also`, firing within 2 s of it, is not
//!   false);
//! - the transcript's word error rate against the spoken phrases is at most
//!   [`Bounds::max_wer_session`].
//!
//! Over all sessions: the pooled word error rate and the share of the spoken
//! words heard are bounded. Nothing here panics on a bad figure: problems are
//! listed in the reports for the caller to judge.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lab_model::analysis::{AnalysisDoc, Candidate, CandidateList, StepAnalysis, Transcript};
use serde::Deserialize;

/// Step boundaries: the probe stamps a page load within tens of ms of the
/// driver seeing the commit; 1 s is the brief's bound.
pub const STEP_TOLERANCE_S: f64 = 1.0;
/// Friction starts.
pub const FRICTION_TOLERANCE_S: f64 = 2.0;
/// Candidates that match no injected friction, per session.
pub const MAX_FALSE: usize = 2;
/// Word error rate per session and over all sessions together. espeak-ng
/// `ru` through PulseAudio, Opus and Whisper base is poor and chaotic: the
/// same phrases gave 0.45-1.39 per session (above 1 when Whisper loops on
/// its own output) and 0.73-0.87 pooled over the three personas in 8
/// sessions here, so these bounds only catch a transcript that runs away.
pub const MAX_WER_SESSION: f64 = 1.6;
pub const MAX_WER_POOLED: f64 = 1.0;
/// Share of the spoken words (as a multiset) that the transcript has,
/// pooled: 0.22-0.64 per session, about 0.45 pooled. An empty or unrelated
/// transcript (broken audio path, model or language) scores near 0.
pub const MIN_HEARD_POOLED: f64 = 0.3;
/// A candidate by a detector a friction lists under `also` is not false when
/// it starts this close to the friction's span.
const ALSO_WINDOW_NS: i64 = 2_000_000_000;

/// The bounds a run is judged by; [`Default`] gives the constants above.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub step_tolerance_s: f64,
    pub friction_tolerance_s: f64,
    pub max_false: usize,
    pub max_wer_session: f64,
    pub max_wer_pooled: f64,
    pub min_heard_pooled: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            step_tolerance_s: STEP_TOLERANCE_S,
            friction_tolerance_s: FRICTION_TOLERANCE_S,
            max_false: MAX_FALSE,
            max_wer_session: MAX_WER_SESSION,
            max_wer_pooled: MAX_WER_POOLED,
            min_heard_pooled: MIN_HEARD_POOLED,
        }
    }
}

/// A truth file as `demo/personas.js` writes it (the fields the rules use).
#[derive(Debug, Clone, Deserialize)]
pub struct Truth {
    pub persona: String,
    pub participant: String,
    pub session_id: String,
    /// The session's bundle (an absolute path on the machine that recorded it).
    pub bundle: PathBuf,
    pub task: Span,
    /// The visits walked: a step entered again is a new visit.
    pub steps: Vec<Visit>,
    pub frictions: Vec<Friction>,
    pub speech: Vec<Phrase>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Span {
    pub start_ns: i64,
    pub end_ns: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Visit {
    pub step: String,
    pub visit: u32,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// An injected friction.
#[derive(Debug, Clone, Deserialize)]
pub struct Friction {
    pub kind: String,
    /// The detector that must propose it.
    pub detector: String,
    pub step: String,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Other detectors that may fire at it without counting as false.
    #[serde(default)]
    pub also: Vec<String>,
    /// Said rather than done: depends on what Whisper makes of espeak-ng.
    #[serde(default)]
    pub spoken: bool,
    /// `"span"`: a candidate may start anywhere in the utterance.
    #[serde(default, rename = "match")]
    pub match_rule: Option<String>,
}

impl Friction {
    /// How far a candidate starting at `t` is from this friction: from its
    /// start, or, for a spoken friction (`match: "span"`), from the utterance
    /// (a cue may be anywhere in what was said, lead-in included).
    pub fn offset(&self, t: i64) -> i64 {
        if self.match_rule.as_deref() == Some("span") {
            (self.start_ns - t).max(t - self.end_ns).max(0)
        } else {
            (t - self.start_ns).abs()
        }
    }
}

/// A phrase the participant said.
#[derive(Debug, Clone, Deserialize)]
pub struct Phrase {
    pub text: String,
}

impl Truth {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The truth files of a `run-demo` / `run-personas` output folder
/// (`<out>/truth/*.json`), sorted; an error if there are none.
pub fn truth_files(out: &Path) -> Result<Vec<PathBuf>> {
    let dir = out.join("truth");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no truth files in {}", out.display());
    }
    Ok(files)
}

/// The words of `text`, lowercased, `ё` as `е`, split at anything that is not
/// alphanumeric.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('ё', "е")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// Word-level edit distance and reference length.
pub fn edits(reference: &str, hypothesis: &str) -> (usize, usize) {
    let (r, h) = (words(reference), words(hypothesis));
    let mut d: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut prev = d[0];
        d[0] = i;
        for j in 1..=h.len() {
            let cur = d[j];
            d[j] = (d[j] + 1)
                .min(d[j - 1] + 1)
                .min(prev + usize::from(r[i - 1] != h[j - 1]));
            prev = cur;
        }
    }
    (d[h.len()], r.len())
}

/// How many reference words the hypothesis has, counted as multisets.
pub fn hits(reference: &str, hypothesis: &str) -> usize {
    let mut left = words(hypothesis);
    words(reference)
        .into_iter()
        .filter(|w| {
            left.iter()
                .position(|h| h == w)
                .map(|i| left.swap_remove(i))
                .is_some()
        })
        .count()
}

fn s(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// What one session measured against its truth.
#[derive(Debug, Clone)]
pub struct SessionReport {
    pub persona: String,
    pub participant: String,
    pub session_id: String,
    /// From task start to task end, seconds.
    pub task_s: f64,
    /// |found - walked| per step boundary, seconds (empty if the visits differ).
    pub step_errors: Vec<f64>,
    /// Start error of each friction found, seconds.
    pub friction_errors: Vec<f64>,
    pub frictions: usize,
    pub spoken: usize,
    pub spoken_found: usize,
    /// The spoken frictions not proposed (judged over all sessions).
    pub missed_spoken: Vec<String>,
    /// The candidates that match no injected friction.
    pub false_candidates: Vec<String>,
    /// What was said and what the transcript has.
    pub said: String,
    pub heard: String,
    pub edits: usize,
    pub hits: usize,
    pub ref_words: usize,
    /// Each injected friction: its detector and, when found, the start error
    /// in seconds.
    pub injected: Vec<(String, Option<f64>)>,
    /// Each candidate: its detector, confidence, and whether it matched an
    /// injected friction (or fired at one under the friction's `also`).
    pub proposed: Vec<(String, f32, bool)>,
    /// Broken bounds of this session.
    pub problems: Vec<String>,
}

impl SessionReport {
    pub fn wer(&self) -> f64 {
        self.edits as f64 / self.ref_words.max(1) as f64
    }

    /// The session's figures on one line (no newline; `demo persona …`).
    pub fn figures(&self) -> String {
        format!(
            "demo persona {}: step boundary error max {:.3} s over {} boundaries; frictions {}/{} found, \
             start error max {:.3} s; {} false candidates; WER {:.2} ({} edits for {} words), {} words heard",
            self.persona,
            max(&self.step_errors),
            self.step_errors.len(),
            self.friction_errors.len(),
            self.frictions,
            max(&self.friction_errors),
            self.false_candidates.len(),
            self.wer(),
            self.edits,
            self.ref_words,
            self.hits
        )
    }
}

/// The details (missed spoken frictions, false candidates, said and heard),
/// indented, then the figures line.
impl fmt::Display for SessionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.missed_spoken {
            writeln!(f, "    missed (speech): {m}")?;
        }
        for c in &self.false_candidates {
            writeln!(f, "    false candidate: {c}")?;
        }
        writeln!(f, "    said:  {}\n    heard: {}", self.said, self.heard)?;
        write!(f, "{}", self.figures())
    }
}

fn describe(c: &Candidate) -> String {
    format!(
        "{} at {:?} {:.2} s ({}): {}",
        c.detector,
        c.step,
        s(c.start_ns),
        c.confidence,
        c.evidence.note
    )
}

/// Reads a truth file and its bundle's analysis and measures the session.
/// An error only when a file cannot be read; broken bounds are `problems`.
pub fn check_session(truth_path: &Path, bounds: &Bounds) -> Result<SessionReport> {
    let t = Truth::read(truth_path)?;
    let context = |what: &str| format!("{what} of {}", t.bundle.display());
    let steps = StepAnalysis::read(&t.bundle).with_context(|| context("steps"))?;
    let cands = CandidateList::read(&t.bundle).with_context(|| context("candidates"))?;
    let transcript = Transcript::read(&t.bundle).with_context(|| context("transcript"))?;
    Ok(measure(&t, &steps, &cands, &transcript, bounds))
}

/// The rules, on documents already read.
pub fn measure(
    t: &Truth,
    steps: &StepAnalysis,
    cands: &CandidateList,
    transcript: &Transcript,
    bounds: &Bounds,
) -> SessionReport {
    let mut problems = Vec::new();

    // Steps: the same visits in the same order, boundaries close.
    let want: Vec<(String, u32)> = t.steps.iter().map(|v| (v.step.clone(), v.visit)).collect();
    let got: Vec<(String, u32)> = steps
        .intervals
        .iter()
        .map(|i| (i.step.clone(), i.visit))
        .collect();
    let mut step_errors = Vec::new();
    if want != got {
        problems.push(format!("steps: walked {want:?}, found {got:?}"));
    } else {
        for (v, i) in t.steps.iter().zip(&steps.intervals) {
            for (key, walked, found) in [
                ("start_ns", v.start_ns, i.start_ns),
                ("end_ns", v.end_ns, i.end_ns),
            ] {
                let err = s(found - walked);
                step_errors.push(err.abs());
                if err.abs() > bounds.step_tolerance_s {
                    problems.push(format!(
                        "step {} visit {}: {key} off by {err:+.3} s",
                        i.step, i.visit
                    ));
                }
            }
        }
    }

    // Frictions: each proposed by its detector at its step and time.
    let mut used = vec![false; cands.candidates.len()];
    let mut friction_errors = Vec::new();
    let mut injected = Vec::new();
    let mut spoken_found = 0;
    let mut missed_spoken = Vec::new();
    for f in &t.frictions {
        let best = cands
            .candidates
            .iter()
            .enumerate()
            // A candidate another detector's was merged into proposes it too.
            .filter(|(_, c)| {
                (c.detector == f.detector || c.also.contains(&f.detector))
                    && c.step.as_deref() == Some(&*f.step)
            })
            .map(|(i, c)| (f.offset(c.start_ns), i))
            .filter(|(err, _)| s(*err) <= bounds.friction_tolerance_s)
            .min();
        injected.push((f.detector.clone(), best.map(|(err, _)| s(err))));
        match best {
            Some((err, i)) => {
                used[i] = true;
                friction_errors.push(s(err));
                if f.spoken {
                    spoken_found += 1;
                }
            }
            None if f.spoken => missed_spoken.push(format!(
                "{:?} ({} at {}, {:.2} s)",
                f.kind,
                f.detector,
                f.step,
                s(f.start_ns)
            )),
            None => {
                let seen: Vec<_> = cands
                    .candidates
                    .iter()
                    .map(|c| {
                        format!(
                            "{} at {:?} {:+.2} s",
                            c.detector,
                            c.step,
                            s(c.start_ns - f.start_ns)
                        )
                    })
                    .collect();
                problems.push(format!(
                    "friction {:?} ({} at {}, {:.2} s) not proposed; candidates: {seen:?}",
                    f.kind,
                    f.detector,
                    f.step,
                    s(f.start_ns)
                ));
            }
        }
    }
    // A detector a friction lists under `also`, firing at that friction, is not a false candidate.
    for (i, c) in cands.candidates.iter().enumerate() {
        for f in &t.frictions {
            if f.also.contains(&c.detector)
                && c.start_ns >= f.start_ns - ALSO_WINDOW_NS
                && c.start_ns <= f.end_ns + ALSO_WINDOW_NS
            {
                used[i] = true;
            }
        }
    }
    let proposed = cands
        .candidates
        .iter()
        .zip(&used)
        .map(|(c, &u)| (c.detector.clone(), c.confidence, u))
        .collect();
    let false_candidates: Vec<String> = cands
        .candidates
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(c, _)| describe(c))
        .collect();
    if false_candidates.len() > bounds.max_false {
        problems.push(format!(
            "{} false candidates (at most {})",
            false_candidates.len(),
            bounds.max_false
        ));
    }

    // The transcript against what was said.
    let said = t
        .speech
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let heard = transcript
        .segments
        .iter()
        .map(|seg| seg.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let (e, n) = edits(&said, &heard);
    let heard_words = hits(&said, &heard);
    let wer = e as f64 / n.max(1) as f64;
    if wer > bounds.max_wer_session {
        problems.push(format!("WER {wer:.2} > {}", bounds.max_wer_session));
    }
    SessionReport {
        persona: t.persona.clone(),
        participant: t.participant.clone(),
        session_id: t.session_id.clone(),
        task_s: s(t.task.end_ns - t.task.start_ns),
        step_errors,
        friction_errors,
        frictions: t.frictions.len(),
        spoken: t.frictions.iter().filter(|f| f.spoken).count(),
        spoken_found,
        missed_spoken,
        false_candidates,
        said,
        heard,
        edits: e,
        hits: heard_words,
        ref_words: n,
        injected,
        proposed,
        problems,
    }
}

/// Per-detector figures over sessions: what the bar is stated in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectorScore {
    pub detector: String,
    /// Injected frictions this detector must propose, and how many it did.
    pub injected: usize,
    pub found: usize,
    /// Its candidates, and how many matched a friction.
    pub proposed: usize,
    pub right: usize,
    /// Start errors of the frictions found, seconds.
    pub errors: Vec<f64>,
}

impl DetectorScore {
    pub fn recall(&self) -> Option<f64> {
        (self.injected > 0).then(|| self.found as f64 / self.injected as f64)
    }
    pub fn precision(&self) -> Option<f64> {
        (self.proposed > 0).then(|| self.right as f64 / self.proposed as f64)
    }
}

/// Per detector (sorted by name), then an `all` row.
pub fn by_detector(sessions: &[SessionReport]) -> Vec<DetectorScore> {
    let mut rows: std::collections::BTreeMap<String, DetectorScore> = Default::default();
    let mut all = DetectorScore {
        detector: "all".into(),
        ..Default::default()
    };
    for m in sessions {
        for (d, found) in &m.injected {
            for r in [rows.entry(d.clone()).or_default(), &mut all] {
                r.injected += 1;
                if let Some(e) = found {
                    r.found += 1;
                    r.errors.push(*e);
                }
            }
        }
        for (d, _, right) in &m.proposed {
            for r in [rows.entry(d.clone()).or_default(), &mut all] {
                r.proposed += 1;
                r.right += usize::from(*right);
            }
        }
    }
    let mut out: Vec<DetectorScore> = rows
        .into_iter()
        .map(|(d, mut r)| {
            r.detector = d;
            r
        })
        .collect();
    out.push(all);
    out
}

/// The per-detector table, Markdown (for `docs/measurements.md`).
pub fn detector_table(rows: &[DetectorScore]) -> String {
    let figure = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2}"));
    let mut out = String::from(
        "| detector | injected | found | recall | proposed | right | precision | start error median / max, s |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let mut e = r.errors.clone();
        e.sort_by(f64::total_cmp);
        let timing = if e.is_empty() {
            "–".to_string()
        } else {
            format!("{:.2} / {:.2}", median(&e), e[e.len() - 1])
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {timing} |\n",
            r.detector,
            r.injected,
            r.found,
            figure(r.recall()),
            r.proposed,
            r.right,
            figure(r.precision())
        );
    }
    out
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Confidence bins a calibration table uses: [lower, upper).
pub const CONFIDENCE_BINS: &[(f32, f32)] = &[
    (0.0, 0.45),
    (0.45, 0.55),
    (0.55, 0.65),
    (0.65, 0.8),
    (0.8, 1.01),
];

/// One bin of the calibration table: candidates whose confidence falls in
/// it, their mean confidence, and the share that were right.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub lower: f32,
    pub upper: f32,
    pub n: usize,
    pub mean_confidence: f64,
    pub right: usize,
}

/// The candidates binned by confidence, and the expected calibration error
/// (the bins' |share right − mean confidence|, weighted by their counts).
pub fn calibration(sessions: &[SessionReport]) -> (Vec<Bin>, f64) {
    let mut bins: Vec<Bin> = CONFIDENCE_BINS
        .iter()
        .map(|&(lower, upper)| Bin {
            lower,
            upper,
            n: 0,
            mean_confidence: 0.0,
            right: 0,
        })
        .collect();
    for (_, conf, right) in sessions.iter().flat_map(|m| &m.proposed) {
        if let Some(b) = bins
            .iter_mut()
            .find(|b| *conf >= b.lower && *conf < b.upper)
        {
            b.n += 1;
            b.mean_confidence += f64::from(*conf);
            b.right += usize::from(*right);
        }
    }
    let total: usize = bins.iter().map(|b| b.n).sum();
    let mut ece = 0.0;
    for b in &mut bins {
        if b.n > 0 {
            b.mean_confidence /= b.n as f64;
            ece +=
                b.n as f64 / total as f64 * (b.right as f64 / b.n as f64 - b.mean_confidence).abs();
        }
    }
    (bins, ece)
}

/// The calibration table, Markdown.
pub fn calibration_table(bins: &[Bin], ece: f64) -> String {
    let mut out = String::from(
        "| confidence | candidates | mean confidence | right | share right |\n|---|---|---|---|---|\n",
    );
    for b in bins {
        let share = if b.n == 0 {
            "–".to_string()
        } else {
            format!("{:.2}", b.right as f64 / b.n as f64)
        };
        let mean = if b.n == 0 {
            "–".to_string()
        } else {
            format!("{:.2}", b.mean_confidence)
        };
        out += &format!(
            "| {:.2}–{:.2} | {} | {mean} | {} | {share} |\n",
            b.lower,
            b.upper.min(1.0),
            b.n,
            b.right
        );
    }
    out += &format!("\nexpected calibration error {ece:.3}\n");
    out
}

/// The figures over all sessions together.
#[derive(Debug, Clone)]
pub struct Pooled {
    pub edits: usize,
    pub hits: usize,
    pub ref_words: usize,
    pub spoken: usize,
    pub spoken_found: usize,
    /// Broken pooled bounds.
    pub problems: Vec<String>,
}

impl Pooled {
    pub fn wer(&self) -> f64 {
        self.edits as f64 / self.ref_words.max(1) as f64
    }

    /// The share of the spoken words heard.
    pub fn heard(&self) -> f64 {
        self.hits as f64 / self.ref_words.max(1) as f64
    }
}

/// Two lines (`demo personas: …`): the spoken frictions found and the pooled
/// word error rate.
impl fmt::Display for Pooled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "demo personas: spoken frictions found {} of {}",
            self.spoken_found, self.spoken
        )?;
        write!(
            f,
            "demo personas: pooled WER {:.2} ({} edits for {} words), {:.2} of the words heard",
            self.wer(),
            self.edits,
            self.ref_words,
            self.heard()
        )
    }
}

/// Pools the sessions: at least two thirds of the spoken frictions found, the
/// pooled word error rate and the share of the words heard within bounds.
pub fn pool(sessions: &[SessionReport], bounds: &Bounds) -> Pooled {
    let sum = |f: fn(&SessionReport) -> usize| sessions.iter().map(f).sum::<usize>();
    let mut p = Pooled {
        edits: sum(|m| m.edits),
        hits: sum(|m| m.hits),
        ref_words: sum(|m| m.ref_words),
        spoken: sum(|m| m.spoken),
        spoken_found: sum(|m| m.spoken_found),
        problems: Vec::new(),
    };
    if p.spoken_found * 3 < p.spoken * 2 {
        p.problems.push(format!(
            "only {} of {} spoken frictions were proposed (at least two thirds)",
            p.spoken_found, p.spoken
        ));
    }
    let (wer, heard) = (p.wer(), p.heard());
    if wer > bounds.max_wer_pooled {
        p.problems
            .push(format!("pooled WER {wer:.2} > {}", bounds.max_wer_pooled));
    }
    if heard < bounds.min_heard_pooled {
        p.problems.push(format!(
            "only {heard:.2} of the spoken words are in the transcripts (at least {})",
            bounds.min_heard_pooled
        ));
    }
    p
}

/// Every problem of the run: each session's, prefixed with its persona, then
/// the pooled ones.
pub fn problems(sessions: &[SessionReport], pooled: &Pooled) -> Vec<String> {
    sessions
        .iter()
        .flat_map(|m| {
            m.problems
                .iter()
                .map(move |p| format!("{}: {p}", m.persona))
        })
        .chain(pooled.problems.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests;
