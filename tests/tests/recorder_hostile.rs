//! The real `lab-recorder` against hostile clients: what an attack probe
//! found, each test named after what broke.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab_model::{Bundle, EventSource, SessionStatus};
use lab_tests::{RecorderProcess, Xvfb, http, http_with, require, temp_dir};

/// Waits for the recorder to exit; panics if it takes longer than `limit`.
fn wait_exit(rec: RecorderProcess, limit: Duration) -> (bool, String, String, Duration) {
    let t = Instant::now();
    let mut rec = rec;
    loop {
        if rec.child.try_wait().unwrap().is_some() {
            let (ok, out, err) = rec.wait().unwrap();
            return (ok, out, err, t.elapsed());
        }
        if t.elapsed() > limit {
            rec.signal(libc::SIGKILL);
            let (_, out, err) = rec.wait().unwrap();
            panic!("recorder still running {limit:?} after the stop\nstdout: {out}\nstderr: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A half-sent request body held shutdown (20 s, unbounded) with the manifest
/// still `recording`, and an open WebSocket kept the process alive after the
/// manifest was written, so the bundle path was never printed.
#[test]
fn stop_finishes_the_bundle_within_3_s_despite_a_half_sent_body_and_an_open_websocket() {
    let out = temp_dir("hostile-stop");
    let mut rec = RecorderProcess::spawn(
        &["--test-sources", "--participant", "P10", "--consent", "C10"],
        &[],
        &out,
    )
    .unwrap();
    let (dir, url) = rec.wait_started().unwrap();
    let host = url.trim_start_matches("http://").to_string();
    let mut half = std::net::TcpStream::connect(&host).unwrap();
    write!(
        half,
        "POST /api/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"source\":"
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ws = rt.block_on(async {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{host}/ws"))
            .await
            .unwrap();
        ws
    });
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = http("POST", &format!("{url}/api/stop"), b"").unwrap();
    assert_eq!(status, 202);
    let (ok, stdout, stderr, took) = wait_exit(rec, Duration::from_secs(3));
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().last(), Some(dir.to_str().unwrap()));
    let m = Bundle::new(&dir).read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Complete);
    assert_eq!(m.stop_reason.as_deref(), Some("api"));
    println!("stop with a half-sent body and an open WebSocket: exited after {took:?}");
    // The WebSocket was closed by the recorder, not left dangling.
    rt.block_on(async {
        use futures_util::StreamExt;
        let end = tokio::time::timeout(Duration::from_secs(1), ws.next()).await;
        assert!(
            !matches!(
                end,
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))))
            ),
            "{end:?}"
        );
    });
    drop(half);
}

/// One unauthenticated `POST /api/clock/sync` with `ts_ns: i64::MIN` crashed
/// the recorder 2 s later (exit 101, manifest left `recording`).
#[test]
fn sync_sample_with_i64_min_no_longer_crashes_the_recorder() {
    let out = temp_dir("hostile-clock");
    let mut rec = RecorderProcess::spawn(
        &["--test-sources", "--participant", "P11", "--consent", "C11"],
        &[],
        &out,
    )
    .unwrap();
    let (dir, url) = rec.wait_started().unwrap();
    let (status, resp) = http(
        "POST",
        &format!("{url}/api/clock/sync"),
        br#"{"client":"x","t0":1,"t1":2,"ts_ns":-9223372036854775808}"#,
    )
    .unwrap();
    assert_eq!(status, 422, "{resp}");
    // Manifest refreshes (every 2 s segment) run the clock estimates.
    std::thread::sleep(Duration::from_secs(5));
    assert!(rec.child.try_wait().unwrap().is_none(), "recorder died");
    let (status, _) = http("POST", &format!("{url}/api/stop"), b"").unwrap();
    assert_eq!(status, 202);
    let (ok, _, stderr, _) = wait_exit(rec, Duration::from_secs(10));
    assert!(ok, "{stderr}");
    let m = Bundle::new(&dir).read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Complete);
    assert_eq!(m.events.rejected, 1);
    assert!(m.clock.clients.is_empty());
}

