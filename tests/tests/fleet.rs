//! Analysis spread over a fleet, with faults (issue 14): two lab-web
//! processes and three `lab-analyze worker`s on one PostgreSQL server of the
//! test's own analyse a folder of real recorded bundles while the test kills
//! one worker with SIGKILL in the middle of a job, restarts PostgreSQL, and
//! stops one web process (cutting off the workers that talk to it). Every
//! job must end `done` exactly once, with results identical to a one-worker
//! run, no half-written `analysis/`, progress seen by a browser-like event
//! stream on the surviving web process, and nothing left leased. A wrong
//! worker token is refused with a clear error.
//!
//! Quick form (the suite): 6 copies of a recording from the test sources
//! (seconds of analysis each). Full form: `scripts/fleet-test`
//! (`LAB_FLEET_BUNDLES=12 LAB_FLEET_SPEECH=1`: copies of a recording with
//! Russian speech, a minute or more of Whisper each on two cores).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab_tests::postgres::PrivatePostgres;
use lab_tests::scripted::{copy_bundle_as, models, record_session, record_test_sources, speech};
use lab_tests::web::{Api, LabWeb, lab_web_command};
use lab_tests::{bin, temp_dir};
use serde_json::Value;

const PASSWORD: &str = "fleet-admin-password";
/// Short leases, so the test does not wait a minute for a dead worker.
const LEASE_SECONDS: &str = "4";

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(root: &Path, name: &str, token: &str, server: &str) -> Worker {
        let log = root.join(format!("{name}.log"));
        let child = Command::new(bin("lab-analyze"))
            .arg("--models")
            .arg(models())
            .arg("worker")
            .args(["--server", server, "--threads", "1"])
            .arg("--work")
            .arg(root.join(format!("{name}-work")))
            .env("LAB_WORKER_TOKEN", token)
            .stdout(std::fs::File::create(root.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Worker { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The job events a logged-in browser receives from `/api/v1/jobs/events`.
fn event_stream(base: &str, cookie: &str) -> Arc<Mutex<Vec<Value>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = base.trim_start_matches("http://").to_string();
    let cookie = cookie.to_string();
    let out = seen.clone();
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /api/v1/jobs/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            if let Some(data) = line.strip_prefix("data:")
                && let Ok(v) = serde_json::from_str::<Value>(data.trim())
            {
                out.lock().unwrap().push(v);
            }
        }
    });
    seen
}

fn jobs(api: &Api) -> Vec<Value> {
    api.get("/api/v1/jobs")["jobs"].as_array().unwrap().clone()
}

/// The analysis files that must come out the same from any worker (the
/// session id aside), by name.
fn results(bundle: &Path, id: &str) -> BTreeMap<String, String> {
    use lab_model::analysis::AnalysisFile;
    [
        AnalysisFile::Speech,
        AnalysisFile::Transcript,
        AnalysisFile::Steps,
        AnalysisFile::Candidates,
    ]
    .iter()
    // A stage may write nothing (no journey: no steps); the set of files
    // must match the reference too.
    .filter_map(|f| {
        let text = std::fs::read_to_string(f.path(bundle)).ok()?;
        Some((f.relative_path().to_string(), text.replace(id, "SESSION")))
    })
    .collect()
}

fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_fleet_analyses_every_bundle_once_through_a_killed_worker_a_database_restart_and_a_stopped_server()
 {
    let n: usize = std::env::var("LAB_FLEET_BUNDLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let root = temp_dir("fleet");
    let recorded = if std::env::var_os("LAB_FLEET_SPEECH").is_some() {
        // One real recording with speech; the fleet analyses copies of it.
        let wav = speech(
            &root,
            "think",
            "Я не понимаю, что такое льготная категория. Где нажать, чтобы продолжить? Кнопка не работает.",
            0.5,
        );
        record_session(&root, &wav)
    } else {
        record_test_sources(&root.join("station"), 8)
    };
    // The lab's journeys folder; the reference run and the fleet find the
    // session's journey there by the same rule.
    let data = root.join("data");
    std::fs::create_dir_all(data.join("sessions")).unwrap();
    std::fs::create_dir_all(data.join("journeys")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/journey-test.toml"),
        data.join("journeys/test-benefit.toml"),
    )
    .unwrap();
    // The one-worker reference.
    let reference = root.join("reference");
    copy_bundle_as(&recorded, &reference, "REF");
    let t0 = Instant::now();
    let o = Command::new(bin("lab-analyze"))
        .arg("--models")
        .arg(models())
        .arg("run")
        .arg(&reference)
        .arg("--journeys")
        .arg(data.join("journeys"))
        .args(["--threads", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one_job = t0.elapsed();
    let want = results(&reference, "REF");

    let pg = PrivatePostgres::start(&root.join("pg")).unwrap();
    let url = pg.url();
    let serve_strs = [
        "--database-url",
        url.as_str(),
        "--workers",
        "0",
        "--lease-seconds",
        LEASE_SECONDS,
        "--watch-seconds",
        "1",
        "--analyze-new",
    ];
    let serve_args: Vec<&OsStr> = serve_strs.iter().map(OsStr::new).collect();
    let web_a = LabWeb::serve_as("web-a", &data, PASSWORD, &serve_args, &[]);
    let mut web_b = LabWeb::serve_as("web-b", &data, PASSWORD, &serve_args, &[]);
    let token = |name: &str| {
        lab_web_command(&[
            "worker".as_ref(),
            "add".as_ref(),
            name.as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
            "--database-url".as_ref(),
            url.as_ref(),
        ])
    };
    let (t1, t2, t3) = (token("w1"), token("w2"), token("w3"));

    // A wrong token is refused at once, with a clear message.
    let o = Command::new(bin("lab-analyze"))
        .args(["worker", "--once", "--server", &web_a.url])
        .arg("--work")
        .arg(root.join("intruder"))
        .env("LAB_WORKER_TOKEN", "not-a-token")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("401"), "{err}");

    let api = Api::login(&web_a.url, "admin", PASSWORD);
    let events = event_stream(&web_a.url, &api.cookie);
    let ids: Vec<String> = (1..=n).map(|i| format!("FLEET-{i:02}")).collect();
    for id in &ids {
        copy_bundle_as(&recorded, &data.join("sessions").join(id), id);
    }
    wait(
        "every bundle imported and queued",
        Duration::from_secs(60),
        || jobs(&api).iter().filter(|j| j["kind"] == "analyze").count() >= n,
    );
    // Fault 1: w2, alone at first and working through web B, dies
    // (SIGKILL) in the middle of a stage of its first job.
    let t_fleet = Instant::now();
    let mut w2 = Worker::start(&root, "w2", &t2, &web_b.url);
    wait(
        "w2 in the middle of a stage",
        Duration::from_secs(120),
        || w2.log().contains(": running"),
    );
    w2.child.kill().unwrap();
    w2.child.wait().unwrap();
    let killed_job = jobs(&api)
        .into_iter()
        .find(|j| j["worker"] == "w2" && j["status"] == "running")
        .map(|j| j["id"].as_i64().unwrap());
    assert!(
        killed_job.is_some(),
        "w2 held no job when killed:\n{}",
        w2.log()
    );
    // w1 works through web B, w3 through web A.
    let w1 = Worker::start(&root, "w1", &t1, &web_b.url);
    let w3 = Worker::start(&root, "w3", &t3, &web_a.url);
    // Fault 2: PostgreSQL restarts under everyone, with jobs in flight.
    wait("a job in flight", Duration::from_secs(60), || {
        jobs(&api)
            .iter()
            .any(|j| j["status"] == "running" && j["worker"] != "w2")
    });
    pg.restart().unwrap();
    // Fault 3: web B stops once a third of the jobs are done; w1 is cut off.
    // Bounds from the one-worker run: after web B stops, one worker is left.
    let all_alone = one_job * n as u32 + Duration::from_secs(120);
    wait("a third of the jobs done", all_alone, || {
        api.call("GET", "/api/v1/jobs", None).1["jobs"]
            .as_array()
            .is_some_and(|js| js.iter().filter(|j| j["status"] == "done").count() * 3 >= n)
    });
    web_b.stop();
    let done = api.wait_for("every job ended", all_alone * 2, |api| {
        let (status, v) = api.call("GET", "/api/v1/jobs", None);
        let js = v["jobs"].as_array()?.clone();
        (status == 200
            && js
                .iter()
                .filter(|j| j["kind"] == "analyze")
                .all(|j| !matches!(j["status"].as_str(), Some("queued" | "running"))))
        .then_some(Value::Array(js))
    });
    let fleet_time = t_fleet.elapsed();
    let done = done.as_array().unwrap();
    let logs = || {
        format!(
            "w1:\n{}\nw3:\n{}\nweb-a:\n{}",
            w1.log(),
            w3.log(),
            web_a.log()
        )
    };

    // Every session analysed exactly once: one job each, done.
    for id in &ids {
        let mine: Vec<_> = done
            .iter()
            .filter(|j| j["kind"] == "analyze" && j["session_id"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{id}: {mine:?}\n{}", logs());
        assert_eq!(mine[0]["status"], "done", "{id}: {:?}\n{}", mine[0], logs());
        // Identical to the one-worker run, nothing half-written.
        let bundle = data.join("sessions").join(id);
        assert_eq!(results(&bundle, id), want, "{id}");
        let state =
            <lab_model::analysis::State as lab_model::analysis::AnalysisDoc>::read_optional(
                &bundle,
            )
            .unwrap()
            .unwrap();
        for stage in lab_model::analysis::Stage::ALL {
            assert!(state.is_done(stage), "{id}: {stage} not done");
        }
    }
    // The killed worker's job went to another worker, on a later attempt.
    {
        let j = done
            .iter()
            .find(|j| j["id"] == killed_job.unwrap())
            .unwrap();
        assert_eq!(j["status"], "done");
        assert!(j["attempts"].as_i64().unwrap() >= 2, "{j}");
        assert_ne!(j["worker"], "w2", "{j}");
    }
    // Nothing left leased; no staging left behind.
    assert!(
        jobs(&api)
            .iter()
            .all(|j| j["status"] != "running" && j["status"] != "queued")
    );
    let staged = std::fs::read_dir(data.join("sessions"))
        .unwrap()
        .filter(|d| {
            d.as_ref()
                .is_ok_and(|d| d.file_name().to_string_lossy().starts_with(".lab-result-"))
        })
        .count();
    assert_eq!(staged, 0, "result staging cleaned up");
    // The browser on web A saw jobs leased through web B (told by B's
    // NOTIFY), progress, and every job's end, across the database restart.
    let seen = events.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|e| e["status"] == "running" && (e["worker"] == "w1" || e["worker"] == "w2")),
        "no job leased through web B reached web A's stream"
    );
    assert!(
        seen.iter().any(|e| e["status"] == "running"
            && e["progress"].as_f64().is_some_and(|p| p > 0.0 && p < 1.0)),
        "no progress reached web A's stream"
    );
    for id in &ids {
        assert!(
            seen.iter()
                .any(|e| e["session_id"] == id.as_str() && e["status"] == "done"),
            "{id}: its end did not reach the stream"
        );
    }
    println!(
        "fleet: {n} bundles, 3 workers (one killed), 2 web processes (one stopped), 1 PostgreSQL restart: \
         {:.1} s; one job alone {:.1} s",
        fleet_time.as_secs_f64(),
        one_job.as_secs_f64()
    );
    drop((w1, w3, web_a));
}
