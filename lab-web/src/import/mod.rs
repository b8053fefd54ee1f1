//! Importing session bundles: the manifest, the events and whatever the
//! analyzer has written under `analysis/` become rows. Idempotent: a bundle
//! whose files have not changed since its last import (same fingerprint) is
//! skipped; a changed one has its derived rows replaced in one transaction,
//! while what researchers made (tags, candidate decisions) is kept.
//!
//! Three steps: [`read`] (blocking file reads, off the async threads),
//! [`project`] (pure: what was read → the rows), and one store transaction
//! ([`store::import::write`]).

pub mod project;
pub mod read;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundle_files;
use crate::db::now_ms;
use crate::limits;
use crate::state::AppState;
use crate::store;

pub use read::bundle_dirs;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Imported,
    Unchanged,
    /// The participant withdrew: the bundle is not read again.
    Withdrawn,
}

/// Bundles that failed to import: each is tried again when its files change
/// (its fingerprint), or after a delay that doubles per failure
/// ([`limits::IMPORT_RETRY_FIRST`] up to [`limits::IMPORT_RETRY_MAX`]), not
/// on every scan: a bad bundle must not cost CPU and log lines forever.
#[derive(Default)]
pub struct RetryBook {
    failed: HashMap<PathBuf, Failed>,
}

struct Failed {
    fingerprint: String,
    failures: u32,
    next_try: tokio::time::Instant,
}

impl RetryBook {
    /// Whether to try `bundle` (with files in state `fp`) at `now`.
    pub fn due(&self, bundle: &Path, fp: &str, now: tokio::time::Instant) -> bool {
        self.failed
            .get(bundle)
            .is_none_or(|f| f.fingerprint != fp || now >= f.next_try)
    }

    /// Records a failure; returns the attempt number and the delay to the next try.
    pub fn failed(
        &mut self,
        bundle: &Path,
        fp: &str,
        now: tokio::time::Instant,
    ) -> (u32, Duration) {
        let f = self.failed.entry(bundle.to_path_buf()).or_insert(Failed {
            fingerprint: String::new(),
            failures: 0,
            next_try: now,
        });
        if f.fingerprint != fp {
            f.failures = 0;
            f.fingerprint = fp.to_string();
        }
        f.failures += 1;
        let delay = limits::IMPORT_RETRY_FIRST
            .saturating_mul(1 << (f.failures - 1).min(16))
            .min(limits::IMPORT_RETRY_MAX);
        f.next_try = now + delay;
        (f.failures, delay)
    }

    pub fn succeeded(&mut self, bundle: &Path) {
        self.failed.remove(bundle);
    }

