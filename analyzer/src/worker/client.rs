//! The HTTP side of [`Server`]: lab-web's `/api/v1/worker` routes over
//! plain `http://` with `ureq` (blocking; one agent, its connections kept
//! alive and shared by every slot). Each call maps its status to a
//! [`CallError`] and nothing more: what a failure means for a job is
//! `job`'s business.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use lab_model::worker::{
    FailRequest, Heartbeat, HeartbeatAnswer, JobStateAnswer, LEASE_HEADER, Lease, LeaseRequest,
    SHA256_HEADER,
};
use serde::de::DeserializeOwned;
use ureq::http::Response;

use super::api::{CallError, Download, Server};

/// The largest lease answer read: a day-long session lists ~250,000 files.
const MAX_LEASE_BYTES: u64 = 128 << 20;
/// The largest other JSON answer read.
const MAX_ANSWER_BYTES: u64 = 1 << 20;
/// The longest a read or write may wait for the network.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// A heartbeat that takes longer than this is as good as lost.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
/// lab-web checks, unpacks and imports a result before it answers.
const RESULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long lab-web may take to answer a lease once it has a job (it may
/// hash the bundle first).
const LEASE_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

pub struct HttpServer {
    agent: ureq::Agent,
    /// `http://host:port/api/v1/worker`
    base: String,
    auth: String,
}

impl HttpServer {
    /// `server`: lab-web's address (`http://lab:8080`, a path prefix kept);
    /// `token`: the worker token.
    pub fn new(server: &str, token: &str) -> Result<Self, String> {
        let base = server.trim_end_matches('/');
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(format!(
                "--server {server:?}: give lab-web's address as http://HOST:PORT (this worker speaks plain HTTP; put TLS in a proxy in front of both if the network needs it)"
            ));
        }
        if token.is_empty() || !token.bytes().all(|c| c.is_ascii_graphic()) {
            return Err("the worker token is empty or holds spaces or odd characters".into());
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("lab-analyze-worker/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(10)))
            // A download that stalls this long is broken: it is resumed. A
            // job's end (cancel, stop) waits at most this for a stalled read.
            .timeout_per_read(Some(STALL_TIMEOUT))
            .timeout_per_write(Some(STALL_TIMEOUT))
            .build()
            .new_agent();
        Ok(Self {
            agent,
            base: format!("{base}/api/v1/worker"),
            auth: format!("Bearer {token}"),
        })
    }

    fn job_url(&self, job: i64, rest: &str) -> String {
        format!("{}/jobs/{job}/{rest}", self.base)
    }

    /// `timeout`: for the whole call, which is also the longest wait for
    /// its answer.
    fn post_json<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &impl serde::Serialize,
        timeout: Duration,
        limit: u64,
    ) -> Result<Option<T>, CallError> {
        let body = serde_json::to_vec(body).expect("request serialises");
        let req = self
            .agent
            .post(url)
            .config()
            .timeout_global(Some(timeout))
            .timeout_per_read(Some(timeout))
            .build()
            .header("authorization", &self.auth)
            .content_type("application/json");
        let resp = req.send(&body[..]).map_err(transport)?;
        read_json(resp, limit)
    }
}

fn transport(e: ureq::Error) -> CallError {
    CallError::Transport(e.to_string())
}

/// 2xx: the body parsed as `T` (`None` for 204); anything else: its error.
fn read_json<T: DeserializeOwned>(
    resp: Response<ureq::Body>,
    limit: u64,
) -> Result<Option<T>, CallError> {
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let bytes = body
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(transport)?;
    check_status(status, &bytes)?;
    if status == 204 {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        CallError::Transport(format!("lab-web's answer ({status}) does not parse: {e}"))
    })
}

/// What a status means to a worker (`body`: the answer, for its
/// `{"error", "message"}`).
pub fn check_status(status: u16, body: &[u8]) -> Result<(), CallError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct ApiError {
        error: String,
        #[serde(default)]
        message: String,
    }
    let (code, message) = match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => (e.error, e.message),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    };
    Err(match status {
        401 | 403 => CallError::Refused(status),
        409 if code == "lease_lost" => CallError::LeaseLost,
        408 | 429 | 500..=599 => CallError::Transport(format!("{status} {code}: {message}")),
        _ => CallError::Answer {
            status,
            code,
            message,
        },
    })
}

