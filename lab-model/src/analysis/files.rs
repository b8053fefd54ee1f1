//! The one place the files under `analysis/` are named, and the one reader
//! and writer of each JSON file ([`AnalysisDoc`]). The analyzer writes them,
//! lab-web and the tests read them; nobody spells a file name by hand.
//!
//! [`AnalysisDoc::parse`] works on bytes, so a reader that opens bundle files
//! its own way (lab-web's `O_NOFOLLOW` walk) gets the same limits and checks
//! as [`AnalysisDoc::read`].

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bundle::limits::MAX_ANALYSIS_JSON_BYTES;
use crate::bundle::{BundleError, write_atomic};

/// `format_version` of every JSON file the analyzer writes; bumped when a
/// saved shape changes incompatibly (readers refuse newer files).
pub const ANALYSIS_FORMAT_VERSION: u32 = 1;
/// The analyzer's folder inside a bundle.
pub const ANALYSIS_DIR: &str = "analysis";
/// The web renditions' folder, relative to the bundle.
pub const WEB_DIR: &str = "analysis/web";
/// The film-strip thumbnails' folder, relative to the bundle.
pub const THUMBS_DIR: &str = "analysis/web/thumbs";

/// A file under `analysis/`. Paths are relative to the bundle folder, with
/// `/` separators, as they are stored inside the bundle's own JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnalysisFile {
    /// `analysis/state.json`: finished stages ([`super::State`]).
    State,
    /// `analysis/speech.json` ([`super::SpeechActivity`]).
    Speech,
    /// `analysis/transcript.json` ([`super::Transcript`]).
    Transcript,
    /// `analysis/steps.json` ([`super::StepAnalysis`]).
    Steps,
    /// `analysis/journey.toml`: the journey definition the steps were cut by
    /// (TOML, read with `Journey::from_bytes`).
    Journey,
    /// `analysis/candidates.json` ([`super::CandidateList`]).
    Candidates,
    /// `analysis/web/renditions.json` ([`super::Renditions`]).
    Renditions,
    /// `analysis/web/peaks.json` ([`super::Peaks`]).
    Peaks,
    /// `analysis/qa.json` ([`super::QaReport`]).
    Qa,
}

impl AnalysisFile {
    pub const ALL: [AnalysisFile; 9] = [
        Self::State,
        Self::Speech,
        Self::Transcript,
        Self::Steps,
        Self::Journey,
        Self::Candidates,
        Self::Renditions,
        Self::Peaks,
        Self::Qa,
    ];

    /// The path relative to the bundle folder, e.g. `analysis/web/renditions.json`.
    pub fn relative_path(self) -> &'static str {
        match self {
            Self::State => "analysis/state.json",
            Self::Speech => "analysis/speech.json",
            Self::Transcript => "analysis/transcript.json",
            Self::Steps => "analysis/steps.json",
            Self::Journey => "analysis/journey.toml",
            Self::Candidates => "analysis/candidates.json",
            Self::Renditions => "analysis/web/renditions.json",
            Self::Peaks => "analysis/web/peaks.json",
            Self::Qa => "analysis/qa.json",
        }
    }

    /// The file inside the bundle at `bundle_dir`.
    pub fn path(self, bundle_dir: &Path) -> PathBuf {
        bundle_dir.join(self.relative_path())
    }
}

impl std::fmt::Display for AnalysisFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.relative_path())
    }
}

/// `analysis/web/<track>.mp4`: a video track's web rendition.
pub fn video_file(track: &str) -> String {
    format!("{WEB_DIR}/{track}.mp4")
}

/// The name of the thumbnail taken at `t_ns` (whole seconds, six digits)
/// inside [`THUMBS_DIR`].
pub fn thumbnail_name(t_ns: i64) -> String {
    format!("{:06}.jpg", t_ns / 1_000_000_000)
}

/// `analysis/web/thumbs/<name>`, relative to the bundle.
pub fn thumbnail_file(name: &str) -> String {
    format!("{THUMBS_DIR}/{name}")
}

