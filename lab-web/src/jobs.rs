//! Background jobs: analysis (`lab-analyze run` as a child process) and clip
//! cutting (`ffmpeg`). Jobs live in the `jobs` table, so a restart shows what
//! was interrupted; one in-process worker runs them in order. Every change is
//! broadcast as JSON for the server-sent-events stream. Cancelling a running
//! job kills its child process; the analyzer's stages are atomic, so what it
//! finished stays and a retry resumes from there.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::LazyLock;
use std::sync::Mutex;

use anyhow::Context;
use lab_model::analysis::Progress;
use tokio::io::AsyncBufReadExt;
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
async fn publish(state: &AppState, id: i64) {
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

/// A running job's cancel switch, or a cancel that arrived after the job was
/// marked running in the table but before the worker set up its switch.
enum Switch {
    Ready(watch::Sender<bool>),
    Requested,
}

/// Cancel switches of running jobs. Both the worker and `cancel` change an
/// entry under this one lock, so a cancel in the window between the claim
/// and the switch is never lost.
static RUNNING: LazyLock<Mutex<HashMap<i64, Switch>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn running() -> std::sync::MutexGuard<'static, HashMap<i64, Switch>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The worker's side: sets up the switch of a job it has just claimed, already
/// on if a cancel came first.
fn arm(id: i64) -> watch::Receiver<bool> {
    let mut map = running();
    let requested = matches!(map.get(&id), Some(Switch::Requested));
    let (tx, rx) = watch::channel(false);
    if requested {
        // Sent, not the initial value, so the runner's `changed()` fires.
        tx.send_replace(true);
    }
    map.insert(id, Switch::Ready(tx));
    rx
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
        &serde_json::to_string(&args).unwrap_or_default(),
        user,
        now_ms(),
    )
    .await?;
    publish(state, id).await;
    state.job_wakeup.notify_one();
    Ok(id)
}

