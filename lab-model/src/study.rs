//! A study set-up: what a station needs to run sessions of one study — the
//! life situation (journey) it walks, the tasks with the instruction the
//! participant reads, the consent text, the participant code pattern and the
//! questionnaires. Researchers edit it in lab-web; a station pulls it from
//! the lab server, or reads a local TOML file when offline
//! (`docs/study-format.md`). Versioned; unknown fields are errors.

use serde::{Deserialize, Serialize};

pub const STUDY_FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("study set-up is not valid TOML of the expected shape")]
    Parse(#[source] Box<toml::de::Error>),
    #[error("study set-up has format_version {0}; this build reads version {STUDY_FORMAT_VERSION}")]
    Version(u32),
    #[error("study set-up: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub format_version: u32,
    /// Plain id (`[A-Za-z0-9_.-]`, ≤ 64), e.g. `child-benefit-2026-spring`.
    pub id: String,
    /// What operators and researchers see, e.g. «Единое пособие, весна 2026».
    pub title: String,
    /// The journey id (`journeys/<life_situation>.toml`).
    pub life_situation: String,
    /// Shown to the operator (and read to the participant) before the
    /// session; the operator confirms it was agreed to.
    pub consent_text: String,
    /// The participant code's form: `#` a digit, `A` a Latin capital, any
    /// other character itself; e.g. `P##` takes `P07`. Codes are
    /// pseudonymous: a pattern cannot match a name.
    #[serde(default = "default_pattern")]
    pub participant_pattern: String,
    #[serde(default)]
    pub questionnaires: Questionnaires,
    pub tasks: Vec<Task>,
}

fn default_pattern() -> String {
    "P##".into()
}

/// Which questions the participant answers on the station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Questionnaires {
    /// After each task: emotion and significance of each step it covers.
    #[serde(default = "yes")]
    pub step_ratings: bool,
    /// After each task: the Single Ease Question.
    #[serde(default = "yes")]
    pub seq: bool,
    /// At the end: the System Usability Scale.
    #[serde(default = "yes")]
    pub sus: bool,
}

fn yes() -> bool {
    true
}

