//! The analysis stages (`lab-analyze run`), in their order, with their share
//! of a run's time, and the progress line the analyzer writes on stderr for
//! whoever runs it (lab-web's job worker) to read instead of prose.
//!
//! A progress line is one JSON object on its own line:
//!
//! ```text
//! {"lab_progress":1,"stage":"speech","done":3,"total":10}
//! ```
//!
//! `lab_progress` is the line format's version ([`PROGRESS_FORMAT_VERSION`]);
//! `done` of `total` units of the stage are finished (`0` of `0`: the stage
//! started; `1` of `1`: it ended). Other stderr lines are for people.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::files::AnalysisFile;

/// Version of the progress line; a reader ignores lines of another version.
pub const PROGRESS_FORMAT_VERSION: u32 = 1;
/// What `--force all` means: every stage.
pub const FORCE_ALL: &str = "all";
/// Longest progress line a reader looks at.
const MAX_PROGRESS_LINE: usize = 512;

/// A stage of `lab-analyze run`. Stages run in this order; each reads what
/// the earlier ones wrote, so forcing one redoes it and every later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Voice activity and transcript.
    Speech,
    /// Journey steps.
    Steps,
    /// Friction candidates.
    Candidates,
    /// Web renditions, thumbnails, waveform peaks.
    Renditions,
    /// The QA report.
    Qa,
}

/// Where each stage's share of a whole run begins, and (last) 1: measured
/// on real sessions, transcription dominates and renditions come second.
const STARTS: [f64; 6] = [0.0, 0.6, 0.62, 0.64, 0.95, 1.0];

impl Stage {
    /// Every stage, in run order.
    pub const ALL: [Stage; 5] = [
        Self::Speech,
        Self::Steps,
        Self::Candidates,
        Self::Renditions,
        Self::Qa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Speech => "speech",
            Self::Steps => "steps",
            Self::Candidates => "candidates",
            Self::Renditions => "renditions",
            Self::Qa => "qa",
        }
    }

    /// Position in the run order, from 0.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Bumped per stage when its output changes meaning, so old results are
    /// redone: renditions 2 and qa 2 added the per-segment checks.
    pub fn version(self) -> u32 {
        match self {
            Self::Renditions | Self::Qa => 2,
            _ => 1,
        }
    }

    /// The share of a whole run before this stage and at its end, 0-1.
    pub fn span(self) -> (f64, f64) {
        (STARTS[self.index()], STARTS[self.index() + 1])
    }

    /// This stage's share of a whole run (the weights sum to 1).
    pub fn weight(self) -> f64 {
        let (from, to) = self.span();
        to - from
    }

    /// What the stage writes.
    pub fn outputs(self) -> &'static [AnalysisFile] {
        match self {
            Self::Speech => &[AnalysisFile::Speech, AnalysisFile::Transcript],
            Self::Steps => &[AnalysisFile::Steps, AnalysisFile::Journey],
            Self::Candidates => &[AnalysisFile::Candidates],
            Self::Renditions => &[AnalysisFile::Renditions, AnalysisFile::Peaks],
            Self::Qa => &[AnalysisFile::Qa],
        }
    }

    /// The first stage `--force NAME` redoes: the named stage, or the first
    /// for [`FORCE_ALL`].
    pub fn forced_from(name: &str) -> Result<Stage, UnknownStage> {
        if name == FORCE_ALL {
            Ok(Self::ALL[0])
        } else {
            name.parse()
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A name that is not a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStage(pub String);

impl std::fmt::Display for UnknownStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown stage {:?}; stages are ", self.0)?;
        for st in Stage::ALL {
            write!(f, "{}, ", st.as_str())?;
        }
        write!(f, "or {FORCE_ALL}")
    }
}

impl std::error::Error for UnknownStage {}

impl FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStage(s.to_string()))
    }
}

/// How far a stage has got: `done` of `total` units (Whisper windows for
/// `speech`; `0` of `0` when a stage starts, `1` of `1` when it ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub done: u64,
    pub total: u64,
}

/// The progress line on the wire.
#[derive(Serialize, Deserialize)]
struct Line {
    lab_progress: u32,
    stage: Stage,
    done: u64,
    total: u64,
}

impl Progress {
    /// `stage` has started.
    pub fn started(stage: Stage) -> Self {
        Self {
            stage,
            done: 0,
            total: 0,
        }
    }

    /// `stage` has ended.
    pub fn finished(stage: Stage) -> Self {
        Self {
            stage,
            done: 1,
            total: 1,
        }
    }

