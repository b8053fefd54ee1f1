//! lab-web's own workers: they lease jobs from the queue like any
//! `lab-analyze worker` (`store::leases`, docs/worker-protocol.md), but run
//! `lab-analyze run` on the bundle in the sessions folder itself, and cut
//! clips with `ffmpeg`. `lab-web serve --workers N` starts N of them for
//! analysis; one more per process runs clips only when N is 0. While a job
//! runs its worker heartbeats; a lost lease (the process stalled past the
//! lease and another worker took the job) or a cancel stops the child
//! process, and the job's end is recorded only under the lease.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use crate::db::now_ms;
use crate::jobs::{self, AbortOnDrop, JobArgs, JobKind, Outcome, analysis_progress};
use crate::state::AppState;
use crate::store;
use crate::store::leases::{self, Leased};

/// How often lab-web's own workers heartbeat (cheap: one UPDATE): every
/// 5 s, or a quarter of a shorter lease.
fn heartbeat_every(state: &AppState) -> Duration {
    Duration::from_millis((state.lease_ms() as u64 / 4).clamp(250, 5000))
}
/// What a worker of this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Analyses and clips.
    Everything,
    /// Clips only (`--workers 0`: analysis is left to external workers).
    ClipsOnly,
}

impl Runs {
    fn kinds(self) -> &'static [&'static str] {
        match self {
            Runs::Everything => &["analyze", "clip"],
            Runs::ClipsOnly => &["clip"],
        }
    }
}

/// This process's name for its worker `n` in the job list.
fn name(n: usize) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("lab-web/{host}/{}/{n}", std::process::id())
}

/// One in-process worker running jobs of every kind (the one-box default).
pub async fn worker(state: AppState) {
    run(state, 0, Runs::Everything).await
}

/// Worker `n` of this process: leases and runs jobs, forever.
pub async fn run(state: AppState, n: usize, runs: Runs) {
    let me = name(n);
    loop {
        match next(&state, &me, runs).await {
            Ok(Some(job)) => run_one(&state, job).await,
            Ok(None) => {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), state.job_wakeup.notified()).await;
            }
            Err(e) => {
                tracing::error!("job queue: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

async fn next(state: &AppState, me: &str, runs: Runs) -> Result<Option<Held>, sqlx::Error> {
    let local = ["local".to_string()];
    Ok(jobs::take(state, me, runs.kinds(), &local)
        .await?
        .map(|(job, lease)| Held {
            job,
            lease,
            lost: Arc::new(AtomicBool::new(false)),
        }))
}

/// A job this worker holds.
#[derive(Clone)]
pub struct Held {
    pub job: Leased,
    pub lease: String,
    /// The lease was lost: nothing more is written about the job.
    lost: Arc<AtomicBool>,
}

impl Held {
    /// Records progress (and extends the lease). False once the lease is lost.
    pub async fn progress(&self, state: &AppState, p: f64, stage: &str) -> bool {
        self.beat(state, Some((p, stage))).await
    }

    async fn beat(&self, state: &AppState, progress: Option<(f64, &str)>) -> bool {
        if self.lost.load(Ordering::Relaxed) {
            return false;
        }
        let id = self.job.id;
        match leases::heartbeat(
            &state.db,
            id,
            &self.lease,
            progress,
            state.lease_ms(),
            now_ms(),
        )
        .await
        {
            Ok(Some(cancel)) => {
                if cancel {
                    jobs::stop_here(id);
                }
                if progress.is_some() {
                    jobs::publish(state, id).await;
                }
                true
            }
            Ok(None) => {
                tracing::warn!("job {id}: the lease was lost; stopping it here");
                self.lost.store(true, Ordering::Relaxed);
                jobs::stop_here(id);
                false
            }
            // The database is out of reach: keep running; the lease holds
            // for the lease's length, and the end is recorded only under it.
            Err(e) => {
                tracing::warn!("job {id}: heartbeat failed: {e}");
                true
            }
        }
    }
}

async fn run_one(state: &AppState, held: Held) {
    let id = held.job.id;
    let cancel = jobs::arm(id);
    let mine = cancel.clone();
    // The first beat at once: a cancel that came before the switch existed
    // is a flag on the row.
    let beats = {
        let (state, held) = (state.clone(), held.clone());
        AbortOnDrop(tokio::spawn(async move {
            loop {
                if !held.beat(&state, None).await {
                    break;
                }
                tokio::time::sleep(heartbeat_every(&state)).await;
            }
        }))
    };
    let args: JobArgs = serde_json::from_str(&held.job.args).unwrap_or_default();
    let result = match JobKind::parse(&held.job.kind) {
        Some(JobKind::Analyze) => run_analysis(state, &held, &args, cancel).await,
        Some(JobKind::Clip) => crate::clips::run_clip(state, id, &args, cancel).await,
        None => Err(anyhow::anyhow!("unknown job kind {:?}", held.job.kind)),
    };
    drop(beats);
    jobs::disarm(id, &mine);
    if held.lost.load(Ordering::Relaxed) {
        return;
    }
    let session = held.job.session_id.as_deref();
    let (status, message) = if crate::withdrawal::after_job(state, session).await {
        (
            "cancelled",
            "участник отозвал согласие; результат удалён / the participant withdrew; output deleted"
                .to_string(),
        )
    } else {
        match result {
            Ok(Outcome::Done(msg)) => ("done", msg),
            Ok(Outcome::Cancelled) => ("cancelled", "отменено / cancelled".to_string()),
            Err(e) => {
                tracing::warn!("job {id} failed: {e:#}");
                ("failed", format!("{e:#}"))
            }
        }
    };
    finish(state, &held, status, &message).await;
}

/// Records a job's end under its lease.
async fn finish(state: &AppState, held: &Held, status: &str, message: &str) {
    let id = held.job.id;
    let message: String = message.chars().take(2000).collect();
    let ended = match state.db.pool.acquire().await {
        Ok(mut conn) => {
            leases::finish(&mut conn, id, &held.lease, status, &message, now_ms()).await
        }
        Err(e) => Err(e),
    };
    match ended {
        Ok(true) => {}
        Ok(false) => tracing::warn!("job {id}: the lease was lost before its end was recorded"),
        Err(e) => tracing::error!("job {id}: cannot record its end: {e}"),
    }
    jobs::publish(state, id).await;
}

async fn run_analysis(
    state: &AppState,
    held: &Held,
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
    // The child dies with lab-web, even a SIGKILLed one: its job's lease
    // lapses and another worker redoes it; a run left behind would write
    // into the bundle meanwhile.
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", state.config.analyzer.display()))?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut tail: Vec<String> = vec![];
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => match analysis_progress(&line) {
                    Some((p, stage)) => { held.progress(state, p, stage).await; }
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
