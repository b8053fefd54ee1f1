//! lab-web in memory for the worker's tests: a bundle's files, scripted
//! answers, every call written down.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use lab_model::worker::{
    FailRequest, HEARTBEAT_SECONDS, Heartbeat, HeartbeatAnswer, JobStateAnswer, KIND_ANALYZE,
    LEASE_SECONDS, Lease, LeaseFile, LeaseRequest,
};
use sha2::{Digest, Sha256};

use crate::worker::api::{Backoff, CallError, Download, Server, hex};

pub fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// No waits, so retry loops run at once.
pub fn quick_backoff() -> Backoff {
    Backoff::new(Duration::ZERO, Duration::ZERO)
}

/// A fresh, empty folder under the system's temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lab-worker-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn listing(files: &[(&str, &[u8])]) -> Vec<LeaseFile> {
    files
        .iter()
        .map(|(p, b)| LeaseFile {
            path: p.to_string(),
            size: b.len() as u64,
            sha256: sha(b),
        })
        .collect()
}

/// A lease of job `job_id` on session `S1` listing `files`.
pub fn lease(job_id: i64, files: &[(&str, &[u8])]) -> Lease {
    Lease {
        job_id,
        lease: format!("lease-{job_id}"),
        kind: KIND_ANALYZE.to_string(),
        session_id: "S1".into(),
        attempt: 1,
        lease_seconds: LEASE_SECONDS,
        heartbeat_seconds: HEARTBEAT_SECONDS,
        force: Vec::new(),
        journey: None,
        files: listing(files),
    }
}

/// A minimal bundle's files.
pub fn bundle_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "manifest.json",
            br#"{"not":"read by the fake analyzer"}"#.to_vec(),
        ),
        ("events.jsonl", b"{}\n".to_vec()),
        (
            "media/main-00001.mkv",
            (0..200_000u32).map(|i| (i % 251) as u8).collect(),
        ),
    ]
}

#[derive(Default)]
pub struct Fake {
    /// lab-web's copy of the bundle.
    pub files: Mutex<HashMap<String, Vec<u8>>>,
    /// Answers to `/lease`, in turn; then 204.
    pub leases: Mutex<VecDeque<Result<Option<Lease>, CallError>>>,
    /// Every call: `lease`, `get PATH @N`, `heartbeat P STAGE`, `result SHA`,
    /// `fail retry=B: TEXT`.
    pub calls: Mutex<Vec<String>>,
    /// Downloads of a path still to be sent with a wrong byte.
    pub corrupt: Mutex<HashMap<String, usize>>,
    /// Downloads of a path still to break after this many bytes.
    pub breaks: Mutex<HashMap<String, (usize, usize)>>,
    /// Answer downloads with 410 `withdrawn`.
    pub withdrawn: AtomicBool,
    /// Answer a `Range` with the whole file (200) instead of the rest.
    pub ignore_range: AtomicBool,
    /// Answer heartbeats with `cancel: true`.
    pub cancel: AtomicBool,
    /// Answer heartbeats with this error.
    pub heartbeat_error: Mutex<Option<CallError>>,
    /// Answers to `/result`, in turn; then `done`.
    pub result_answers: Mutex<VecDeque<CallError>>,
    /// The tars received.
    pub results: Mutex<Vec<Vec<u8>>>,
}

impl Fake {
    pub fn with_files(files: &[(&str, &[u8])]) -> Self {
        let f = Fake::default();
        *f.files.lock().unwrap() = files
            .iter()
            .map(|(p, b)| (p.to_string(), b.to_vec()))
            .collect();
        f
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_starting(&self, prefix: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect()
    }

    fn note(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

/// A body that fails after `left` bytes, as a dropped connection does.
struct Breaking {
    data: io::Cursor<Vec<u8>>,
    left: usize,
}

impl Read for Breaking {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset",
            ));
        }
        let n = buf.len().min(self.left);
        let n = self.data.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

impl Server for Fake {
    fn lease(&self, _req: &LeaseRequest) -> Result<Option<Lease>, CallError> {
        self.note("lease".into());
        self.leases.lock().unwrap().pop_front().unwrap_or(Ok(None))
    }

    fn open_file(
        &self,
        _job: i64,
        lease: &str,
        path: &str,
        offset: u64,
    ) -> Result<Download, CallError> {
        assert!(lease.starts_with("lease-"));
        self.note(format!("get {path} @{offset}"));
        if self.withdrawn.load(Ordering::SeqCst) {
            return Err(CallError::Answer {
                status: 410,
                code: "withdrawn".into(),
                message: "the participant withdrew".into(),
            });
        }
        let Some(mut data) = self.files.lock().unwrap().get(path).cloned() else {
            return Err(CallError::Answer {
                status: 404,
                code: "not_found".into(),
                message: path.into(),
            });
        };
        if let Some(n) = self
            .corrupt
            .lock()
            .unwrap()
            .get_mut(path)
            .filter(|n| **n > 0)
        {
            *n -= 1;
            data[0] ^= 0xff;
        }
        let from = if self.ignore_range.load(Ordering::SeqCst) {
            0
        } else {
            offset
        };
        if from > data.len() as u64 {
            return Err(CallError::Answer {
                status: 416,
                code: String::new(),
                message: String::new(),
            });
        }
        let rest = data[from as usize..].to_vec();
        let left = match self
            .breaks
            .lock()
            .unwrap()
            .get_mut(path)
            .filter(|b| b.0 > 0)
        {
            Some(b) => {
                b.0 -= 1;
                b.1
            }
            None => usize::MAX,
        };
        Ok(Download {
            from,
            body: Box::new(Breaking {
                data: io::Cursor::new(rest),
                left,
            }),
        })
    }

    fn heartbeat(&self, _job: i64, beat: &Heartbeat) -> Result<HeartbeatAnswer, CallError> {
        self.note(format!("heartbeat {:.3} {}", beat.progress, beat.stage));
        if let Some(e) = self.heartbeat_error.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(HeartbeatAnswer {
            cancel: self.cancel.load(Ordering::SeqCst),
            lease_seconds: LEASE_SECONDS,
        })
    }

    fn put_result(
        &self,
        _job: i64,
        lease: &str,
        sha256: &str,
        tar: &Path,
    ) -> Result<JobStateAnswer, CallError> {
        assert!(lease.starts_with("lease-"));
        self.note(format!("result {sha256}"));
        let body = std::fs::read(tar).unwrap();
        assert_eq!(sha(&body), sha256, "the header carries the body's SHA-256");
        if let Some(e) = self.result_answers.lock().unwrap().pop_front() {
            return Err(e);
        }
        self.results.lock().unwrap().push(body);
        Ok(JobStateAnswer {
            status: "done".into(),
        })
    }

    fn forget(&self, sessions: &[String]) -> Result<Vec<String>, CallError> {
        self.note(format!("forget {}", sessions.join(",")));
        // The fake's withdrawn participant is every session it is asked about.
        Ok(if self.withdrawn.load(Ordering::SeqCst) {
            sessions.to_vec()
        } else {
            vec![]
        })
    }

    fn fail(&self, _job: i64, req: &FailRequest) -> Result<JobStateAnswer, CallError> {
        self.note(format!("fail retry={}: {}", req.retry, req.error));
        Ok(JobStateAnswer {
            status: if req.retry { "queued" } else { "failed" }.into(),
        })
    }
}