/// Cancels a queued or running job. Returns false if it had already ended.
pub async fn cancel(state: &AppState, id: i64) -> Result<bool, sqlx::Error> {
    if store::jobs::cancel_queued(&state.db.pool, id, now_ms()).await? {
        publish(state, id).await;
        return Ok(true);
    }
    // Read before taking the lock: a job the table shows running may not
    // have its switch yet.
    let status = store::jobs::get(&state.db.pool, id)
        .await?
        .map(|j| j.status);
    let mut map = running();
    match map.get(&id) {
        Some(Switch::Ready(tx)) => {
            let _ = tx.send(true);
            Ok(true)
        }
        Some(Switch::Requested) => Ok(true),
        None if status.as_deref() == Some("running") => {
            map.insert(id, Switch::Requested);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Cancels every queued or running job of a session (withdrawal).
pub async fn cancel_for_session(state: &AppState, session: &str) -> Result<(), sqlx::Error> {
    let ids = store::jobs::active_for_session(&state.db.pool, session).await?;
    for id in ids {
        cancel(state, id).await?;
    }
    Ok(())
}

async fn set_progress(state: &AppState, id: i64, progress: f64, stage: &str) {
    let _ = store::jobs::set_progress(&state.db.pool, id, progress, stage).await;
    publish(state, id).await;
}

async fn finish(state: &AppState, id: i64, status: &str, message: &str) {
    let message: String = message.chars().take(2000).collect();
    let r = store::jobs::finish(&state.db.pool, id, status, &message, now_ms()).await;
    if let Err(e) = r {
        tracing::error!("job {id}: cannot record its end: {e}");
    }
    publish(state, id).await;
}

/// Runs queued jobs one at a time, forever.
pub async fn worker(state: AppState) {
    // Jobs that were running when the server stopped did not finish.
    let _ = store::jobs::fail_interrupted(&state.db.pool, now_ms()).await;
    loop {
        match next_job(&state).await {
            Ok(Some((id, kind, args))) => {
                let rx = arm(id);
                let result = match JobKind::parse(&kind) {
                    Some(JobKind::Analyze) => run_analysis(&state, id, &args, rx).await,
                    Some(JobKind::Clip) => crate::clips::run_clip(&state, id, &args, rx).await,
                    None => Err(anyhow::anyhow!("unknown job kind {kind:?}")),
                };
                running().remove(&id);
                let session = get(&state, id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|j| j.session_id);
                if crate::withdrawal::after_job(&state, session.as_deref()).await {
                    finish(
                        &state,
                        id,
                        "cancelled",
                        "участник отозвал согласие; результат удалён / the participant withdrew; output deleted",
                    )
                    .await;
                    continue;
                }
                match result {
                    Ok(Outcome::Done(msg)) => finish(&state, id, "done", &msg).await,
                    Ok(Outcome::Cancelled) => {
                        finish(&state, id, "cancelled", "отменено / cancelled").await
                    }
                    Err(e) => {
                        tracing::warn!("job {id} failed: {e:#}");
                        finish(&state, id, "failed", &format!("{e:#}")).await
                    }
                }
            }
            Ok(None) => {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    state.job_wakeup.notified(),
                )
                .await;
            }
            Err(e) => {
                tracing::error!("job queue: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
}

async fn next_job(state: &AppState) -> Result<Option<(i64, String, JobArgs)>, sqlx::Error> {
    let Some(job) = store::jobs::claim_next(&state.db.pool, now_ms()).await? else {
        return Ok(None);
    };
    publish(state, job.id).await;
    Ok(Some((
        job.id,
        job.kind,
        serde_json::from_str(&job.args).unwrap_or_default(),
    )))
}

/// Progress of `lab-analyze run` from one of its stderr lines: the share of
/// the whole run done and the stage, for a progress line
/// ([`Progress::parse_line`]); `None` for lines meant for people.
pub fn analysis_progress(line: &str) -> Option<(f64, &'static str)> {
    Progress::parse_line(line).map(|p| (p.overall(), p.stage.as_str()))
}

async fn run_analysis(
    state: &AppState,
    id: i64,
    args: &JobArgs,
    mut cancel: watch::Receiver<bool>,
) -> anyhow::Result<Outcome> {
    let session = args
        .session_id
        .as_deref()
        .context("job without a session")?;
    let files = store::sessions::files(&state.db.pool, session)
        .await?
        .with_context(|| format!("session {session}"))?;
    let bundle = files.bundle_path;
    anyhow::ensure!(
        !files.withdrawn,
        "the participant withdrew; nothing to analyse"
    );
    let mut cmd = tokio::process::Command::new(&state.config.analyzer);
    cmd.arg("run").arg(&bundle);
    // The analyzer finds the session's journey in these folders by the one
    // rule (`Journey::resolve`), as the import does.
    for dir in &state.config.journeys_dirs {
        cmd.arg("--journeys").arg(dir);
    }
    if let Some(stage) = &args.force {
        cmd.arg("--force").arg(stage);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", state.config.analyzer.display()))?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut tail: Vec<String> = vec![];
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => match analysis_progress(&line) {
                    Some((p, stage)) => set_progress(state, id, p, stage).await,
                    // Only the lines for people make a failed job's message.
                    None => {
                        tail.push(line);
                        if tail.len() > 8 { tail.remove(0); }
                    }
                },
                None => break,
            },
            _ = cancel.changed() => {
                let _ = child.kill().await;
                return Ok(Outcome::Cancelled);
            }
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        anyhow::bail!("lab-analyze exited with {status}: {}", tail.join(" | "));
    }
    crate::import::import(state, &PathBuf::from(&bundle)).await?;
    Ok(Outcome::Done(tail.last().cloned().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use lab_model::analysis::{Progress, Stage};

    use super::{Switch, analysis_progress, arm, running};

    #[tokio::test]
    async fn a_cancel_between_claim_and_switch_is_not_lost() {
        // Ids no real job has.
        running().insert(-7, Switch::Requested);
        let mut rx = arm(-7);
        let wait = std::time::Duration::from_millis(200);
        tokio::time::timeout(wait, rx.changed())
            .await
            .expect("the runner sees the early cancel")
            .unwrap();
        assert!(*rx.borrow());
        let mut rx = arm(-8);
        assert!(
            tokio::time::timeout(wait, rx.changed()).await.is_err(),
            "no cancel, no signal"
        );
        running().remove(&-7);
        running().remove(&-8);
    }

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
