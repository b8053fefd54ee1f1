//! The job queue: analysis and clip jobs in the `jobs` table, run by
//! workers that lease them (lab-web's own, [`crate::runner`], and
//! `lab-analyze worker` elsewhere, [`crate::remote`]; the leases are
//! `store::leases`). Every change is broadcast as JSON for the
//! server-sent-events stream, through `NOTIFY` on PostgreSQL so every
//! lab-web process hears it. Cancelling a running job tells its worker: at
//! once when it runs in this process, at its next heartbeat elsewhere.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::Mutex;

use lab_model::analysis::Progress;
use tokio::sync::watch;

use crate::db::now_ms;
use crate::state::AppState;
use crate::store;

pub use crate::types::{Job, JobArgs, JobKind, JobOutcome as Outcome};

pub async fn get(state: &AppState, id: i64) -> Result<Option<Job>, sqlx::Error> {
    store::jobs::get(&state.db.pool, id).await
}

/// Tells every open event stream that job `id` changed. On PostgreSQL the
/// change goes through `NOTIFY`, so every lab-web process on the database
/// hears it ([`forward_notifications`]); on SQLite (one process) directly.
pub async fn publish(state: &AppState, id: i64) {
    if state.db.backend == crate::db::Backend::Postgres {
        match store::jobs::notify(&state.db.pool, id).await {
            Ok(()) => return,
            Err(e) => tracing::warn!("job {id}: NOTIFY failed ({e}); telling this process only"),
        }
    }
    broadcast_local(state, id).await;
}

async fn broadcast_local(state: &AppState, id: i64) {
    if let Ok(Some(job)) = get(state, id).await
        && let Ok(text) = serde_json::to_string(&job)
    {
        let _ = state.job_events.send(text);
    }
}

