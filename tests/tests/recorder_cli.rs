//! The recorder as a user runs it: test sources, a real GStreamer pipeline,
//! bundles checked with ffprobe and an independent GStreamer decode.

use std::time::{Duration, Instant};

use lab_model::{Bundle, SegmentState, SessionStatus};
use lab_tests::{RecorderProcess, bin, ffprobe, http, temp_dir};

#[test]
fn test_sources_for_six_seconds_give_a_complete_decodable_bundle() {
    let out = temp_dir("six");
    let o = std::process::Command::new(bin("lab-recorder"))
        .args([
            "record",
            "--test-sources",
            "--duration",
            "6",
            "--participant",
            "P01",
            "--consent",
            "C01",
        ])
        .args(["--listen", "127.0.0.1:0", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = stdout.lines().last().expect("bundle path on stdout");
    let bundle = Bundle::new(dir);
    let m = bundle.read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Complete);
    assert_eq!((m.participant.as_str(), m.consent.as_str()), ("P01", "C01"));
    assert!(
        m.segments.iter().all(|s| s.state == SegmentState::Closed),
        "{:?}",
        m.segments
    );
    let mut main_end = 0.0f64;
    for s in &m.segments {
        let (video, audio, end) = ffprobe(&bundle.dir.join(&s.file)).unwrap();
        assert!(video && audio, "{} lacks video or audio", s.file);
        if s.group == "main" {
            main_end = main_end.max(end);
        }
    }
    println!(
        "six-second recording: {} segments, main group ends at {main_end:.3} s",
        m.segments.len()
    );
    assert!((5.5..=6.6).contains(&main_end), "recorded {main_end} s");
    assert!(m.segments.iter().any(|s| s.group == "camera"));
}

#[test]
fn without_consent_nothing_is_written() {
    let out = temp_dir("noconsent").join("sessions");
    for extra in [&[][..], &["--consent", ""][..], &["--consent", "   "][..]] {
        let o = std::process::Command::new(bin("lab-recorder"))
            .args([
                "record",
                "--test-sources",
                "--duration",
                "2",
                "--participant",
                "P01",
            ])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("consent is required"), "{err}");
        assert!(!out.exists(), "{} was created", out.display());
    }
}

#[test]
fn kill_9_keeps_acknowledged_events_and_the_media_up_to_the_crash() {
    let out = temp_dir("kill9");
    let mut rec = RecorderProcess::spawn(
        &["--test-sources", "--participant", "P02", "--consent", "C02"],
        &[],
        &out,
    )
    .unwrap();
    let (dir, url) = rec.wait_started().unwrap();
    let started = Instant::now();
    // Acknowledged events until the kill.
    let mut acked = Vec::new();
    while started.elapsed() < Duration::from_secs(5) {
        let body = format!(
            r#"{{"source":"observer","kind":"note","data":{{"n":{}}}}}"#,
            acked.len()
        );
        let (status, resp) = http("POST", &format!("{url}/api/events"), body.as_bytes()).unwrap();
        assert_eq!(status, 201, "{resp}");
        let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
        acked.push(v["seq"].as_u64().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    rec.signal(libc::SIGKILL);
    let _ = rec.child.wait();

    let bundle = Bundle::new(&dir);
    assert_eq!(
        bundle.read_manifest().unwrap().status,
        SessionStatus::Recording
    );
    let (events, _torn) = bundle.read_events().unwrap();
    for seq in &acked {
        assert!(
            events.iter().any(|e| e.seq == *seq),
            "acknowledged event {seq} lost"
        );
    }
    // A power cut can tear the last line inside a Cyrillic character: the
    // bundle must stay readable, and `recover` must repair the log while
    // keeping the torn bytes.
    let torn_tail = "{\"seq\":999999,\"t_ns\":1,\"source\":\"operator\",\"kind\":\"marker\",\"data\":{\"text\":\"Задание".as_bytes();
    let torn_tail = &torn_tail[..torn_tail.len() - 1]; // half of «е»
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(bundle.events_path())
            .unwrap();
        f.write_all(torn_tail).unwrap();
    }
    let (_, torn) = bundle
        .read_events()
        .expect("a torn UTF-8 tail is tolerated");
    assert_eq!(torn, 1);
    let o = std::process::Command::new(bin("lab-recorder"))
        .arg("recover")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("torn"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        bundle.read_events().unwrap().1,
        0,
        "the log ends on a whole event after recover"
    );
    assert!(
        std::fs::read(bundle.events_path())
            .unwrap()
            .ends_with(b"\n")
    );
    assert!(
        std::fs::read(bundle.torn_events_path())
            .unwrap()
            .ends_with(torn_tail),
        "torn bytes kept"
    );
    let m = bundle.read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Interrupted);
    let mut decodable = 0.0f64;
    for s in m.segments.iter().filter(|s| s.group == "main") {
        let (video, _audio, end) = ffprobe(&dir.join(&s.file)).unwrap();
        assert!(video, "{}", s.file);
        decodable = decodable.max(end);
    }
    let recorded_for = started.elapsed().as_secs_f64();
    println!(
        "kill -9 after {recorded_for:.2} s of events: {decodable:.2} s decodable, {} acknowledged events all kept, manifest says {:.2} s",
        acked.len(),
        m.duration_ns.unwrap_or(0) as f64 / 1e9
    );
    assert!(decodable >= 3.0, "only {decodable} s decodable");
    // The documented bound: at most ~2 s lost at the end (open GOP + muxer).
    assert!(
        decodable >= recorded_for - 2.0,
        "lost more than 2 s: {decodable} of {recorded_for}"
    );
}

