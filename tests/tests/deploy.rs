//! The backup and restore of `docs/deploy.md`, for real: lab-web on a
//! private PostgreSQL server holds a session (transcript, timeline, a
//! screen rendition), a researcher's tag with its clip, a rejected candidate
//! and a new user; `scripts/lab-backup` takes it while lab-web runs; the
//! data folder is then lost, `scripts/lab-restore` puts the backup into a
//! second, empty database and the data folder's old path, and a lab-web on
//! that database answers exactly as before, serving the same bytes.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lab_model::analysis::{
    ANALYSIS_FORMAT_VERSION, AnalysisDoc, AnalysisFile, RenditionVideo, Renditions, video_file,
};
use lab_tests::postgres::PrivatePostgres;
use lab_tests::web::{Api, LabWeb};
use lab_tests::{require, sha_tree, temp_dir};
use serde_json::{Value, json};

const SESSION: &str = "20261123T100000Z-P42";
const PASSWORD: &str = "deploy-test-admin";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// Runs `scripts/NAME ARGS…` (DATABASE_URL only from the arguments).
fn run_script(name: &str, args: &[&OsStr]) -> Output {
    Command::new(script(name))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn psql(url: &str, sql: &str) {
    let o = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(o.status.success(), "psql {sql}: {}", text(&o));
}

/// A GET whose body may be binary: (status, body). `Api::call` reads text.
fn get_bytes(api: &Api, path: &str) -> (u16, Vec<u8>) {
    let host = api.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
        api.cookie
    )
    .unwrap();
    let mut resp = vec![];
    s.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = resp[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let (mut out, mut rest) = (vec![], &body[..]);
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(
                std::str::from_utf8(&rest[..eol])
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    (status, body)
}

/// A synthetic analysed bundle (`lab_web::synth`) plus a real screen
/// rendition, so there is a media file to serve and to cut a clip from.
fn write_bundle(sessions: &Path) -> PathBuf {
    let bundle =
        lab_web::synth::write_bundle(sessions, &lab_web::synth::Spec::small(SESSION, "P42"))
            .unwrap();
    let screen = video_file("screen");
    std::fs::create_dir_all(bundle.join(&screen).parent().unwrap()).unwrap();
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10:duration=4",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=4"])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-c:a", "aac", "-shortest", "-movflags", "+faststart"])
        .arg(bundle.join(&screen))
        .output()
        .unwrap();
    assert!(o.status.success(), "ffmpeg: {}", text(&o));
    Renditions {
        format_version: ANALYSIS_FORMAT_VERSION,
        videos: vec![RenditionVideo {
            track: "screen".into(),
            file: screen,
            frames: 40,
            expected_frames: 40,
            start_ns: 0,
            end_ns: 4_000_000_000,
        }],
        thumbnails: vec![],
        peaks: None,
        errors: vec![],
        segments: vec![],
    }
    .write(&bundle)
    .unwrap();
    bundle
}

/// Everything the restored server must answer the same.
struct Seen {
    detail: Value,
    transcript: Value,
    timeline: Value,
    tags: Value,
    users: Value,
    audit_ids: Vec<i64>,
    screen: Vec<u8>,
    clip: Vec<u8>,
    tag_id: i64,
}

fn look(api: &Api, tag_id: i64) -> Seen {
    let s = format!("/api/v1/sessions/{SESSION}");
    let (status, screen) = get_bytes(api, &format!("{s}/media/screen.mp4"));
    assert_eq!(status, 200);
    let (status, clip) = get_bytes(api, &format!("/api/v1/clips/{tag_id}.mp4"));
    assert_eq!(status, 200);
    let audit = api.get("/api/v1/audit?limit=500");
    Seen {
        detail: api.get(&s),
        transcript: api.get(&format!("{s}/transcript")),
        timeline: api.get(&format!("{s}/timeline")),
        tags: api.get(&format!("{s}/tags")),
        users: api.get("/api/v1/users"),
        audit_ids: audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect(),
        screen,
        clip,
        tag_id,
    }
}