impl Default for Questionnaires {
    fn default() -> Self {
        Self {
            step_ratings: true,
            seq: true,
            sus: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Plain id, unique in the study (`t1`, `find-service`).
    pub id: String,
    pub title: String,
    /// What the participant reads before the task.
    pub instruction: String,
    /// Expected duration in seconds (0: none).
    #[serde(default)]
    pub expected_s: u32,
    /// Journey step ids the task covers (rated after it).
    #[serde(default)]
    pub steps: Vec<String>,
}

fn plain_id(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
        && !s.starts_with('.')
}

/// Whether `code` has the form `pattern` describes.
pub fn matches_pattern(pattern: &str, code: &str) -> bool {
    let (p, c): (Vec<char>, Vec<char>) = (pattern.chars().collect(), code.chars().collect());
    p.len() == c.len()
        && p.iter().zip(&c).all(|(p, c)| match p {
            '#' => c.is_ascii_digit(),
            'A' => c.is_ascii_uppercase(),
            other => other == c,
        })
}

impl Study {
    pub fn from_toml(text: &str) -> Result<Self, StudyError> {
        let s: Study = toml::from_str(text).map_err(|e| StudyError::Parse(Box::new(e)))?;
        s.validate()?;
        Ok(s)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a study serialises")
    }

    pub fn validate(&self) -> Result<(), StudyError> {
        if self.format_version != STUDY_FORMAT_VERSION {
            return Err(StudyError::Version(self.format_version));
        }
        let bad = |m: String| Err(StudyError::Invalid(m));
        if !plain_id(&self.id, 64) {
            return bad(format!("id {:?} is not a plain id", self.id));
        }
        if !plain_id(&self.life_situation, 64) {
            return bad(format!(
                "life_situation {:?} is not a journey id",
                self.life_situation
            ));
        }
        if self.title.trim().is_empty() || self.title.chars().count() > 200 {
            return bad("title is 1–200 characters".into());
        }
        if self.consent_text.trim().is_empty() || self.consent_text.len() > 20_000 {
            return bad("consent_text is required (at most 20,000 bytes)".into());
        }
        let p = &self.participant_pattern;
        let pattern_ok = (2..=32).contains(&p.len())
            && p.contains('#')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '#' || c == '-' || c == '_');
        if !pattern_ok {
            return bad(format!(
                "participant_pattern {p:?}: 2–32 of Latin letters, digits, - and _, with at least one # (a digit), so a code is never a name"
            ));
        }
        if self.tasks.len() > 100 {
            return bad("at most 100 tasks".into());
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tasks {
            if !plain_id(&t.id, 64) || !seen.insert(t.id.as_str()) {
                return bad(format!("task id {:?} is not a plain, unique id", t.id));
            }
            if t.title.trim().is_empty() || t.title.chars().count() > 200 {
                return bad(format!("task {}: title is 1–200 characters", t.id));
            }
            if t.instruction.len() > 10_000 {
                return bad(format!("task {}: instruction over 10,000 bytes", t.id));
            }
            if t.expected_s > 86_400 {
                return bad(format!("task {}: expected_s over a day", t.id));
            }
            if t.steps.len() > 100 || t.steps.iter().any(|s| !plain_id(s, 100)) {
                return bad(format!("task {}: steps are journey step ids", t.id));
            }
        }
        Ok(())
    }

    /// Whether `code` is a participant code of this study: its pattern,
    /// and the bundle contract's rule.
    pub fn participant_ok(&self, code: &str) -> bool {
        matches_pattern(&self.participant_pattern, code)
            && crate::bundle::manifest::valid_participant(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
format_version = 1
id = "child-benefit-2026"
title = "Единое пособие, весна 2026"
life_situation = "child-benefit"
consent_text = "Я согласен(на) на запись экрана, лица и голоса."
participant_pattern = "P##"

[[tasks]]
id = "t1"
title = "Найти услугу"
instruction = "Найдите на портале, как оформить единое пособие."
expected_s = 180
steps = ["catalog", "service"]

[[tasks]]
id = "t2"
title = "Заполнить заявление"
instruction = "Заполните заявление по карточке участника."
expected_s = 600
steps = ["form", "submit"]
"#;

    #[test]
    fn the_documented_example_reads_and_round_trips() {
        let s = Study::from_toml(EXAMPLE).unwrap();
        assert_eq!(s.tasks.len(), 2);
        assert!(s.questionnaires.sus && s.questionnaires.seq && s.questionnaires.step_ratings);
        assert_eq!(Study::from_toml(&s.to_toml()).unwrap(), s);
    }

    #[test]
    fn participant_codes_follow_the_pattern_and_never_a_name() {
        let s = Study::from_toml(EXAMPLE).unwrap();
        for ok in ["P07", "P99"] {
            assert!(s.participant_ok(ok), "{ok}");
        }
        for bad in ["P7", "P007", "p07", "Иванов", "Ivanov", "", "P0A"] {
            assert!(!s.participant_ok(bad), "{bad}");
        }
        assert!(matches_pattern("KZ-A##", "KZ-B12"));
        assert!(!matches_pattern("KZ-A##", "KZ-b12"));
    }

    #[test]
    fn bad_set_ups_name_what_is_wrong() {
        let cases = [
            (
                EXAMPLE.replace("format_version = 1", "format_version = 2"),
                "format_version 2",
            ),
            (
                EXAMPLE.replace("\"P##\"", "\"Ivanov\""),
                "participant_pattern",
            ),
            (EXAMPLE.replace("id = \"t2\"", "id = \"t1\""), "unique"),
            (
                EXAMPLE.replace("\"form\", \"submit\"", "\"../x\""),
                "step ids",
            ),
            (
                EXAMPLE.replace(
                    "consent_text = \"Я согласен(на) на запись экрана, лица и голоса.\"",
                    "consent_text = \" \"",
                ),
                "consent_text",
            ),
            (format!("{EXAMPLE}\nextra = 1"), "expected shape"),
        ];
        for (text, want) in cases {
            let e = Study::from_toml(&text).unwrap_err().to_string();
            let e = match Study::from_toml(&text).unwrap_err() {
                StudyError::Invalid(m) => m,
                _ => e,
            };
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
