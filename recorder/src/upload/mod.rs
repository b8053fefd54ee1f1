//! `lab-recorder upload`: sends a finished bundle to lab-web so that nothing
//! is lost and nothing arrives twice (docs/upload-protocol.md, "The
//! station"). The server's answer is the truth about which bytes it holds:
//! every (re)start posts the file list again and goes on from each file's
//! `received`, so neither a server restart, a dropped connection nor a killed
//! uploader makes the station resend what already arrived. The bundle is
//! only read; what the station remembers lives next to it (`state`).
//!
//! `files` lists and hashes the bundle, `state` keeps the record and the
//! lock, `retry` sorts failures, `progress` is what a run reports; this
//! module is the state machine:
//! lock → (already acknowledged? done) → list + hash → `POST /uploads` →
//! `PUT` what is missing → `POST .../complete` → record the acknowledgement
//! → delete the station copy if asked to (or if the participant withdrew).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lab_model::upload::{
    CHUNK_BYTES, ChunkAck, Completed, UPLOAD_PROTOCOL_VERSION, UploadFile, UploadListError,
    UploadRequest, UploadState, UploadStatus, valid_upload_path,
};
use tokio::sync::watch;

use crate::lab_client::{ClientError, LabClient};

pub mod files;
pub mod progress;
pub mod retry;
pub mod state;
#[cfg(test)]
mod tests;

use files::{FilesError, LocalFile, OpenFile};
pub use progress::{Note, Progress, mib};
use retry::{Action, Backoff, chain, classify};
pub use state::Phase;
use state::{AckRecord, StateLock, UploadRecord, now_ms};

/// How many times a bundle that keeps changing is listed again before the
/// upload stops.
const MAX_RELISTS: u32 = 3;
/// Re-reads of the server's status (or re-posts of the list) in a row,
/// without progress, before they count as a failure and back off.
const MAX_RESYNCS: u32 = 3;

#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Delete the station's copy once the acknowledgement is recorded.
    pub delete_after_ack: bool,
    /// The longest wait between tries.
    pub max_backoff: Duration,
    /// Stop (exit 2) after failing this long without progress.
    pub give_up_after: Duration,
    /// Bytes per `PUT`; the server's `chunk_bytes` and [`CHUNK_BYTES`] cap it.
    pub chunk_bytes: u64,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            delete_after_ack: false,
            max_backoff: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
            chunk_bytes: CHUNK_BYTES,
        }
    }
}

/// The lab server's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    /// The id lab-web lists the session under.
    pub server_session_id: String,
    pub withdrawn: bool,
    /// It was recorded by an earlier run: nothing was sent now.
    pub earlier: bool,
    /// The station copy is gone (deleted now or before).
    pub deleted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    BundlePath(String),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("{} cannot be uploaded", .0.display())]
    List(PathBuf, #[source] UploadListError),
    #[error(transparent)]
    State(#[from] state::StateError),
    /// The server will not take the bundle as it is (or the station token).
    #[error("{0}")]
    Refused(String),
    #[error(
        "gave up after {:.0} s without progress (last: {last_error}); nothing is lost; run again to continue",
        .after.as_secs_f64()
    )]
    GaveUp { after: Duration, last_error: String },
}

impl UploadError {
    /// The server was unreachable (or kept failing) for too long, as opposed
    /// to a refusal: running again later may well succeed.
    pub fn gave_up(&self) -> bool {
        matches!(self, Self::GaveUp { .. })
    }
}

