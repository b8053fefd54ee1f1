//! The analysis worker protocol (`docs/worker-protocol.md`) through the real
//! router on both databases: rights, a whole lease → download → heartbeat →
//! result exchange, a lapsed lease re-leased (the late worker refused
//! everywhere), the dead-letter state, retries with backoff, cancel, a
//! withdrawn participant, and hostile results.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use lab_model::worker::{LEASE_HEADER, SHA256_HEADER};
use lab_web::AppState;
use lab_web::db::Db;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

mod common;
use common::backends;

struct Env {
    app: Router,
    state: AppState,
    dir: PathBuf,
    backend: &'static str,
    /// Worker tokens: w1, w2.
    w1: String,
    w2: String,
    station: String,
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Env {
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "lab.test");
        if !token.is_empty() {
            b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if !body.is_empty() && !headers.iter().any(|(k, _)| *k == "content-type") {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        let resp = self
            .app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer { status, body }
    }

    async fn lease(&self, token: &str, caps: &[&str]) -> Answer {
        let body = json!({"protocol": 1, "kinds": ["analyze"], "capabilities": caps, "wait_s": 0});
        self.call(
            token,
            "POST",
            "/api/v1/worker/lease",
            &[],
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn beat(&self, token: &str, job: i64, lease: &str) -> Answer {
        let body = json!({"lease": lease, "progress": 0.5, "stage": "speech"});
        self.call(
            token,
            "POST",
            &format!("/api/v1/worker/jobs/{job}/heartbeat"),
            &[],
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn fail(&self, token: &str, job: i64, lease: &str, retry: bool) -> Answer {
        let body = json!({"lease": lease, "error": "the disk filled", "retry": retry});
        self.call(
            token,
            "POST",
            &format!("/api/v1/worker/jobs/{job}/fail"),
            &[],
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn result(&self, token: &str, job: i64, lease: &str, tar: &[u8], sha: &str) -> Answer {
        self.call(
            token,
            "PUT",
            &format!("/api/v1/worker/jobs/{job}/result"),
            &[
                (LEASE_HEADER, lease),
                (SHA256_HEADER, sha),
                ("content-type", "application/x-tar"),
            ],
            tar.to_vec(),
        )
        .await
    }

    async fn analyse(&self, session: &str, requires: Option<&str>) -> i64 {
        lab_web::jobs::enqueue(
            &self.state,
            lab_web::types::JobKind::Analyze,
            Some(session),
            None,
            lab_web::types::JobArgs {
                session_id: Some(session.into()),
                requires: requires.map(String::from),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
    }

    async fn status(&self, job: i64) -> (String, String) {
        let j = lab_web::jobs::get(&self.state, job).await.unwrap().unwrap();
        (j.status, j.message)
    }

    /// Lets every lease lapse (as if its worker vanished a minute ago).
    async fn lapse(&self) {
        sqlx::query("UPDATE jobs SET lease_expires_at = 0, not_before = 0 WHERE status IN ('running', 'queued')")
            .execute(&self.state.db.pool)
            .await
            .unwrap();
    }
}

async fn env(backend: &'static str, url: &str, dir: PathBuf) -> Env {
    let db = Db::connect(url).await.unwrap();
    let config = common::config(&dir);
    std::fs::create_dir_all(&config.sessions_dir).unwrap();
    let state = AppState::new(db, config);
    lab_web::auth::create_user(&state, "admin", "", "password-123", "admin")
        .await
        .unwrap();
    let (_, w1) = lab_web::auth::create_worker(&state, "w1", 1).await.unwrap();
    let (_, w2) = lab_web::auth::create_worker(&state, "w2", 1).await.unwrap();
    let (_, station) = lab_web::auth::create_station(&state, "lab-a", 1)
        .await
        .unwrap();
    Env {
        app: lab_web::app(state.clone()),
        state,
        dir,
        backend,
        w1,
        w2,
        station,
    }
}

async fn session(e: &Env, id: &str) -> PathBuf {
    let b = lab_web::synth::write_bundle(
        &e.dir.join("sessions"),
        &lab_web::synth::Spec::small(id, "P01"),
    )
    .unwrap();
    lab_web::import::import(&e.state, &b).await.unwrap();
    b
}

fn state_path() -> &'static str {
    lab_model::analysis::AnalysisFile::State.relative_path()
}

fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

/// A tar of a bundle's `analysis/` contents, with `extra` added.
fn result_tar(bundle: &Path, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", bundle.join("analysis")).unwrap();
    for (name, data) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[tokio::test]
async fn worker_protocol_on_both_databases() {
    for (backend, url, dir) in backends("workers").await {
        let e = env(backend, &url, dir).await;
        rights(&e).await;
        whole_exchange(&e).await;
        lapsed_lease(&e).await;
        retries_and_dead_letter(&e).await;
        a_recording_is_not_analysed_yet(&e).await;
        cancel_and_withdrawal(&e).await;
        eprintln!("{}: worker protocol ok", e.backend);
    }
}

async fn rights(e: &Env) {
    let body = json!({"protocol": 1, "kinds": ["analyze"]})
        .to_string()
        .into_bytes();
    let r = e
        .call("wrong", "POST", "/api/v1/worker/lease", &[], body.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = e
        .call(
            &e.station,
            "POST",
            "/api/v1/worker/lease",
            &[],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a station is no worker");
    // Nothing queued: 204.
    assert_eq!(e.lease(&e.w1, &[]).await.status, StatusCode::NO_CONTENT);
    // Clip jobs are not for external workers; bad capabilities refused.
    let clip = json!({"protocol": 1, "kinds": ["clip"]})
        .to_string()
        .into_bytes();
    let r = e
        .call(&e.w1, "POST", "/api/v1/worker/lease", &[], clip)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        e.lease(&e.w1, &["GPU,x"]).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A worker token reads no session list.
    let r = e.call(&e.w1, "GET", "/api/v1/sessions", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn whole_exchange(e: &Env) {
    let bundle = session(e, "S1").await;
    // A job that requires a GPU goes only to a worker that has one.
    let job = e.analyse("S1", Some("gpu")).await;
    assert_eq!(e.lease(&e.w1, &[]).await.status, StatusCode::NO_CONTENT);
    let r = e.lease(&e.w1, &["gpu"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let l = r.json();
    assert_eq!(l["job_id"], job);
    assert_eq!(l["attempt"], 1);
    assert_eq!(l["session_id"], "S1");
    let lease = l["lease"].as_str().unwrap().to_string();
    let files = l["files"].as_array().unwrap();
    let manifest = files.iter().find(|f| f["path"] == "manifest.json").unwrap();
    let on_disk = std::fs::read(bundle.join("manifest.json")).unwrap();
    assert_eq!(manifest["sha256"], sha(&on_disk));
    assert_eq!(manifest["size"], on_disk.len());
    assert!(files.iter().any(|f| f["path"] == state_path()));
    // The file, whole and resumed from byte 10.
    let path = format!("/api/v1/worker/jobs/{job}/files/manifest.json");
    let r = e
        .call(&e.w1, "GET", &path, &[(LEASE_HEADER, &lease)], vec![])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, on_disk);
    let r = e
        .call(
            &e.w1,
            "GET",
            &path,
            &[(LEASE_HEADER, &lease), ("range", "bytes=10-")],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, on_disk[10..]);
    // Another worker's lease id, no lease, a path outside the bundle.
    let r = e
        .call(&e.w1, "GET", &path, &[(LEASE_HEADER, "nope")], vec![])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "lease_lost");
    let r = e.call(&e.w1, "GET", &path, &[], vec![]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let bad = format!("/api/v1/worker/jobs/{job}/files/..%2Fx");
    let r = e
        .call(&e.w1, "GET", &bad, &[(LEASE_HEADER, &lease)], vec![])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Heartbeat: progress shows in the job list.
    let r = e.beat(&e.w1, job, &lease).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["cancel"], false);
    let j = lab_web::jobs::get(&e.state, job).await.unwrap().unwrap();
    assert_eq!(
        (j.status.as_str(), j.progress, j.stage.as_str()),
        ("running", 0.5, "speech")
    );
    // Hostile results: wrong checksum, a link.
    let good = result_tar(&bundle, &[("worker-note.json", b"{\"by\": \"w1\"}")]);
    let r = e.result(&e.w1, job, &lease, &good, &sha(b"other")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"], "checksum_mismatch");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(
        &mut h,
        state_path().strip_prefix("analysis/").unwrap(),
        "/etc/passwd",
    )
    .unwrap();
    let link = b.into_inner().unwrap();
    let r = e.result(&e.w1, job, &lease, &link, &sha(&link)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.json()["error"], "bad_result");
    assert!(!bundle.join("analysis/worker-note.json").exists());
    // The result: in place at once, the job done, the session imported.
    let r = e.result(&e.w1, job, &lease, &good, &sha(&good)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["status"], "done");
    assert!(bundle.join("analysis/worker-note.json").is_file());
    assert!(bundle.join(state_path()).is_file());
    assert_eq!(e.status(job).await.0, "done");
    // Sent again after a lost answer: the same answer, nothing changed.
    let r = e.result(&e.w1, job, &lease, &good, &sha(&good)).await;
    assert_eq!(r.json()["status"], "done");
    // The job is over: heartbeats and files are refused.
    assert_eq!(
        e.beat(&e.w1, job, &lease).await.status,
        StatusCode::CONFLICT
    );
    let left: Vec<_> = std::fs::read_dir(e.dir.join("sessions"))
        .unwrap()
        .filter_map(|d| d.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(lab_web::remote::result::STAGING_PREFIX))
        .collect();
    assert!(left.is_empty(), "staging cleaned: {left:?}");
}

async fn lapsed_lease(e: &Env) {
    let bundle = session(e, "S2").await;
    let job = e.analyse("S2", None).await;
    let first = e.lease(&e.w1, &[]).await.json();
    let old = first["lease"].as_str().unwrap().to_string();
    // w1 vanishes; its lease lapses and w2 takes the job.
    e.lapse().await;
    let second = e.lease(&e.w2, &[]).await.json();
    assert_eq!(second["job_id"], job);
    assert_eq!(second["attempt"], 2);
    let new = second["lease"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    // The late worker is refused everywhere and overwrites nothing.
    assert_eq!(e.beat(&e.w1, job, &old).await.status, StatusCode::CONFLICT);
    let late = result_tar(&bundle, &[("late.json", b"{}")]);
    let r = e.result(&e.w1, job, &old, &late, &sha(&late)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(
        e.fail(&e.w1, job, &old, true).await.status,
        StatusCode::CONFLICT
    );
    assert!(!bundle.join("analysis/late.json").exists());
    let good = result_tar(&bundle, &[]);
    let r = e.result(&e.w2, job, &new, &good, &sha(&good)).await;
    assert_eq!(r.json()["status"], "done", "{}", r.text());
    let held = lab_web::store::leases::held_count(&e.state.db)
        .await
        .unwrap();
    assert_eq!(held, 0, "nothing left leased");
}

async fn retries_and_dead_letter(e: &Env) {
    session(e, "S3").await;
    // A retryable failure: queued again after a backoff, not at once.
    let job = e.analyse("S3", None).await;
    let l = e.lease(&e.w1, &[]).await.json();
    let r = e.fail(&e.w1, job, l["lease"].as_str().unwrap(), true).await;
    assert_eq!(r.json()["status"], "queued");
    assert_eq!(
        e.lease(&e.w1, &[]).await.status,
        StatusCode::NO_CONTENT,
        "backoff"
    );
    // A worker that stops gives its job back without using an attempt.
    e.lapse().await;
    let l = e.lease(&e.w1, &[]).await.json();
    assert_eq!(l["attempt"], 2);
    let body =
        json!({"lease": l["lease"], "error": "worker stopped", "retry": true, "release": true});
    let r = e
        .call(
            &e.w1,
            "POST",
            &format!("/api/v1/worker/jobs/{job}/fail"),
            &[],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.json()["status"], "queued");
    let l = e.lease(&e.w2, &[]).await.json();
    assert_eq!(
        l["attempt"], 2,
        "the released attempt did not count; no backoff either"
    );
    // Three lapsed leases: dead, with the reason.
    for attempt in 3..=3 {
        e.lapse().await;
        let l = e.lease(&e.w1, &[]).await.json();
        assert_eq!(l["attempt"], attempt);
    }
    e.lapse().await;
    assert_eq!(e.lease(&e.w1, &[]).await.status, StatusCode::NO_CONTENT);
    let (status, message) = e.status(job).await;
    assert_eq!(status, "dead", "{message}");
    assert!(message.contains("3"), "{message}");
    // A failure that will not pass: failed at once.
    let job = e.analyse("S3", None).await;
    let l = e.lease(&e.w2, &[]).await.json();
    let r = e
        .fail(&e.w2, job, l["lease"].as_str().unwrap(), false)
        .await;
    assert_eq!(r.json()["status"], "failed");
    assert_eq!(
        e.status(job).await,
        ("failed".into(), "the disk filled".into())
    );
    // A worker found a file unlike its listed hash: refused for good, and
    // the bundle is hashed afresh at the next lease.
    let job = e.analyse("S3", None).await;
    let l = e.lease(&e.w2, &[]).await.json();
    let msg = "checksum mismatch: manifest.json: lab-web listed 9f, received 1c";
    let body = json!({"lease": l["lease"], "error": msg, "retry": false});
    let r = e
        .call(
            &e.w2,
            "POST",
            &format!("/api/v1/worker/jobs/{job}/fail"),
            &[],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.json()["status"], "failed");
    assert_eq!(e.status(job).await, ("failed".into(), msg.into()));
    let sums: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) AS n FROM bundle_sums WHERE session_id = 'S3'")
            .fetch_one(&e.state.db.pool)
            .await
            .unwrap(),
        "n",
    );
    assert_eq!(sums, 0, "the stale hashes are forgotten");
}

async fn a_recording_is_not_analysed_yet(e: &Env) {
    // A bundle the recorder is still writing (its manifest says so, and
    // it holds the recorder's disk reserve).
    let b = lab_web::synth::write_bundle(
        &e.dir.join("sessions"),
        &lab_web::synth::Spec::small("S6", "P06"),
    )
    .unwrap();
    let m = b.join("manifest.json");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("\"status\": \"complete\"", "\"status\": \"recording\"");
    std::fs::write(&m, text).unwrap();
    std::fs::write(b.join(lab_model::bundle::RESERVE_FILE), b"reserve").unwrap();
    lab_web::import::import(&e.state, &b).await.unwrap();
    let queued = lab_web::jobs::analyze_if_needed(&e.state, "S6", &b)
        .await
        .unwrap();
    assert_eq!(queued, None, "--analyze-new waits for the recording to end");
    // Asked for anyway: refused with the reason, not a worker's puzzle.
    let job = e.analyse("S6", None).await;
    assert_eq!(e.lease(&e.w1, &[]).await.status, StatusCode::NO_CONTENT);
    let (status, message) = e.status(job).await;
    assert_eq!(status, "failed");
    assert!(message.contains("still being recorded"), "{message}");
    // Finished: queued once, and the reserve is never listed.
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("\"status\": \"recording\"", "\"status\": \"complete\"");
    std::fs::write(&m, text).unwrap();
    lab_web::import::import(&e.state, &b).await.unwrap();
    let job = lab_web::jobs::analyze_if_needed(&e.state, "S6", &b)
        .await
        .unwrap()
        .expect("queued once complete");
    let l = e.lease(&e.w1, &[]).await.json();
    assert_eq!(l["job_id"], job);
    let files = l["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .all(|f| f["path"] != lab_model::bundle::RESERVE_FILE)
    );
    let r = e
        .fail(&e.w1, job, l["lease"].as_str().unwrap(), false)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn cancel_and_withdrawal(e: &Env) {
    session(e, "S4").await;
    let job = e.analyse("S4", None).await;
    let l = e.lease(&e.w1, &[]).await.json();
    let lease = l["lease"].as_str().unwrap().to_string();
    assert!(lab_web::jobs::cancel(&e.state, job).await.unwrap());
    let r = e.beat(&e.w1, job, &lease).await;
    assert_eq!(r.json()["cancel"], true);
    assert_eq!(
        e.fail(&e.w1, job, &lease, false).await.json()["status"],
        "cancelled"
    );
    // A withdrawn participant: the job is not handed out, its files are gone.
    let bundle = session(e, "S5").await;
    let job = e.analyse("S5", None).await;
    let l = e.lease(&e.w1, &[]).await.json();
    let lease = l["lease"].as_str().unwrap().to_string();
    // As `POST /sessions/{id}/withdraw` does.
    lab_web::withdrawal::scrub_rows(&e.state, "S5")
        .await
        .unwrap();
    lab_web::jobs::cancel_for_session(&e.state, "S5")
        .await
        .unwrap();
    lab_web::withdrawal::purge_files(&e.state, "S5")
        .await
        .unwrap();
    let path = format!("/api/v1/worker/jobs/{job}/files/manifest.json");
    let r = e
        .call(&e.w1, "GET", &path, &[(LEASE_HEADER, &lease)], vec![])
        .await;
    assert!(
        [StatusCode::GONE, StatusCode::CONFLICT].contains(&r.status),
        "{}: {}",
        r.status,
        r.text()
    );
    let job = e.analyse("S5", None).await;
    assert_eq!(e.lease(&e.w1, &[]).await.status, StatusCode::NO_CONTENT);
    let (status, message) = e.status(job).await;
    assert_eq!(status, "failed");
    assert!(message.contains("withdrew"), "{message}");
    let sums: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) AS n FROM bundle_sums WHERE session_id = 'S5'")
            .fetch_one(&e.state.db.pool)
            .await
            .unwrap(),
        "n",
    );
    assert_eq!(
        sums, 0,
        "a withdrawal leaves no trace of the bundle's files"
    );
    assert!(!bundle.join("manifest.json").exists() || !bundle.exists());
    // Workers ask which of their copies to delete: the withdrawn one and
    // one lab-web does not know; a station may not ask.
    let body = json!({"sessions": ["S4", "S5", "NOPE"]})
        .to_string()
        .into_bytes();
    let r = e
        .call(&e.w1, "POST", "/api/v1/worker/forget", &[], body.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["forget"], json!(["S5", "NOPE"]));
    let r = e
        .call(&e.station, "POST", "/api/v1/worker/forget", &[], body)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
