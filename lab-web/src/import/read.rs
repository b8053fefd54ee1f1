//! The read step of an import: everything taken from the bundle folder and
//! the lab's journeys folder, with blocking file I/O (run it through
//! `spawn_blocking`). Every bundle file is opened through [`bundle_files`]
//! (no links, no `..`, single-link regular files).

use std::path::{Path, PathBuf};

use anyhow::Context;
use lab_model::analysis::{
    AnalysisDoc, AnalysisFile, CandidateList, QaReport, Renditions, SpeechActivity, StepAnalysis,
    Transcript,
};
use lab_model::bundle::Manifest;
use lab_model::event::Event;
use lab_model::journey::Journey;

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

/// What changes when the recorder or the analyzer writes: the analyzer
/// rewrites its state file after every stage, and the renditions list with
/// the renditions.
pub fn fingerprint(dir: &Path) -> String {
    format!(
        "{}:{}:{}:{}",
        mtime_ns(&dir.join(lab_model::bundle::MANIFEST_FILE)),
        file_len(&dir.join(lab_model::bundle::EVENTS_FILE)),
        mtime_ns(&AnalysisFile::State.path(dir)),
        mtime_ns(&AnalysisFile::Renditions.path(dir)),
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
    pub qa: Option<QaReport>,
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

/// A session's journey and where it came from ([`find_journey`]).
#[derive(Debug)]
pub struct JourneyRead {
    pub journey: Journey,
    pub source: JourneySource,
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
    /// Lanes of the numeric sensor streams ([`crate::sensors`]).
    pub sensors: Vec<crate::sensors::Lane>,
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
    let journey = find_journey(journeys_dirs, &dir, &manifest)?;
    let sensors = crate::sensors::read_lanes(&dir, &manifest);
    Ok(BundleRead {
        dir,
        fingerprint,
        manifest,
        events,
        analysis,
        journey,
        sensors,
    })
}

/// Reads an analysis file through [`bundle_files`] (no links, single-link
/// regular file, at most lab-model's limit) and parses it with its one
/// reader ([`AnalysisDoc::parse`]); `None` until its stage has run.
fn read_doc<T: AnalysisDoc>(dir: &Path) -> anyhow::Result<Option<T>> {
    match bundle_files::read(
        dir,
        T::FILE.relative_path(),
        limits::MAX_ANALYSIS_JSON_BYTES,
    )? {
        Some(bytes) => Ok(Some(
            T::parse(&bytes).with_context(|| format!("bundle {}", dir.display()))?,
        )),
        None => Ok(None),
    }
}

/// The analysis files, each through lab-model's reader for it.
pub fn analysis(dir: &Path) -> anyhow::Result<Analysis> {
    let renditions: Option<Renditions> = read_doc(dir)?;
    Ok(Analysis {
        transcript: read_doc(dir)?,
        speech: read_doc(dir)?,
        steps: read_doc(dir)?,
        candidates: read_doc(dir)?,
        qa: read_doc(dir)?,
        media: renditions.as_ref().map(media_index).unwrap_or_default(),
    })
}

/// The renditions the player needs, with paths relative to the bundle: the
/// screen and a camera track (the last listed), the film strip and the peaks.
fn media_index(r: &Renditions) -> MediaIndex {
    let mut m = MediaIndex::default();
    for v in &r.videos {
        let slot = if v.track == "screen" {
            &mut m.screen
        } else if v.track.starts_with("camera") {
            &mut m.camera
        } else {
            continue;
        };
        *slot = Some(MediaFile {
            file: v.file.clone(),
            start_ms: ms(v.start_ns),
        });
    }
    m.thumbnails = Some(
        r.thumbnails
            .iter()
            .map(|t| Thumbnail {
                t_ms: ms(t.t_ns),
                file: Some(t.file.clone()),
            })
            .collect(),
    );
    m.peaks = r.peaks.clone();
    m
}

/// A session's journey, by the one rule: the lab's own definition of the
/// manifest's life situation ([`Journey::resolve`] over the journeys
/// folders) is authoritative; the bundle's copy ([`AnalysisFile::Journey`])
/// is used only when the lab has none, and only if it defines that very
/// life situation. No life situation: no journey.
pub fn find_journey(
    journeys_dirs: &[PathBuf],
    dir: &Path,
    manifest: &Manifest,
) -> anyhow::Result<Option<JourneyRead>> {
    let Some(ls) = manifest.life_situation.as_deref() else {
        return Ok(None);
    };
    if let Some(r) = Journey::resolve(None, journeys_dirs, Some(ls))? {
        return Ok(Some(JourneyRead {
            journey: r.journey,
            source: JourneySource::Lab,
        }));
    }
    let copy = AnalysisFile::Journey;
    let Some(bytes) = bundle_files::read(dir, copy.relative_path(), limits::MAX_JOURNEY_BYTES)?
    else {
        return Ok(None);
    };
    let journey =
        Journey::from_bytes(&bytes).with_context(|| format!("{}", copy.path(dir).display()))?;
    anyhow::ensure!(
        journey.id == ls,
        "{}: defines journey {:?}, not the session's life situation {ls:?}",
        copy.path(dir).display(),
        journey.id
    );
    Ok(Some(JourneyRead {
        journey,
        source: JourneySource::Bundle,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{JOURNEY_TOML, Spec, write_bundle};

    /// A synthetic bundle (life situation `test-benefit`, with its journey
    /// copy) and an empty lab journeys folder.
    fn setup(name: &str) -> (PathBuf, Manifest, PathBuf) {
        let parent = std::env::temp_dir().join(format!("read-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        std::fs::create_dir_all(parent.join("journeys")).unwrap();
        let dir = write_bundle(&parent, &Spec::small("J1", "p-01")).unwrap();
        let m = manifest(&dir).unwrap();
        (dir, m, parent.join("journeys"))
    }

    #[test]
    fn the_labs_journey_wins_and_the_bundles_copy_fills_in_only_its_own_id() {
        let (dir, mut m, lab) = setup("journey");
        let dirs = [lab.clone()];
        // The lab has none: the bundle's copy, which defines the life situation.
        let j = find_journey(&dirs, &dir, &m).unwrap().unwrap();
        assert_eq!(j.source, JourneySource::Bundle);
        assert_eq!(j.journey.id, "test-benefit");
        // The lab has its own: that one, whatever the copy says.
        let own = JOURNEY_TOML.replacen("title = \"", "title = \"Лаборатория ", 1);
        std::fs::write(lab.join("test-benefit.toml"), own).unwrap();
        let j = find_journey(&dirs, &dir, &m).unwrap().unwrap();
        assert_eq!(j.source, JourneySource::Lab);
        assert!(
            j.journey.title.starts_with("Лаборатория "),
            "{}",
            j.journey.title
        );
        std::fs::remove_file(lab.join("test-benefit.toml")).unwrap();
        // A copy that defines another journey than the life situation is refused.
        let other = JOURNEY_TOML.replacen("id = \"test-benefit\"", "id = \"other\"", 1);
        std::fs::write(AnalysisFile::Journey.path(&dir), other).unwrap();
        let e = find_journey(&dirs, &dir, &m).unwrap_err();
        assert!(
            e.to_string().contains("not the session's life situation"),
            "{e:#}"
        );
        // No life situation: no journey, whatever the bundle carries.
        m.life_situation = None;
        assert!(find_journey(&dirs, &dir, &m).unwrap().is_none());
    }
}
