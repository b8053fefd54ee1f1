//! Journey definitions: the steps of a life situation's customer journey map
//! and the rules that say when a participant has entered each step. One
//! TOML file per life situation, versioned, written by researchers (in
//! Russian). Format documented in `docs/journey-format.md`.
//!
//! ```toml
//! format_version = 1
//! id = "birth-benefit"
//! title = "Рождение ребёнка: единое пособие"
//! version = "2026.1"
//!
//! [[steps]]
//! id = "login"
//! title = "Войти через Госуслуги"
//! significance = 5
//! expected_seconds = 45
//! enter = [{ url = "*/login*" }, { marker = "step:login" }]
//! ```

use serde::{Deserialize, Serialize};

pub const JOURNEY_FORMAT_VERSION: u32 = 1;
/// Longest journey id (life situation id), in bytes.
pub const MAX_JOURNEY_ID_LEN: usize = 64;

/// Whether `id` is a journey (life situation) id: 1-64 characters of `a-z`,
/// `0-9`, `-` and `_`, starting with a letter or digit. The one rule for the
/// `id` of a journey definition, a manifest's `life_situation` and the file
/// name `<id>.toml` it is looked up by: such an id is a single, non-hidden
/// path component, so it can never name a file outside the journeys folder.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    (1..=MAX_JOURNEY_ID_LEN).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journey {
    pub format_version: u32,
    /// Stable id of the life situation, e.g. `birth-benefit`.
    pub id: String,
    /// Title in Russian.
    pub title: String,
    /// Version of this journey map; bundles and analyses record it.
    pub version: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    pub title: String,
    /// How much the step matters to the citizen, 1 (little) to 5 (critical).
    pub significance: u8,
    /// Benchmark duration of the step (хронометраж) in seconds.
    pub expected_seconds: f64,
    /// The step is entered when any of these rules matches an event.
    pub enter: Vec<EntryRule>,
}

/// All given fields must match the same event (AND); a step has several rules (OR).
/// Text patterns are globs: `*` any run of characters, `?` one; case-insensitive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRule {
    /// Page URL (navigation events, and clicks carry the page they were on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Page title (navigation events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// CSS selector of a clicked element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Visible text of a clicked element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_text: Option<String>,
    /// Operator marker: `type:label` (e.g. `step:Вход`), or a bare label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JourneyError {
    #[error("journey definition line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("journey definition: {0}")]
    Invalid(String),
}