/// Why an analysis file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file} is more than the {limit}-byte limit")]
    TooLarge { file: AnalysisFile, limit: u64 },
    #[error("{file} is not valid")]
    Parse {
        file: AnalysisFile,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{file} has format_version {found}, newer than this reader's {ANALYSIS_FORMAT_VERSION}"
    )]
    Version { file: AnalysisFile, found: u32 },
    #[error("failed to write {file}")]
    Write {
        file: AnalysisFile,
        #[source]
        source: BundleError,
    },
}

/// Just the version, to tell a newer file from a broken one.
#[derive(serde::Deserialize)]
struct Head {
    format_version: Option<u32>,
}

/// A JSON file under `analysis/`: its one reader and writer.
///
/// ```no_run
/// use lab_model::analysis::{AnalysisDoc, Transcript};
/// let t = Transcript::read(std::path::Path::new("sessions/20261123T101500Z-P07"))?;
/// # Ok::<(), lab_model::analysis::AnalysisError>(())
/// ```
pub trait AnalysisDoc: Serialize + DeserializeOwned {
    /// Which file this is.
    const FILE: AnalysisFile;
    /// Written pretty-printed (people read these); false for bulk numbers.
    const PRETTY: bool = true;

    /// The file's `format_version`, for the types that carry one.
    fn format_version(&self) -> Option<u32> {
        None
    }

    /// Parses the file's bytes: at most `MAX_ANALYSIS_JSON_BYTES`, valid JSON
    /// of this shape, `format_version` not newer than this reader's.
    fn parse(bytes: &[u8]) -> Result<Self, AnalysisError> {
        let file = Self::FILE;
        if bytes.len() as u64 > MAX_ANALYSIS_JSON_BYTES {
            return Err(AnalysisError::TooLarge {
                file,
                limit: MAX_ANALYSIS_JSON_BYTES,
            });
        }
        let newer = |v: Option<u32>| v.filter(|&v| v > ANALYSIS_FORMAT_VERSION);
        match serde_json::from_slice::<Self>(bytes) {
            Ok(doc) => match newer(doc.format_version()) {
                Some(found) => Err(AnalysisError::Version { file, found }),
                None => Ok(doc),
            },
            Err(source) => {
                // A newer file that no longer parses says so, not "invalid".
                let head = serde_json::from_slice::<Head>(bytes).ok();
                match newer(head.and_then(|h| h.format_version)) {
                    Some(found) => Err(AnalysisError::Version { file, found }),
                    None => Err(AnalysisError::Parse { file, source }),
                }
            }
        }
    }

    /// Reads and parses the file of the bundle at `bundle_dir`.
    fn read(bundle_dir: &Path) -> Result<Self, AnalysisError> {
        let path = Self::FILE.path(bundle_dir);
        let bytes = read_limited(&path)?;
        Self::parse(&bytes)
    }

    /// Like [`AnalysisDoc::read`], but `None` when the file does not exist
    /// (the stage that writes it has not run).
    fn read_optional(bundle_dir: &Path) -> Result<Option<Self>, AnalysisError> {
        match Self::read(bundle_dir) {
            Err(AnalysisError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// The bytes [`AnalysisDoc::write`] writes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = if Self::PRETTY {
            serde_json::to_vec_pretty(self)
        } else {
            serde_json::to_vec(self)
        }
        .expect("analysis types serialise");
        bytes.push(b'\n');
        bytes
    }

    /// Writes the file atomically into the bundle at `bundle_dir`
    /// (`bundle::write_atomic`: a fresh temporary file, synced, renamed),
    /// creating its folder.
    fn write(&self, bundle_dir: &Path) -> Result<(), AnalysisError> {
        let file = Self::FILE;
        let path = file.path(bundle_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| AnalysisError::Write {
                file,
                source: BundleError::Write {
                    path: dir.to_path_buf(),
                    source,
                },
            })?;
        }
        write_atomic(&path, &self.to_bytes())
            .map_err(|source| AnalysisError::Write { file, source })
    }
}

/// Reads a whole file of at most `MAX_ANALYSIS_JSON_BYTES` (one byte more is
/// read, so `parse` sees that it is too large).
fn read_limited(path: &Path) -> Result<Vec<u8>, AnalysisError> {
    use std::io::Read;
    let err = |source| AnalysisError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut bytes = Vec::new();
    f.take(MAX_ANALYSIS_JSON_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(bytes)
}
