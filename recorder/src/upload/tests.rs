//! The uploader against a stub lab-web in this process: the four routes of
//! the protocol kept in memory, behind a TCP proxy that counts the bytes
//! the station sends and can cut the connection. Faults are placed by
//! request number and byte count, so every run is the same. Also the
//! helpers the other test modules of `upload` share.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use lab_model::upload::{
    CHUNK_BYTES, ChunkAck, Completed, FileStatus, UploadFile, UploadRequest, UploadState,
    UploadStatus,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::*;
use crate::lab_client::{LabClient, Timeouts};

/// A fresh empty folder under the system temp folder.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "recorder-upload-{name}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        state::now_ms()
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// A bundle at `dir`: a valid manifest with this status, `events.jsonl`,
/// and the `extra` files.
pub(crate) fn write_bundle(dir: &Path, status: &str, extra: &[(&str, &[u8])]) {
    fs::create_dir_all(dir.join("media")).unwrap();
    let manifest = format!(
        r#"{{"format":"lab-session-bundle","format_version":1,"session_id":"20261123T101500Z-P07",
"station":"lab-1","participant":"P07","consent":"C07",
"clock":{{"session_zero_monotonic_ns":1,"session_zero_unix_ns":2,"session_zero_utc":"2026-11-23T10:15:00Z"}},
"tracks":[],"segments":[],"status":"{status}","recorder":{{"version":"0","pid":1}}}}
"#
    );
    fs::write(dir.join("manifest.json"), manifest).unwrap();
    fs::write(
        dir.join("events.jsonl"),
        "{\"seq\":1,\"t_ns\":0,\"source\":\"operator\",\"kind\":\"marker\"}\n",
    )
    .unwrap();
    for (path, bytes) in extra {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

// ---- the stub lab-web ----

const TOKEN: &str = "station-token-1";
const TEST_CHUNK: u64 = 64 << 10;

struct StubFile {
    decl: UploadFile,
    data: Vec<u8>,
    verified: bool,
}

struct StubUpload {
    session_id: String,
    files: Vec<StubFile>,
    imported: Option<Completed>,
}

#[derive(Default)]
struct Stub {
    uploads: HashMap<i64, StubUpload>,
    next_id: i64,
    requests: usize,
    puts: usize,
    /// Body bytes of every `PUT` that reached a handler.
    put_bytes_seen: u64,
    /// (path, offset, len) of every chunk written.
    accepted: Vec<(String, u64, u64)>,
    offset_mismatches: usize,
    completes: usize,
    // Faults, by `PUT` number (1-based).
    busy_at: Option<usize>,
    busy_from: Option<usize>,
    stall_at: Option<usize>,
    /// The first full arrival of this file hashes wrong (a bit flipped on the way).
    corrupt_once: Option<String>,
    withdraw: bool,
}

type Shared = Arc<Mutex<Stub>>;

fn api_error(code: StatusCode, error: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": error, "message": message });
    (code, Json(body)).into_response()
}

/// The 401 for a request without the station token.
fn unauthorised(headers: &HeaderMap) -> Option<Response> {
    let want = format!("Bearer {TOKEN}");
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == want => None,
        _ => Some(api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no such token",
        )),
    }
}

fn status_of(id: i64, u: &StubUpload) -> UploadStatus {
    UploadStatus {
        upload_id: id,
        session_id: u.session_id.clone(),
        status: if u.imported.is_some() {
            UploadState::Imported
        } else {
            UploadState::Receiving
        },
        chunk_bytes: CHUNK_BYTES,
        files: u
            .files
            .iter()
            .map(|f| FileStatus {
                path: f.decl.path.clone(),
                size: f.decl.size,
                received: f.data.len() as u64,
                verified: f.verified,
            })
            .collect(),
        imported: u.imported.clone(),
    }
}

