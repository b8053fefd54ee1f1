//! The queue served to `lab-analyze worker` on other machines
//! (`/api/v1/worker`, docs/worker-protocol.md): leases with the bundle's
//! file list, the files themselves, heartbeats, results and failures. Every
//! call about a job is checked against its current lease (409 `lease_lost`
//! otherwise), so a worker that lost its lease can neither read on nor
//! overwrite what a newer lease produced.

pub mod files;
pub mod result;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use futures_util::StreamExt;
use lab_model::worker::{
    FailRequest, ForgetAnswer, ForgetRequest, HEARTBEAT_SECONDS, Heartbeat, HeartbeatAnswer,
    JobStateAnswer, JourneyFile, KIND_ANALYZE, Lease, LeaseRequest, MAX_FORGET, MAX_WAIT_SECONDS,
    WORKER_PROTOCOL_VERSION, valid_capability,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{self, AbortOnDrop, JobArgs};
use crate::state::AppState;
use crate::store;
use crate::store::leases;

fn lease_lost(id: i64) -> ApiError {
    ApiError::refused(
        StatusCode::CONFLICT,
        "lease_lost",
        format!(
            "задание {id} больше не за этим обработчиком / job {id} is no longer leased to this worker (the lease lapsed or the job ended)"
        ),
    )
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::refused(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// `POST /worker/lease`: a job for this worker, waiting up to `wait_s` for one.
pub async fn lease(state: &AppState, worker: &str, req: LeaseRequest) -> ApiResult<Option<Lease>> {
    if req.protocol != WORKER_PROTOCOL_VERSION {
        return Err(unprocessable(
            "protocol",
            format!(
                "worker protocol {} is not spoken here; lab-web speaks {WORKER_PROTOCOL_VERSION}",
                req.protocol
            ),
        ));
    }
    if req.kinds.is_empty() || req.kinds.iter().any(|k| k != KIND_ANALYZE) {
        return Err(unprocessable(
            "bad_request",
            format!(
                "workers lease kind {KIND_ANALYZE:?} only, not {:?}",
                req.kinds
            ),
        ));
    }
    if req.capabilities.len() > 16 || !req.capabilities.iter().all(|c| valid_capability(c)) {
        return Err(unprocessable(
            "bad_request",
            "capabilities: at most 16 names of a-z 0-9 - _ . (1–32 characters)",
        ));
    }
    let wait = Duration::from_secs(req.wait_s.min(MAX_WAIT_SECONDS));
    let started = Instant::now();
    leases::seen(&state.db, worker, &req.capabilities.join(","), now_ms()).await?;
    loop {
        if let Some(l) = try_lease(state, worker, &req.capabilities).await? {
            return Ok(Some(l));
        }
        if started.elapsed() >= wait {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn try_lease(
    state: &AppState,
    worker: &str,
    capabilities: &[String],
) -> ApiResult<Option<Lease>> {
    loop {
        let Some((job, lease)) = jobs::take(state, worker, &[KIND_ANALYZE], capabilities).await?
        else {
            return Ok(None);
        };
        match describe(state, &job, &lease).await {
            Ok(l) => return Ok(Some(l)),
            // The database failed under us (a restart, a dropped
            // connection): nothing is wrong with the job. It goes back to
            // the queue, the attempt not counted, and the worker asks again
            // after its back-off (if even that fails, the lease lapses).
            Err(e) if e.downcast_ref::<sqlx::Error>().is_some() => {
                let _ = leases::release(&state.db, job.id, &lease, now_ms()).await;
                return Err(e.into());
            }
            // A job that cannot be handed out ends here with its reason,
            // and the next one is tried.
            Err(e) => {
                let mut conn = state.db.pool.acquire().await?;
                let msg: String = format!("{e:#}").chars().take(2000).collect();
                leases::finish(&mut conn, job.id, &lease, "failed", &msg, now_ms()).await?;
                jobs::publish(state, job.id).await;
            }
        }
    }
}

/// The lease answer: the job, the bundle's files, the journey.
async fn describe(
    state: &AppState,
    job: &store::leases::Leased,
    lease: &str,
) -> anyhow::Result<Lease> {
    let args: JobArgs = serde_json::from_str(&job.args).unwrap_or_default();
    let session = job
        .session_id
        .clone()
        .ok_or_else(|| anyhow::anyhow!("an analysis job without a session"))?;
    let files = store::sessions::files(&state.db.pool, &session)
        .await?
        .ok_or_else(|| anyhow::anyhow!("session {session} is not known"))?;
    anyhow::ensure!(
        !files.withdrawn,
        "участник отозвал согласие; анализ не выполняется / the participant withdrew; nothing is analysed"
    );
    anyhow::ensure!(
        files.status != "recording",
        "сессия ещё записывается; анализируйте после остановки / the session is still being recorded; analyse it once the recording has stopped"
    );
    let bundle = PathBuf::from(&files.bundle_path);
    let listed = files::listing(&state.db, &session, &bundle).await?;
    let journey = if files.life_situation.is_empty() {
        None
    } else {
        lab_model::Journey::resolve(
            None,
            &state.config.journeys_dirs,
            Some(&files.life_situation),
        )?
        .map(|r| JourneyFile {
            file: r
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            toml: r.text,
        })
    };
    Ok(Lease {
        job_id: job.id,
        lease: lease.to_string(),
        kind: job.kind.clone(),
        session_id: session,
        attempt: job.attempt,
        lease_seconds: state.config.lease_seconds,
        // A quarter of the lease: three heartbeats may be lost.
        heartbeat_seconds: (state.config.lease_seconds / 4).clamp(1, HEARTBEAT_SECONDS),
        force: args.force.into_iter().collect(),
        journey,
        files: listed,
    })
}

/// The bundle folder of a job leased under `lease`, or why not.
pub async fn held_bundle(state: &AppState, id: i64, lease: &str) -> ApiResult<(String, PathBuf)> {
    let job = store::jobs::get(&state.db.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    if leases::status_under(&state.db, id, lease).await?.as_deref() != Some("running") {
        return Err(lease_lost(id));
    }
    let session = job
        .session_id
        .ok_or_else(|| ApiError::not_found("the job has no session"))?;
    let files = store::sessions::files(&state.db.pool, &session)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {session}")))?;
    if files.withdrawn {
        return Err(ApiError::refused(
            StatusCode::GONE,
            "withdrawn",
            "участник отозвал согласие / the participant withdrew; the bundle is gone",
        ));
    }
    Ok((session, PathBuf::from(files.bundle_path)))
}

/// `POST /worker/jobs/{id}/heartbeat`.
pub async fn heartbeat(state: &AppState, id: i64, hb: Heartbeat) -> ApiResult<HeartbeatAnswer> {
    let p = if hb.progress.is_finite() {
        hb.progress.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let stage: String = hb
        .stage
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(32)
        .collect();
    let Some(cancel) = leases::heartbeat(
        &state.db,
        id,
        &hb.lease,
        Some((p, &stage)),
        state.lease_ms(),
        now_ms(),
    )
    .await?
    else {
        return Err(lease_lost(id));
    };
    jobs::publish(state, id).await;
    Ok(HeartbeatAnswer {
        cancel,
        lease_seconds: state.config.lease_seconds,
    })
}

/// `POST /worker/forget`: which of the worker's copies it must delete.
pub async fn forget(state: &AppState, req: ForgetRequest) -> ApiResult<ForgetAnswer> {
    if req.sessions.len() > MAX_FORGET {
        return Err(unprocessable(
            "bad_request",
            format!("at most {MAX_FORGET} session ids at once"),
        ));
    }
    let forget = store::bundle_sums::gone_or_withdrawn(&state.db, &req.sessions).await?;
    Ok(ForgetAnswer { forget })
}

/// `POST /worker/jobs/{id}/fail`.
pub async fn fail(state: &AppState, id: i64, req: FailRequest) -> ApiResult<JobStateAnswer> {
    let error: String = req.error.chars().take(2000).collect();

    let given = if req.release {
        leases::release(&state.db, id, &req.lease, now_ms()).await?
    } else {
        leases::give_back(&state.db, id, &req.lease, &error, req.retry, now_ms()).await?
    };
    let Some(status) = given else {
        return Err(lease_lost(id));
    };
    // A file that did not match the hash lab-web listed (it changed on
    // disk since it was hashed, or rotted): hash the bundle afresh next time.
    if error.contains("checksum mismatch")
        && let Some(job) = store::jobs::get(&state.db.pool, id).await?
        && let Some(session) = job.session_id
    {
        store::bundle_sums::forget_session(&state.db, &session).await?;
    }
    jobs::publish(state, id).await;
    if status == "queued" {
        state.job_wakeup.notify_one();
    }
    Ok(JobStateAnswer { status })
}

/// Removes a file or folder, ignoring one that is not there.
async fn remove(p: &Path) {
    let _ = tokio::fs::remove_file(p).await;
    let _ = tokio::fs::remove_dir_all(p).await;
}

/// `PUT /worker/jobs/{id}/result`: receives, checks and puts in place the
/// job's `analysis/` folder, then imports the session.
pub async fn accept_result(
    state: &AppState,
    id: i64,
    lease: &str,
    sha256: &str,
    body: axum::body::Body,
) -> ApiResult<JobStateAnswer> {
    if !lab_model::upload::valid_sha256(sha256) {
        return Err(unprocessable(
            "bad_request",
            format!("{} must be a hex SHA-256", lab_model::worker::SHA256_HEADER),
        ));
    }
    // The same result sent again after its answer was lost.
    if leases::status_under(&state.db, id, lease).await?.as_deref() == Some("done") {
        return Ok(JobStateAnswer {
            status: "done".into(),
        });
    }
    let (session, bundle) = held_bundle(state, id, lease).await?;
    // Beside the bundle, on its filesystem: the exchange is a rename. A
    // name of its own per request, so a resend never meets an earlier
    // attempt's files.
    let parent = bundle.parent().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("bundle {} has no parent", bundle.display()))
    })?;
    let tag = format!(
        "{}{id}-{}",
        result::STAGING_PREFIX,
        &crate::auth::new_token()[..16]
    );
    let tar = parent.join(format!("{tag}.tar"));
    let staging = parent.join(&tag);
    // The receipt runs as a task of its own: a worker that hangs up (or
    // times out) mid-way does not leave a half-done exchange, staging
    // files or a lease kept alive behind.
    let (state, lease, sha256) = (state.clone(), lease.to_string(), sha256.to_string());
    tokio::spawn(async move {
        let r = receive(
            &state, id, &lease, &sha256, body, &tar, &staging, &session, &bundle,
        )
        .await;
        remove(&tar).await;
        remove(&staging).await;
        r
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
}

#[allow(clippy::too_many_arguments)]
async fn receive(
    state: &AppState,
    id: i64,
    lease: &str,
    sha256: &str,
    body: axum::body::Body,
    tar: &Path,
    staging: &Path,
    session: &str,
    bundle: &Path,
) -> ApiResult<JobStateAnswer> {
    let max = state.config.max_upload_bytes;
    let mut out = tokio::fs::File::create(tar)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad(format!("the result broke off: {e}")))?;
        len += chunk.len() as u64;
        if len > max {
            return Err(ApiError::refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a result over {max} bytes is refused"),
            ));
        }
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    }
    out.sync_all()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    drop(out);
    let got = format!("{:x}", hasher.finalize());
    if got != sha256.to_ascii_lowercase() {
        return Err(unprocessable(
            "checksum_mismatch",
            format!("the result's SHA-256 is {got}, the worker declared {sha256}; send it again"),
        ));
    }
    let (t, s) = (tar.to_path_buf(), staging.to_path_buf());
    let files = tokio::task::spawn_blocking(move || result::unpack(&t, &s, max))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| match e {
            result::ResultError::Bad(m) => unprocessable("bad_result", m),
            result::ResultError::Io(e) => ApiError::Internal(e.into()),
        })?;
    // Under the job's row lock, with the lease checked once more: nothing
    // can lease the job again between the check and `done`.
    let mut tx = state.db.pool.begin().await?;
    if !leases::hold(&mut tx, id, lease, now_ms() + state.lease_ms()).await? {
        return Err(lease_lost(id));
    }
    let target = bundle.join(lab_model::analysis::ANALYSIS_DIR);
    let (s, t) = (staging.to_path_buf(), target.clone());
    // The tar is no longer needed once unpacked.
    remove(tar).await;
    tokio::task::spawn_blocking(move || result::exchange(&s, &t))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot put the result in place: {e}")))?;
    if let Err(e) = tx.commit().await {
        // Not recorded: the old folder goes back.
        let (s, t) = (staging.to_path_buf(), target);
        let _ = tokio::task::spawn_blocking(move || result::exchange(&s, &t)).await;
        return Err(e.into());
    }
    // The old folder (now at `staging`) goes; then the session is imported
    // and only then is the job done, so `done` means "in the database".
    // lab-web keeps the lease alive meanwhile, whatever the worker does.
    remove(staging).await;
    remove(tar).await;
    let _keep = {
        let (state, lease) = (state.clone(), lease.to_string());
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis((state.lease_ms() / 4).max(250) as u64))
                    .await;
                let _ = leases::heartbeat(&state.db, id, &lease, None, state.lease_ms(), now_ms())
                    .await;
            }
        }))
    };
    let (status, message) = if crate::withdrawal::after_job(state, Some(session)).await {
        (
            "cancelled",
            "участник отозвал согласие; результат удалён / the participant withdrew; output deleted"
                .to_string(),
        )
    } else {
        match crate::import::import(state, bundle).await {
            Ok(_) => (
                "done",
                format!("{files} файл(ов) от обработчика / {files} file(s) from the worker"),
            ),
            Err(e) => {
                let msg = format!(
                    "результат получен, но не импортирован / the result arrived but did not import: {e:#}"
                );
                tracing::warn!("job {id}: {msg}");
                ("failed", msg)
            }
        }
    };
    let mut conn = state.db.pool.acquire().await?;
    let msg: String = message.chars().take(2000).collect();
    if !leases::finish(&mut conn, id, lease, status, &msg, now_ms()).await? {
        return Err(lease_lost(id));
    }
    jobs::publish(state, id).await;
    Ok(JobStateAnswer {
        status: status.into(),
    })
}