/// Uploads the bundle folder `bundle` through `client` until the server
/// acknowledges it, the server refuses it, or `opts.give_up_after` passes
/// without progress. Returns at once, without a request, when an earlier run
/// recorded the acknowledgement from the same server.
pub async fn upload_bundle(
    client: &mut LabClient,
    bundle: &Path,
    opts: &UploadOptions,
    progress: &watch::Sender<Progress>,
    note: &(dyn Fn(Note) + Send + Sync),
) -> Result<Acknowledged, UploadError> {
    let (out_dir, name) = locate(bundle)?;
    let known = out_dir.join(state::STATE_DIR).join(format!("{name}.json"));
    if std::fs::symlink_metadata(out_dir.join(&name)).is_err() && !known.exists() {
        // A mistyped path leaves no record behind.
        return Err(UploadError::BundlePath(format!(
            "{} does not exist",
            bundle.display()
        )));
    }
    let lock = StateLock::acquire(&out_dir, &name)?;
    let server = client.server();
    let record = match lock.load()? {
        Some(r) if r.server == server && r.format_version == state::STATE_FORMAT_VERSION => r,
        _ => UploadRecord::new(&name, &server),
    };
    let mut run = Run {
        client,
        bundle: out_dir.join(&name),
        opts,
        lock,
        record,
        progress,
        note,
        backoff: Backoff::new(opts.max_backoff),
        failing_since: None,
        resyncs: 0,
        started: HashSet::new(),
    };
    if run.record.acknowledged.is_some() {
        return run.finish(true);
    }
    match run.go().await {
        Ok(done) => {
            run.record.acknowledged = Some(AckRecord {
                at_ms: now_ms(),
                server_session_id: done.session_id,
                withdrawn: done.withdrawn,
            });
            run.record.state = Phase::Acknowledged;
            run.record.last_error = None;
            run.record.next_try_at_ms = None;
            run.lock.save(&run.record)?;
            run.progress.send_modify(|p| p.phase = Phase::Acknowledged);
            run.finish(false)
        }
        Err(e) => {
            run.record.last_error = Some(chain(&e));
            if !e.gave_up() {
                run.record.state = Phase::Refused;
            }
            // The error is what counts; a failure to record it is secondary.
            let _ = run.lock.save(&run.record);
            Err(e)
        }
    }
}

/// The folder holding the bundle (canonical) and the bundle's folder name.
fn locate(bundle: &Path) -> Result<(PathBuf, String), UploadError> {
    let io = |p: &Path, e: std::io::Error| {
        UploadError::BundlePath(format!("failed to find {}: {e}", p.display()))
    };
    // `.` or `..` name no folder by themselves: resolve them.
    let bundle = match bundle.file_name() {
        Some(_) => bundle.to_path_buf(),
        None => std::fs::canonicalize(bundle).map_err(|e| io(bundle, e))?,
    };
    let name = bundle
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| valid_upload_path(n))
        .ok_or_else(|| {
            UploadError::BundlePath(format!(
                "{} is not a bundle folder name (plain ASCII letters, digits and ._-)",
                bundle.display()
            ))
        })?;
    let parent = match bundle.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let out = std::fs::canonicalize(parent).map_err(|e| io(parent, e))?;
    Ok((out, name.to_string()))
}

/// The files to send, with their hashes, as posted.
struct Plan {
    files: Vec<LocalFile>,
    request: UploadRequest,
    /// Files the server already discarded once for a wrong SHA-256.
    resent: HashSet<String>,
}

enum Step {
    Post,
    Status(i64),
    Send(UploadStatus),
    Complete(i64),
}

/// Which request failed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Post,
    Status,
    Put(usize),
    Complete(i64),
}

enum Failure {
    Client(ClientError, Ctx),
    Local(UploadError),
}

impl From<FilesError> for Failure {
    fn from(e: FilesError) -> Self {
        Self::Local(e.into())
    }
}

impl From<state::StateError> for Failure {
    fn from(e: state::StateError) -> Self {
        Self::Local(e.into())
    }
}

struct Run<'a> {
    client: &'a mut LabClient,
    bundle: PathBuf,
    opts: &'a UploadOptions,
    lock: StateLock,
    record: UploadRecord,
    progress: &'a watch::Sender<Progress>,
    note: &'a (dyn Fn(Note) + Send + Sync),
    backoff: Backoff,
    /// When the current run of failures began (`None` after progress).
    failing_since: Option<Instant>,
    /// Status re-reads and re-posts since the last progress.
    resyncs: u32,
    /// Files that had their first `PUT` in this run.
    started: HashSet<String>,
}

