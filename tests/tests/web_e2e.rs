//! lab-web end to end, on SQLite and on PostgreSQL: a real recorded session
//! (test video, espeak-ng speech through PulseAudio, scripted events) is
//! picked up from the watched sessions folder, analysed by a job running the
//! real `lab-analyze` (cancelled once mid-way, then retried), and reviewed in
//! Debian's Chromium driven by Playwright (`tests/e2e/review.mjs`: log in,
//! play, click a word, accept a candidate, tag with the keyboard, journey map,
//! exports, a viewer refused raw media). Screenshots go to
//! `target/e2e-screenshots/<database>/`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lab_tests::scripted::{models, record_session, speech};
use lab_tests::web::{Api, LabWeb};
use lab_tests::{bin, http_with, require, temp_dir};
use serde_json::{Value, json};

fn job(api: &Api, id: i64) -> Value {
    let (_, jobs) = api.call("GET", "/api/v1/jobs", None);
    jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

fn run_browser_test(web: &LabWeb, session: &str, shots: &Path) {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/e2e (scripts/test does)"
    );
    require("node");
    require("chromium");
    let out = Command::new("node")
        .arg(e2e.join("review.mjs"))
        .arg(&web.url)
        .env("LAB_ADMIN", "admin")
        .env("LAB_PASSWORD", "admin-password-1")
        .env("LAB_VIEWER", "viewer")
        .env("LAB_VIEWER_PASSWORD", "viewer-password-1")
        .env("LAB_SESSION", session)
        .env("LAB_SCREENSHOTS", shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let oks = stdout.lines().filter(|l| l.starts_with("ok - ")).count();
    assert!(
        out.status.success() && !stdout.contains("not ok"),
        "browser test failed:\n{stdout}\n{}\nlab-web log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        web.log()
    );
    assert!(
        !stdout.contains("# SKIP"),
        "a browser check was skipped:\n{stdout}"
    );
    assert!(oks >= 20, "only {oks} browser checks ran");
    for page in [
        "login", "sessions", "session", "journey", "findings", "admin",
    ] {
        let found = std::fs::read_dir(shots)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(page));
        assert!(
            found,
            "no screenshot of the {page} page in {}",
            shots.display()
        );
    }
}