#[test]
fn malformed_events_are_rejected_counted_and_never_stop_the_recording() {
    let out = temp_dir("malformed");
    let mut rec = RecorderProcess::spawn(
        &["--test-sources", "--participant", "P03", "--consent", "C03"],
        &[],
        &out,
    )
    .unwrap();
    let (dir, url) = rec.wait_started().unwrap();
    let events = format!("{url}/api/events");
    let huge = format!(
        r#"{{"source":"browser","kind":"x","data":{{"s":"{}"}}}}"#,
        "x".repeat(40_000)
    );
    let bad: Vec<(&[u8], u16)> = vec![
        (b"not json", 422),
        (b"{}", 422),
        (
            br#"{"source":"browser","kind":"click","data":{"x":1}}"#,
            422,
        ),
        (br#"{"source":"martian","kind":"x"}"#, 422),
        (
            br#"{"source":"browser","kind":"DROP TABLE","data":{}}"#,
            422,
        ),
        (br#"{"source":"browser","kind":"x","t":"yesterday"}"#, 422),
        (b"\xff\xfe\x00", 422),
        (huge.as_bytes(), 413),
    ];
    for (body, want) in &bad {
        let (status, resp) = http("POST", &events, body).unwrap();
        assert_eq!(
            status,
            *want,
            "{}: {resp}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        assert!(resp.contains("error"), "{resp}");
    }
    let (status, _) = http("POST", &format!("{url}/api/markers"), b"[1,2]").unwrap();
    assert_eq!(status, 422);
    let (status, _) = http(
        "POST",
        &format!("{url}/api/markers"),
        r#"{"type":"task_start","label":"Задание 1"}"#.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201);
    let good =
        br#"{"source":"browser","kind":"click","data":{"x":1,"y":2,"selector":"button.next"}}"#;
    let (status, _) = http("POST", &events, good).unwrap();
    assert_eq!(status, 201);

    // The WebSocket path counts its malformed frames too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ws_rejects = rt.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws", url.replace("http://", "ws://"))).await.unwrap();
        let frames = [
            "garbage",
            r#"{"type":"teleport"}"#,
            r#"{"type":"event","id":7,"event":{"source":"browser","kind":"click","data":{}}}"#,
        ];
        let mut rejects = 0;
        for f in frames {
            ws.send(Message::Text(f.into())).await.unwrap();
            let reply = ws.next().await.unwrap().unwrap().into_text().unwrap();
            assert!(reply.contains("reject"), "{reply}");
            rejects += 1;
        }
        ws.send(Message::Text(r#"{"type":"event","id":8,"event":{"source":"browser","kind":"scroll","data":{"y":10}}}"#.into()))
            .await
            .unwrap();
        let reply = ws.next().await.unwrap().unwrap().into_text().unwrap();
        assert!(reply.contains("\"ack\"") && reply.contains("\"id\":8"), "{reply}");
        // A resend of an event whose ack the probe missed is acknowledged, not re-recorded.
        ws.send(Message::Text(r#"{"type":"event","id":8,"event":{"source":"browser","kind":"scroll","data":{"y":10}}}"#.into()))
            .await
            .unwrap();
        let again = ws.next().await.unwrap().unwrap().into_text().unwrap();
        assert!(again.contains("\"duplicate\":true"), "{again}");
        let seq = |r: &str| serde_json::from_str::<serde_json::Value>(r).unwrap()["seq"].clone();
        assert_eq!(seq(&reply), seq(&again));
        rejects
    });

    let (status, _) = http("POST", &format!("{url}/api/stop"), b"").unwrap();
    assert_eq!(status, 202);
    let (ok, stdout, stderr) = rec.wait().unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().last(), Some(dir.to_str().unwrap()));
    let bundle = Bundle::new(&dir);
    let m = bundle.read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Complete);
    assert_eq!(m.stop_reason.as_deref(), Some("api"));
    let rejected = bad.len() as u64 + 1 + ws_rejects;
    assert_eq!((m.events.accepted, m.events.rejected), (3, rejected));
    let (events, torn) = bundle.read_events().unwrap();
    assert_eq!(torn, 0);
    let kinds: Vec<_> = events
        .iter()
        .filter(|e| !e.kind.starts_with("system."))
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["marker", "click", "scroll"]);
    println!("malformed events: {rejected} rejected and counted, 3 accepted, recording completed");
}

#[test]
fn sigterm_finalizes_the_bundle() {
    let out = temp_dir("sigterm");
    let mut rec = RecorderProcess::spawn(
        &["--test-sources", "--participant", "P04", "--consent", "C04"],
        &[],
        &out,
    )
    .unwrap();
    let (dir, _) = rec.wait_started().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    rec.signal(libc::SIGTERM);
    let (ok, _, stderr) = rec.wait().unwrap();
    assert!(ok, "{stderr}");
    let m = Bundle::new(&dir).read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Complete);
    assert_eq!(m.stop_reason.as_deref(), Some("signal: terminate"));
    assert!(m.segments.iter().all(|s| s.state == SegmentState::Closed));
}

/// Mounting a small tmpfs needs root; CI runs as root, so there it always runs.
fn small_filesystem(size_mib: u32) -> Option<std::path::PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED disk-full test: mounting a small tmpfs needs root (CI runs as root)");
        return None;
    }
    let dir = temp_dir("diskfull").join("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs failed");
    Some(dir)
}