/// What researchers add to an imported session: a user, a tag with its
/// clip, a rejected candidate.
fn review(api: &Api) -> i64 {
    let (status, v) = api.call(
        "POST",
        "/api/v1/users",
        Some(json!({"login": "ivanova", "name": "Иванова", "password": "ivanova-pw-2026", "role": "researcher"})),
    );
    assert!((200..300).contains(&status), "{status} {v}");
    let (status, tag) = api.call(
        "POST",
        &format!("/api/v1/sessions/{SESSION}/tags"),
        Some(
            json!({"start_ms": 500, "end_ms": 3000, "step": "catalog", "category": "navigation",
                    "severity": 3, "emotion": "negative", "note": "не нашла кнопку"}),
        ),
    );
    assert!((200..300).contains(&status), "{status} {tag}");
    let tag_id = tag["id"].as_i64().unwrap();
    let timeline = api.get(&format!("/api/v1/sessions/{SESSION}/timeline"));
    let cid = match &timeline["candidates"][0]["id"] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let (status, v) = api.call(
        "POST",
        &format!("/api/v1/sessions/{SESSION}/candidates/{cid}/reject"),
        Some(json!({"reason": "ложная тревога"})),
    );
    assert!((200..300).contains(&status), "{status} {v}");
    let (status, v) = api.call("POST", &format!("/api/v1/tags/{tag_id}/clip"), None);
    assert!((200..300).contains(&status), "{status} {v}");
    api.wait_for("the clip", Duration::from_secs(60), |a| {
        let tags = a.get(&format!("/api/v1/sessions/{SESSION}/tags"));
        let clip = &tags["tags"][0]["clip"];
        assert_ne!(clip["status"], "failed", "{tags}");
        (clip["status"] == "done").then(|| clip.clone())
    });
    tag_id
}

fn serve(data: &Path, url: &str, watch_seconds: &str) -> LabWeb {
    LabWeb::serve(
        data,
        PASSWORD,
        &[
            OsStr::new("--database-url"),
            OsStr::new(url),
            OsStr::new("--workers"),
            OsStr::new("0"),
            OsStr::new("--watch-seconds"),
            OsStr::new(watch_seconds),
        ],
        &[],
    )
}

