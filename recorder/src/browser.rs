//! Launches the station's Chromium with remote debugging and injects the
//! probe into every page over the DevTools protocol, so an unmodified site
//! (a live portal) is instrumented just like a prototype that includes
//! `probe.js` itself.
//!
//! We ask the browser to auto-attach to every new target and pause it until
//! we have registered the probe (`Page.addScriptToEvaluateOnNewDocument`),
//! so even the first script of the first page runs after the probe. CSP is
//! bypassed for instrumented pages because a portal's `connect-src` would
//! otherwise forbid the probe's WebSocket to the recorder.
//!
//! The probe runs in an isolated world (`worldName`), not the page's: it sees
//! the same DOM and events, but page scripts cannot see its globals, so the
//! per-recording token in its endpoint URL stays out of the site's reach, and
//! the site cannot call into it or undo its listeners. Lab pages (`file://`
//! or an origin in `recording.probe_origins`) also get a main-world bridge,
//! `BRIDGE_JS`, so they can `window.__labProbe.emit` their own events.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::server::{EndpointConfig, PROBE_JS};

/// Name of the isolated world the probe runs in.
const PROBE_WORLD: &str = "lab-probe";

/// The page-world half of the probe for lab pages: `window.__labProbe` with
/// `emit` and `ready`, forwarded to the isolated probe as DOM events. It
/// defines nothing on other pages. `__LAB_ORIGINS__` is replaced at launch.
const BRIDGE_JS: &str = include_str!("probe_bridge.js");

#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// Chromium executable (`chromium` on Debian).
    pub chromium: PathBuf,
    /// First page to open.
    pub url: String,
    /// Full screen without browser UI, as on a test station.
    pub kiosk: bool,
    /// Window size when not in kiosk mode.
    pub window: (u32, u32),
    pub extra_args: Vec<String>,
}

pub struct Browser {
    child: Child,
    profile: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    navigator: Navigator,
}

/// Opens pages in the station browser's first tab (the station console
/// shows the participant's self-report page this way, and returns to the
/// prototype after it).
#[derive(Clone)]
pub struct Navigator {
    cdp: Cdp,
    page: String,
}

impl Navigator {
    /// Opens `url` (http or https only) in the participant's tab.
    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "only http(s) pages are opened in the station browser"
        );
        self.cdp
            .call(Some(&self.page), "Page.navigate", json!({ "url": url }))
            .await?;
        Ok(())
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A DevTools connection: one WebSocket, flat sessions.
#[derive(Clone)]
struct Cdp {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next: Arc<AtomicU64>,
}

impl Cdp {
    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        self.out
            .send(msg.to_string())
            .context("devtools connection closed")?;
        let reply = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .with_context(|| format!("{method}: no answer from the browser"))?
            .context("devtools connection closed")?;
        if let Some(err) = reply.get("error") {
            bail!("{method} failed: {err}");
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }
}

impl Browser {
    /// Starts Chromium, instruments every page with the probe pointed at the
    /// endpoint (token included) and opens `opts.url`.
    pub async fn launch(opts: &BrowserOptions, endpoint: &EndpointConfig) -> anyhow::Result<Self> {
        let profile = std::env::temp_dir().join(format!(
            "lab-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(profile.join("Default"))
            .with_context(|| format!("failed to create {}", profile.display()))?;
        // No «Translate this page?» bubble over a Russian page in the
        // recording: Chromium 156 shows it despite `--disable-features=Translate`;
        // the profile's preference turns it off.
        std::fs::write(
            profile.join("Default").join("Preferences"),
            r#"{"translate":{"enabled":false}}"#,
        )
        .with_context(|| format!("failed to write {}", profile.display()))?;
        let mut cmd = Command::new(&opts.chromium);
        cmd.arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.display()))
            .args([
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                "--autoplay-policy=no-user-gesture-required",
                "--password-store=basic",
                "--disable-session-crashed-bubble",
                "--window-position=0,0",
            ])
            .arg(format!("--window-size={},{}", opts.window.0, opts.window.1));
        if opts.kiosk {
            cmd.arg("--kiosk");
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--no-sandbox");
        }
        cmd.args(&opts.extra_args).arg("about:blank");
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("failed to start {}", opts.chromium.display()))?;

