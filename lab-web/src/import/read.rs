//! The read step of an import: everything taken from the bundle folder and
//! the lab's journeys folder, with blocking file I/O (run it through
//! `spawn_blocking`). Every bundle file is opened through [`bundle_files`]
//! (no links, no `..`, single-link regular files).

use std::path::{Path, PathBuf};

use anyhow::Context;
use lab_model::analysis::{CandidateList, SpeechActivity, StepAnalysis, Transcript};
use lab_model::bundle::Manifest;
use lab_model::event::Event;
use lab_model::journey::Journey;
use serde_json::Value;

use crate::bundle_files;
use crate::limits;
use crate::limits::session_ms as ms;
use crate::types::{MediaFile, MediaIndex, Thumbnail};

/// Every bundle folder directly inside `dir`. A symlink is never a bundle:
/// it could point anywhere on the server.
pub fn bundle_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .filter(|p| {
                    std::fs::symlink_metadata(p.join(lab_model::bundle::MANIFEST_FILE))
                        .is_ok_and(|m| m.file_type().is_file())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn mtime_ns(p: &Path) -> i128 {
    std::fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(-1)
}

fn file_len(p: &Path) -> i64 {
    std::fs::symlink_metadata(p)
        .map(|m| m.len() as i64)
        .unwrap_or(-1)
}

/// What changes when the recorder or the analyzer writes.
pub fn fingerprint(dir: &Path) -> String {
    let a = dir.join(lab_model::analysis::ANALYSIS_DIR);
    format!(
        "{}:{}:{}:{}",
        mtime_ns(&dir.join(lab_model::bundle::MANIFEST_FILE)),
        file_len(&dir.join(lab_model::bundle::EVENTS_FILE)),
        mtime_ns(&a.join("state.json")),
        mtime_ns(&a.join("web").join("renditions.json")),
    )
}

/// The bundle folder as stored and its fingerprint. The stored path is the
/// canonical parent joined with the bundle's own name, never a resolved
/// link: every file below is then opened from the parent without following
/// links (`bundle_files`), so a folder swapped for a link at any moment is
/// refused rather than read.
pub fn locate(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| bundle_files::check_relative(n).is_ok())
        .with_context(|| format!("bundle folder {} has no usable name", dir.display()))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .canonicalize()
        .with_context(|| format!("bundle folder {}", dir.display()))?;
    let dir = parent.join(name);
    anyhow::ensure!(
        std::fs::symlink_metadata(&dir)
            .with_context(|| format!("bundle folder {}", dir.display()))?
            .file_type()
            .is_dir(),
        "bundle folder {} is not a folder (links are not followed)",
        dir.display()
    );
    let fp = fingerprint(&dir);
    Ok((dir, fp))
}

pub fn manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let manifest_path = dir.join(lab_model::bundle::MANIFEST_FILE);
    let bytes = bundle_files::read(
        dir,
        lab_model::bundle::MANIFEST_FILE,
        limits::MAX_MANIFEST_BYTES,
    )?
    .with_context(|| format!("{} has no manifest.json", dir.display()))?;
    Ok(lab_model::bundle::parse_manifest(&bytes).map_err(|e| e.at(&manifest_path))?)
}

/// What the analyzer wrote under `analysis/`, each part absent until its
/// stage ran.
#[derive(Debug, Default)]
pub struct Analysis {
    pub transcript: Option<Transcript>,
    pub speech: Option<SpeechActivity>,
    pub steps: Option<StepAnalysis>,
    pub candidates: Option<CandidateList>,
    /// The QA report, as JSON.
    pub qa: Option<String>,
    /// The renditions the player needs.
    pub media: MediaIndex,
}

/// Where a session's journey definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneySource {
    /// The lab's journeys folder: authoritative for the journey's row.
    Lab,
    /// The bundle's own copy: defines the journey only if the lab has none.
    Bundle,
}

/// The journey a bundle was analysed against, and the lab's own definition
/// of the same id when the bundle brought its copy.
#[derive(Debug)]
pub struct JourneyRead {
    pub journey: Journey,
    pub source: JourneySource,
    pub lab: Option<Journey>,
}

/// Everything an import reads from a bundle.
#[derive(Debug)]
pub struct BundleRead {
    /// The folder as stored (see [`locate`]).
    pub dir: PathBuf,
    pub fingerprint: String,
    pub manifest: Manifest,
    pub events: Vec<Event>,
    pub analysis: Analysis,
    pub journey: Option<JourneyRead>,
}

