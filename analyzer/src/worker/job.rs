//! One leased job, from the lease to lab-web's last word on it: check the
//! lease, mirror the bundle, run `lab-analyze run` as a child while a
//! heartbeat thread keeps the lease (and hears a cancel), pack and send
//! `analysis/`, or give the job back with `/fail`. Everything lab-web says
//! arrives through [`Server`], so the whole flow runs in tests against a
//! server in memory and a stand-in analyzer.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use lab_model::analysis::{ANALYSIS_DIR, Stage};
use lab_model::bundle::write_atomic;
use lab_model::upload::{UPLOAD_PROTOCOL_VERSION, UploadRequest};
use lab_model::worker::{FailRequest, KIND_ANALYZE, Lease};

use super::api::{Backoff, CallError, Server, sleep_unless};
use super::child::{self, ChildSettings, Early, JobCtl, Watch};
use super::mirror::{self, Fetcher, MirrorError};
use super::result::{self, ResultError};

/// The most bytes of an error text sent with `/fail`.
const MAX_ERROR_BYTES: usize = 4000;
/// Tries of a `/fail` before the worker lets the lease expire instead.
const FAIL_TRIES: u32 = 5;
/// Times a result is sent again after lab-web found its checksum wrong.
const RESULT_RESENDS: u32 = 2;

/// What every job of a worker shares.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// `--work DIR`: `bundles/`, `sums/`, `journeys/`, `results/`, `locks/`.
    pub work: PathBuf,
    pub child: ChildSettings,
    /// Waits between tries of a download, a result, a `/fail`.
    pub backoff: Backoff,
    /// Download tries in a row without a byte gained.
    pub download_tries: u32,
}

impl JobSettings {
    pub fn bundle_dir(&self, session: &str) -> PathBuf {
        self.work.join("bundles").join(session)
    }

    pub(crate) fn sums_file(&self, session: &str) -> PathBuf {
        self.work.join("sums").join(format!("{session}.json"))
    }
}

/// How a job ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// lab-web took the result.
    Done,
    /// Reported with `/fail`.
    Failed { error: String, retry: bool },
    /// Cancelled by someone on lab-web; reported with `/fail` (no retry).
    Cancelled,
    /// The lease went to someone else (or the job went away): dropped.
    LeaseLost,
    /// The participant withdrew: dropped, and the local copy deleted.
    Withdrawn,
    /// The worker is stopping: given back with `/fail` (retry).
    Stopped,
    /// lab-web refused the worker token mid-job.
    Refused(u16),
}

/// A finished job, for the one line per job on stdout.
#[derive(Debug, Clone)]
pub struct Report {
    pub job_id: i64,
    pub session_id: String,
    pub outcome: Outcome,
    /// From receiving the lease to the end.
    pub took: Duration,
    /// From receiving the lease to the child's start (the queue's
    /// overhead: checks and downloads); `None` when no child started.
    pub lease_to_start: Option<Duration>,
    /// Of that, the time the bundle took to download and verify.
    pub download: Option<Duration>,
}

/// When a job's child started and how long its download took.
#[derive(Debug, Default)]
pub struct Times {
    pub start: Option<Instant>,
    pub download: Option<Duration>,
}

impl Report {
    /// `job 42 session S: done in 12.3 s (lease→start 0.05 s, download 0.04 s)`.
    pub fn line(&self) -> String {
        let how = match &self.outcome {
            Outcome::Done => "done".to_string(),
            Outcome::Failed { error, retry } => {
                let first = error.lines().next().unwrap_or("");
                let again = if *retry { ", to be retried" } else { "" };
                format!("failed{again} ({first})")
            }
            Outcome::Cancelled => "cancelled".to_string(),
            Outcome::LeaseLost => "lease lost, dropped".to_string(),
            Outcome::Withdrawn => "withdrawn, local copy deleted".to_string(),
            Outcome::Stopped => "given back (worker stopping)".to_string(),
            Outcome::Refused(code) => format!("dropped: token refused ({code})"),
        };
        let start = match (self.lease_to_start, self.download) {
            (Some(d), Some(dl)) => format!(
                "{:.2} s, download {:.2} s",
                d.as_secs_f64(),
                dl.as_secs_f64()
            ),
            (Some(d), None) => format!("{:.2} s", d.as_secs_f64()),
            (None, _) => "-".to_string(),
        };
        format!(
            "job {} session {}: {how} in {:.1} s (lease→start {start})",
            self.job_id,
            self.session_id,
            self.took.as_secs_f64()
        )
    }
}

