//! The recording the console runs: `lab-recorder record` as a **separate
//! process** in its own process group, so a console that is refreshed,
//! closed, or killed with `kill -9` leaves the recording going. What the
//! console knows about it (pid, endpoint, tasks, what the participant still
//! has to answer) is kept in `OUT/.console/live.json`, written atomically at
//! every change; a restarted console re-attaches to a recorder that still
//! runs, or hands a recording that ended meanwhile to the upload queue.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lab_model::study::Study;
use lab_model::{Bundle, SessionStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::lab_client::LabClient;

/// Where the console keeps its own files, beside the bundles.
pub const CONSOLE_DIR: &str = ".console";
const LIVE_FILE: &str = "live.json";
/// Written as soon as the recorder is spawned, until `live.json` replaces it.
const STARTING_FILE: &str = "starting.json";

/// A task of the running session, on the session clock.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskRun {
    pub id: String,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
}

/// What the participant is asked now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    /// Ratings of the steps a task covered, and its SEQ.
    Task { task: String },
    /// The System Usability Scale, at the end.
    Sus,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LiveRecord {
    pub pid: i32,
    pub bundle: PathBuf,
    /// The recording's endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub session_id: String,
    pub participant: String,
    pub study_id: String,
    pub started_unix_ms: i64,
    pub tasks: Vec<TaskRun>,
    #[serde(default)]
    pub pending: Vec<Pending>,
    /// Answers given: `task:<id>`, `sus`.
    #[serde(default)]
    pub answered: Vec<String>,
    /// The recorder runs a station browser the console can show pages in.
    #[serde(default)]
    pub browser: bool,
}

/// What the operator typed to start a session.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    pub participant: String,
    pub consent_ref: String,
    /// The operator confirms the participant agreed to the consent text.
    pub consent_confirmed: bool,
    #[serde(default)]
    pub moderator: String,
}

/// How to start `lab-recorder record`.
#[derive(Debug, Clone)]
pub struct RecorderCommand {
    pub exe: PathBuf,
    pub out: PathBuf,
    pub station: Option<PathBuf>,
    pub test_sources: bool,
    /// The prototype's address, opened in the station browser.
    pub browser: Option<String>,
    pub chromium: Option<PathBuf>,
    pub browser_args: Vec<String>,
    /// Stream live to this lab server with this station token (`--live`).
    pub live: Option<(String, String)>,
    /// The study's journey file (the steps observers see entered live).
    pub journey: Option<PathBuf>,
}