/// PostgreSQL: listens for job changes announced by any lab-web process and
/// forwards them to this process's event streams, listening again after a
/// lost connection. Returns once the first `LISTEN` is in place, so nothing
/// announced after it is missed. Nothing to do on SQLite.
pub async fn start_forwarding(state: &AppState) -> Result<(), sqlx::Error> {
    if state.db.backend != crate::db::Backend::Postgres {
        return Ok(());
    }
    let mut listener = store::jobs::listener(&state.db.url).await?;
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(n) => {
                    if let Ok(id) = n.payload().parse::<i64>() {
                        broadcast_local(&state, id).await;
                    }
                    // A job queued (or given back) by another process.
                    state.job_wakeup.notify_one();
                }
                Err(e) => {
                    tracing::warn!("job notifications: {e}; listening again");
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        match store::jobs::listener(&state.db.url).await {
                            Ok(l) => {
                                listener = l;
                                break;
                            }
                            Err(e) => tracing::warn!("job notifications: cannot listen ({e})"),
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

/// Cancel switches of the jobs running in this process. A cancel that
/// comes before a worker sets up its switch is not lost: it is also a flag
/// on the job's row, which the worker reads at its first heartbeat, right
/// after [`arm`].
static RUNNING: LazyLock<Mutex<HashMap<i64, watch::Sender<bool>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn running() -> std::sync::MutexGuard<'static, HashMap<i64, watch::Sender<bool>>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The worker's side: sets up the switch of a job it has just leased.
pub fn arm(id: i64) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    running().insert(id, tx);
    rx
}

/// The worker's side: the job ended here; its switch goes, unless another
/// worker of this process holds the job now (a lapsed lease re-leased here)
/// and the switch is that worker's.
pub fn disarm(id: i64, mine: &watch::Receiver<bool>) {
    let mut map = running();
    if map
        .get(&id)
        .is_some_and(|tx| tx.subscribe().same_channel(mine))
    {
        map.remove(&id);
    }
}

/// Fires the switch of a job running in this process (its lease was lost).
pub fn stop_here(id: i64) {
    if let Some(tx) = running().get(&id) {
        let _ = tx.send(true);
    }
}

/// One lease for a worker (lab-web's own or remote): jobs whose lease
/// lapsed for the last time are buried first, then the oldest job this
/// worker may run is leased under a fresh lease id. Both are announced.
pub async fn take(
    state: &AppState,
    worker: &str,
    kinds: &[&str],
    capabilities: &[String],
) -> Result<Option<(store::leases::Leased, String)>, sqlx::Error> {
    let now = now_ms();
    for id in store::leases::bury_lapsed(&state.db, now).await? {
        publish(state, id).await;
    }
    let lease = crate::auth::new_token();
    let ask = store::leases::Ask {
        worker,
        kinds,
        capabilities,
        lease: &lease,
        lease_ms: state.lease_ms(),
        now,
    };
    let Some(job) = store::leases::lease(&state.db, &ask).await? else {
        return Ok(None);
    };
    publish(state, job.id).await;
    Ok(Some((job, lease)))
}

/// Aborts a task when dropped: a job's keep-alive never outlives the job,
/// even one that panicked or whose request was dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Queues a job and wakes the worker.
pub async fn enqueue(
    state: &AppState,
    kind: JobKind,
    session_id: Option<&str>,
    tag_id: Option<i64>,
    args: JobArgs,
    user: Option<i64>,
) -> Result<i64, sqlx::Error> {
    let id = store::jobs::insert(
        &state.db.pool,
        kind,
        session_id,
        tag_id,
        &args,
        user,
        now_ms(),
    )
    .await?;
    publish(state, id).await;
    state.job_wakeup.notify_one();
    Ok(id)
}

/// Queues an analysis of a session whose bundle is not fully analysed
/// (`serve --analyze-new`, `import --analyze`), unless one is queued or
/// running. Returns the job queued, if any.
pub async fn analyze_if_needed(
    state: &AppState,
    session: &str,
    bundle: &std::path::Path,
) -> anyhow::Result<Option<i64>> {
    // A bundle still being recorded is analysed once it is finished (its
    // next import, when the recorder finalizes the manifest).
    let recording = store::sessions::files(&state.db.pool, session)
        .await?
        .is_none_or(|f| f.status == "recording" || f.withdrawn);
    if recording {
        return Ok(None);
    }
    let dir = bundle.to_path_buf();
    let complete = tokio::task::spawn_blocking(move || {
        use lab_model::analysis::{AnalysisDoc, Stage, State};
        State::read_optional(&dir)
            .map(|s| s.is_some_and(|s| Stage::ALL.iter().all(|&st| s.is_done(st))))
    })
    .await??;
    if complete
        || store::jobs::active_analysis(&state.db.pool, session)
            .await?
            .is_some()
    {
        return Ok(None);
    }
    let args = JobArgs {
        session_id: Some(session.to_string()),
        ..Default::default()
    };
    Ok(Some(
        enqueue(state, JobKind::Analyze, Some(session), None, args, None).await?,
    ))
}

/// Cancels a queued or running job. Returns false if it had already ended.
/// A running job's worker is told: at once when it runs in this process,
/// at its next heartbeat when it runs elsewhere (`store::leases`).
pub async fn cancel(state: &AppState, id: i64) -> Result<bool, sqlx::Error> {
    if store::jobs::cancel_queued(&state.db.pool, id, now_ms()).await? {
        publish(state, id).await;
        return Ok(true);
    }
    let held = store::leases::request_cancel(&state.db, id).await?;
    stop_here(id);
    Ok(held)
}

/// Cancels every queued or running job of a session (withdrawal).
pub async fn cancel_for_session(state: &AppState, session: &str) -> Result<(), sqlx::Error> {
    let ids = store::jobs::active_for_session(&state.db.pool, session).await?;
    for id in ids {
        cancel(state, id).await?;
    }
    Ok(())
}

/// Progress of `lab-analyze run` from one of its stderr lines: the share of
/// the whole run done and the stage, for a progress line
/// ([`Progress::parse_line`]); `None` for lines meant for people.
pub fn analysis_progress(line: &str) -> Option<(f64, &'static str)> {
    Progress::parse_line(line).map(|p| (p.overall(), p.stage.as_str()))
}

#[cfg(test)]
mod tests {
    use lab_model::analysis::{Progress, Stage};

    use super::analysis_progress;

    #[test]
    fn progress_from_analyzer_lines() {
        assert_eq!(
            analysis_progress(r#"{"lab_progress":1,"stage":"speech","done":0,"total":0}"#),
            Some((0.0, "speech"))
        );
        let (p, s) =
            analysis_progress(r#"{"lab_progress":1,"stage":"speech","done":3,"total":6}"#).unwrap();
        assert_eq!(s, "speech");
        assert!((p - 0.3).abs() < 1e-9);
        assert_eq!(
            analysis_progress(&Progress::started(Stage::Renditions).to_line())
                .unwrap()
                .0,
            0.64
        );
        // The lines for people are not progress.
        assert_eq!(analysis_progress("lab-analyze: speech: running"), None);
        assert_eq!(analysis_progress("lab-analyze: speech: ok"), None);
        assert_eq!(analysis_progress("something else"), None);
    }
}
