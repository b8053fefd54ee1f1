//! The station upload protocol (`docs/upload-protocol.md`) through the real
//! router on both databases: resuming, verification, hostile paths and
//! links, size limits, two stations with one session id, rights, and a
//! placement interrupted by a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use lab_model::upload::{UPLOAD_PROTOCOL_VERSION, UploadFile};
use lab_web::db::Db;
use lab_web::{AppState, Config};
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
    /// Station tokens: lab-a, lab-b.
    a: String,
    b: String,
    admin_cookie: String,
    admin_csrf: String,
}

enum Auth<'a> {
    Token(&'a str),
    Admin,
}

async fn env(backend: &'static str, url: &str, dir: PathBuf, max_upload: u64) -> Env {
    let db = Db::connect(url).await.unwrap();
    let config = Config {
        max_upload_bytes: max_upload,
        ..common::config(&dir)
    };
    std::fs::create_dir_all(&config.sessions_dir).unwrap();
    let state = AppState::new(db, config);
    lab_web::auth::create_user(&state, "admin", "", "password-123", "admin")
        .await
        .unwrap();
    let (_, a) = lab_web::auth::create_station(&state, "lab-a", 1)
        .await
        .unwrap();
    let (_, b) = lab_web::auth::create_station(&state, "lab-b", 1)
        .await
        .unwrap();
    let mut e = Env {
        app: lab_web::app(state.clone()),
        state,
        dir,
        backend,
        a,
        b,
        admin_cookie: String::new(),
        admin_csrf: String::new(),
    };
    let r = e
        .call(
            Auth::Token(""),
            "POST",
            "/api/v1/login",
            Some(
                json!({"login": "admin", "password": "password-123"})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    e.admin_csrf = r.json()["csrf"].as_str().unwrap().to_string();
    e.admin_cookie = r.cookie.unwrap();
    e
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    cookie: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Env {
    async fn call(&self, who: Auth<'_>, method: &str, path: &str, body: Option<Vec<u8>>) -> Answer {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "lab.test");
        match who {
            Auth::Token(t) if !t.is_empty() => {
                b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            Auth::Token(_) => {}
            Auth::Admin => {
                b = b
                    .header(header::COOKIE, &self.admin_cookie)
                    .header("x-csrf-token", &self.admin_csrf);
            }
        }
        let json_body = !path.contains("/files/");
        let req = match body {
            Some(v) => b
                .header(
                    header::CONTENT_TYPE,
                    if json_body {
                        "application/json"
                    } else {
                        "application/octet-stream"
                    },
                )
                .body(Body::from(v))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let mut req = req;
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                "10.0.0.1".parse().unwrap(),
                40000,
            )));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let cookie = resp
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap().to_string());
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            body,
            cookie,
        }
    }

    async fn post_list(&self, token: &str, session: &str, files: &[UploadFile]) -> Answer {
        let body =
            json!({"protocol": UPLOAD_PROTOCOL_VERSION, "session_id": session, "files": files});
        self.call(
            Auth::Token(token),
            "POST",
            "/api/v1/uploads",
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn put(&self, token: &str, id: i64, path: &str, offset: u64, bytes: &[u8]) -> Answer {
        self.call(
            Auth::Token(token),
            "PUT",
            &format!("/api/v1/uploads/{id}/files/{path}?offset={offset}"),
            Some(bytes.to_vec()),
        )
        .await
    }

    async fn complete(&self, token: &str, id: i64) -> Answer {
        self.call(
            Auth::Token(token),
            "POST",
            &format!("/api/v1/uploads/{id}/complete"),
            None,
        )
        .await
    }

    /// Sends every byte the server lacks in chunks of `chunk`, then completes.
    async fn send_all(&self, token: &str, bundle: &Path, chunk: usize) -> Value {
        let files = list(bundle);
        let session = session_of(bundle);
        let r = self.post_list(token, &session, &files).await;
        assert!(
            r.status.is_success(),
            "{}: {}",
            self.backend,
            String::from_utf8_lossy(&r.body)
        );
        let st = r.json();
        let id = st["upload_id"].as_i64().unwrap();
        for f in st["files"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap();
            let bytes = std::fs::read(bundle.join(path)).unwrap();
            let mut at = f["received"].as_u64().unwrap() as usize;
            if f["verified"].as_bool().unwrap() {
                continue;
            }
            loop {
                let end = (at + chunk).min(bytes.len());
                let r = self.put(token, id, path, at as u64, &bytes[at..end]).await;
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "{path}: {}",
                    String::from_utf8_lossy(&r.body)
                );
                at = end;
                if at == bytes.len() {
                    assert_eq!(r.json()["verified"], true, "{path}");
                    break;
                }
            }
        }
        let r = self.complete(token, id).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    async fn session_ids(&self) -> Vec<String> {
        let r = self
            .call(Auth::Admin, "GET", "/api/v1/sessions", None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let mut ids: Vec<String> = r.json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    fn station_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.join("station").join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file of a bundle with size and SHA-256, as a station lists it.
fn list(bundle: &Path) -> Vec<UploadFile> {
    tree(bundle)
        .into_iter()
        .map(|(path, bytes)| UploadFile {
            path,
            size: bytes.len() as u64,
            sha256: sha(&bytes),
        })
        .collect()
}

fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn session_of(bundle: &Path) -> String {
    let m: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    m["session_id"].as_str().unwrap().to_string()
}

/// Deterministic noise.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn synth(parent: &Path, id: &str, participant: &str, pad: usize) -> PathBuf {
    let b = lab_web::synth::write_bundle(parent, &lab_web::synth::Spec::small(id, participant))
        .unwrap();
    if pad > 0 {
        std::fs::create_dir_all(b.join("media")).unwrap();
        std::fs::write(b.join("media/pad.bin"), noise(pad, pad as u64)).unwrap();
    }
    b
}

async fn each_backend<F, Fut>(tag: &str, max_upload: u64, f: F)
where
    F: Fn(Env) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for (backend, url, dir) in backends(tag).await {
        eprintln!("--- {tag} on {backend}");
        f(env(backend, &url, dir, max_upload).await).await;
    }
}

const BIG: u64 = 64 << 30;

#[tokio::test]
async fn an_upload_resumes_verifies_and_imports_exactly_once() {
    each_backend("up_resume", BIG, |e| async move {
        let bundle = synth(&e.station_dir("a"), "S1", "P01", 3 << 20);
        let files = list(&bundle);
        let r = e.post_list(&e.a, "S1", &files).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let st = r.json();
        let id = st["upload_id"].as_i64().unwrap();
        assert!(
            st["files"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["received"] == 0)
        );
        // Half of the large file, 1 MiB at a time; then the station "restarts".
        let pad = std::fs::read(bundle.join("media/pad.bin")).unwrap();
        for k in 0..2u64 {
            let at = (k << 20) as usize;
            let r = e
                .put(
                    &e.a,
                    id,
                    "media/pad.bin",
                    at as u64,
                    &pad[at..at + (1 << 20)],
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.json()["received"], (k + 1) << 20);
            assert_eq!(r.json()["verified"], false);
        }
        // A chunk at the wrong place is refused and changes nothing.
        let r = e.put(&e.a, id, "media/pad.bin", 0, &pad[..10]).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.json()["error"], "offset_mismatch");
        assert!(
            r.json()["message"].as_str().unwrap().contains("2097152"),
            "{}",
            r.json()
        );
        let r = e
            .call(
                Auth::Token(&e.a),
                "GET",
                &format!("/api/v1/uploads/{id}"),
                None,
            )
            .await;
        let pad_status = |v: &Value| {
            v["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["path"] == "media/pad.bin")
                .unwrap()["received"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(pad_status(&r.json()), 2 << 20);
        // The same list again: the same upload, nothing to send twice.
        let r = e.post_list(&e.a, "S1", &files).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["upload_id"], id);
        assert_eq!(pad_status(&r.json()), 2 << 20);
        // Completing early names what is missing.
        let r = e.complete(&e.a, id).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.json()["error"], "incomplete");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("media/pad.bin")
        );
        assert!(
            e.session_ids().await.is_empty(),
            "nothing imported before it is whole"
        );
        let done = e.send_all(&e.a, &bundle, 1 << 20).await;
        assert_eq!(done["session_id"], "S1");
        assert_eq!(done["withdrawn"], false);
        assert_eq!(done["already"], false);
        assert_eq!(e.session_ids().await, vec!["S1".to_string()]);
        // Byte-identical, and the staging area is empty.
        assert_eq!(tree(&e.dir.join("sessions/S1")), tree(&bundle));
        let incoming = e.dir.join("sessions/.incoming");
        assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
        // Acknowledged again, never imported twice.
        let r = e.complete(&e.a, id).await;
        assert_eq!(r.json()["already"], true);
        let r = e.post_list(&e.a, "S1", &files).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["status"], "imported");
        assert_eq!(r.json()["imported"]["session_id"], "S1");
        assert_eq!(e.session_ids().await, vec!["S1".to_string()]);
        // The admin sees it, with every byte counted once (no chunk was re-sent).
        let r = e.call(Auth::Admin, "GET", "/api/v1/uploads", None).await;
        let row = &r.json()["uploads"][0];
        assert_eq!(row["status"], "imported");
        assert_eq!(row["station"], "lab-a");
        let total: u64 = files.iter().map(|f| f.size).sum();
        assert_eq!(
            row["bytes_written"].as_u64().unwrap(),
            total,
            "{}",
            e.backend
        );
        // Another station's view of it: not found.
        let r = e
            .call(
                Auth::Token(&e.b),
                "GET",
                &format!("/api/v1/uploads/{id}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    })
    .await;
}

/// Appends the participant's own answers to a bundle's events, after its
/// last event, as the station's self-report page posts them.
fn add_self_report(bundle: &Path, emotion: &str, significance: u8, seq: u8, sus: [u8; 10]) {
    let path = bundle.join("events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let (mut seq_no, t) = (
        last["seq"].as_u64().unwrap(),
        last["t_ns"].as_i64().unwrap(),
    );
    let mut out = text.clone();
    for (kind, data) in [
        (
            "self_report.step",
            json!({"task": "t1", "step": "form", "emotion": emotion, "significance": significance}),
        ),
        ("self_report.seq", json!({"task": "t1", "score": seq})),
        ("self_report.sus", json!({"answers": sus})),
    ] {
        seq_no += 1;
        let e = json!({"seq": seq_no, "t_ns": t + seq_no as i64, "source": "participant", "kind": kind, "data": data});
        out.push_str(&format!("{e}\n"));
    }
    std::fs::write(&path, out).unwrap();
}

#[tokio::test]
async fn self_reports_travel_with_the_bundle_into_the_journey_map() {
    each_backend("up_self", BIG, |e| async move {
        let a = synth(&e.station_dir("a"), "S9", "P09", 0);
        add_self_report(&a, "negative", 5, 3, [4, 2, 4, 1, 4, 2, 5, 2, 4, 3]);
        let b = synth(&e.station_dir("b"), "S10", "P10", 0);
        add_self_report(&b, "neutral", 3, 6, [3; 10]);
        e.send_all(&e.a, &a, 1 << 20).await;
        e.send_all(&e.b, &b, 1 << 20).await;
        let r = e
            .call(
                Auth::Admin,
                "GET",
                "/api/v1/journeys/test-benefit/map",
                None,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let map = r.json();
        let form = map["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "form")
            .unwrap()
            .clone();
        assert_eq!(form["self_emotions"]["negative"], 1, "{form}");
        assert_eq!(form["self_emotions"]["neutral"], 1);
        assert_eq!(form["self_significance"]["mean"], 4.0);
        assert_eq!(form["self_significance"]["n"], 2);
        let tasks = &map["self_reported"]["tasks"];
        assert_eq!(tasks[0]["task"], "t1");
        assert_eq!(tasks[0]["seq"]["mean"], 4.5);
        assert_eq!(tasks[0]["seq"]["n"], 2);
        let sus = &map["self_reported"];
        assert_eq!(sus["sus"].as_array().unwrap().len(), 2);
        assert_eq!(sus["sus_mean"]["mean"], 63.75, "(77.5 + 50) / 2: {sus}");
        assert!(sus["sus_mean"]["ci95"].as_f64().unwrap() > 0.0);
    })
    .await;
}

#[tokio::test]
async fn a_wrong_checksum_is_discarded_and_never_imported() {
    each_backend("up_sha", BIG, |e| async move {
        let bundle = synth(&e.station_dir("a"), "S2", "P02", 100_000);
        let mut files = list(&bundle);
        let pad = files
            .iter_mut()
            .find(|f| f.path == "media/pad.bin")
            .unwrap();
        pad.sha256 = sha(b"something else");
        let r = e.post_list(&e.a, "S2", &files).await;
        let id = r.json()["upload_id"].as_i64().unwrap();
        let bytes = std::fs::read(bundle.join("media/pad.bin")).unwrap();
        let r = e.put(&e.a, id, "media/pad.bin", 0, &bytes).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.json()["error"], "checksum_mismatch");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("media/pad.bin")
        );
        let staged = e.dir.join(format!("sessions/.incoming/{id}/media/pad.bin"));
        assert_eq!(
            std::fs::metadata(&staged).unwrap().len(),
            0,
            "the bad file is discarded"
        );
        let r = e.complete(&e.a, id).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(e.session_ids().await.is_empty());
        // The station re-lists with the right checksum: the rest is kept.
        let done = e.send_all(&e.a, &bundle, 64 << 10).await;
        assert_eq!(done["session_id"], "S2");
    })
    .await;
}

#[tokio::test]
async fn paths_links_and_sizes_that_break_the_rules_are_refused() {
    each_backend("up_hostile", 1 << 20, |e| async move {
        let bundle = synth(&e.station_dir("a"), "S3", "P03", 1000);
        let files = list(&bundle);
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            ".hidden",
            "media/.x",
            "a\\b",
            "медиа/x",
        ] {
            let mut f = files.clone();
            f.push(UploadFile {
                path: bad.into(),
                size: 1,
                sha256: sha(b"x"),
            });
            let r = e.post_list(&e.a, "S3", &f).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert_eq!(r.json()["error"], "bad_path", "{bad}");
            assert!(
                r.json()["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{bad:?}")),
                "{bad}: {}",
                r.json()
            );
        }
        // Over the server's limit (1 MiB here): both figures named.
        let mut big = files.clone();
        big.push(UploadFile {
            path: "media/huge.bin".into(),
            size: 2 << 20,
            sha256: sha(b""),
        });
        let r = e.post_list(&e.a, "S3", &big).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.json()["message"].as_str().unwrap().contains("1048576"));
        // Sizes that would wrap the sum round to nothing are refused, not added.
        let mut wrap = files.clone();
        for i in 0..4 {
            wrap.push(UploadFile {
                path: format!("media/w{i}.bin"),
                size: 1 << 62,
                sha256: sha(b""),
            });
        }
        let r = e.post_list(&e.a, "S3", &wrap).await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let r = e.post_list(&e.a, "S3", &files).await;
        assert_eq!(r.status, StatusCode::CREATED);
        let id = r.json()["upload_id"].as_i64().unwrap();
        // Not in the list, escaping through percent-encoding, past the declared size.
        let r = e.put(&e.a, id, "media/other.bin", 0, b"x").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = e.put(&e.a, id, "..%2F..%2Fescape", 0, b"x").await;
        assert!(
            [StatusCode::NOT_FOUND, StatusCode::UNPROCESSABLE_ENTITY].contains(&r.status),
            "{}",
            r.status
        );
        let r = e.put(&e.a, id, "media/pad.bin", 0, &[0u8; 1001]).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        // A chunk larger than the protocol's limit never reaches the handler.
        let r = e
            .put(
                &e.a,
                id,
                "media/pad.bin",
                0,
                &vec![0u8; lab_web::limits::MAX_UPLOAD_CHUNK_BYTES + 1],
            )
            .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        // A link planted in the staging folder is refused, never written through.
        let outside = e.dir.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let staging = e.dir.join(format!("sessions/.incoming/{id}"));
        std::fs::remove_dir_all(staging.join("media")).ok();
        std::os::unix::fs::symlink(&outside, staging.join("media")).unwrap();
        let pad = std::fs::read(bundle.join("media/pad.bin")).unwrap();
        let r = e.put(&e.a, id, "media/pad.bin", 0, &pad).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.json()["error"], "symlink");
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written outside"
        );
        assert!(!e.dir.join("escape").exists() && !e.dir.join("sessions/escape").exists());
        // A bundle still recording is refused with what to do.
        std::fs::remove_file(staging.join("media")).unwrap();
        let rec = synth(&e.station_dir("rec"), "S4", "P04", 0);
        let m = std::fs::read_to_string(rec.join("manifest.json")).unwrap();
        std::fs::write(
            rec.join("manifest.json"),
            m.replace("\"complete\"", "\"recording\""),
        )
        .unwrap();
        let r = e.post_list(&e.a, "S4", &list(&rec)).await;
        let id4 = r.json()["upload_id"].as_i64().unwrap();
        for f in list(&rec) {
            let bytes = std::fs::read(rec.join(&f.path)).unwrap();
            assert_eq!(
                e.put(&e.a, id4, &f.path, 0, &bytes).await.status,
                StatusCode::OK
            );
        }
        let r = e.complete(&e.a, id4).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("lab-recorder recover")
        );
        assert!(e.session_ids().await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn two_stations_with_one_session_id_never_overwrite_each_other() {
    each_backend("up_two", BIG, |e| async move {
        let a = synth(&e.station_dir("a"), "S5", "P05", 5000);
        let b = synth(&e.station_dir("b"), "S5", "P05", 7000);
        // Another station's recording: its own manifest.
        let m = std::fs::read_to_string(b.join("manifest.json")).unwrap();
        std::fs::write(b.join("manifest.json"), m.replace("synth-station", "lab-b")).unwrap();
        let done = e.send_all(&e.a, &a, 4096).await;
        assert_eq!(done["session_id"], "S5");
        let done = e.send_all(&e.b, &b, 4096).await;
        assert_eq!(done["session_id"], "S5.lab-b");
        assert_eq!(
            e.session_ids().await,
            vec!["S5".to_string(), "S5.lab-b".to_string()]
        );
        assert_eq!(tree(&e.dir.join("sessions/S5")), tree(&a));
        assert_eq!(tree(&e.dir.join("sessions/S5.lab-b")), tree(&b));
        // The manifest inside is unchanged; the id sticks on re-import.
        let r = e
            .call(
                Auth::Admin,
                "POST",
                "/api/v1/imports",
                Some(
                    json!({"path": e.dir.join("sessions/S5.lab-b")})
                        .to_string()
                        .into_bytes(),
                ),
            )
            .await;
        assert!(
            r.status.is_success() || r.status == StatusCode::NOT_FOUND,
            "{}",
            r.status
        );
        assert_eq!(
            e.session_ids().await,
            vec!["S5".to_string(), "S5.lab-b".to_string()]
        );
        // Station a sending S5 again with other content: refused, nothing lost.
        std::fs::write(a.join("media/pad.bin"), noise(5000, 99)).unwrap();
        let r = e.post_list(&e.a, "S5", &list(&a)).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.json()["error"], "conflict");
    })
    .await;
}

#[tokio::test]
async fn only_stations_upload_and_a_revoked_token_stops_at_once() {
    each_backend("up_rights", BIG, |e| async move {
        for path in ["/api/v1/sessions", "/api/v1/findings", "/api/v1/tokens", "/api/v1/journeys"] {
            let r = e.call(Auth::Token(&e.a), "GET", path, None).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        }
        let r = e.call(Auth::Token(&e.a), "GET", "/api/v1/uploads", None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let bundle = synth(&e.station_dir("a"), "S6", "P06", 1000);
        let body = json!({"protocol": UPLOAD_PROTOCOL_VERSION, "session_id": "S6", "files": list(&bundle)});
        let r = e
            .call(Auth::Admin, "POST", "/api/v1/uploads", Some(body.to_string().into_bytes()))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "not even an admin poses as a station");
        let r = e
            .call(Auth::Token(""), "POST", "/api/v1/uploads", Some(body.to_string().into_bytes()))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // A viewer token cannot upload either.
        let r = e
            .call(Auth::Admin, "POST", "/api/v1/tokens", Some(json!({"name": "v", "scope": "viewer"}).to_string().into_bytes()))
            .await;
        let viewer = r.json()["token"].as_str().unwrap().to_string();
        let r = e.post_list(&viewer, "S6", &list(&bundle)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // The admin makes a station token from the page, with the same rules.
        let r = e
            .call(Auth::Admin, "POST", "/api/v1/tokens", Some(json!({"name": "lab-a", "scope": "station"}).to_string().into_bytes()))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "lab-a already has a token");
        let r = e
            .call(Auth::Admin, "POST", "/api/v1/tokens", Some(json!({"name": "Лаб 1", "scope": "station"}).to_string().into_bytes()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // Revoking: the next chunk is refused.
        let r = e.post_list(&e.a, "S6", &list(&bundle)).await;
        let id = r.json()["upload_id"].as_i64().unwrap();
        let tokens = e.call(Auth::Admin, "GET", "/api/v1/tokens", None).await.json();
        let tid = tokens["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "lab-a")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let r = e.call(Auth::Admin, "DELETE", &format!("/api/v1/tokens/{tid}"), None).await;
        assert!(r.status.is_success());
        let r = e.put(&e.a, id, "manifest.json", 0, b"{").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn a_placement_cut_by_a_restart_is_finished_on_start() {
    each_backend("up_restart", BIG, |e| async move {
        let bundle = synth(&e.station_dir("a"), "S7", "P07", 2000);
        let files = list(&bundle);
        let r = e.post_list(&e.a, "S7", &files).await;
        let id = r.json()["upload_id"].as_i64().unwrap();
        for f in &files {
            let bytes = std::fs::read(bundle.join(&f.path)).unwrap();
            assert_eq!(
                e.put(&e.a, id, &f.path, 0, &bytes).await.status,
                StatusCode::OK
            );
        }
        // The server reserved the target and stopped before the rename.
        let target = e.dir.join("sessions").canonicalize().unwrap().join("S7");
        let pool = &e.state.db.pool;
        assert!(
            lab_web::store::uploads::reserve_target(pool, id, "S7", &target.to_string_lossy(), 1)
                .await
                .unwrap()
        );
        lab_web::upload::reconcile(&e.state).await;
        assert_eq!(e.session_ids().await, vec!["S7".to_string()]);
        assert_eq!(tree(&target), tree(&bundle));
        // The station, calling again, is acknowledged without a second import.
        let r = e.complete(&e.a, id).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["session_id"], "S7");
        assert_eq!(r.json()["already"], true);
        // A copy the watcher already imported from a shared folder is acknowledged, not doubled.
        let shared = synth(&e.dir.join("sessions"), "S8", "P08", 0);
        let r = e
            .call(
                Auth::Admin,
                "POST",
                "/api/v1/imports",
                Some(json!({"path": shared}).to_string().into_bytes()),
            )
            .await;
        assert!(
            r.status.is_success(),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let done = e.send_all(&e.a, &shared, 1 << 20).await;
        assert_eq!(done["session_id"], "S8");
        assert_eq!(
            e.session_ids().await,
            vec!["S7".to_string(), "S8".to_string()]
        );
    })
    .await;
}

#[tokio::test]
async fn a_damaged_copy_already_in_the_sessions_folder_is_not_taken_for_the_upload() {
    each_backend("up_damaged", BIG, |e| async move {
        let station = synth(&e.station_dir("a"), "S11", "P11", 4000);
        // The same bundle reached the shared folder, its media damaged but
        // of the same size, and was imported from there.
        let shared = e.dir.join("sessions/S11");
        let mut c = std::process::Command::new("cp");
        c.arg("-r").arg(&station).arg(&shared);
        assert!(c.status().unwrap().success());
        std::fs::write(shared.join("media/pad.bin"), noise(4000, 1234)).unwrap();
        let r = e
            .call(
                Auth::Admin,
                "POST",
                "/api/v1/imports",
                Some(json!({"path": shared}).to_string().into_bytes()),
            )
            .await;
        assert!(
            r.status.is_success(),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        // The station's verified copy is kept as a session of its own.
        let done = e.send_all(&e.a, &station, 1 << 20).await;
        assert_eq!(done["session_id"], "S11.lab-a");
        assert_eq!(tree(&e.dir.join("sessions/S11.lab-a")), tree(&station));
        // Two completions at once (a station that timed out and asked
        // again) give one import and the same answer.
        let files = list(&station);
        let r = e.post_list(&e.a, "S11", &files).await;
        let id = r.json()["upload_id"].as_i64().unwrap();
        let (a, b) = tokio::join!(e.complete(&e.a, id), e.complete(&e.a, id));
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(b.status, StatusCode::OK);
        assert_eq!(a.json()["session_id"], b.json()["session_id"]);
        assert_eq!(
            e.session_ids().await,
            vec!["S11".to_string(), "S11.lab-a".to_string()]
        );
    })
    .await;
}