    /// The line to write (without its newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(&Line {
            lab_progress: PROGRESS_FORMAT_VERSION,
            stage: self.stage,
            done: self.done,
            total: self.total,
        })
        .expect("progress serialises")
    }

    /// The progress a line reports; `None` for any other line (prose, an
    /// unknown stage or version, garbage).
    pub fn parse_line(line: &str) -> Option<Self> {
        let line = line.trim();
        if line.len() > MAX_PROGRESS_LINE || !line.starts_with('{') {
            return None;
        }
        let l: Line = serde_json::from_str(line).ok()?;
        (l.lab_progress == PROGRESS_FORMAT_VERSION).then_some(Self {
            stage: l.stage,
            done: l.done,
            total: l.total,
        })
    }

    /// How much of the whole run is done, 0-1: the earlier stages' weights
    /// plus this stage's weight times `done / total`.
    pub fn overall(&self) -> f64 {
        let (from, to) = self.stage.span();
        let part = if self.total == 0 {
            0.0
        } else {
            (self.done as f64 / self.total as f64).min(1.0)
        };
        from + (to - from) * part
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_round_trips() {
        let p = Progress {
            stage: Stage::Speech,
            done: 3,
            total: 10,
        };
        let line = p.to_line();
        assert_eq!(
            line,
            r#"{"lab_progress":1,"stage":"speech","done":3,"total":10}"#
        );
        assert_eq!(Progress::parse_line(&line), Some(p));
        assert_eq!(Progress::parse_line(&format!("  {line}\r")), Some(p));
        for s in Stage::ALL {
            let p = Progress::started(s);
            assert_eq!(Progress::parse_line(&p.to_line()), Some(p));
        }
    }

    #[test]
    fn unknown_stages_versions_and_garbage_are_not_progress() {
        for line in [
            r#"{"lab_progress":1,"stage":"transcode","done":1,"total":2}"#,
            r#"{"lab_progress":2,"stage":"speech","done":1,"total":2}"#,
            r#"{"stage":"speech","done":1,"total":2}"#,
            r#"{"lab_progress":1,"stage":"speech","done":-1,"total":2}"#,
            r#"{"lab_progress":1,"stage":"speech""#,
            "lab-analyze: speech: running",
            "lab-analyze: speech: channel 0 (Participant) window 3/6",
            "",
            "{}",
            "\u{0}\u{1}garbage{",
        ] {
            assert_eq!(Progress::parse_line(line), None, "{line}");
        }
        let long = format!(
            r#"{{"lab_progress":1,"stage":"speech","done":1,"total":2,"x":"{}"}}"#,
            "a".repeat(1000)
        );
        assert_eq!(Progress::parse_line(&long), None);
    }

    #[test]
    fn stage_names_parse_and_unknown_ones_are_refused() {
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(s));
            assert_eq!(Stage::forced_from(s.as_str()), Ok(s));
        }
        assert_eq!(Stage::forced_from("all"), Ok(Stage::Speech));
        let e = "transcode".parse::<Stage>().unwrap_err();
        assert_eq!(e, UnknownStage("transcode".into()));
        assert!(e.to_string().contains("unknown stage \"transcode\""), "{e}");
        assert!("Speech".parse::<Stage>().is_err());
        assert_eq!(format!("{:>11}|", Stage::Qa), "         qa|");
    }

    /// The weights lab-web showed before the progress line existed.
    #[test]
    fn overall_uses_the_stage_weights() {
        assert_eq!(Progress::started(Stage::Speech).overall(), 0.0);
        let p = Progress {
            stage: Stage::Speech,
            done: 3,
            total: 6,
        };
        assert!((p.overall() - 0.3).abs() < 1e-9);
        assert_eq!(Progress::started(Stage::Renditions).overall(), 0.64);
        assert_eq!(Progress::finished(Stage::Qa).overall(), 1.0);
        let over = Progress {
            stage: Stage::Steps,
            done: 9,
            total: 2,
        };
        assert_eq!(over.overall(), Stage::Steps.span().1);
        let sum: f64 = Stage::ALL.iter().map(|s| s.weight()).sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn overall_rises_monotonically_through_a_run() {
        let mut last = -1.0;
        for s in Stage::ALL {
            let mut steps = vec![Progress::started(s)];
            steps.extend((0..=4).map(|done| Progress {
                stage: s,
                done,
                total: 4,
            }));
            steps.push(Progress::finished(s));
            for p in steps {
                let o = p.overall();
                assert!((0.0..=1.0).contains(&o), "{p:?}: {o}");
                assert!(o >= last, "{p:?}: {o} after {last}");
                last = o;
            }
        }
        assert_eq!(last, 1.0);
    }
}
