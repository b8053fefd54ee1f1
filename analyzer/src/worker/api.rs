//! The worker's view of lab-web, as a trait: the five calls of
//! `docs/worker-protocol.md` and what their answers mean to a worker
//! ([`CallError`]). `client` speaks it over HTTP; the tests speak it from
//! memory, so the job logic (`job`, `mirror`) runs without a server. Also
//! the backoff every retry loop of the worker shares.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use lab_model::worker::{
    FailRequest, Heartbeat, HeartbeatAnswer, JobStateAnswer, Lease, LeaseRequest,
};

/// lab-web, as a worker sees it. Every method blocks.
pub trait Server: Send + Sync {
    /// `POST /lease`: `None` when no job waited (204).
    fn lease(&self, req: &LeaseRequest) -> Result<Option<Lease>, CallError>;
    /// `GET /jobs/{job}/files/{path}`, from byte `offset` (`Range: bytes=N-`
    /// when `offset > 0`).
    fn open_file(
        &self,
        job: i64,
        lease: &str,
        path: &str,
        offset: u64,
    ) -> Result<Download, CallError>;
    /// `POST /jobs/{job}/heartbeat`.
    fn heartbeat(&self, job: i64, beat: &Heartbeat) -> Result<HeartbeatAnswer, CallError>;
    /// `PUT /jobs/{job}/result`: the tar at `tar`, whose SHA-256 is `sha256`.
    fn put_result(
        &self,
        job: i64,
        lease: &str,
        sha256: &str,
        tar: &Path,
    ) -> Result<JobStateAnswer, CallError>;
    /// `POST /jobs/{job}/fail`.
    fn fail(&self, job: i64, req: &FailRequest) -> Result<JobStateAnswer, CallError>;
    /// `POST /forget`: which of these kept sessions must go (withdrawn,
    /// or unknown to lab-web).
    fn forget(&self, sessions: &[String]) -> Result<Vec<String>, CallError>;
}

/// A file download under way.
pub struct Download {
    /// The byte the body starts at: the asked offset when lab-web resumed
    /// (206), 0 when it sent the whole file (200).
    pub from: u64,
    pub body: Box<dyn Read + Send>,
}

/// What went wrong with a call, sorted by what the worker does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer, a broken connection, a timeout, a 5xx or an answer that
    /// does not parse: may pass, retried with [`Backoff`].
    #[error("cannot reach lab-web: {0}")]
    Transport(String),
    /// 401 or 403: the worker token is wrong or revoked. The worker stops.
    #[error("lab-web refused the worker token ({0})")]
    Refused(u16),
    /// 409 `lease_lost`: the job is no longer this worker's. Drop it quietly.
    #[error("lab-web says the lease is lost")]
    LeaseLost,
    /// Any other 4xx, with lab-web's `{"error", "message"}`.
    #[error("lab-web answered {status} {code}: {message}")]
    Answer {
        status: u16,
        code: String,
        message: String,
    },
}

impl CallError {
    /// A 4xx answer with this error code (`withdrawn`, `checksum_mismatch`).
    pub fn is_answer(&self, want: &str) -> bool {
        matches!(self, CallError::Answer { code, .. } if code == want)
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Answer { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Waits between retries: 1, 2, 4, … seconds, at most 30 (the first and
/// the ceiling are settable so tests do not sleep).
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// 1 s, doubling, at most 30 s.
    pub fn standard() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// The wait before the next try; each call doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a success: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Sleeps `d`, waking early (and answering false) once `stop()` holds.
pub fn sleep_unless(d: Duration, stop: &dyn Fn() -> bool) -> bool {
    let until = Instant::now() + d;
    loop {
        if stop() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_thirty_and_resets() {
        let mut b = Backoff::standard();
        let secs: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn a_sleep_ends_early_when_stopped() {
        let t = Instant::now();
        assert!(!sleep_unless(Duration::from_secs(30), &|| true));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(sleep_unless(Duration::from_millis(1), &|| false));
    }

    #[test]
    fn the_refusal_names_the_status() {
        assert_eq!(
            CallError::Refused(401).to_string(),
            "lab-web refused the worker token (401)"
        );
        assert_eq!(
            CallError::Refused(403).to_string(),
            "lab-web refused the worker token (403)"
        );
    }
}