        let port_file = profile.join("DevToolsActivePort");
        let mut ws_url = None;
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    ws_url = Some(format!("ws://127.0.0.1:{port}{path}"));
                    break;
                }
            }
            if let Some(status) = child.try_wait()? {
                bail!("{} exited at start with {status}", opts.chromium.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ws_url = ws_url.context("chromium did not open its DevTools port within 20 s")?;
        let (ws, _) = tokio_tungstenite::connect_async(&ws_url)
            .await
            .context("failed to connect to DevTools")?;
        let (mut sink, mut stream) = ws.split();

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let pending: Pending = Arc::default();
        let (event_tx, mut event_rx) = mpsc::unbounded_channel::<Value>();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(Message::Text(m.into())).await.is_err() {
                    break;
                }
            }
        });
        let pending2 = pending.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    if let Some(tx) = pending2.lock().expect("pending lock").remove(&id) {
                        let _ = tx.send(v);
                    }
                } else if v.get("method").is_some() {
                    let _ = event_tx.send(v);
                }
            }
        });
        let cdp = Cdp {
            out: out_tx,
            pending,
            next: Arc::new(AtomicU64::new(1)),
        };
        let source = Scripts {
            probe: probe_source(endpoint),
            bridge: BRIDGE_JS.replace(
                "__LAB_ORIGINS__",
                &json!(endpoint.probe_origins).to_string(),
            ),
        };

        cdp.call(
            None,
            "Target.setAutoAttach",
            json!({ "autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true }),
        )
        .await?;
        let targets = cdp.call(None, "Target.getTargets", json!({})).await?;
        let mut first_page = None;
        let mut attached = HashSet::new();
        for t in targets["targetInfos"].as_array().into_iter().flatten() {
            if t["type"] == "page" {
                let target = t["targetId"].as_str().unwrap_or_default().to_string();
                let r = cdp
                    .call(
                        None,
                        "Target.attachToTarget",
                        json!({ "targetId": target, "flatten": true }),
                    )
                    .await?;
                let session = r["sessionId"].as_str().unwrap_or_default().to_string();
                instrument(&cdp, &session, &source).await?;
                attached.insert(target);
                first_page.get_or_insert(session);
            }
        }
        let first_page = first_page.context("chromium has no page to instrument")?;
        cdp.call(
            Some(&first_page),
            "Page.navigate",
            json!({ "url": opts.url }),
        )
        .await?;

        // New tabs and popups: instrument each before it runs.
        let cdp2 = cdp.clone();
        let attacher = tokio::spawn(async move {
            while let Some(ev) = event_rx.recv().await {
                if ev["method"] != "Target.attachedToTarget" {
                    continue;
                }
                let p = &ev["params"];
                let session = p["sessionId"].as_str().unwrap_or_default().to_string();
                let target = p["targetInfo"]["targetId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if p["targetInfo"]["type"] == "page" && attached.insert(target) {
                    if let Err(e) = instrument(&cdp2, &session, &source).await {
                        tracing::warn!("could not instrument a new page: {e:#}");
                    }
                } else {
                    let _ = cdp2
                        .call(Some(&session), "Runtime.runIfWaitingForDebugger", json!({}))
                        .await;
                }
            }
        });
        tracing::info!(
            "station browser open at {} with the probe injected",
            opts.url
        );
        Ok(Self {
            child,
            profile,
            tasks: vec![writer, reader, attacher],
            navigator: Navigator {
                cdp,
                page: first_page,
            },
        })
    }

    pub fn navigator(&self) -> Navigator {
        self.navigator.clone()
    }

    pub async fn close(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The isolated-world probe source: its config, then the probe. This is the
/// only place the token is written; `/probe.js` over HTTP never has it.
fn probe_source(endpoint: &EndpointConfig) -> String {
    let config =
        json!({ "endpoint": endpoint.probe_ws_url(), "labOrigins": endpoint.probe_origins });
    format!("window.__LAB_PROBE_CONFIG = Object.freeze({config});\n{PROBE_JS}")
}

struct Scripts {
    probe: String,
    bridge: String,
}

async fn instrument(cdp: &Cdp, session: &str, source: &Scripts) -> anyhow::Result<()> {
    let s = Some(session);
    cdp.call(s, "Page.enable", json!({})).await?;
    cdp.call(s, "Page.setBypassCSP", json!({ "enabled": true }))
        .await?;
    cdp.call(
        s,
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": source.probe, "worldName": PROBE_WORLD }),
    )
    .await?;
    cdp.call(
        s,
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": source.bridge }),
    )
    .await?;
    cdp.call(s, "Runtime.runIfWaitingForDebugger", json!({}))
        .await?;
    Ok(())
}
