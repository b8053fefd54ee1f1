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

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const JOURNEY_FORMAT_VERSION: u32 = 1;
/// Largest journey definition read (a lab's `<id>.toml` or a bundle's
/// `analysis/journey.toml`).
pub const MAX_JOURNEY_BYTES: u64 = 1 << 20;
/// Longest journey id (life situation id), in bytes.
pub const MAX_JOURNEY_ID_LEN: usize = 64;
/// Most `vocabulary` terms in a journey: Whisper's prompt holds ~200 tokens,
/// so more would never reach it.
pub const MAX_VOCABULARY_TERMS: usize = 64;
/// Longest `vocabulary` term, in characters.
pub const MAX_VOCABULARY_TERM_CHARS: usize = 64;

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
    /// Domain terms the participants will say («СНИЛС», «Госуслуги»,
    /// «льготная категория»): given to Whisper, with the step titles, as its
    /// initial prompt, so it spells them. Optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vocabulary: Vec<String>,
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
    /// Title of a modal dialog that opened (a browser `dialog` event): single-
    /// page apps show steps in dialogs without changing the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialog: Option<String>,
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
    #[error("life_situation {0:?} is not a journey id")]
    InvalidId(String),
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the journey definition is more than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("the journey definition is not UTF-8")]
    NotUtf8,
    /// A definition file that could not be used, and why.
    #[error("{path}")]
    At {
        path: PathBuf,
        #[source]
        source: Box<JourneyError>,
    },
    #[error("{path} defines journey {found:?}, not the session's life situation {want:?}")]
    Mismatch {
        path: PathBuf,
        found: String,
        want: String,
    },
}