impl Run<'_> {
    async fn go(&mut self) -> Result<Completed, UploadError> {
        let mut plan = self.plan().await?;
        let mut relists = 0;
        let mut step = Step::Post;
        loop {
            let outcome = match step {
                Step::Post => match self.client.post_json("uploads", &plan.request).await {
                    Ok(s) => self.interpret(s, &plan, true),
                    Err(e) => Err(Failure::Client(e, Ctx::Post)),
                },
                Step::Status(id) => match self.client.get_json(&format!("uploads/{id}")).await {
                    Ok(s) => self.interpret(s, &plan, false),
                    Err(e) => Err(Failure::Client(e, Ctx::Status)),
                },
                Step::Send(status) => self.send(status, &plan).await,
                Step::Complete(id) => {
                    let path = format!("uploads/{id}/complete");
                    match self.client.post_empty_slow::<Completed>(&path).await {
                        Ok(done) => return Ok(done),
                        Err(e) => Err(Failure::Client(e, Ctx::Complete(id))),
                    }
                }
            };
            step = match outcome {
                Ok(Ok(next)) => next,
                Ok(Err(done)) => return Ok(done),
                Err(Failure::Client(e, ctx)) => self.after_error(e, ctx, &mut plan).await?,
                Err(Failure::Local(UploadError::Files(FilesError::Changed(path))))
                    if relists < MAX_RELISTS =>
                {
                    // Listed and hashed again; the server discards what changed.
                    relists += 1;
                    tracing::info!("{} changed; listing the bundle again", path.display());
                    plan = self.plan().await?;
                    Step::Post
                }
                Err(Failure::Local(e)) => return Err(e),
            };
        }
    }

    /// Lists and hashes the bundle, again if a file changed meanwhile.
    async fn plan(&mut self) -> Result<Plan, UploadError> {
        let mut tries = 0;
        loop {
            match self.plan_once().await {
                Err(UploadError::Files(FilesError::Changed(path))) if tries < MAX_RELISTS => {
                    tries += 1;
                    tracing::info!("{} changed while it was hashed", path.display());
                }
                done => return done,
            }
        }
    }

    /// Lists and hashes the bundle (on a blocking thread).
    async fn plan_once(&mut self) -> Result<Plan, UploadError> {
        self.set_phase(Phase::Hashing)?;
        let bundle = self.bundle.clone();
        let listing = blocking(move || files::list(&bundle)).await?;
        let total: u64 = listing.files.iter().map(|f| f.size).sum();
        let count = listing.files.len();
        self.progress.send_modify(|p| {
            p.bytes_total = total;
            p.files_total = count;
            p.bytes_done = 0;
            p.files_done = 0;
        });
        let (bundle, cache, tx) = (
            self.bundle.clone(),
            self.lock.files_path(),
            self.progress.clone(),
        );
        let (listing, hashed) = blocking(move || {
            let report = |n| tx.send_modify(|p| p.bytes_done = n);
            files::hash_all(&bundle, &listing, &cache, &report).map(|h| (listing, h))
        })
        .await?;
        if hashed.files_read > 0 {
            (self.note)(Note::Hashed {
                read: hashed.files_read,
                files: count,
                bytes: hashed.bytes_read,
            });
        }
        let request = UploadRequest {
            protocol: UPLOAD_PROTOCOL_VERSION,
            session_id: listing.session_id.clone(),
            files: listing
                .files
                .iter()
                .zip(hashed.sha256)
                .map(|(f, sha256)| UploadFile {
                    path: f.path.clone(),
                    size: f.size,
                    sha256,
                })
                .collect(),
        };
        request
            .check()
            .map_err(|e| UploadError::List(self.bundle.clone(), e))?;
        self.record.session_id = listing.session_id;
        self.set_phase(Phase::Uploading)?;
        // From here on, bytes done are the server's.
        self.progress.send_modify(|p| p.bytes_done = 0);
        Ok(Plan {
            files: listing.files,
            request,
            resent: HashSet::new(),
        })
    }

    fn set_phase(&mut self, phase: Phase) -> Result<(), UploadError> {
        self.record.state = phase;
        self.lock.save(&self.record)?;
        self.progress.send_modify(|p| p.phase = phase);
        Ok(())
    }

    /// The next step after the server's status (or the acknowledgement).
    fn interpret(
        &mut self,
        status: UploadStatus,
        plan: &Plan,
        posted: bool,
    ) -> Result<Result<Step, Completed>, Failure> {
        if self.record.upload_id != Some(status.upload_id) {
            self.record.upload_id = Some(status.upload_id);
            self.lock.save(&self.record)?;
        }
        let id = status.upload_id;
        match status.status {
            UploadState::Imported => {
                return match status.imported {
                    Some(done) => Ok(Err(done)),
                    None => Err(Failure::Client(
                        ClientError::BadAnswer {
                            what: "uploads".into(),
                            detail: "status imported without the acknowledgement".into(),
                        },
                        Ctx::Status,
                    )),
                };
            }
            UploadState::Placing => return Ok(Ok(Step::Complete(id))),
            UploadState::Receiving => {}
        }
        let server: HashMap<&str, _> = status.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let differs = status.files.len() != plan.files.len()
            || plan.request.files.iter().any(|f| {
                server
                    .get(f.path.as_str())
                    .is_none_or(|s| s.size != f.size || s.received > s.size)
            });
        if differs {
            if posted {
                // Just posted: the server should hold exactly this list.
                return Err(Failure::Local(UploadError::Refused(format!(
                    "the lab server's file list for upload {id} differs from the one sent; is it a lab-web of this version?"
                ))));
            }
            return Ok(Ok(Step::Post));
        }
        let (mut done, mut files_done) = (0, 0);
        for f in &status.files {
            done += f.received;
            files_done += usize::from(f.verified);
        }
        self.progress.send_modify(|p| {
            p.bytes_done = done;
            p.files_done = files_done;
        });
        if status.files.iter().all(|f| f.verified) {
            Ok(Ok(Step::Complete(id)))
        } else {
            Ok(Ok(Step::Send(status)))
        }
    }

    /// `PUT`s every byte the server lacks, file by file, from its `received`.
    /// A file the server holds whole but has not verified gets an empty
    /// `PUT` at its end, which verifies it (that is also how an empty file
    /// is sent).
    async fn send(
        &mut self,
        status: UploadStatus,
        plan: &Plan,
    ) -> Result<Result<Step, Completed>, Failure> {
        let id = status.upload_id;
        let chunk = self
            .opts
            .chunk_bytes
            .min(status.chunk_bytes)
            .clamp(1, CHUNK_BYTES);
        let server: HashMap<&str, _> = status.files.iter().map(|f| (f.path.as_str(), f)).collect();
        for (i, local) in plan.files.iter().enumerate() {
            let at = server[local.path.as_str()];
            if at.verified {
                continue;
            }
            let mut offset = at.received;
            if self.started.insert(local.path.clone()) && offset > 0 {
                (self.note)(Note::Resuming {
                    path: local.path.clone(),
                    offset,
                });
            }
            self.progress
                .send_modify(|p| p.current = Some(local.path.clone()));
            let (bundle, l) = (self.bundle.clone(), local.clone());
            let file = Arc::new(blocking(move || OpenFile::open(&bundle, &l)).await?);
            loop {
                let len = chunk.min(local.size - offset);
                let f = file.clone();
                let bytes = blocking(move || f.read_chunk(offset, len as usize)).await?;
                let path = format!("uploads/{id}/files/{}?offset={offset}", local.path);
                let ack: ChunkAck = self
                    .client
                    .put_bytes(&path, bytes.into())
                    .await
                    .map_err(|e| Failure::Client(e, Ctx::Put(i)))?;
                if ack.received != offset + len {
                    // Not what we sent: handled like the server saying so.
                    let message = format!(
                        "{}: the server holds {} bytes after a chunk ending at {}",
                        local.path,
                        ack.received,
                        offset + len
                    );
                    let e = ClientError::Status {
                        code: 409,
                        error: "offset_mismatch".into(),
                        message,
                        retry_after: None,
                    };
                    return Err(Failure::Client(e, Ctx::Put(i)));
                }
                offset += len;
                self.progressed(len, ack.verified);
                if ack.verified || offset == local.size {
                    // Full but not verified: `complete` verifies it or says
                    // which file is missing.
                    break;
                }
            }
        }
        Ok(Ok(Step::Complete(id)))
    }

    fn progressed(&mut self, bytes: u64, verified: bool) {
        self.failing_since = None;
        self.resyncs = 0;
        self.backoff.reset();
        self.record.attempts = 0;
        self.progress.send_modify(|p| {
            p.bytes_done += bytes;
            p.files_done += usize::from(verified);
            p.last_error = None;
            p.next_try_at = None;
        });
    }

    async fn after_error(
        &mut self,
        e: ClientError,
        ctx: Ctx,
        plan: &mut Plan,
    ) -> Result<Step, UploadError> {
        let message = chain(&e);
        let again = match ctx {
            Ctx::Complete(id) => Step::Complete(id),
            _ => Step::Post,
        };
        let action = classify(&e);
        match action {
            Action::Refused(why) => Err(UploadError::Refused(why)),
            Action::Backoff { retry_after } => {
                let wait = retry_after.map(|d| d.min(retry::MAX_RETRY_AFTER));
                self.fail(message, wait).await?;
                Ok(again)
            }
            Action::NoSpace => {
                let wait = self.backoff.longest();
                self.fail(
                    format!("the lab server's disk is full: {message}"),
                    Some(wait),
                )
                .await?;
                Ok(again)
            }
            Action::Repost if ctx == Ctx::Post => Err(UploadError::Refused(format!(
                "{message}: there is no upload service at {} (is it lab-web with station uploads?)",
                self.client.server()
            ))),
            Action::Repost | Action::Resync => {
                // Three in a row without progress count as a failure.
                self.resyncs += 1;
                if self.resyncs >= MAX_RESYNCS {
                    self.resyncs = 0;
                    self.fail(message, None).await?;
                    return Ok(Step::Post);
                }
                match (self.record.upload_id, action) {
                    (Some(id), Action::Resync) => Ok(Step::Status(id)),
                    _ => Ok(Step::Post),
                }
            }
            Action::Rehash => match ctx {
                Ctx::Put(i) => self.rehash(i, plan, message).await,
                _ => Ok(Step::Post),
            },
        }
    }

    /// After 422 `checksum_mismatch` (the server discarded the file): hash
    /// the file again. Changed: post the new list. Unchanged: send it once
    /// more; a second mismatch is a refusal (the disk or the path is bad).
    async fn rehash(
        &mut self,
        i: usize,
        plan: &mut Plan,
        message: String,
    ) -> Result<Step, UploadError> {
        let local = plan.files[i].clone();
        let bundle = self.bundle.clone();
        let l = local.clone();
        let fresh = blocking(move || files::hash_file(&bundle, &l, &mut |_| {})).await?;
        let changed = fresh != plan.request.files[i].sha256;
        if !changed && !plan.resent.insert(local.path.clone()) {
            return Err(UploadError::Refused(format!(
                "{message}; {} was sent twice and arrived different both times: check the station's disk and the network",
                local.path
            )));
        }
        if changed {
            plan.request.files[i].sha256 = fresh;
            let (files, shas) = (
                plan.files.clone(),
                plan.request
                    .files
                    .iter()
                    .map(|f| f.sha256.clone())
                    .collect(),
            );
            let cache = self.lock.files_path();
            blocking(move || files::remember(&cache, &files, shas)).await?;
        }
        (self.note)(Note::Resending {
            path: local.path,
            changed,
        });
        Ok(Step::Post)
    }

    /// Records a failure and waits before the next try; gives up when
    /// failures have lasted `give_up_after` without progress.
    async fn fail(&mut self, error: String, wait: Option<Duration>) -> Result<(), UploadError> {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        let failing = now - since;
        if failing >= self.opts.give_up_after {
            return Err(UploadError::GaveUp {
                after: failing,
                last_error: error,
            });
        }
        let wait = wait
            .unwrap_or_else(|| self.backoff.next_delay())
            .min(self.opts.give_up_after - failing);
        let at = SystemTime::now() + wait;
        self.record.attempts += 1;
        self.record.last_error = Some(error.clone());
        self.record.next_try_at_ms = Some(now_ms() + wait.as_millis() as u64);
        self.lock.save(&self.record)?;
        self.progress.send_modify(|p| {
            p.last_error = Some(error.clone());
            p.next_try_at = Some(at);
        });
        (self.note)(Note::Retrying { error, delay: wait });
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// After the acknowledgement is recorded: delete the station copy when
    /// asked to, or when the participant withdrew (lab-web purged it; the
    /// station keeps nothing either).
    fn finish(&mut self, earlier: bool) -> Result<Acknowledged, UploadError> {
        let ack = self
            .record
            .acknowledged
            .clone()
            .expect("called once acknowledged");
        let mut deleted = self.record.deleted_at_ms.is_some();
        // A bundle that changed after it was sent (analysed on the station
        // meanwhile) holds what the server never got: kept. A withdrawal
        // deletes regardless.
        let changed = !deleted
            && self.opts.delete_after_ack
            && !ack.withdrawn
            && !files::unchanged_since_hashed(&self.bundle, &self.lock.files_path())
                .unwrap_or(false);
        if changed {
            (self.note)(Note::NotDeleted {
                path: self.bundle.clone(),
                error: "it changed after it was sent; upload it again".into(),
            });
        } else if !deleted && (self.opts.delete_after_ack || ack.withdrawn) {
            match delete_bundle(&self.bundle) {
                Ok(()) => {
                    self.record.deleted_at_ms = Some(now_ms());
                    self.lock.save(&self.record)?;
                    deleted = true;
                    (self.note)(Note::Deleted {
                        path: self.bundle.clone(),
                        withdrawn: ack.withdrawn,
                    });
                }
                Err(e) => (self.note)(Note::NotDeleted {
                    path: self.bundle.clone(),
                    error: e.to_string(),
                }),
            }
        }
        Ok(Acknowledged {
            server_session_id: ack.server_session_id,
            withdrawn: ack.withdrawn,
            earlier,
            deleted,
        })
    }
}

/// Removes an acknowledged bundle: only a real folder (never through a
/// link; `remove_dir_all` does not follow links inside it). Already gone is fine.
fn delete_bundle(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir),
        Ok(_) => Err(std::io::Error::other("it is not a real folder")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs file work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, FilesError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