fn mtime_ns(p: &Path) -> (i64, i64) {
    let m = std::fs::metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

#[test]
fn a_backup_restores_into_a_new_database_and_serves_the_same_session() {
    if !Path::new("/usr/lib/postgresql").is_dir() {
        assert!(
            std::env::var("LAB_REQUIRE_PG").is_err(),
            "LAB_REQUIRE_PG is set but PostgreSQL is not installed (hardware-setup/install.sh)"
        );
        eprintln!("(PostgreSQL is not installed: the backup and restore test is skipped)");
        return;
    }
    for tool in ["psql", "ffmpeg", "tar", "sha256sum"] {
        require(tool);
    }
    let t0 = Instant::now();
    let root = temp_dir("deploy");
    let pg = PrivatePostgres::start(&root.join("pg")).unwrap();
    psql(&pg.url(), "CREATE DATABASE lab_a");
    psql(&pg.url(), "CREATE DATABASE lab_b");
    let base = pg.url().rsplit_once('/').unwrap().0.to_string();
    let (url_a, url_b) = (format!("{base}/lab_a"), format!("{base}/lab_b"));

    // The lab as it runs: a data folder with its journeys and one bundle.
    let data = root.join("lab-data");
    let sessions = data.join("sessions");
    std::fs::create_dir_all(data.join("journeys")).unwrap();
    std::fs::write(
        data.join("journeys/test-benefit.toml"),
        lab_web::synth::JOURNEY_TOML,
    )
    .unwrap();
    let bundle = write_bundle(&sessions);
    let web = serve(&data, &url_a, "0");
    let admin = Api::login(&web.url, "admin", PASSWORD);
    let (status, v) = admin.call(
        "POST",
        "/api/v1/imports",
        Some(json!({"path": bundle.to_str().unwrap()})),
    );
    assert!((200..300).contains(&status), "{status} {v}");
    assert_eq!(v["session_id"], SESSION, "{v}");
    let tag_id = review(&admin);
    let before = look(&admin, tag_id);
    assert!(
        !before.transcript["segments"].as_array().unwrap().is_empty(),
        "{}",
        before.transcript
    );
    assert!(before.screen.len() > 10_000, "a real rendition");
    // Staging that a backup leaves out: an upload in progress, a worker's
    // result being unpacked, a clip being written.
    let staging = [
        sessions.join(".incoming/7/media/main-00001.mkv"),
        sessions.join(".lab-result-3-0123456789abcdef/unpacking"),
        data.join("clips/99.mp4.part"),
    ];
    for f in &staging {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, b"half").unwrap();
    }

    // The backup, taken while lab-web runs.
    let backup = root.join("backup");
    let t = Instant::now();
    let backup_args: [&OsStr; 6] = [
        "--database-url".as_ref(),
        url_a.as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        backup.as_os_str(),
    ];
    let o = run_script("lab-backup", &backup_args);
    assert!(o.status.success(), "lab-backup: {}", text(&o));
    let backup_s = t.elapsed().as_secs_f64();
    for f in ["lab.dump", "data.tar", "backup.info", "SHA256SUMS"] {
        assert!(backup.join(f).is_file(), "{f}: {}", text(&o));
    }
    let o = run_script("lab-backup", &backup_args);
    assert!(!o.status.success(), "a second backup into the same folder");
    assert!(text(&o).contains("not empty"), "{}", text(&o));
    drop(web);

    // The data folder is lost (kept aside to compare with).
    let lost = root.join("lab-data.lost");
    std::fs::rename(&data, &lost).unwrap();
    let restore = |url: &str, dir: &Path| {
        run_script(
            "lab-restore",
            &[
                "--database-url".as_ref(),
                url.as_ref(),
                "--data".as_ref(),
                dir.as_os_str(),
                "--from".as_ref(),
                backup.as_os_str(),
            ],
        )
    };
    // Refused: another path (the database names bundles by their path), a
    // database that is not empty, a damaged backup.
    let o = restore(&url_b, &root.join("elsewhere"));
    assert!(!o.status.success(), "a restore into another path");
    assert!(text(&o).contains("restore into --data"), "{}", text(&o));
    let o = restore(&url_a, &data);
    assert!(!o.status.success(), "a restore into a database in use");
    assert!(
        text(&o).contains("the database is not empty"),
        "{}",
        text(&o)
    );
    let info = std::fs::read_to_string(backup.join("backup.info")).unwrap();
    std::fs::write(backup.join("backup.info"), format!("{info}x\n")).unwrap();
    let o = restore(&url_b, &data);
    assert!(!o.status.success(), "a damaged backup");
    assert!(text(&o).contains("SHA256SUMS"), "{}", text(&o));
    std::fs::write(backup.join("backup.info"), info).unwrap();
    assert!(!data.exists(), "the refusals touched nothing");

    let t = Instant::now();
    let o = restore(&url_b, &data);
    assert!(o.status.success(), "lab-restore: {}", text(&o));
    let restore_s = t.elapsed().as_secs_f64();

    // The folder came back byte for byte, with its nanosecond times (so the
    // import fingerprints still match), without the staging.
    for sub in ["sessions", "clips", "journeys"] {
        assert_eq!(
            sha_tree(&data.join(sub))
                .into_iter()
                .filter(|(p, _)| !p.starts_with('.') && !p.ends_with(".part"))
                .collect::<Vec<_>>(),
            sha_tree(&lost.join(sub))
                .into_iter()
                .filter(|(p, _)| !p.starts_with('.') && !p.ends_with(".part"))
                .collect::<Vec<_>>(),
            "{sub}"
        );
    }
    for f in &staging {
        let rel = f.strip_prefix(&data).unwrap();
        assert!(lost.join(rel).exists(), "{} was there", rel.display());
        assert!(!f.exists(), "{} is staging, not backed up", rel.display());
    }
    let restored_bundle = sessions.join(SESSION);
    for f in [
        lab_model::bundle::MANIFEST_FILE,
        AnalysisFile::State.relative_path(),
        AnalysisFile::Renditions.relative_path(),
    ] {
        assert_eq!(
            mtime_ns(&restored_bundle.join(f)),
            mtime_ns(&lost.join("sessions").join(SESSION).join(f)),
            "{f}"
        );
    }

    // lab-web on the restored database answers as before.
    let web = serve(&data, &url_b, "1");
    let admin = Api::login(&web.url, "admin", PASSWORD);
    let after = look(&admin, before.tag_id);
    assert_eq!(after.detail, before.detail);
    assert_eq!(after.transcript, before.transcript);
    assert_eq!(after.timeline, before.timeline);
    assert_eq!(after.tags, before.tags);
    assert_eq!(after.users, before.users);
    assert!(
        before
            .audit_ids
            .iter()
            .all(|id| after.audit_ids.contains(id)),
        "the audit log came back"
    );
    assert!(
        after.screen == before.screen,
        "the rendition, byte for byte"
    );
    assert!(after.clip == before.clip, "the clip, byte for byte");
    assert_eq!(
        after.timeline["candidates"][0]["status"], "rejected",
        "{}",
        after.timeline
    );
    // The researcher's password works; the sequences continue.
    let ivanova = Api::login(&web.url, "ivanova", "ivanova-pw-2026");
    let (status, tag) = ivanova.call(
        "POST",
        &format!("/api/v1/sessions/{SESSION}/tags"),
        Some(
            json!({"start_ms": 100, "end_ms": 900, "category": "content", "severity": 1,
                    "emotion": "neutral"}),
        ),
    );
    assert!((200..300).contains(&status), "{status} {tag}");
    assert!(tag["id"].as_i64().unwrap() > before.tag_id, "{tag}");
    // The watcher scans the restored folder and finds nothing new or amiss.
    std::thread::sleep(Duration::from_millis(2500));
    let list = admin.get("/api/v1/sessions");
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    let log = web.log();
    assert!(
        !log.contains("import of") && !log.contains("ERROR"),
        "the restored server's log:\n{log}"
    );
    drop(web);
    drop(pg);
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "deploy: backup {backup_s:.1} s, restore {restore_s:.1} s, whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