impl Server for HttpServer {
    fn lease(&self, req: &LeaseRequest) -> Result<Option<Lease>, CallError> {
        // The long poll holds the answer for up to `wait_s`.
        // lab-web hashes a bundle it has not hashed yet before answering
        // (minutes for a long session on a slow disk).
        let timeout = Duration::from_secs(req.wait_s) + LEASE_ANSWER_TIMEOUT;
        self.post_json(
            &format!("{}/lease", self.base),
            req,
            timeout,
            MAX_LEASE_BYTES,
        )
    }

    fn open_file(
        &self,
        job: i64,
        lease: &str,
        path: &str,
        offset: u64,
    ) -> Result<Download, CallError> {
        // `path` passed `valid_upload_path` (ASCII letters, digits, `._-/`):
        // nothing in it needs escaping.
        let mut req = self
            .agent
            .get(self.job_url(job, &format!("files/{path}")))
            .header("authorization", &self.auth)
            .header(LEASE_HEADER, lease);
        if offset > 0 {
            req = req.header("range", format!("bytes={offset}-"));
        }
        let resp = req.call().map_err(transport)?;
        let status = resp.status().as_u16();
        let from = match status {
            200 => 0,
            206 => {
                let range = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !range.starts_with(&format!("bytes {offset}-")) {
                    return Err(CallError::Transport(format!(
                        "{path}: asked from byte {offset}, lab-web sent the range {range:?}"
                    )));
                }
                offset
            }
            _ => {
                let bytes = resp
                    .into_body()
                    .with_config()
                    .limit(MAX_ANSWER_BYTES)
                    .read_to_vec()
                    .unwrap_or_default();
                check_status(status, &bytes)?;
                return Err(CallError::Transport(format!(
                    "{path}: unexpected answer {status}"
                )));
            }
        };
        Ok(Download {
            from,
            body: Box::new(resp.into_body().into_reader()),
        })
    }

    fn heartbeat(&self, job: i64, beat: &Heartbeat) -> Result<HeartbeatAnswer, CallError> {
        self.post_json(
            &self.job_url(job, "heartbeat"),
            beat,
            HEARTBEAT_TIMEOUT,
            MAX_ANSWER_BYTES,
        )?
        .ok_or_else(|| CallError::Transport("lab-web answered a heartbeat with no body".into()))
    }

    fn put_result(
        &self,
        job: i64,
        lease: &str,
        sha256: &str,
        tar: &Path,
    ) -> Result<JobStateAnswer, CallError> {
        let file = File::open(tar)
            .map_err(|e| CallError::Transport(format!("cannot read {}: {e}", tar.display())))?;
        let resp = self
            .agent
            .put(self.job_url(job, "result"))
            .config()
            .timeout_recv_response(Some(RESULT_ANSWER_TIMEOUT))
            .timeout_per_read(Some(RESULT_ANSWER_TIMEOUT))
            .build()
            .header("authorization", &self.auth)
            .header(LEASE_HEADER, lease)
            .header(SHA256_HEADER, sha256)
            .content_type("application/x-tar")
            // Streamed from the file, with its length as Content-Length.
            .send(file)
            .map_err(transport)?;
        read_json(resp, MAX_ANSWER_BYTES)?
            .ok_or_else(|| CallError::Transport("lab-web answered a result with no body".into()))
    }

    fn forget(&self, sessions: &[String]) -> Result<Vec<String>, CallError> {
        let req = lab_model::worker::ForgetRequest {
            sessions: sessions.to_vec(),
        };
        let a: Option<lab_model::worker::ForgetAnswer> = self.post_json(
            &format!("{}/forget", self.base),
            &req,
            STALL_TIMEOUT * 3,
            MAX_LEASE_BYTES,
        )?;
        Ok(a.map(|a| a.forget).unwrap_or_default())
    }

    fn fail(&self, job: i64, req: &FailRequest) -> Result<JobStateAnswer, CallError> {
        self.post_json(
            &self.job_url(job, "fail"),
            req,
            HEARTBEAT_TIMEOUT,
            MAX_ANSWER_BYTES,
        )?
        .ok_or_else(|| CallError::Transport("lab-web answered a failure with no body".into()))
    }
}

#[cfg(test)]
#[path = "tests/client.rs"]
mod tests;