/// A human line on stderr about a job.
fn say(lease: &Lease, msg: &str) {
    eprintln!(
        "lab-analyze worker: job {} ({}): {msg}",
        lease.job_id, lease.session_id
    );
}

/// How the work part of a job ended (before lab-web is told).
enum End {
    Done,
    Fail { error: String, retry: bool },
    Early(Early),
}

/// Runs one leased job to its end. `received`: when the lease arrived;
/// `stop`: set when the worker is stopping.
pub fn run(
    settings: &JobSettings,
    server: &dyn Server,
    lease: &Lease,
    received: Instant,
    stop: &AtomicBool,
) -> Report {
    let ctl = JobCtl::default();
    let watch = Mutex::new(Watch::default());
    let started = Mutex::new(Times::default());
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let end = std::thread::scope(|s| {
        let (ctl, watch) = (&ctl, &watch);
        s.spawn(move || heartbeats(server, lease, ctl, watch, stop, done_rx));
        let end = work(settings, server, lease, ctl, watch, &started);
        drop(done_tx);
        end
    });
    let outcome = match end {
        End::Done => Outcome::Done,
        End::Fail { error, retry } => {
            say(lease, &format!("failed: {error}"));
            give_back(settings, server, lease, &error, retry);
            Outcome::Failed { error, retry }
        }
        End::Early(Early::Cancelled) => {
            say(lease, "cancelled on lab-web");
            give_back(settings, server, lease, "cancelled", false);
            Outcome::Cancelled
        }
        End::Early(Early::Stopped) => {
            give_back(settings, server, lease, STOPPED, true);
            Outcome::Stopped
        }
        End::Early(Early::LeaseLost) => {
            say(lease, "lab-web says the lease is lost; dropping the job");
            Outcome::LeaseLost
        }
        End::Early(Early::Withdrawn) => Outcome::Withdrawn,
        End::Early(Early::Refused(code)) => Outcome::Refused(code),
    };
    let times = started.into_inner().unwrap_or_else(|e| e.into_inner());
    let lease_to_start = times
        .start
        .map(|t: Instant| t.saturating_duration_since(received));
    Report {
        job_id: lease.job_id,
        session_id: lease.session_id.clone(),
        outcome,
        took: received.elapsed(),
        lease_to_start,
        download: times.download,
    }
}

/// The reason the job ended early, or `fallback` when nobody ended it.
fn early_or(ctl: &JobCtl, fallback: End) -> End {
    match ctl.early() {
        Some(e) => End::Early(e),
        None => fallback,
    }
}

fn fail(error: impl Into<String>, retry: bool) -> End {
    End::Fail {
        error: error.into(),
        retry,
    }
}

/// An error with its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// What a lease must hold before anything is written: the kind this worker
/// runs, a plain session id and file list (the upload protocol's rules:
/// no path leaves the bundle), stages that exist.
pub fn check_lease(lease: &Lease) -> Result<Vec<Stage>, String> {
    if lease.kind != KIND_ANALYZE {
        return Err(format!(
            "this worker runs {KIND_ANALYZE} jobs, lab-web leased a {:?} job",
            lease.kind
        ));
    }
    UploadRequest {
        protocol: UPLOAD_PROTOCOL_VERSION,
        session_id: lease.session_id.clone(),
        files: lease.files.clone(),
    }
    .check()
    .map_err(|e| format!("lab-web's lease lists a bundle this worker cannot take: {e}"))?;
    lease
        .force
        .iter()
        .map(|name| Stage::forced_from(name).map_err(|e| e.to_string()))
        .collect()
}

/// Holds `locks/<session>.lock`: one job per bundle copy, across slots and
/// across worker processes sharing a work folder.
pub(crate) fn lock_session(settings: &JobSettings, session: &str) -> io::Result<Option<File>> {
    let dir = settings.work.join("locks");
    fs::create_dir_all(&dir)?;
    let file = File::create(dir.join(format!("{session}.lock")))?;
    // SAFETY: flock on a descriptor this function owns.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        Ok(Some(file))
    } else {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(e)
        }
    }
}