/// A tiny web server for the third-party site: serves `page` at every path
/// and the recorder's port (once known) at `/recorder-port`.
fn serve_site(page: &'static str, port: Arc<Mutex<Option<u16>>>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let site_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let (ctype, body) = if req.starts_with("GET /recorder-port") {
                let p = *port.lock().unwrap();
                ("text/plain", p.map(|p| p.to_string()).unwrap_or_default())
            } else {
                ("text/html; charset=utf-8", page.to_string())
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    site_port
}

/// A single-page app on a third-party origin that also tries everything a
/// hostile page could: synthetic clicks, posting markers and a stop to the
/// recorder, its own WebSocket with forged events, and reading the probe.
const SPA: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>start</title></head><body>
<p id="p">SPA</p>
<script>
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let port = '';
  while (!port) { port = await (await fetch('/recorder-port', { cache: 'no-store' })).text(); if (!port) await sleep(100); }
  const rec = 'http://127.0.0.1:' + port;
  await sleep(2500); // the probe connects and syncs
  history.pushState({}, '', '/step-2');
  await sleep(300);
  location.hash = '#details';
  await sleep(300);
  history.back();
  await sleep(300);
  history.replaceState({ same: true }, ''); // same URL: not a navigation
  document.getElementById('p').dispatchEvent(new MouseEvent('click', { bubbles: true, clientX: 5, clientY: 5 }));
  for (const path of ['/api/markers', '/api/events', '/api/stop']) {
    try { await fetch(rec + path, { method: 'POST', mode: 'no-cors', body: '{"type":"note","text":"forged"}' }); } catch (_) {}
    try { await fetch(rec + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"type":"note","text":"forged"}' }); } catch (_) {}
  }
  const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws');
  await new Promise((r) => { ws.onopen = r; ws.onerror = r; });
  ws.send(JSON.stringify({ type: 'hello', client: 'forger' }));
  ws.send(JSON.stringify({ type: 'event', id: 1, event: { source: 'browser', kind: 'scroll', data: { forged: true } } }));
  await sleep(500);
  // An error flood: the probe records a bounded number and says it dropped the rest.
  for (let i = 0; i < 2000; i++) setTimeout(() => { throw new Error('flood ' + i); }, 0);
  await sleep(1500);
  document.title = 'done probe=' + typeof window.__labProbe + ' config=' + typeof window.__LAB_PROBE_CONFIG;
  await sleep(300);
  history.pushState({}, '', '/finished');
})();
</script></body></html>"#;