/// Imported from the watched folder, then analysed (and cancelled once) by a job.
fn import_and_analyse(api: &Api, analyse: bool) -> String {
    let row = api.wait_for(
        "the watched folder to be imported",
        Duration::from_secs(30),
        |a| {
            let (_, v) = a.call("GET", "/api/v1/sessions", None);
            v["sessions"].as_array().and_then(|s| s.first().cloned())
        },
    );
    let id = row["id"].as_str().unwrap().to_string();
    if !analyse {
        return id;
    }
    assert_eq!(row["analysis"]["status"], "none", "{row}");
    // Start, see progress, cancel while it runs.
    let (status, v) = api.call(
        "POST",
        &format!("/api/v1/sessions/{id}/analyze"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{v}");
    let first = v["job_id"].as_i64().unwrap();
    api.wait_for("the job to run", Duration::from_secs(60), |a| {
        let j = job(a, first);
        (j["status"] == "running").then_some(j)
    });
    let (_, cancelled) = api.call("POST", &format!("/api/v1/jobs/{first}/cancel"), None);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    // Retry and let it finish.
    let (_, v) = api.call("POST", &format!("/api/v1/jobs/{first}/retry"), None);
    let second = v["job_id"].as_i64().unwrap();
    let mut progress = vec![];
    let done = api.wait_for("the analysis to finish", Duration::from_secs(600), |a| {
        let j = job(a, second);
        if let Some(p) = j["progress"].as_f64() {
            progress.push(p);
        }
        assert_ne!(j["status"], "failed", "analysis failed: {j}");
        (j["status"] == "done").then_some(j)
    });
    println!("analysis job: {done}");
    assert!(
        progress.windows(2).all(|w| w[1] >= w[0]),
        "progress never goes back: {progress:?}"
    );
    let (_, list) = api.call("GET", "/api/v1/sessions", None);
    let s = &list["sessions"][0];
    assert_eq!(s["analysis"]["status"], "done", "{s}");
    assert!(
        s["candidates_total"].as_i64().unwrap() > 0,
        "the scripted rage clicks give candidates: {s}"
    );
    id
}

fn serve_and_review(
    label: &str,
    dir: &Path,
    sessions: &Path,
    journeys: &Path,
    db: Option<&str>,
    analyse: bool,
) {
    let analyzer = bin("lab-analyze");
    let models = models();
    let mut envs = vec![("LAB_MODELS", models.as_os_str())];
    if let Some(u) = db {
        envs.push(("DATABASE_URL", u.as_ref()));
    }
    let web = LabWeb::serve(
        &dir.join(format!("data-{label}")),
        "admin-password-1",
        &[
            "--watch-seconds".as_ref(),
            "1".as_ref(),
            "--sessions".as_ref(),
            sessions.as_os_str(),
            "--journeys".as_ref(),
            journeys.as_os_str(),
            "--analyzer".as_ref(),
            analyzer.as_os_str(),
        ],
        &envs,
    );
    let admin = Api::login(&web.url, "admin", "admin-password-1");
    let (status, v) = admin.call(
        "POST",
        "/api/v1/users",
        Some(json!({"login": "viewer", "password": "viewer-password-1", "role": "viewer"})),
    );
    assert_eq!(status, 201, "{v}");
    let id = import_and_analyse(&admin, analyse);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/e2e-screenshots")
        .join(label);
    let _ = std::fs::remove_dir_all(&shots);
    run_browser_test(&web, &id, &shots);
    // What the browser did is in the audit log.
    let (_, audit) = admin.call("GET", "/api/v1/audit?limit=500", None);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "login",
        "view_session",
        "view_media",
        "accept_candidate",
        "create_tag",
        "export_findings",
        "export_eaf",
    ] {
        assert!(actions.contains(&a), "audit log lacks {a}: {actions:?}");
    }
    println!("{label}: screenshots in {}", shots.display());
    if analyse {
        media_and_clip(&admin, &id, &dir.join(format!("data-{label}")));
    }
}

/// Range requests on the rendition, and a clip cut by ffmpeg with subtitles.
fn media_and_clip(api: &Api, session: &str, data: &Path) {
    let (status, headers, body) = http_with(
        "GET",
        &format!("{}/api/v1/sessions/{session}/media/screen.mp4", api.base),
        &[("Cookie", &api.cookie), ("Range", "bytes=0-99")],
        b"",
    )
    .unwrap();
    assert_eq!(status, 206, "range request: {status}");
    let range = headers
        .iter()
        .find(|(k, _)| k == "content-range")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(range.starts_with("bytes 0-99/"), "{range}");
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.as_str());
    assert_eq!(length, Some("100"), "{headers:?}");
    assert!(!body.is_empty());
    let (_, tags) = api.call("GET", &format!("/api/v1/sessions/{session}/tags"), None);
    let tag = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|t| t["end_ms"].as_i64().unwrap() - t["start_ms"].as_i64().unwrap())
        .unwrap()
        .clone();
    // Widen the tag to cover the speech, so the clip has subtitles.
    let mut input = tag.clone();
    input["start_ms"] = json!(3000);
    input["end_ms"] = json!(9000);
    let (status, v) = api.call("PUT", &format!("/api/v1/tags/{}", tag["id"]), Some(input));
    assert_eq!(status, 200, "{v}");
    let (_, v) = api.call("POST", &format!("/api/v1/tags/{}/clip", tag["id"]), None);
    let job_id = v["job_id"].as_i64().unwrap();
    let done = api.wait_for("the clip", Duration::from_secs(120), |a| {
        let j = job(a, job_id);
        assert_ne!(j["status"], "failed", "clip failed: {j}");
        (j["status"] == "done").then_some(j)
    });
    println!("clip job: {done}");
    let clip = data.join("clips").join(format!("{}.mp4", tag["id"]));
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(&clip)
        .output()
        .unwrap();
    let streams = String::from_utf8_lossy(&probe.stdout).to_string();
    for want in ["h264,video", "aac,audio", "mov_text,subtitle"] {
        assert!(
            streams.contains(want),
            "clip streams lack {want}: {streams}"
        );
    }
    let (status, _, _) = http_with(
        "GET",
        &format!("{}/api/v1/clips/{}.mp4", api.base, tag["id"]),
        &[("Cookie", &api.cookie), ("Range", "bytes=0-9")],
        b"",
    )
    .unwrap();
    assert_eq!(status, 206);
}

#[test]
fn review_app_in_chromium_on_sqlite_and_postgres() {
    let dir = temp_dir("web");
    let wav = speech(
        &dir,
        "think-aloud",
        "Так, где здесь кнопка? Я не понимаю, куда нажимать. Почему ничего не происходит?",
        0.5,
    );
    let bundle = record_session(&dir, &wav);
    let sessions = bundle.parent().unwrap().to_path_buf();
    let journeys = dir.join("journeys");
    std::fs::create_dir_all(&journeys).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/journey-test.toml"),
        journeys.join("test-benefit.toml"),
    )
    .unwrap();
    serve_and_review("sqlite", &dir, &sessions, &journeys, None, true);

    match std::env::var("LAB_TEST_PG_URL") {
        Ok(admin_url) => {
            let name = format!("lab_e2e_{}", std::process::id());
            let base = admin_url.rsplit_once('/').unwrap().0.to_string();
            require("psql");
            let ok = Command::new("psql")
                .arg(&admin_url)
                .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
                .status()
                .unwrap()
                .success();
            assert!(ok, "cannot create the PostgreSQL test database");
            // The bundle is analysed by now; this run reviews it on PostgreSQL.
            serve_and_review(
                "postgres",
                &dir,
                &sessions,
                &journeys,
                Some(&format!("{base}/{name}")),
                false,
            );
        }
        Err(_) => {
            assert!(
                std::env::var("LAB_REQUIRE_PG").is_err(),
                "LAB_REQUIRE_PG is set but LAB_TEST_PG_URL is not"
            );
            eprintln!("(LAB_TEST_PG_URL not set: the PostgreSQL run is skipped)");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
