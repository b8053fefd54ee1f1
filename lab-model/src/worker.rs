//! The analysis worker protocol (version 1), typed once for both sides:
//! `lab-analyze worker` and lab-web's `/api/v1/worker` routes. The exchange
//! is documented in `docs/worker-protocol.md`:
//!
//! 1. `POST /worker/lease` with a [`LeaseRequest`] answers 204 (no job) or a
//!    [`Lease`]: the job, a lease id, the bundle's files with their SHA-256;
//! 2. `GET /worker/jobs/{id}/files/{path}` (header [`LEASE_HEADER`], `Range`
//!    resumes) downloads one of them;
//! 3. `POST /worker/jobs/{id}/heartbeat` ([`Heartbeat`]) extends the lease and
//!    answers whether the job was cancelled ([`HeartbeatAnswer`]);
//! 4. `PUT /worker/jobs/{id}/result` sends the `analysis/` folder as a tar,
//!    accepted only under the current lease ([`ResultAnswer`]);
//! 5. `POST /worker/jobs/{id}/fail` ([`FailRequest`]) gives the job back.

use serde::{Deserialize, Serialize};

pub use crate::upload::UploadFile as LeaseFile;

pub const WORKER_PROTOCOL_VERSION: u32 = 1;
/// How long a lease lasts after its last heartbeat.
pub const LEASE_SECONDS: u64 = 60;
/// How often a worker heartbeats (a quarter of the lease: three may be lost).
pub const HEARTBEAT_SECONDS: u64 = 15;
/// The longest a lease request may wait for a job (long poll).
pub const MAX_WAIT_SECONDS: u64 = 25;
/// Attempts of a job before it goes to the dead-letter state.
pub const MAX_ATTEMPTS: i64 = 3;
/// The header every call about a leased job carries its lease in.
pub const LEASE_HEADER: &str = "x-lab-lease";
/// The header a result carries the SHA-256 of its body in (hex).
pub const SHA256_HEADER: &str = "x-lab-sha256";
/// The job kind external workers run.
pub const KIND_ANALYZE: &str = "analyze";

/// `POST /worker/lease`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub protocol: u32,
    /// Job kinds this worker runs (`analyze`).
    pub kinds: Vec<String>,
    /// Free capability names (`gpu`, `large-model`); a job that requires one
    /// is leased only to a worker listing it.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Seconds lab-web may hold the request when no job is waiting
    /// (0..=[`MAX_WAIT_SECONDS`]).
    #[serde(default)]
    pub wait_s: u64,
}

/// A capability name: 1-32 of `a-z 0-9 - _ .`.
pub fn valid_capability(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c))
}

/// The journey definition lab-web resolved for the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyFile {
    /// Its file name (for messages; the worker writes `toml` to its own file).
    pub file: String,
    pub toml: String,
}

/// `POST /worker/lease`, 200: a job for this worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub job_id: i64,
    /// The lease id: every later call about the job carries it.
    pub lease: String,
    pub kind: String,
    pub session_id: String,
    /// 1 for the first lease of the job, 2 after one expired or failed, …
    pub attempt: i64,
    pub lease_seconds: u64,
    pub heartbeat_seconds: u64,
    /// Stages to redo (`lab-analyze run --force`), as `Stage` names.
    #[serde(default)]
    pub force: Vec<String>,
    pub journey: Option<JourneyFile>,
    /// Every regular file of the bundle, `analysis/` included.
    pub files: Vec<LeaseFile>,
}

/// `POST /worker/jobs/{id}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub lease: String,
    /// Share of the whole run done, 0..=1.
    #[serde(default)]
    pub progress: f64,
    /// The stage running (`lab_model::analysis::Stage` name), or "".
    #[serde(default)]
    pub stage: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// Someone cancelled the job: stop and report it with `/fail`.
    pub cancel: bool,
    pub lease_seconds: u64,
}

/// `POST /worker/jobs/{id}/fail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub lease: String,
    /// What went wrong, for the job list and the admin page.
    pub error: String,
    /// The error may pass (a broken download, a full disk): queue the job
    /// again after a backoff. False: the bundle cannot be analysed.
    pub retry: bool,
    /// The worker is stopping (a deploy, a shutdown), not the job failing:
    /// the job is queued again at once and the attempt is not counted.
    #[serde(default)]
    pub release: bool,
}

/// `POST /worker/forget`: the sessions a worker keeps copies of. lab-web
/// answers which of them it must delete ([`ForgetAnswer`]): withdrawn
/// participants (a withdrawal purges everywhere) and sessions it no
/// longer knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    pub sessions: Vec<String>,
}

/// The most session ids one [`ForgetRequest`] may carry.
pub const MAX_FORGET: usize = 10_000;
/// How often a worker asks ([`ForgetRequest`]), besides at start.
pub const FORGET_EVERY_SECONDS: u64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetAnswer {
    pub forget: Vec<String>,
}

/// The job's state after a `/fail` or a `/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStateAnswer {
    /// `done`, `queued`, `failed`, `dead` or `cancelled`.
    pub status: String,
}

/// Seconds before a job that failed retryably on attempt `attempt` (1-based)
/// is leased again: 10, 40, 160, …
pub fn retry_backoff_seconds(attempt: i64) -> u64 {
    10u64.saturating_mul(4u64.saturating_pow(attempt.clamp(1, 8) as u32 - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_fourfold() {
        assert_eq!(retry_backoff_seconds(1), 10);
        assert_eq!(retry_backoff_seconds(2), 40);
        assert_eq!(retry_backoff_seconds(3), 160);
        assert_eq!(retry_backoff_seconds(0), 10);
    }

    #[test]
    fn capabilities_are_plain_names() {
        assert!(valid_capability("gpu"));
        assert!(valid_capability("large-model"));
        assert!(!valid_capability(""));
        assert!(!valid_capability("GPU"));
        assert!(!valid_capability("a,b"));
        assert!(!valid_capability(&"x".repeat(33)));
    }

    #[test]
    fn a_lease_request_refuses_unknown_fields() {
        let ok: LeaseRequest =
            serde_json::from_str(r#"{"protocol":1,"kinds":["analyze"]}"#).unwrap();
        assert_eq!(ok.wait_s, 0);
        assert!(
            serde_json::from_str::<LeaseRequest>(r#"{"protocol":1,"kinds":[],"x":1}"#).is_err()
        );
    }
}