    /// Forgets bundles that are gone from the folder.
    pub fn keep_only(&mut self, present: &[PathBuf]) {
        self.failed.retain(|p, _| present.contains(p));
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// The advisory lock key of the watched-folder scan (`store::leader`).
pub const WATCH_LOCK: i64 = 0x6c61_625f_7761_7463; // "lab_watc"

/// Scans the sessions folder every `every` and imports what changed; with
/// several lab-web processes on one PostgreSQL database, only the one that
/// holds the lead.
pub async fn watch(state: AppState) {
    let every = state.config.watch_every;
    if every.is_zero() {
        return;
    }
    let mut book = RetryBook::default();
    let mut leader: Option<store::leader::Leader> = None;
    loop {
        // With several lab-web processes on one database, one of them scans.
        if let Some(l) = leader.as_mut()
            && !l.alive().await
        {
            tracing::warn!("lost the watched-folder lead; another process may take it");
            leader = None;
        }
        if leader.is_none() {
            match store::leader::try_lead(&state.db.pool, state.db.backend, WATCH_LOCK).await {
                Ok(Some(l)) => leader = Some(l),
                Ok(None) => {}
                Err(e) => tracing::warn!("watched folder: cannot ask for the lead: {e}"),
            }
        }
        if leader.is_none() {
            tokio::time::sleep(every.max(Duration::from_millis(200))).await;
            continue;
        }
        let dir = state.config.sessions_dir.clone();
        let found = blocking(move || {
            Ok(bundle_dirs(&dir)
                .into_iter()
                .map(|b| {
                    let fp = read::fingerprint(&b);
                    (b, fp)
                })
                .collect::<Vec<_>>())
        })
        .await
        .unwrap_or_default();
        let present: Vec<PathBuf> = found.iter().map(|(b, _)| b.clone()).collect();
        book.keep_only(&present);
        for (bundle, fp) in found {
            let now = tokio::time::Instant::now();
            if !book.due(&bundle, &fp, now) {
                continue;
            }
            match import_from_sessions_folder(&state, &bundle).await {
                Ok((id, outcome)) => {
                    book.succeeded(&bundle);
                    if outcome == Outcome::Imported && state.config.analyze_new {
                        analyze_new(&state, &id, &bundle).await;
                    }
                }
                Err(e) => {
                    let (n, delay) = book.failed(&bundle, &fp, now);
                    tracing::warn!(
                        "import of {} failed (attempt {n}; next try when it changes or in {} s): {e:#}",
                        bundle.display(),
                        delay.as_secs()
                    );
                }
            }
        }
        tokio::time::sleep(every.max(Duration::from_millis(200))).await;
    }
}

/// `serve --analyze-new`: queues the analysis of a bundle just imported.
pub async fn analyze_new(state: &AppState, session: &str, bundle: &Path) {
    match crate::jobs::analyze_if_needed(state, session, bundle).await {
        Ok(Some(job)) => tracing::info!("session {session}: analysis queued (job {job})"),
        Ok(None) => {}
        Err(e) => tracing::warn!("session {session}: cannot queue its analysis: {e:#}"),
    }
}

/// Imports a bundle that must be a real folder inside the sessions folder
/// (the watcher and the import API; the CLI may import from anywhere).
pub async fn import_from_sessions_folder(
    state: &AppState,
    dir: &Path,
) -> anyhow::Result<(String, Outcome)> {
    let (root, d) = (state.config.sessions_dir.clone(), dir.to_path_buf());
    let inside = blocking(move || Ok(bundle_files::is_bundle_folder_in(&root, &d))).await?;
    anyhow::ensure!(
        inside,
        "{} is not a folder inside the sessions folder {} (links are not followed)",
        dir.display(),
        state.config.sessions_dir.display()
    );
    import(state, dir).await
}

/// Deletes a withdrawn participant's bundle folder (off the async threads).
async fn purge(dir: PathBuf) -> anyhow::Result<()> {
    blocking(move || {
        crate::withdrawal::purge_bundle_files(&dir);
        Ok(())
    })
    .await
}

/// Reads the lab's journey definitions (`<id>.toml` in each journeys folder,
/// the first folder winning) into the database at start-up, so a study
/// set-up and the journey map can name a life situation before any of its
/// sessions is imported. A file that does not parse is logged and skipped.
pub async fn lab_journeys(state: &AppState) -> anyhow::Result<usize> {
    let dirs = state.config.journeys_dirs.clone();
    let infos = blocking(move || {
        let mut seen = std::collections::HashSet::new();
        let mut infos = vec![];
        for dir in &dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let Some(stem) = f
                    .extension()
                    .filter(|e| *e == "toml")
                    .and(f.file_stem())
                    .and_then(|s| s.to_str())
                else {
                    continue;
                };
                if seen.contains(stem) {
                    continue;
                }
                match lab_model::Journey::resolve(None, std::slice::from_ref(dir), Some(stem)) {
                    Ok(Some(r)) => {
                        seen.insert(stem.to_string());
                        infos.push(project::journey_info(&r.journey));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("journey {}: {e}", f.display()),
                }
            }
        }
        Ok(infos)
    })
    .await?;
    store::journeys::upsert_lab(&state.db.pool, &infos).await?;
    Ok(infos.len())
}

/// Imports one bundle folder.
pub async fn import(state: &AppState, dir: &Path) -> anyhow::Result<(String, Outcome)> {
    let pool = &state.db.pool;
    let d = dir.to_path_buf();
    let (dir, fp) = blocking(move || read::locate(&d)).await?;
    let path = dir.to_string_lossy().to_string();
    // An unchanged bundle costs a few stats per scan, not a manifest parse.
    if let Some(id) = store::import::unchanged(pool, &path, &fp).await? {
        return Ok((id, Outcome::Unchanged));
    }
    let d = dir.clone();
    let mut manifest = blocking(move || read::manifest(&d)).await?;
    // A station's upload placed here under another id (a second station's
    // session with the same id): it keeps that id on every import; the
    // bundle itself is never rewritten.
    if let Some(assigned) = store::uploads::assigned_id_for_path(pool, &path).await? {
        manifest.session_id = assigned;
    }
    let id = manifest.session_id.clone();
    if let Some(known) = store::import::known(pool, &id).await? {
        if known.withdrawn {
            // The participant withdrew: a copy that turns up again (a station
            // re-sending its bundle) is deleted, never read.
            purge(dir).await?;
            return Ok((id, Outcome::Withdrawn));
        }
        if known.bundle_path != path {
            anyhow::bail!(
                "session {id} is already imported from {}; {} is a copy",
                known.bundle_path,
                dir.display()
            );
        }
        if known.fingerprint == fp {
            return Ok((id, Outcome::Unchanged));
        }
    }
    // Read everything before opening the transaction.
    let journeys_dirs = state.config.journeys_dirs.clone();
    let read = blocking(move || read::bundle(dir, fp, manifest, &journeys_dirs)).await?;
    let rows = project::project(&read, now_ms())?;
    if !store::import::write(pool, &rows).await? {
        // The participant withdrew while this import was reading: write
        // nothing, and delete the bundle the withdrawal may have missed.
        purge(read.dir).await?;
        return Ok((id, Outcome::Withdrawn));
    }
    Ok((id, Outcome::Imported))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle_files;

    #[test]
    fn a_failing_bundle_is_retried_when_it_changes_or_after_a_growing_delay() {
        let mut book = RetryBook::default();
        let b = Path::new("/s/bad");
        let t0 = tokio::time::Instant::now();
        assert!(book.due(b, "fp1", t0));
        assert_eq!(book.failed(b, "fp1", t0), (1, limits::IMPORT_RETRY_FIRST));
        // Not on the next scans (the watcher scans every few seconds) ...
        assert!(!book.due(b, "fp1", t0 + Duration::from_secs(2)));
        assert!(!book.due(
            b,
            "fp1",
            t0 + limits::IMPORT_RETRY_FIRST - Duration::from_millis(1)
        ));
        // ... but at once when its files change, and when the delay is over.
        assert!(book.due(b, "fp2", t0 + Duration::from_secs(2)));
        assert!(book.due(b, "fp1", t0 + limits::IMPORT_RETRY_FIRST));
        let t1 = t0 + limits::IMPORT_RETRY_FIRST;
        assert_eq!(
            book.failed(b, "fp1", t1),
            (2, limits::IMPORT_RETRY_FIRST * 2)
        );
        let mut t = t1;
        for _ in 0..30 {
            t += limits::IMPORT_RETRY_MAX;
            let (_, d) = book.failed(b, "fp1", t);
            assert!(d <= limits::IMPORT_RETRY_MAX);
        }
        // A change starts the count over.
        assert_eq!(book.failed(b, "fp3", t).0, 1);
        book.keep_only(&[]);
        assert!(book.due(b, "fp3", t));
    }

    #[test]
    fn symlinked_folders_are_not_bundles() {
        let root = std::env::temp_dir().join(format!("import-links-{}", std::process::id()));
        let outside = root.with_extension("outside");
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&outside);
        for d in [root.join("real"), outside.join("evil")] {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(lab_model::bundle::MANIFEST_FILE), "{}").unwrap();
        }
        std::os::unix::fs::symlink(outside.join("evil"), root.join("link")).unwrap();
        std::fs::create_dir_all(root.join("linked-manifest")).unwrap();
        std::os::unix::fs::symlink(
            outside.join("evil").join(lab_model::bundle::MANIFEST_FILE),
            root.join("linked-manifest")
                .join(lab_model::bundle::MANIFEST_FILE),
        )
        .unwrap();
        assert_eq!(bundle_dirs(&root), vec![root.join("real")]);
        assert!(bundle_files::is_bundle_folder_in(&root, &root.join("real")));
        assert!(!bundle_files::is_bundle_folder_in(
            &root,
            &root.join("link")
        ));
        assert!(!bundle_files::is_bundle_folder_in(&root, &root));
        assert!(!bundle_files::is_bundle_folder_in(
            &root,
            &outside.join("evil")
        ));
    }
}