/// Reads the events, the analysis and the journey of a located bundle.
pub fn bundle(
    dir: PathBuf,
    fingerprint: String,
    manifest: Manifest,
    journeys_dirs: &[PathBuf],
) -> anyhow::Result<BundleRead> {
    let events_path = dir.join(lab_model::bundle::EVENTS_FILE);
    let (events, _torn) = match bundle_files::read(
        &dir,
        lab_model::bundle::EVENTS_FILE,
        limits::MAX_EVENTS_BYTES,
    )? {
        Some(bytes) => lab_model::bundle::parse_events(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", events_path.display()))?,
        None => (Vec::new(), 0),
    };
    let analysis = analysis(&dir)?;
    let journey = match find_journey(journeys_dirs, &dir, &manifest)? {
        Some((journey, source)) => {
            let lab = match source {
                JourneySource::Lab => None,
                JourneySource::Bundle => lab_journey(journeys_dirs, &journey.id)?,
            };
            Some(JourneyRead {
                journey,
                source,
                lab,
            })
        }
        None => None,
    };
    Ok(BundleRead {
        dir,
        fingerprint,
        manifest,
        events,
        analysis,
        journey,
    })
}

/// Reads and parses a JSON file of the bundle (see [`bundle_files`]).
fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, rel: &str) -> anyhow::Result<Option<T>> {
    match bundle_files::read(dir, rel, limits::MAX_ANALYSIS_JSON_BYTES)? {
        Some(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("{}/{rel}", dir.display()))?,
        )),
        None => Ok(None),
    }
}

/// The analysis files: the one place their names and formats are read.
pub fn analysis(dir: &Path) -> anyhow::Result<Analysis> {
    let qa: Option<Value> = read_json(dir, "analysis/qa.json")?;
    let renditions: Option<Value> = read_json(dir, "analysis/web/renditions.json")?;
    Ok(Analysis {
        transcript: read_json(dir, "analysis/transcript.json")?,
        speech: read_json(dir, "analysis/speech.json")?,
        steps: read_json(dir, "analysis/steps.json")?,
        candidates: read_json(dir, "analysis/candidates.json")?,
        qa: qa.map(|q| q.to_string()),
        media: renditions.as_ref().map(media_index).unwrap_or_default(),
    })
}

/// The renditions the player needs, with paths relative to the bundle.
fn media_index(r: &Value) -> MediaIndex {
    let mut m = MediaIndex::default();
    if let Some(videos) = r.get("videos").and_then(Value::as_array) {
        for v in videos {
            if let (Some(track), Some(file)) = (
                v.get("track").and_then(Value::as_str),
                v.get("file").and_then(Value::as_str),
            ) {
                let slot = if track == "screen" {
                    &mut m.screen
                } else if track.starts_with("camera") {
                    &mut m.camera
                } else {
                    continue;
                };
                *slot = Some(MediaFile {
                    file: file.to_string(),
                    start_ms: ms(v.get("start_ns").and_then(Value::as_i64).unwrap_or(0)),
                });
            }
        }
    }
    if let Some(thumbs) = r.get("thumbnails").and_then(Value::as_array) {
        m.thumbnails = Some(
            thumbs
                .iter()
                .map(|t| Thumbnail {
                    t_ms: ms(t.get("t_ns").and_then(Value::as_i64).unwrap_or(0)),
                    file: t.get("file").and_then(Value::as_str).map(String::from),
                })
                .collect(),
        );
    }
    m.peaks = r.get("peaks").and_then(Value::as_str).map(String::from);
    m
}

/// The journey this bundle was analysed against: its own copy
/// (`analysis/journey.toml`), else `<journeys dir>/<life_situation>.toml`.
/// The life situation is a validated journey id (`lab_model::journey::valid_id`,
/// checked when the manifest is parsed), so it names a file in the folder.
pub fn find_journey(
    journeys_dirs: &[PathBuf],
    dir: &Path,
    manifest: &Manifest,
) -> anyhow::Result<Option<(Journey, JourneySource)>> {
    if let Some(bytes) =
        bundle_files::read(dir, "analysis/journey.toml", limits::MAX_JOURNEY_BYTES)?
    {
        let text = String::from_utf8(bytes).context("analysis/journey.toml is not UTF-8")?;
        let j = Journey::from_toml(&text)
            .with_context(|| format!("{}/analysis/journey.toml", dir.display()))?;
        return Ok(Some((j, JourneySource::Bundle)));
    }
    match &manifest.life_situation {
        Some(ls) => {
            anyhow::ensure!(
                lab_model::journey::valid_id(ls),
                "life situation {ls:?} is not a journey id"
            );
            lab_journey(journeys_dirs, ls).map(|j| j.map(|j| (j, JourneySource::Lab)))
        }
        None => Ok(None),
    }
}

/// The lab's own definition of journey `id`, from the first journeys folder
/// that has `<id>.toml`.
pub fn lab_journey(journeys_dirs: &[PathBuf], id: &str) -> anyhow::Result<Option<Journey>> {
    anyhow::ensure!(
        lab_model::journey::valid_id(id),
        "{id:?} is not a journey id"
    );
    for d in journeys_dirs {
        let path = d.join(format!("{id}.toml"));
        if path.is_file() {
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
            let j = Journey::from_toml(&text).with_context(|| format!("{}", path.display()))?;
            anyhow::ensure!(
                j.id == id,
                "{} defines journey {:?}, not {id:?}",
                path.display(),
                j.id
            );
            return Ok(Some(j));
        }
    }
    Ok(None)
}