async fn create(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(req): Json<UploadRequest>,
) -> Response {
    if let Some(r) = unauthorised(&headers) {
        return r;
    }
    if let Err(e) = req.check() {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, "bad_path", &e.to_string());
    }
    let mut st = s.lock().unwrap();
    st.requests += 1;
    let found = st
        .uploads
        .iter()
        .find(|(_, u)| u.session_id == req.session_id)
        .map(|(id, _)| *id);
    let id = match found {
        Some(id) => {
            let u = st.uploads.get_mut(&id).unwrap();
            let same = u.files.len() == req.files.len()
                && u.files.iter().zip(&req.files).all(|(f, d)| f.decl == *d);
            if u.imported.is_some() && !same {
                return api_error(
                    StatusCode::CONFLICT,
                    "conflict",
                    "imported with other content",
                );
            }
            if !same {
                let mut old: HashMap<String, StubFile> = u
                    .files
                    .drain(..)
                    .map(|f| (f.decl.path.clone(), f))
                    .collect();
                u.files = req
                    .files
                    .iter()
                    .map(|d| match old.remove(&d.path) {
                        Some(f) if f.decl == *d => f,
                        _ => StubFile {
                            decl: d.clone(),
                            data: Vec::new(),
                            verified: false,
                        },
                    })
                    .collect();
            }
            id
        }
        None => {
            st.next_id += 1;
            let id = st.next_id;
            let files = req
                .files
                .iter()
                .map(|d| StubFile {
                    decl: d.clone(),
                    data: Vec::new(),
                    verified: false,
                })
                .collect();
            st.uploads.insert(
                id,
                StubUpload {
                    session_id: req.session_id.clone(),
                    files,
                    imported: None,
                },
            );
            id
        }
    };
    Json(status_of(id, &st.uploads[&id])).into_response()
}

async fn status(
    State(s): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    if let Some(r) = unauthorised(&headers) {
        return r;
    }
    let mut st = s.lock().unwrap();
    st.requests += 1;
    match st.uploads.get(&id) {
        Some(u) => Json(status_of(id, u)).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "not_found", "no such upload"),
    }
}

#[derive(serde::Deserialize)]
struct Offset {
    offset: u64,
}

async fn chunk(
    State(s): State<Shared>,
    headers: HeaderMap,
    UrlPath((id, path)): UrlPath<(i64, String)>,
    Query(q): Query<Offset>,
    body: Bytes,
) -> Response {
    if let Some(r) = unauthorised(&headers) {
        return r;
    }
    let stall;
    let ack = {
        let mut st = s.lock().unwrap();
        st.requests += 1;
        st.puts += 1;
        st.put_bytes_seen += body.len() as u64;
        let n = st.puts;
        if st.busy_at == Some(n) || st.busy_from.is_some_and(|from| n >= from) {
            let mut r = api_error(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many writes");
            if st.busy_at == Some(n) {
                r.headers_mut().insert("retry-after", "0".parse().unwrap());
            }
            return r;
        }
        stall = st.stall_at == Some(n);
        let corrupt = st.corrupt_once.as_deref() == Some(path.as_str());
        let Some(u) = st.uploads.get_mut(&id) else {
            return api_error(StatusCode::NOT_FOUND, "not_found", "no such upload");
        };
        let Some(f) = u.files.iter_mut().find(|f| f.decl.path == path) else {
            return api_error(StatusCode::NOT_FOUND, "not_found", "no such file");
        };
        if q.offset != f.data.len() as u64 {
            st.offset_mismatches += 1;
            return api_error(StatusCode::CONFLICT, "offset_mismatch", "wrong offset");
        }
        if q.offset + body.len() as u64 > f.decl.size {
            return api_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "past the end");
        }
        f.data.extend_from_slice(&body);
        let (received, size) = (f.data.len() as u64, f.decl.size);
        let mut bad_hash = false;
        if received == size {
            let mut sha = format!("{:x}", Sha256::digest(&f.data));
            if corrupt {
                sha.push('!');
            }
            f.verified = sha == f.decl.sha256;
            if !f.verified {
                f.data.clear();
                bad_hash = true;
            }
        }
        let verified = f.verified;
        if corrupt && bad_hash {
            st.corrupt_once = None;
        }
        st.accepted
            .push((path.clone(), q.offset, body.len() as u64));
        if bad_hash {
            return api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "checksum_mismatch",
                &format!("{path}: the file was discarded, send it again"),
            );
        }
        ChunkAck {
            path,
            received,
            verified,
        }
    };
    if stall {
        // Written, but the answer never comes in time: the station must
        // learn from the server that it has these bytes, not resend them.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    Json(ack).into_response()
}

async fn complete(
    State(s): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    if let Some(r) = unauthorised(&headers) {
        return r;
    }
    let mut st = s.lock().unwrap();
    st.requests += 1;
    let withdrawn = st.withdraw;
    let Some(u) = st.uploads.get_mut(&id) else {
        return api_error(StatusCode::NOT_FOUND, "not_found", "no such upload");
    };
    if let Some(done) = &u.imported {
        let mut again = done.clone();
        again.already = true;
        return Json(again).into_response();
    }
    if let Some(f) = u.files.iter().find(|f| !f.verified) {
        let path = f.decl.path.clone();
        return api_error(
            StatusCode::CONFLICT,
            "incomplete",
            &format!("{path} is missing"),
        );
    }
    let done = Completed {
        session_id: format!("{}.lab-1", u.session_id),
        withdrawn,
        already: false,
    };
    u.imported = Some(done.clone());
    st.completes += 1;
    Json(done).into_response()
}