/// " (line N)" of a top-level `field = ...` (before the first table), or "".
fn at_top(text: &str, field: &str) -> String {
    let top = text.find("\n[").map_or(text, |o| &text[..o]);
    let mut offset = 0;
    for line in top.split_inclusive('\n') {
        if line.trim_start().starts_with(field)
            && line.trim_start()[field.len()..]
                .trim_start()
                .starts_with('=')
        {
            return format!(" (line {})", line_col(text, offset).0);
        }
        offset += line.len();
    }
    String::new()
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Journey {
    /// Parses and validates; errors name the line and the field.
    pub fn from_toml(text: &str) -> Result<Self, JourneyError> {
        let journey: Journey = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            JourneyError::Syntax {
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        journey.validate(text)?;
        Ok(journey)
    }

    fn validate(&self, text: &str) -> Result<(), JourneyError> {
        // The line of `field` in the block of step `id` (the first line of the
        // step when the field is not written out), for messages people can act on.
        let at = |id: &str, field: &str| {
            let Some(step) = text.find(&format!("\"{id}\"")) else {
                return String::new();
            };
            let next_step = text[step..]
                .find("[[steps]]")
                .map_or(text.len(), |o| step + o);
            let offset = text[step..next_step].find(field).map_or(step, |o| step + o);
            format!(" (line {})", line_col(text, offset).0)
        };
        if self.format_version != JOURNEY_FORMAT_VERSION {
            return Err(JourneyError::Invalid(format!(
                "format_version {} is not supported (this build reads {JOURNEY_FORMAT_VERSION})",
                self.format_version
            )));
        }
        if !valid_id(&self.id) {
            return Err(JourneyError::Invalid(format!(
                "id {:?} must be 1-{MAX_JOURNEY_ID_LEN} characters of a-z, 0-9, '-' or '_', \
                 starting with a letter or digit{}",
                self.id,
                at_top(text, "id")
            )));
        }
        if self.steps.is_empty() {
            return Err(JourneyError::Invalid("no steps".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.steps {
            let invalid = |what: String, field: &str| {
                Err(JourneyError::Invalid(format!(
                    "step {:?}: {what}{}",
                    s.id,
                    at(&s.id, field)
                )))
            };
            if s.id.is_empty() || !seen.insert(s.id.as_str()) {
                return invalid("the id is empty or repeated".into(), "id");
            }
            if !(1..=5).contains(&s.significance) {
                return invalid(
                    format!("significance {} must be 1-5", s.significance),
                    "significance",
                );
            }
            if !(s.expected_seconds.is_finite() && s.expected_seconds > 0.0) {
                return invalid(
                    "expected_seconds must be a positive number".into(),
                    "expected_seconds",
                );
            }
            if s.enter.is_empty() || s.enter.iter().any(|r| *r == EntryRule::default()) {
                return invalid(
                    "every step needs entry rules, and each rule at least one field".into(),
                    "enter",
                );
            }
        }
        Ok(())
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// Case-insensitive glob match (`*`, `?`), used by entry rules.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
format_version = 1
id = "birth-benefit"
title = "Рождение ребёнка: единое пособие"
version = "2026.1"

[[steps]]
id = "find"
title = "Найти услугу"
significance = 3
expected_seconds = 60
enter = [{ url = "*/catalog*" }]

[[steps]]
id = "login"
title = "Войти"
significance = 5
expected_seconds = 45
enter = [{ url = "*/login*" }, { marker = "step:Вход" }]
"#;

    #[test]
    fn parses_a_journey() {
        let j = Journey::from_toml(GOOD).unwrap();
        assert_eq!(j.steps.len(), 2);
        assert_eq!(
            j.step("login").unwrap().enter[1].marker.as_deref(),
            Some("step:Вход")
        );
    }

    #[test]
    fn errors_name_line_and_field() {
        let cases = [
            (
                GOOD.replace("significance = 5", "significance = 9"),
                "significance 9 must be 1-5 (line 17)",
            ),
            (
                GOOD.replace("expected_seconds = 45", "expected_seconds = \"долго\""),
                "line 18",
            ),
            (
                GOOD.replace(
                    "enter = [{ url = \"*/catalog*\" }]",
                    "enter = [{ urll = \"x\" }]",
                ),
                "unknown field `urll`",
            ),
            (GOOD.replace("id = \"login\"", "id = \"find\""), "repeated"),
            (
                GOOD.replace("id = \"birth-benefit\"", "id = \"../../etc/evil\""),
                "id \"../../etc/evil\" must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit (line 3)",
            ),
            (
                GOOD.replace("enter = [{ url = \"*/catalog*\" }]", "enter = [{}]"),
                "at least one field",
            ),
        ];
        for (text, want) in cases {
            let err = Journey::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(want), "want {want:?} in {err}");
        }
    }

    #[test]
    fn journey_id_rule() {
        for (id, want) in [
            ("child-benefit", true),
            ("birth-benefit", true),
            ("rozhdenie-rebenka", true),
            ("test_benefit2", true),
            ("0", true),
            (&"a".repeat(64) as &str, true),
            (&"a".repeat(65), false),
            ("", false),
            ("-x", false),
            ("_x", false),
            (".hidden", false),
            ("..", false),
            ("../../etc/evil", false),
            ("a/b", false),
            ("a\\b", false),
            ("Child", false),
            ("пособие", false),
            ("a b", false),
            ("a.toml", false),
        ] {
            assert_eq!(valid_id(id), want, "{id:?}");
        }
    }

    #[test]
    fn glob_table() {
        for (p, t, want) in [
            ("*/login*", "https://x.ru/login?next=1", true),
            ("*/login", "https://x.ru/login?next=1", false),
            ("*ПОСОБИЕ*", "Единое пособие", true),
            ("a?c", "abc", true),
            ("", "", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }
}
