//! The station console end to end (`tests/e2e/console.mjs` drives Debian's
//! Chromium): an operator starts a session from the page (refused without
//! consent), runs two tasks, the participant answers the self-report pages
//! and SUS; the console is killed with SIGKILL mid-recording and the
//! recording goes on; a restarted console re-attaches, Stop ends it, and the
//! bundle is uploaded to a real lab-web by itself: byte-identical, listed
//! once, its self-report in the journey map and the task table.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab_tests::relay::Relay;
use lab_tests::web::{Api, LabWeb, add_station};
use lab_tests::{bin, require, sha_tree, temp_dir};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A running `lab-recorder console`; on drop it and any recording it
/// started are stopped, so a failing test leaves nothing running.
struct Console {
    child: Child,
    url: String,
    out: PathBuf,
}

impl Console {
    fn start(args: &[&OsStr], out: &Path, listen: &str) -> Console {
        let mut child = Command::new(bin("lab-recorder"))
            .arg("console")
            .args(args)
            .arg("--out")
            .arg(out)
            .args(["--listen", listen])
            .env_remove("LAB_STATION_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        reader.read_line(&mut line).unwrap();
        // Keep reading, so the console never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let url = line
            .trim()
            .strip_prefix("console: ")
            .unwrap_or_else(|| panic!("console did not start: {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Console {
            child,
            url,
            out: out.to_path_buf(),
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The recorder's pid from the console's record of the live session.
    fn recorder_pid(&self) -> Option<i32> {
        let bytes = std::fs::read(self.out.join(".console/live.json")).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        v["pid"].as_i64().map(|p| p as i32)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(pid) = self.recorder_pid() {
            // SAFETY: kill(2); a recording left by a failed test is stopped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        self.kill9();
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn browser(url: &str, phase: &str, shots: &Path, envs: &[(&str, &str)]) {
    let e2e = repo().join("tests/e2e");
    let out = Command::new("node")
        .arg(e2e.join("console.mjs"))
        .arg(url)
        .arg(phase)
        .env("LAB_SCREENSHOTS", shots)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && !stdout.contains("not ok") && stdout.contains("ok - "),
        "console browser test ({phase}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_operator_runs_a_session_from_the_console_and_it_reaches_the_lab_server() {
    let e2e = repo().join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/e2e (scripts/test does)"
    );
    require("node");
    require("chromium");
    let root = temp_dir("console");
    let shots = repo().join("target/e2e-screenshots");
    let journeys = repo().join("journeys");
    // The lab server and this station's account.
    let data = root.join("lab");
    let token_file = root.join("room-1.token");
    add_station(&data, "room-1", &token_file);
    let password = "console-test-pw";
    let mut web = LabWeb::serve(
        &data,
        password,
        &[
            OsStr::new("--watch-seconds"),
            OsStr::new("1"),
            OsStr::new("--journeys"),
            journeys.as_os_str(),
        ],
        &[],
    );
    // A researcher puts the study set-up on the lab server; the console
    // pulls it from there with its station token.
    let admin = Api::login(&web.url, "admin", password);
    let study = lab_model::study::Study::from_toml(
        &std::fs::read_to_string(repo().join("studies/child-benefit-demo.toml")).unwrap(),
    )
    .unwrap();
    let (status, v) = admin.call(
        "PUT",
        &format!("/api/v1/setups/{}", study.id),
        Some(serde_json::to_value(&study).unwrap()),
    );
    assert_eq!(status, 200, "{v}");
    let station = root.join("station");
    // The station reaches the server through a slow link, so the upload
    // can be cut in the middle.
    let relay = Relay::start(
        web.url.trim_start_matches("http://").parse().unwrap(),
        1 << 20,
    );
    let server = format!("http://{}", relay.addr());
    let args: Vec<&OsStr> = vec![
        OsStr::new("--journeys"),
        journeys.as_os_str(),
        OsStr::new("--test-sources"),
        OsStr::new("--server"),
        OsStr::new(&server),
        OsStr::new("--station-token-file"),
        token_file.as_os_str(),
    ];
    let mut console = Console::start(&args, &station, "127.0.0.1:0");
    // Only the console's own pages may act on it.
    let port = console.url.rsplit(':').next().unwrap().to_string();
    let (status, _, _) = lab_tests::http_with(
        "POST",
        &format!("{}/api/preflight/start", console.url),
        &[("Origin", "http://evil.example")],
        b"",
    )
    .unwrap();
    assert_eq!(status, 403, "a foreign page cannot start anything");
    let answer = {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(console.url.trim_start_matches("http://")).unwrap();
        write!(
            s,
            "GET /api/state HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut a = String::new();
        s.read_to_string(&mut a).unwrap();
        a
    };
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "DNS rebinding: another host name is refused: {answer}"
    );
    browser(&console.url, "session", &shots, &[]);

    // The console dies; the recording does not.
    let pid = console.recorder_pid().expect("a live session is recorded");
    console.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(alive(pid), "the recording went on without the console");
    let listen = console.url.trim_start_matches("http://").to_string();
    let mut console = Console::start(&args, &station, &listen);
    let before = relay.up_bytes();
    browser(&console.url, "stop", &shots, &[]);
    assert!(!alive(pid), "Stop ended the recording process");

    // The upload runs by itself: lab-web dies at a third, the console at
    // two thirds, both come back, and the upload finishes.
    let bundle_bytes: u64 = std::fs::read_dir(&station)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| sha_tree(&e.path()).values().map(|(n, _)| n).sum::<u64>())
        .sum();
    let wait_sent = |share: u64| {
        let t0 = Instant::now();
        while relay.up_bytes() - before < bundle_bytes * share / 100 {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the upload did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_sent(35);
    web.kill_and_restart();
    wait_sent(70);
    console.kill9();
    let console = Console::start(&args, &station, &listen);
    browser(&console.url, "uploaded", &shots, &[]);
    let sent = relay.up_bytes() - before;
    println!("console upload: {sent} bytes through the relay for {bundle_bytes} bytes of bundle");
    assert!(
        sent <= bundle_bytes + 2 * lab_model::upload::CHUNK_BYTES + (2 << 20),
        "{sent} bytes sent for {bundle_bytes}: nothing is sent twice beyond the chunks the kills cut"
    );

    // On the lab server: once, byte-identical, with the participant's answers.
    let t0 = Instant::now();
    let id = loop {
        let list = admin.get("/api/v1/sessions");
        if let Some(s) = list["sessions"].as_array().and_then(|s| s.first()) {
            assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
            break s["id"].as_str().unwrap().to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "never imported");
        std::thread::sleep(Duration::from_millis(200));
    };
    let bundle = station.join(&id);
    let mut sent = sha_tree(&bundle);
    sent.remove(lab_model::bundle::RESERVE_FILE);
    assert_eq!(sha_tree(&data.join("sessions").join(&id)), sent);
    let map = admin.get("/api/v1/journeys/child-benefit/map");
    let step = |id: &str| {
        map["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(step("find")["self_emotions"]["negative"], 1, "{map}");
    assert_eq!(step("find")["self_significance"]["mean"], 5.0);
    assert_eq!(step("choose")["self_emotions"]["positive"], 1);
    let tasks = &map["self_reported"]["tasks"];
    assert_eq!(tasks[0]["task"], "find");
    assert_eq!(tasks[0]["seq"]["mean"], 2.0);
    assert_eq!(tasks[1]["seq"]["mean"], 6.0);
    assert_eq!(map["self_reported"]["sus"][0]["score"], 77.5);
    browser(
        &web.url,
        "map",
        &shots,
        &[("LAB_ADMIN", "admin"), ("LAB_PASSWORD", password)],
    );
    let events = std::fs::read_to_string(bundle.join("events.jsonl")).unwrap();
    for kind in [
        "task_start",
        "task_end",
        "\"help\"",
        "участник искал кнопку",
    ] {
        assert!(events.contains(kind), "{kind} in the bundle's events");
    }
    drop(console);
    drop(web);
    let _ = std::fs::remove_dir_all(&root);
}
