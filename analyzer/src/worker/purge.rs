//! A withdrawal purges everywhere, this worker's copies included: the
//! worker asks lab-web which of the sessions it keeps copies of must go
//! (`POST /forget`: withdrawn participants, sessions lab-web no longer
//! knows) at start and every `FORGET_EVERY_SECONDS`, and deletes those
//! copies and their sums. A copy a running job holds (its session lock) is
//! left to that job, which hears 410 `withdrawn` and deletes it itself.

use std::fs;

use super::api::{CallError, Server};
use super::job::{JobSettings, lock_session};

/// Session ids with a copy under the work folder.
fn kept(settings: &JobSettings) -> Vec<String> {
    let Ok(dir) = fs::read_dir(settings.work.join("bundles")) else {
        return vec![];
    };
    let mut ids: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids.truncate(lab_model::worker::MAX_FORGET);
    ids
}

/// Deletes the copies lab-web says must go; returns how many.
pub fn forget_withdrawn(settings: &JobSettings, server: &dyn Server) -> Result<usize, CallError> {
    let ids = kept(settings);
    if ids.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for id in server.forget(&ids)? {
        // Only a name this worker made, never a path lab-web chose.
        if !ids.contains(&id) {
            continue;
        }
        if let Ok(Some(_lock)) = lock_session(settings, &id) {
            let _ = fs::remove_dir_all(settings.bundle_dir(&id));
            let _ = fs::remove_file(settings.sums_file(&id));
            n += 1;
        }
    }
    Ok(n)
}