fn work(
    settings: &JobSettings,
    server: &dyn Server,
    lease: &Lease,
    ctl: &JobCtl,
    watch: &Mutex<Watch>,
    started: &Mutex<Times>,
) -> End {
    let force = match check_lease(lease) {
        Ok(f) => f,
        Err(e) => return fail(e, false),
    };
    let _lock = match lock_session(settings, &lease.session_id) {
        Ok(Some(l)) => l,
        Ok(None) => {
            // Not the job's fault: released (the attempt does not count).
            say(
                lease,
                "the session is being analysed by another job on this worker; giving it back",
            );
            return End::Early(Early::Stopped);
        }
        Err(e) => return fail(format!("cannot lock the session's copy: {e}"), true),
    };
    let end = work_locked(settings, server, lease, ctl, watch, started, &force);
    if matches!(end, End::Early(Early::Withdrawn)) {
        // Still under the session's lock: no other job is using the copy.
        say(lease, "the participant withdrew; deleting the local copy");
        let _ = fs::remove_dir_all(settings.bundle_dir(&lease.session_id));
        let _ = fs::remove_file(settings.sums_file(&lease.session_id));
    }
    end
}

/// The job once its session's copy is this job's alone.
fn work_locked(
    settings: &JobSettings,
    server: &dyn Server,
    lease: &Lease,
    ctl: &JobCtl,
    watch: &Mutex<Watch>,
    started: &Mutex<Times>,
    force: &[Stage],
) -> End {
    let bundle = settings.bundle_dir(&lease.session_id);
    let t = Instant::now();
    if let Err(end) = download(settings, server, lease, ctl, &bundle) {
        return end;
    }
    started.lock().unwrap_or_else(|e| e.into_inner()).download = Some(t.elapsed());
    let journey = match &lease.journey {
        None => None,
        Some(j) => {
            let path = settings
                .work
                .join("journeys")
                .join(format!("{}.toml", lease.job_id));
            let written = fs::create_dir_all(path.parent().expect("has a parent"))
                .map_err(|e| e.to_string())
                .and_then(|()| write_atomic(&path, j.toml.as_bytes()).map_err(|e| chain(&e)));
            if let Err(e) = written {
                return fail(format!("cannot write the journey {}: {e}", j.file), true);
            }
            Some(path)
        }
    };
    let end = analyse(
        settings,
        lease,
        ctl,
        watch,
        started,
        &bundle,
        journey.as_deref(),
        force,
    );
    if let Some(j) = &journey {
        let _ = fs::remove_file(j);
    }
    if !matches!(end, End::Done) {
        return end;
    }
    send_result(settings, server, lease, ctl, &bundle)
}

/// Mirrors the bundle; `Err` is how the job ends.
fn download(
    settings: &JobSettings,
    server: &dyn Server,
    lease: &Lease,
    ctl: &JobCtl,
    bundle: &Path,
) -> Result<(), End> {
    let fetch =
        |path: &str, offset: u64| server.open_file(lease.job_id, &lease.lease, path, offset);
    let stop = || ctl.early().is_some();
    let log = |msg: &str| say(lease, msg);
    let fetcher = Fetcher {
        fetch: &fetch,
        stop: &stop,
        log: &log,
        backoff: settings.backoff.clone(),
        max_tries: settings.download_tries,
    };
    let t = Instant::now();
    let synced = match mirror::sync(
        bundle,
        &settings.sums_file(&lease.session_id),
        &lease.files,
        &fetcher,
    ) {
        Ok(s) => s,
        Err(e) => {
            return Err(match e {
                MirrorError::Stopped => early_or(ctl, fail("stopped", true)),
                MirrorError::Mismatch { .. } | MirrorError::TooLong { .. } => {
                    fail(e.to_string(), false)
                }
                MirrorError::Io { .. } => fail(chain(&e), true),
                MirrorError::Call { ref source, .. } => match source {
                    CallError::LeaseLost => End::Early(Early::LeaseLost),
                    CallError::Refused(code) => End::Early(Early::Refused(*code)),
                    s if s.is_answer("withdrawn") => End::Early(Early::Withdrawn),
                    _ => fail(chain(&e), true),
                },
            });
        }
    };
    say(
        lease,
        &format!(
            "bundle ready in {:.1} s: {} files kept, {} downloaded ({} resumed, {} bytes), {} removed",
            t.elapsed().as_secs_f64(),
            synced.kept,
            synced.downloaded,
            synced.resumed,
            synced.bytes,
            synced.deleted
        ),
    );
    Ok(())
}