/// The stub behind a proxy; returns the proxy's address.
async fn serve(stub: Shared, proxy: &Proxy) -> SocketAddr {
    let app = axum::Router::new()
        .route("/api/v1/uploads", post(create))
        .route("/api/v1/uploads/{id}", get(status))
        .route("/api/v1/uploads/{id}/files/{*path}", put(chunk))
        .route("/api/v1/uploads/{id}/complete", post(complete))
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    proxy.start(backend).await
}

/// A TCP proxy that counts client→server bytes and, once, cuts the
/// connection carrying the byte that crosses `cut_at`.
#[derive(Clone, Default)]
struct Proxy {
    up: Arc<AtomicU64>,
    cut_at: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
}

impl Proxy {
    fn new(cut_at: u64) -> Self {
        let p = Self::default();
        p.cut_at.store(cut_at, Ordering::SeqCst);
        p
    }

    async fn start(&self, backend: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                me.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(me.clone().pipe(client, backend));
            }
        });
        addr
    }

    async fn pipe(self, client: tokio::net::TcpStream, backend: SocketAddr) {
        let Ok(server) = tokio::net::TcpStream::connect(backend).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = async {
            let mut buf = vec![0u8; 16 << 10];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let before = self.up.load(Ordering::SeqCst);
                let cut = self.cut_at.load(Ordering::SeqCst);
                if before + n as u64 > cut {
                    // Forward up to the cut, then drop both sides.
                    let keep = (cut - before) as usize;
                    let _ = sw.write_all(&buf[..keep]).await;
                    self.up.fetch_add(keep as u64, Ordering::SeqCst);
                    self.cut_at.store(u64::MAX, Ordering::SeqCst);
                    return;
                }
                if sw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                self.up.fetch_add(n as u64, Ordering::SeqCst);
            }
        };
        let down = tokio::io::copy(&mut sr, &mut cw);
        tokio::select! {
            _ = up => {}
            _ = down => {}
        }
    }
}

fn client(addr: SocketAddr) -> LabClient {
    LabClient::new(&format!("http://{addr}"), TOKEN)
        .unwrap()
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(2),
            json: Duration::from_secs(5),
            chunk: Duration::from_secs(1),
            complete: Duration::from_secs(5),
        })
}

fn options() -> UploadOptions {
    UploadOptions {
        delete_after_ack: false,
        max_backoff: Duration::from_millis(50),
        give_up_after: Duration::from_secs(20),
        chunk_bytes: TEST_CHUNK,
    }
}

type Notes = Arc<Mutex<Vec<Note>>>;

async fn run(
    addr: SocketAddr,
    bundle: &Path,
    opts: &UploadOptions,
) -> (Result<Acknowledged, UploadError>, Vec<Note>) {
    let notes: Notes = Arc::default();
    let sink = notes.clone();
    let note = move |n: Note| sink.lock().unwrap().push(n);
    let (tx, _rx) = watch::channel(Progress::default());
    let mut c = client(addr);
    let r = upload_bundle(&mut c, bundle, opts, &tx, &note).await;
    let notes = notes.lock().unwrap().clone();
    (r, notes)
}

/// The test bundle: (folder, every file's bytes by path, total bytes).
fn test_bundle(root: &Path) -> (PathBuf, HashMap<String, Vec<u8>>, u64) {
    let dir = root.join("20261123T101500Z-P07");
    let big = noise((1 << 20) + 17, 1);
    let small = noise(300 << 10, 2);
    write_bundle(
        &dir,
        "complete",
        &[
            ("media/main-00001.mkv", &big[..]),
            ("media/main-00002.mkv", &small[..]),
            ("analysis/empty.txt", &[][..]),
        ],
    );
    let mut want = HashMap::new();
    for f in files::list(&dir).unwrap().files {
        want.insert(f.path.clone(), fs::read(dir.join(&f.path)).unwrap());
    }
    let total = want.values().map(|v| v.len() as u64).sum();
    (dir, want, total)
}

fn server_copy(stub: &Shared) -> HashMap<String, Vec<u8>> {
    let st = stub.lock().unwrap();
    assert_eq!(st.uploads.len(), 1, "exactly one upload on the server");
    let u = st.uploads.values().next().unwrap();
    u.files
        .iter()
        .map(|f| (f.decl.path.clone(), f.data.clone()))
        .collect()
}