fn live_path(out: &Path) -> PathBuf {
    out.join(CONSOLE_DIR).join(LIVE_FILE)
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl LiveRecord {
    pub fn save(&self, out: &Path) -> anyhow::Result<()> {
        let path = live_path(out);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        lab_model::bundle::write_atomic(&path, &serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    pub fn load(out: &Path) -> Option<LiveRecord> {
        let bytes = std::fs::read(live_path(out)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn clear(out: &Path) {
        let _ = std::fs::remove_file(live_path(out));
        let _ = std::fs::remove_file(out.join(CONSOLE_DIR).join(STARTING_FILE));
    }

    pub fn client(&self) -> anyhow::Result<LabClient> {
        Ok(LabClient::local(&self.endpoint)?)
    }
}

/// Whether `pid` is a running `lab-recorder record` (not a zombie, not a
/// reused pid of another program).
pub fn recorder_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last `)`.
    let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
    if state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X')) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
            args.iter().any(|a| *a == b"record")
        })
        .unwrap_or(false)
}

/// Checks what the operator typed: a participant code of the study's form
/// (never a name), a consent reference, the consent confirmed.
pub fn check_new(study: &Study, s: &NewSession) -> Result<(), String> {
    if !s.consent_confirmed {
        return Err(
            "подтвердите, что участник дал согласие / confirm that the participant consented"
                .into(),
        );
    }
    if s.consent_ref.trim().is_empty() {
        return Err("укажите номер согласия / the consent reference is required".into());
    }
    if !lab_model::bundle::valid_participant(s.consent_ref.trim()) {
        return Err("номер согласия — латинские буквы, цифры, - и _ / the consent reference is Latin letters, digits, - and _".into());
    }
    if !study.participant_ok(&s.participant) {
        return Err(format!(
            "код участника должен иметь вид {} (# — цифра, A — латинская буква), это не имя / the participant code has the form {}",
            study.participant_pattern, study.participant_pattern
        ));
    }
    if !s.moderator.is_empty() && !lab_model::bundle::valid_participant(&s.moderator) {
        return Err("код модератора — латинские буквы и цифры / the moderator code is Latin letters and digits".into());
    }
    Ok(())
}

/// Starts the recording process and waits (≤ 30 s) until its endpoint runs.
pub async fn start(
    cmd: &RecorderCommand,
    study: &Study,
    s: &NewSession,
) -> anyhow::Result<LiveRecord> {
    let logs = cmd.out.join(CONSOLE_DIR);
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("record-{}.log", now_unix_ms()));
    let log = std::fs::File::create(&log_path)?;
    let mut c = Command::new(&cmd.exe);
    c.arg("record")
        .arg("--out")
        .arg(&cmd.out)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--participant", &s.participant])
        .args(["--consent", s.consent_ref.trim()])
        .args(["--study", &study.title])
        .args(["--life-situation", &study.life_situation]);
    if !s.moderator.is_empty() {
        c.args(["--moderator", &s.moderator]);
    }
    if let Some(st) = &cmd.station {
        c.arg("--station").arg(st);
    }
    if cmd.test_sources {
        c.arg("--test-sources");
    }
    if let Some(url) = &cmd.browser {
        c.args(["--browser", url]);
        if let Some(ch) = &cmd.chromium {
            c.arg("--chromium").arg(ch);
        }
        for a in &cmd.browser_args {
            c.arg(format!("--browser-arg={a}"));
        }
    }
    if let Some(j) = &cmd.journey {
        c.arg("--journey").arg(j);
    }
    if let Some((server, token)) = &cmd.live {
        // The token by environment, never on the command line (`ps`).
        c.args(["--live-server", server])
            .env("LAB_STATION_TOKEN", token);
    }
    // Its own process group: a console stopped by Ctrl-C (or killed) does
    // not take the recording with it.
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", cmd.exe.display()))?;
    let pid = child.id() as i32;
    let spawned_ms = now_unix_ms();
    let starting =
        json!({ "pid": pid, "participant": s.participant, "spawned_unix_ms": spawned_ms });
    lab_model::bundle::write_atomic(&logs.join(STARTING_FILE), starting.to_string().as_bytes())?;
    // Reaped here while the console runs; after a console restart the
    // recorder is re-parented and reaped by init.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let st = child.wait();
        let _ = done_tx.send(st);
    });
    let t0 = Instant::now();
    loop {
        if let Ok(st) = done_rx.try_recv() {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!("запись не началась / the recording did not start ({st:?}): {tail}");
        }
        let (out, p) = (cmd.out.clone(), pid);
        let found = tokio::task::spawn_blocking(move || find_bundle(&out, p)).await?;
        if let Some((bundle, endpoint, session_id)) = found {
            let tasks = study
                .tasks
                .iter()
                .map(|t| TaskRun {
                    id: t.id.clone(),
                    ..Default::default()
                })
                .collect();
            let live = LiveRecord {
                pid,
                bundle,
                endpoint,
                session_id,
                participant: s.participant.clone(),
                study_id: study.id.clone(),
                started_unix_ms: now_unix_ms(),
                tasks,
                pending: vec![],
                answered: vec![],
                browser: cmd.browser.is_some(),
            };
            live.save(&cmd.out)?;
            let _ = std::fs::remove_file(logs.join(STARTING_FILE));
            return Ok(live);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            // SAFETY: kill(2) of the child we started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            bail!("запись не ответила за 30 с / the recorder did not come up within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bundle a recorder with this pid writes, its endpoint and session id.
fn find_bundle(out: &Path, pid: i32) -> Option<(PathBuf, String, String)> {
    for e in std::fs::read_dir(out).ok()?.flatten() {
        let b = Bundle::new(e.path());
        let Ok(m) = b.read_manifest() else { continue };
        // A reused pid of an old, finished bundle is not this recording.
        if m.recorder.pid != pid as u32 || m.status != SessionStatus::Recording {
            continue;
        }
        // `http://ADDR`, the endpoint's root.
        let Some(endpoint) = m.recorder.events_url else {
            continue;
        };
        return Some((e.path(), endpoint, m.session_id));
    }
    None
}

/// A recording whose console was killed before it wrote `live.json`: found
/// by the pid in `starting.json`, if that recorder still runs.
pub async fn recover_start(out: &Path, study: &Study) -> Option<LiveRecord> {
    let path = out.join(CONSOLE_DIR).join(STARTING_FILE);
    let v: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let pid = v["pid"].as_i64()? as i32;
    if !recorder_alive(pid) {
        let _ = std::fs::remove_file(&path);
        return None;
    }
    let (o, p) = (out.to_path_buf(), pid);
    let mut found = None;
    for _ in 0..100 {
        let (o2, p2) = (o.clone(), p);
        found = tokio::task::spawn_blocking(move || find_bundle(&o2, p2))
            .await
            .ok()?;
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (bundle, endpoint, session_id) = found?;
    let live = LiveRecord {
        pid,
        bundle,
        endpoint,
        session_id,
        participant: v["participant"].as_str().unwrap_or_default().to_string(),
        study_id: study.id.clone(),
        started_unix_ms: v["spawned_unix_ms"].as_i64().unwrap_or_else(now_unix_ms),
        tasks: study
            .tasks
            .iter()
            .map(|t| TaskRun {
                id: t.id.clone(),
                ..Default::default()
            })
            .collect(),
        pending: vec![],
        answered: vec![],
        browser: false,
    };
    live.save(out).ok()?;
    let _ = std::fs::remove_file(&path);
    Some(live)
}

/// The recorder's `/api/status`.
pub async fn status(live: &LiveRecord) -> anyhow::Result<Value> {
    let mut c = live.client()?;
    Ok(c.get_json::<Value>("status").await?)
}

/// A marker on the session clock; its time (ns).
pub async fn marker(live: &LiveRecord, kind: &str, label: &str, text: &str) -> anyhow::Result<i64> {
    let mut c = live.client()?;
    let v: Value = c
        .post_json(
            "markers",
            &json!({ "type": kind, "label": label, "text": text }),
        )
        .await?;
    v["t_ns"].as_i64().context("the recorder did not say when")
}

/// One of the participant's answers as an event of source `participant`.
/// `id` is the same when an answer is sent again (after a failure half way),
/// so the recorder writes each event once.
pub async fn participant_event(
    live: &LiveRecord,
    id: &str,
    kind: &str,
    data: Value,
) -> anyhow::Result<()> {
    let mut c = live.client()?;
    let _: Value = c
        .post_json(
            "events?client=station-console",
            &json!({ "source": "participant", "kind": kind, "data": data, "id": id }),
        )
        .await?;
    Ok(())
}

/// Shows `url` in the station browser (when the recording has one).
pub async fn show(live: &LiveRecord, url: &str) -> anyhow::Result<()> {
    let mut c = live.client()?;
    let _: Value = c.post_json("browser/open", &json!({ "url": url })).await?;
    Ok(())
}

/// Asks the recorder to stop and waits (≤ 60 s) for the process to end;
/// the bundle's final status.
pub async fn stop(live: &LiveRecord) -> anyhow::Result<SessionStatus> {
    if recorder_alive(live.pid) {
        let mut c = live.client()?;
        let r: Result<Value, _> = c.post_json("stop", &json!({})).await;
        if let Err(e) = r {
            tracing::warn!("stop request: {e}; sending SIGTERM");
            // SAFETY: kill(2) of the recorder this console started.
            unsafe { libc::kill(live.pid, libc::SIGTERM) };
        }
    }
    let t0 = Instant::now();
    while recorder_alive(live.pid) {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("запись не остановилась за 60 с / the recorder did not stop within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Bundle::new(&live.bundle).read_manifest()?.status)
}