/// A journey definition found by [`Journey::resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedJourney {
    pub journey: Journey,
    /// Its source text, as the file has it (the analyzer keeps a copy in the bundle).
    pub text: String,
    /// The file it was read from.
    pub path: PathBuf,
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
        if self.vocabulary.len() > MAX_VOCABULARY_TERMS {
            return Err(JourneyError::Invalid(format!(
                "vocabulary has {} terms; at most {MAX_VOCABULARY_TERMS}{}",
                self.vocabulary.len(),
                at_top(text, "vocabulary")
            )));
        }
        for term in &self.vocabulary {
            let chars = term.trim().chars().count();
            if !(1..=MAX_VOCABULARY_TERM_CHARS).contains(&chars)
                || term.chars().any(char::is_control)
            {
                return Err(JourneyError::Invalid(format!(
                    "vocabulary term {term:?} must be 1-{MAX_VOCABULARY_TERM_CHARS} characters \
                     of text, without control characters{}",
                    at_top(text, "vocabulary")
                )));
            }
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

    /// Parses a definition file's bytes: at most `MAX_JOURNEY_BYTES`,
    /// UTF-8, then [`Journey::from_toml`]. For readers that open the file
    /// themselves (lab-web reads a bundle's `analysis/journey.toml` through
    /// its own `O_NOFOLLOW` walk).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, JourneyError> {
        if bytes.len() as u64 > MAX_JOURNEY_BYTES {
            return Err(JourneyError::TooLarge {
                limit: MAX_JOURNEY_BYTES,
            });
        }
        Self::from_toml(std::str::from_utf8(bytes).map_err(|_| JourneyError::NotUtf8)?)
    }

    /// Reads and parses the definition file at `path`; returns it with its text.
    pub fn read_file(path: &Path) -> Result<(Self, String), JourneyError> {
        use std::io::Read;
        let at = |source| JourneyError::At {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_JOURNEY_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|source| JourneyError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let journey = Self::from_bytes(&bytes).map_err(at)?;
        let text = String::from_utf8(bytes).map_err(|_| at(JourneyError::NotUtf8))?;
        Ok((journey, text))
    }

    /// The one rule for finding a session's journey definition:
    ///
    /// 1. A `life_situation`, when given, must be a journey id ([`valid_id`]),
    ///    so it can only ever name `<id>.toml` inside a journeys folder.
    /// 2. An `explicit` file (`lab-analyze run --journey FILE`) is used
    ///    whatever its name.
    /// 3. Otherwise `<life_situation>.toml` in the first of `journeys_dirs`
    ///    that has it; nothing else is searched (no folder relative to the
    ///    working directory unless the caller passes one).
    /// 4. Either way, when a life situation is given, the file must define
    ///    that very id ([`JourneyError::Mismatch`] otherwise).
    ///
    /// `Ok(None)`: no explicit file, and no life situation or no file for it.
    pub fn resolve(
        explicit: Option<&Path>,
        journeys_dirs: &[PathBuf],
        life_situation: Option<&str>,
    ) -> Result<Option<ResolvedJourney>, JourneyError> {
        if let Some(ls) = life_situation
            && !valid_id(ls)
        {
            return Err(JourneyError::InvalidId(ls.to_string()));
        }
        let path = match (explicit, life_situation) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(ls)) => {
                let found = journeys_dirs
                    .iter()
                    .map(|d| d.join(format!("{ls}.toml")))
                    .find(|p| p.is_file());
                match found {
                    Some(p) => p,
                    None => return Ok(None),
                }
            }
            (None, None) => return Ok(None),
        };
        let (journey, text) = Self::read_file(&path)?;
        if let Some(want) = life_situation
            && journey.id != want
        {
            return Err(JourneyError::Mismatch {
                path,
                found: journey.id,
                want: want.to_string(),
            });
        }
        Ok(Some(ResolvedJourney {
            journey,
            text,
            path,
        }))
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

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("lab-model-journey-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn resolve_finds_the_life_situation_in_the_first_folder_that_has_it() {
        let root = temp_dir("resolve");
        let (a, b) = (root.join("a"), root.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("birth-benefit.toml"), GOOD).unwrap();
        let dirs = [a.clone(), b.clone()];
        let r = Journey::resolve(None, &dirs, Some("birth-benefit"))
            .unwrap()
            .unwrap();
        assert_eq!(r.journey.id, "birth-benefit");
        assert_eq!(
            (r.text.as_str(), r.path.clone()),
            (GOOD, b.join("birth-benefit.toml"))
        );
        // The first folder wins.
        std::fs::write(a.join("birth-benefit.toml"), GOOD.replace("2026.1", "2027")).unwrap();
        let r = Journey::resolve(None, &dirs, Some("birth-benefit"))
            .unwrap()
            .unwrap();
        assert_eq!(r.journey.version, "2027");
        // Nothing for another id, nothing without a life situation, and no
        // folder is searched that was not passed.
        assert_eq!(Journey::resolve(None, &dirs, Some("other")).unwrap(), None);
        assert_eq!(Journey::resolve(None, &dirs, None).unwrap(), None);
        assert_eq!(
            Journey::resolve(None, &[], Some("birth-benefit")).unwrap(),
            None
        );
        // An explicit file of any name.
        let any = root.join("draft v2.toml");
        std::fs::write(&any, GOOD).unwrap();
        let r = Journey::resolve(Some(&any), &[], None).unwrap().unwrap();
        assert_eq!(r.path, any);
        let r = Journey::resolve(Some(&any), &dirs, Some("birth-benefit"))
            .unwrap()
            .unwrap();
        assert_eq!(r.path, any);
    }

    #[test]
    fn resolve_refuses_hostile_ids_and_files_of_another_journey() {
        let root = temp_dir("resolve-hostile");
        std::fs::write(root.join("evil.toml"), GOOD).unwrap();
        let dirs = [root.join("journeys")];
        std::fs::create_dir_all(&dirs[0]).unwrap();
        for bad in ["../evil", "/etc/passwd", "", ".hidden", "Evil"] {
            let e = Journey::resolve(None, &dirs, Some(bad)).unwrap_err();
            assert!(matches!(e, JourneyError::InvalidId(_)), "{bad}: {e}");
            assert!(e.to_string().contains("is not a journey id"), "{e}");
        }
        // A file found by id must define that id; so must an explicit one.
        std::fs::write(dirs[0].join("child-benefit.toml"), GOOD).unwrap();
        for explicit in [None, Some(dirs[0].join("child-benefit.toml"))] {
            let e =
                Journey::resolve(explicit.as_deref(), &dirs, Some("child-benefit")).unwrap_err();
            assert!(
                e.to_string().contains("defines journey \"birth-benefit\", not the session's life situation \"child-benefit\""),
                "{e}"
            );
        }
        // Errors name the file, then the line.
        let bad = root.join("bad.toml");
        std::fs::write(&bad, GOOD.replace("significance = 5", "significance = 7")).unwrap();
        let e = Journey::resolve(Some(&bad), &[], None).unwrap_err();
        let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            chain.contains("bad.toml") && chain.contains("significance 7"),
            "{chain}"
        );
        let e = Journey::from_bytes(&vec![b'#'; MAX_JOURNEY_BYTES as usize + 1]).unwrap_err();
        assert!(matches!(e, JourneyError::TooLarge { .. }), "{e}");
        assert!(matches!(
            Journey::from_bytes(b"\xff").unwrap_err(),
            JourneyError::NotUtf8
        ));
    }

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

    #[test]
    fn vocabulary_is_optional_and_bounded() {
        assert!(Journey::from_toml(GOOD).unwrap().vocabulary.is_empty());
        let with = GOOD.replace(
            "version = \"2026.1\"\n",
            "version = \"2026.1\"\nvocabulary = [\"СНИЛС\", \"Госуслуги\", \"льготная категория\"]\n",
        );
        let j = Journey::from_toml(&with).unwrap();
        assert_eq!(j.vocabulary, ["СНИЛС", "Госуслуги", "льготная категория"]);
        // It survives a round trip (analysis/journey.toml is a copy).
        let back = Journey::from_toml(&toml::to_string(&j).unwrap()).unwrap();
        assert_eq!(back, j);
        let term = |t: &str| {
            GOOD.replace(
                "version = \"2026.1\"\n",
                &format!("version = \"2026.1\"\nvocabulary = [{t}]\n"),
            )
        };
        for bad in [
            "\"\"".to_string(),
            "\"  \"".to_string(),
            format!("\"{}\"", "я".repeat(MAX_VOCABULARY_TERM_CHARS + 1)),
            "\"a\\nb\"".to_string(),
            vec!["\"x\""; MAX_VOCABULARY_TERMS + 1].join(", "),
        ] {
            let e = Journey::from_toml(&term(&bad)).unwrap_err().to_string();
            assert!(
                e.contains("vocabulary") && e.contains("(line 6)"),
                "{bad}: {e}"
            );
        }
    }
}