/// Every written chunk starts where the file's bytes ended: no range was
/// written twice. Returns the bytes written.
fn written_once(stub: &Shared) -> u64 {
    let st = stub.lock().unwrap();
    let mut ends: HashMap<&str, u64> = HashMap::new();
    for (path, offset, len) in &st.accepted {
        let end = ends.entry(path.as_str()).or_default();
        // A discarded file (checksum mismatch) starts again at 0.
        assert!(
            *offset == *end || *offset == 0,
            "{path}: a chunk at {offset} after {end}"
        );
        *end = offset + len;
    }
    st.accepted.iter().map(|(_, _, len)| len).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_arrives_whole_through_a_busy_server_a_cut_and_a_lost_answer() {
    let root = temp_dir("stub");
    let (bundle, want, total) = test_bundle(&root);
    let events = want["events.jsonl"].len() as u64;
    let stub: Shared = Arc::default();
    {
        let mut st = stub.lock().unwrap();
        st.busy_at = Some(5);
        st.stall_at = Some(14);
        st.corrupt_once = Some("events.jsonl".into());
    }
    let proxy = Proxy::new(total * 2 / 5);
    let addr = serve(stub.clone(), &proxy).await;

    let (r, notes) = run(addr, &bundle, &options()).await;
    let ack = r.unwrap();
    assert_eq!(ack.server_session_id, "20261123T101500Z-P07.lab-1");
    assert!(!ack.earlier && !ack.deleted && !ack.withdrawn);

    // Byte-identical.
    assert_eq!(server_copy(&stub), want);
    // Nothing written twice; only the discarded events.jsonl came twice.
    assert_eq!(written_once(&stub), total + events);
    {
        let st = stub.lock().unwrap();
        assert_eq!(st.completes, 1);
        assert_eq!(st.offset_mismatches, 0);
        // Sent twice: the chunk refused as busy and the discarded events.jsonl.
        assert!(
            st.put_bytes_seen <= total + TEST_CHUNK + events,
            "{} > {total}",
            st.put_bytes_seen
        );
    }
    // On the wire: at most one more chunk, lost in the cut, plus headers and lists.
    let up = proxy.up.load(Ordering::SeqCst);
    assert!(
        up <= total + 2 * TEST_CHUNK + events + (64 << 10),
        "{up} bytes sent for {total}"
    );
    // The cut and the lost answer made it reconnect.
    assert!(proxy.connections.load(Ordering::SeqCst) >= 3);
    assert!(
        notes.iter().any(
            |n| matches!(n, Note::Resending { path, changed: false } if path == "events.jsonl")
        ),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| matches!(n, Note::Retrying { .. })),
        "{notes:?}"
    );

    // The record says so; running again sends nothing, not even a request.
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(root.join(".lab-upload/20261123T101500Z-P07.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "acknowledged");
    assert_eq!(
        record["acknowledged"]["server_session_id"],
        "20261123T101500Z-P07.lab-1"
    );
    let requests = stub.lock().unwrap().requests;
    let connections = proxy.connections.load(Ordering::SeqCst);
    let (r, _) = run(addr, &bundle, &options()).await;
    assert!(r.unwrap().earlier);
    assert_eq!(stub.lock().unwrap().requests, requests);
    assert_eq!(proxy.connections.load(Ordering::SeqCst), connections);
    // The bundle was only read: no file of the station's state inside it.
    let mut inside: Vec<String> = files::list(&bundle)
        .unwrap()
        .files
        .into_iter()
        .map(|f| f.path)
        .collect();
    inside.sort();
    let mut listed: Vec<String> = want.keys().cloned().collect();
    listed.sort();
    assert_eq!(inside, listed);
    fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploader_that_gave_up_resumes_where_the_server_stands() {
    let root = temp_dir("resume");
    let (bundle, want, total) = test_bundle(&root);
    let stub: Shared = Arc::default();
    stub.lock().unwrap().busy_from = Some(8);
    let proxy = Proxy::new(u64::MAX);
    let addr = serve(stub.clone(), &proxy).await;

    let opts = UploadOptions {
        give_up_after: Duration::from_millis(400),
        ..options()
    };
    let (r, _) = run(addr, &bundle, &opts).await;
    let e = r.unwrap_err();
    assert!(e.gave_up(), "{e}");
    assert!(e.to_string().contains("nothing is lost"), "{e}");
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(root.join(".lab-upload/20261123T101500Z-P07.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "uploading");
    assert_eq!(record["upload_id"], 1);
    assert!(
        record["last_error"].as_str().unwrap().contains("503"),
        "{record}"
    );
    let held = stub.lock().unwrap().uploads[&1]
        .files
        .iter()
        .find(|f| f.decl.path == "media/main-00001.mkv")
        .unwrap()
        .data
        .len() as u64;
    assert!(held > 0 && held < want["media/main-00001.mkv"].len() as u64);

    // The server is well again: the file goes on from what it holds.
    stub.lock().unwrap().busy_from = None;
    let (r, notes) = run(addr, &bundle, &options()).await;
    r.unwrap();
    assert!(
        notes.contains(&Note::Resuming {
            path: "media/main-00001.mkv".into(),
            offset: held
        }),
        "{notes:?}"
    );
    assert_eq!(
        Note::Resuming {
            path: "media/main-00001.mkv".into(),
            offset: held
        }
        .to_string(),
        format!("resuming media/main-00001.mkv at {held}")
    );
    assert_eq!(server_copy(&stub), want);
    assert_eq!(written_once(&stub), total);

    // A station that lost its record is acknowledged again by the server,
    // without a second import; then it deletes its copy as asked.
    fs::remove_file(root.join(".lab-upload/20261123T101500Z-P07.json")).unwrap();
    let opts = UploadOptions {
        delete_after_ack: true,
        ..options()
    };
    let (r, notes) = run(addr, &bundle, &opts).await;
    let ack = r.unwrap();
    assert!(!ack.earlier && ack.deleted);
    assert!(!bundle.exists());
    assert_eq!(stub.lock().unwrap().completes, 1);
    assert!(notes.iter().any(|n| matches!(
        n,
        Note::Deleted {
            withdrawn: false,
            ..
        }
    )));
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(root.join(".lab-upload/20261123T101500Z-P07.json")).unwrap(),
    )
    .unwrap();
    assert!(record["deleted_at_ms"].as_u64().unwrap() > 0, "{record}");
    // The deleted bundle is still known as acknowledged.
    let (r, _) = run(addr, &bundle, &options()).await;
    assert!(r.unwrap().earlier);
    fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_participants_bundle_is_deleted_and_refusals_stop_at_once() {
    let root = temp_dir("withdrawn");
    let (bundle, _, _) = test_bundle(&root);
    let stub: Shared = Arc::default();
    stub.lock().unwrap().withdraw = true;
    let proxy = Proxy::new(u64::MAX);
    let addr = serve(stub.clone(), &proxy).await;

    // A wrong token is a refusal, named as such, after one request.
    let notes: Notes = Arc::default();
    let (tx, _rx) = watch::channel(Progress::default());
    let mut bad = LabClient::new(&format!("http://{addr}"), "wrong").unwrap();
    let sink = notes.clone();
    let e = upload_bundle(&mut bad, &bundle, &options(), &tx, &move |n| {
        sink.lock().unwrap().push(n)
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("station token (revoked?)"), "{e}");
    assert!(!e.gave_up());
    let tries = notes.lock().unwrap().clone();
    assert!(
        !tries.iter().any(|n| matches!(n, Note::Retrying { .. })),
        "{tries:?}"
    );
    assert_eq!(stub.lock().unwrap().uploads.len(), 0);
    assert!(bundle.exists());

    let (r, notes) = run(addr, &bundle, &options()).await;
    let ack = r.unwrap();
    assert!(ack.withdrawn && ack.deleted);
    assert!(!bundle.exists());
    assert!(notes.iter().any(|n| matches!(
        n,
        Note::Deleted {
            withdrawn: true,
            ..
        }
    )));

    // A mistyped bundle path is an error that leaves no record.
    let (r, _) = run(addr, &root.join("20261123T101500Z-P08"), &options()).await;
    let e = r.unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!root.join(".lab-upload/20261123T101500Z-P08.lock").exists());

    // No server at all: it backs off and gives up with exit-2 semantics.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let other = root.join("other");
    fs::create_dir(&other).unwrap();
    let (bundle2, _, _) = test_bundle(&other);
    let opts = UploadOptions {
        give_up_after: Duration::from_millis(300),
        ..options()
    };
    let (r, notes) = run(dead_addr, &bundle2, &opts).await;
    let e = r.unwrap_err();
    assert!(e.gave_up(), "{e}");
    assert!(
        notes
            .iter()
            .filter(|n| matches!(n, Note::Retrying { .. }))
            .count()
            >= 2
    );
    fs::remove_dir_all(&root).unwrap();
}
