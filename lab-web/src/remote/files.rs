//! What a worker downloads: every regular file of a bundle with its size and
//! SHA-256. Hashes are kept in `bundle_sums` keyed by size and modification
//! time, so a bundle is hashed once, not at every lease. Files are read
//! like every bundle file (`bundle_files`: no links, no FIFOs); a bundle
//! holding a link or something other than files and folders is refused.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::db::Db;
use crate::store;
use lab_model::upload::{MAX_PATH_DEPTH, MAX_UPLOAD_FILES, valid_upload_path};
use lab_model::worker::LeaseFile;
use sha2::{Digest, Sha256};

/// A file found in the bundle: path, size, modification time (ns).
#[derive(Debug)]
struct Found {
    path: String,
    size: u64,
    mtime_ns: i64,
}

/// Lists the bundle's files (sorted by path).
fn walk(root: &Path) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        anyhow::ensure!(
            depth < MAX_PATH_DEPTH,
            "the bundle's folders nest deeper than {MAX_PATH_DEPTH} at {prefix}"
        );
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("a file name in {prefix:?} is not UTF-8"))?;
            // The recorder's disk reserve and its temporary files are not
            // part of a bundle (the station's uploader leaves them out too).
            if prefix.is_empty() && name == lab_model::bundle::RESERVE_FILE
                || name.ends_with(".tmp")
            {
                continue;
            }
            let rel = format!("{prefix}{name}");
            let meta = entry.metadata()?; // does not follow links
            let kind = meta.file_type();
            if kind.is_dir() {
                stack.push((entry.path(), format!("{rel}/"), depth + 1));
                continue;
            }
            anyhow::ensure!(
                kind.is_file(),
                "the bundle holds {rel}, which is not a plain file (a link or a device); refused"
            );
            anyhow::ensure!(
                valid_upload_path(&rel),
                "the bundle holds {rel:?}, not a name a bundle file may have"
            );
            out.push(Found {
                path: rel,
                size: meta.len(),
                mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            });
            anyhow::ensure!(
                out.len() <= MAX_UPLOAD_FILES,
                "the bundle holds more than {MAX_UPLOAD_FILES} files"
            );
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// SHA-256 of one bundle file, opened the safe way.
fn hash(root: &Path, rel: &str) -> anyhow::Result<String> {
    let (mut f, _) = crate::bundle_files::open(root, rel)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Every file of the session's bundle with its size and SHA-256, hashing
/// only the files new or changed since they were last hashed.
pub async fn listing(db: &Db, session: &str, bundle: &Path) -> anyhow::Result<Vec<LeaseFile>> {
    let root = bundle.to_path_buf();
    let found = tokio::task::spawn_blocking(move || walk(&root)).await??;
    let known = store::bundle_sums::known(db, session).await?;
    let mut out = Vec::with_capacity(found.len());
    for f in &found {
        let sha = match known.get(&f.path) {
            Some((size, mtime, sha)) if *size == f.size as i64 && *mtime == f.mtime_ns => {
                sha.clone()
            }
            _ => {
                let (root, rel) = (bundle.to_path_buf(), f.path.clone());
                let sha = tokio::task::spawn_blocking(move || hash(&root, &rel)).await??;
                store::bundle_sums::record(db, session, &f.path, f.size, f.mtime_ns, &sha).await?;
                sha
            }
        };
        out.push(LeaseFile {
            path: f.path.clone(),
            size: f.size,
            sha256: sha,
        });
    }
    // Files gone from the bundle leave the cache.
    for path in known.keys() {
        if !found.iter().any(|f| &f.path == path) {
            store::bundle_sums::forget(db, session, path).await?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_in_a_bundle_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("lab-web-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("analysis")).unwrap();
        std::fs::write(dir.join("manifest.json"), b"{}").unwrap();
        std::fs::write(dir.join("analysis/a.json"), b"{}").unwrap();
        let found = walk(&dir).unwrap();
        let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["analysis/a.json", "manifest.json"]);
        std::os::unix::fs::symlink("/etc/passwd", dir.join("events.jsonl")).unwrap();
        let e = walk(&dir).unwrap_err().to_string();
        assert!(
            e.contains("events.jsonl") && e.contains("not a plain file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