/// Runs the child to its end.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, each a different part of the job"
)]
fn analyse(
    settings: &JobSettings,
    lease: &Lease,
    ctl: &JobCtl,
    watch: &Mutex<Watch>,
    started: &Mutex<Times>,
    bundle: &Path,
    journey: Option<&Path>,
    force: &[Stage],
) -> End {
    let cmd = child::command(&settings.child, bundle, journey, force);
    let mut running = match ctl.spawn(cmd) {
        Ok(Some(c)) => c,
        Ok(None) => return early_or(ctl, fail("stopped", true)),
        Err(e) => {
            return fail(
                format!(
                    "cannot start {}: {e}",
                    settings.child.program[0].to_string_lossy()
                ),
                true,
            );
        }
    };
    started.lock().unwrap_or_else(|e| e.into_inner()).start = Some(Instant::now());
    say(lease, "lab-analyze run started");
    let stderr = running.stderr.take().expect("stderr is piped");
    let echo = |line: &str| say(lease, line);
    let status = std::thread::scope(|s| {
        s.spawn(|| child::read_stderr(stderr, watch, &echo));
        ctl.wait(&mut running)
    });
    let status = match status {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot wait for lab-analyze run: {e}"), true),
    };
    if let Some(e) = ctl.early() {
        return End::Early(e);
    }
    if status.success() {
        return End::Done;
    }
    let tail = watch.lock().unwrap_or_else(|e| e.into_inner()).tail();
    // Killed by a signal nobody here sent (the OOM killer): may pass.
    let retry = status.code().is_none();
    fail(child::failure_text(status, &tail), retry)
}

/// Packs `analysis/` and sends it until lab-web takes it, the lease is
/// lost or the job ends.
fn send_result(
    settings: &JobSettings,
    server: &dyn Server,
    lease: &Lease,
    ctl: &JobCtl,
    bundle: &Path,
) -> End {
    let results = settings.work.join("results");
    if let Err(e) = fs::create_dir_all(&results) {
        return fail(format!("cannot make {}: {e}", results.display()), true);
    }
    let tar = results.join(format!("{}.tar", lease.job_id));
    let packed = match result::pack(&bundle.join(ANALYSIS_DIR), &tar) {
        Ok(p) => p,
        Err(e) => {
            let _ = fs::remove_file(&tar);
            let retry = matches!(e, ResultError::Write { .. });
            return fail(format!("cannot pack the result: {}", chain(&e)), retry);
        }
    };
    say(
        lease,
        &format!(
            "sending the result: {} files, {} bytes, sha256 {}",
            packed.files, packed.bytes, packed.sha256
        ),
    );
    let end = upload(settings, server, lease, ctl, &tar, &packed.sha256);
    let _ = fs::remove_file(&tar);
    end
}

fn upload(
    settings: &JobSettings,
    server: &dyn Server,
    lease: &Lease,
    ctl: &JobCtl,
    tar: &Path,
    sha256: &str,
) -> End {
    let mut backoff = settings.backoff.clone();
    let mut resent = 0;
    let mut unanswered = 0;
    loop {
        if let Some(e) = ctl.early() {
            return End::Early(e);
        }
        match server.put_result(lease.job_id, &lease.lease, sha256, tar) {
            Ok(answer) => {
                say(
                    lease,
                    &format!("lab-web took the result ({})", answer.status),
                );
                return End::Done;
            }
            Err(CallError::LeaseLost) => return End::Early(Early::LeaseLost),
            Err(CallError::Refused(code)) => return End::Early(Early::Refused(code)),
            Err(e @ CallError::Transport(_)) if unanswered >= RESULT_TRANSPORT_TRIES => {
                // lab-web keeps failing (a 5xx every time): give the job
                // back rather than resend forever; it is retried elsewhere.
                return fail(format!("lab-web could not take the result: {e}"), true);
            }
            Err(e @ CallError::Transport(_)) => {
                unanswered += 1;
                say(lease, &format!("{e}; sending the result again"));
                // Woken early by the job's end: the loop's top says how.
                sleep_unless(backoff.next_delay(), &|| ctl.early().is_some());
            }
            Err(e) if e.is_answer("withdrawn") => return End::Early(Early::Withdrawn),
            Err(e) if e.is_answer("checksum_mismatch") && resent < RESULT_RESENDS => {
                resent += 1;
                say(lease, &format!("{e}; sending it again"));
            }
            Err(e) if e.is_answer("checksum_mismatch") => {
                return fail(format!("lab-web refused the result: {e}"), true);
            }
            Err(e) => return fail(format!("lab-web refused the result: {e}"), false),
        }
    }
}