/// Any page in the station's browser could stop, forge and flood the
/// recording; the probe wrapped history.pushState in the page's own world.
#[test]
fn third_party_page_cannot_forge_or_stop_and_its_spa_navigations_are_recorded() {
    require("chromium");
    let x = Xvfb::start(1280, 720).unwrap();
    let port = Arc::new(Mutex::new(None));
    let site = serve_site(SPA, port.clone());
    let out = temp_dir("hostile-spa");
    let page_url = format!("http://127.0.0.1:{site}/");
    let mut rec = RecorderProcess::spawn(
        &[
            "--test-sources",
            "--participant",
            "P12",
            "--consent",
            "C12",
            "--browser",
            &page_url,
            "--no-kiosk",
            "--browser-arg=--disable-gpu",
        ],
        &[("DISPLAY", &x.display)],
        &out,
    )
    .unwrap();
    let (dir, url) = rec.wait_started().unwrap();
    let rec_port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    *port.lock().unwrap() = Some(rec_port);
    let bundle = Bundle::new(&dir);
    let t = Instant::now();
    let events = loop {
        let (events, _) = bundle.read_events().unwrap();
        if events.iter().any(|e| {
            e.kind == "navigation"
                && e.data["url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/finished"))
        }) {
            break events;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the page did not finish; events: {events:#?}"
        );
        assert!(
            rec.child.try_wait().unwrap().is_none(),
            "the recorder stopped"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let navs: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.kind == "navigation")
        .map(|e| {
            (
                e.data["reason"].as_str().unwrap_or("").to_string(),
                e.data["url"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    println!("navigations: {navs:?}");
    let has =
        |reason: &str, suffix: &str| navs.iter().any(|(r, u)| r == reason && u.ends_with(suffix));
    assert!(has("load", "/"), "{navs:?}");
    assert!(has("push", "/step-2"), "{navs:?}");
    assert!(has("hash", "/step-2#details"), "{navs:?}");
    assert!(has("pop", "/step-2"), "{navs:?}");
    assert!(has("push", "/finished"), "{navs:?}");
    assert!(!navs.iter().any(|(r, _)| r == "replace"), "{navs:?}");
    // The page saw none of the probe's globals.
    let title = events
        .iter()
        .filter(|e| e.kind == "navigation")
        .filter_map(|e| e.data["title"].as_str())
        .find(|t| t.starts_with("done"))
        .expect("title change recorded");
    assert_eq!(title, "done probe=undefined config=undefined");
    // Nothing forged got in, and the browser events came through the probe's clock.
    assert!(
        !events.iter().any(|e| e.kind == "click"),
        "synthetic click recorded"
    );
    assert!(!events.iter().any(|e| e.kind == "marker"));
    assert!(!events.iter().any(|e| e.data.get("forged").is_some()));
    assert!(
        events
            .iter()
            .filter(|e| e.source == EventSource::Browser)
            .all(|e| e.uncertainty_ns.is_some()
                && e.client.as_deref().is_some_and(|c| c.starts_with("tab-")))
    );
    // The page's error flood is cut to the probe's page-kind budget (a burst
    // of 50, then 10/s), its drops are reported, and the navigations after it
    // (their own budget) still came through.
    let errors = events.iter().filter(|e| e.kind == "js_error").count();
    assert!(
        (1..=80).contains(&errors),
        "{errors} js_error events recorded"
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind == "probe_dropped"
                && e.data["dropped"].as_u64().is_some_and(|n| n > 1000)),
        "the drops are reported"
    );
    let (_, _, status) = http_with("GET", &format!("{url}/api/status"), &[], b"").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["stopping"], false);
    // no-cors posts (403: Origin), JSON posts (403; Chromium's preflight too),
    // and the page socket's event.
    let rejected = status["events"]["rejected"].as_u64().unwrap();
    assert!(rejected >= 4, "{status}");

    let (code, _) = http("POST", &format!("{url}/api/stop"), b"").unwrap();
    assert_eq!(code, 202);
    let (ok, stdout, stderr, _) = wait_exit(rec, Duration::from_secs(10));
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().last(), Some(dir.to_str().unwrap()));
    let m = bundle.read_manifest().unwrap();
    assert_eq!(
        (m.status, m.stop_reason.as_deref()),
        (SessionStatus::Complete, Some("api"))
    );
}

/// With its stderr (or stdout) closed, as when a `| tee` or an ssh session
/// goes away, the recorder panicked on its next log line ("stopping (api)"):
/// exit 101, manifest left `recording`, segments not finalised.
#[test]
fn a_closed_stderr_and_stdout_do_not_crash_the_stop() {
    let out = temp_dir("hostile-epipe");
    let mut rec = RecorderProcess::spawn(
        &["--test-sources", "--participant", "P13", "--consent", "C13"],
        &[],
        &out,
    )
    .unwrap();
    let (dir, url) = rec.wait_started().unwrap();
    drop(rec.child.stderr.take());
    drop(rec.child.stdout.take());
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = http("POST", &format!("{url}/api/stop"), b"").unwrap();
    assert_eq!(status, 202);
    let t = Instant::now();
    let code = loop {
        if let Some(s) = rec.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit {code:?}");
    let m = Bundle::new(&dir).read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Complete);
    assert_eq!(m.stop_reason.as_deref(), Some("api"));
}