#[test]
fn disk_full_stops_cleanly_with_a_valid_bundle() {
    let Some(mnt) = small_filesystem(12) else {
        return;
    };
    let o = std::process::Command::new(bin("lab-recorder"))
        .args([
            "record",
            "--test-sources",
            "--duration",
            "60",
            "--participant",
            "P05",
            "--consent",
            "C05",
        ])
        .args(["--listen", "127.0.0.1:0", "--out"])
        .arg(&mnt)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let result = || {
        assert!(
            !o.status.success(),
            "a full disk must not look like success"
        );
        assert!(stderr.contains("disk full"), "{stderr}");
        let dir = stdout.lines().last().expect("bundle path still printed");
        let bundle = Bundle::new(dir);
        let m = bundle.read_manifest().unwrap();
        assert_eq!(m.status, SessionStatus::Interrupted);
        assert!(
            m.stop_reason.as_deref().unwrap_or("").contains("disk full"),
            "{:?}",
            m.stop_reason
        );
        let (events, torn) = bundle.read_events().unwrap();
        assert_eq!(torn, 0);
        assert!(events.iter().any(|e| e.kind == "system.recording_stopped"));
        let closed: Vec<_> = m
            .segments
            .iter()
            .filter(|s| s.state == SegmentState::Closed)
            .collect();
        assert!(!closed.is_empty(), "{:?}", m.segments);
        for s in &closed {
            let (video, audio, _) = ffprobe(&bundle.dir.join(&s.file)).unwrap();
            assert!(video && audio, "{}", s.file);
        }
        println!(
            "disk full: stopped at {:.1} s with {} closed segments intact, reason: {}",
            m.duration_ns.unwrap_or(0) as f64 / 1e9,
            closed.len(),
            m.stop_reason.unwrap_or_default()
        );
    };
    let outcome = std::panic::catch_unwind(result);
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

/// A test that fails while a recording runs stops that recording: the
/// recorder gets SIGTERM when the thread that started it ends, finalizes its
/// bundle and exits, instead of recording on and loading the machine for
/// every test after it.
#[test]
fn a_failing_test_leaves_no_recording_running() {
    let out = temp_dir("orphan");
    let out2 = out.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = std::thread::spawn(move || {
        let mut rec = RecorderProcess::spawn(
            &["--test-sources", "--participant", "P31", "--consent", "C31"],
            &[],
            &out2,
        )
        .unwrap();
        let (dir, _) = rec.wait_started().unwrap();
        tx.send((rec.child.id(), dir)).unwrap();
        panic!("the test fails while recording");
    })
    .join();
    assert!(failed.is_err());
    let (pid, dir) = rx.recv().unwrap();
    // The Child was dropped unwaited: reap it here (it is still ours).
    let t = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) on our own child, WNOHANG.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if r > 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "recorder {pid} still running 20 s after its test failed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the recorder did not stop politely: wait status {status:#x}"
    );
    // It stopped politely: the bundle is finalized.
    let m = Bundle::new(&dir).read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Complete, "{m:?}");
    std::fs::remove_dir_all(&out).unwrap();
}