/// Sends of a result that got no answer (or a 5xx) in a row before the job
/// is given back.
const RESULT_TRANSPORT_TRIES: u32 = 8;

/// What a stopping worker says when it gives its jobs back (released, not
/// failed: the attempt does not count).
const STOPPED: &str = "worker stopped";

/// Tells lab-web the job failed (a few tries; after that the lease expires
/// by itself and the job is queued again).
fn give_back(settings: &JobSettings, server: &dyn Server, lease: &Lease, error: &str, retry: bool) {
    let mut cut = error.len().min(MAX_ERROR_BYTES);
    while !error.is_char_boundary(cut) {
        cut -= 1;
    }
    let req = FailRequest {
        lease: lease.lease.clone(),
        error: error[..cut].to_string(),
        retry,
        release: error == STOPPED,
    };
    let mut backoff = settings.backoff.clone();
    for _ in 0..FAIL_TRIES {
        match server.fail(lease.job_id, &req) {
            Ok(a) => {
                say(lease, &format!("reported to lab-web: {}", a.status));
                return;
            }
            Err(e @ CallError::Transport(_)) => {
                say(lease, &format!("cannot report the failure: {e}"));
                std::thread::sleep(backoff.next_delay());
            }
            Err(e) => {
                say(lease, &format!("lab-web did not take the failure: {e}"));
                return;
            }
        }
    }
}

/// The heartbeat thread of a job: every `heartbeat_seconds` the latest
/// progress; a cancel, a lost lease, a refused token or the worker stopping
/// ends the job through `ctl`. Returns when `done` hangs up.
fn heartbeats(
    server: &dyn Server,
    lease: &Lease,
    ctl: &JobCtl,
    watch: &Mutex<Watch>,
    stop: &AtomicBool,
    done: mpsc::Receiver<()>,
) {
    let period = Duration::from_secs(lease.heartbeat_seconds.clamp(1, 600));
    let mut next = Instant::now() + period;
    let mut backoff = Backoff::new(Duration::from_secs(1), period);
    let mut gone = false;
    loop {
        match done.recv_timeout(Duration::from_millis(100)) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if stop.load(Ordering::SeqCst) {
            ctl.end(Early::Stopped);
        }
        if gone || Instant::now() < next {
            continue;
        }
        let beat = watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .heartbeat(&lease.lease);
        match server.heartbeat(lease.job_id, &beat) {
            Ok(answer) => {
                backoff.reset();
                next = Instant::now() + period;
                if answer.cancel {
                    ctl.end(Early::Cancelled);
                }
            }
            Err(CallError::Transport(e)) => {
                say(lease, &format!("heartbeat not delivered: {e}"));
                next = Instant::now() + backoff.next_delay();
            }
            Err(CallError::LeaseLost) => {
                ctl.end(Early::LeaseLost);
                gone = true;
            }
            Err(CallError::Refused(code)) => {
                ctl.end(Early::Refused(code));
                gone = true;
            }
            Err(e) if e.is_answer("withdrawn") => {
                ctl.end(Early::Withdrawn);
                gone = true;
            }
            Err(e) => {
                // 404: the job is gone from lab-web; nothing it would take.
                say(lease, &format!("heartbeat refused: {e}; dropping the job"));
                ctl.end(Early::LeaseLost);
                gone = true;
            }
        }
    }
}

#[cfg(test)]
#[path = "tests/job.rs"]
mod tests;
