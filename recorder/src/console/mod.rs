//! `lab-recorder console`: the station service a lab operator runs whole
//! sessions from, in a browser (Russian, English available): the study's
//! tasks and consent text, a new session (pseudonymous code, consent
//! reference, confirmation), the pre-flight check, Start/Stop, task and
//! note markers, elapsed time per task, live event counts and warnings; the
//! participant's self-report page after each task and SUS at the end; the
//! upload queue to the lab server.
//!
//! The recording is a separate `lab-recorder record` process (`live`), so
//! the console can be refreshed, closed or killed without stopping it; a
//! restarted console re-attaches. `docs/station-console.md` is the manual.

mod checks;
mod live;
mod routes;
mod state;
pub mod uploads;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use lab_model::journey::Journey;
use lab_model::study::Study;
use tokio::sync::Mutex;

pub use live::{CONSOLE_DIR, LiveRecord, NewSession, Pending, RecorderCommand, TaskRun};
pub use state::{Console, ConsoleOptions};
use uploads::UploadQueue;

/// Loads the study: the local file, else the lab server's set-ups.
async fn load_study(opts: &ConsoleOptions) -> anyhow::Result<(Study, String)> {
    if let Some(f) = &opts.study_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the study set-up {}", f.display()))?;
        let s = Study::from_toml(&text).with_context(|| format!("in {}", f.display()))?;
        return Ok((s, f.display().to_string()));
    }
    let Some((url, token)) = &opts.server else {
        anyhow::bail!(
            "no study set-up: give --study FILE (docs/study-format.md) or --server URL with a station token"
        );
    };
    let mut client = crate::lab_client::LabClient::new(url, token)?;
    #[derive(serde::Deserialize)]
    struct Setups {
        setups: Vec<Study>,
    }
    // The last set-up pulled is kept, so a station that starts while the
    // lab server is out of reach still runs its study.
    let cache = opts.out.join(CONSOLE_DIR).join("study.toml");
    let all: Setups = match client.get_json("setups").await {
        Ok(all) => all,
        Err(e) => {
            let cached = std::fs::read_to_string(&cache)
                .ok()
                .and_then(|t| Study::from_toml(&t).ok())
                .filter(|s| opts.study_id.as_ref().is_none_or(|id| *id == s.id));
            return match cached {
                Some(s) => {
                    tracing::warn!(
                        "{url} is out of reach ({e}); using the set-up pulled last time"
                    );
                    Ok((
                        s,
                        format!(
                            "{} (копия: сервер недоступен / a copy: the server is out of reach)",
                            cache.display()
                        ),
                    ))
                }
                None => Err(anyhow::Error::new(e).context(format!(
                    "cannot read study set-ups from {url}, and none was pulled before"
                ))),
            };
        }
    };
    let study = match &opts.study_id {
        Some(id) => all.setups.into_iter().find(|s| &s.id == id),
        None if all.setups.len() == 1 => all.setups.into_iter().next(),
        None => anyhow::bail!(
            "the lab server has {} study set-ups; choose one with --study-id ({})",
            all.setups.len(),
            all.setups
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    .context("the lab server has no such study set-up")?;
    study.validate()?;
    if let Err(e) = lab_model::bundle::write_atomic(&cache, study.to_toml().as_bytes()) {
        tracing::warn!(
            "cannot keep a copy of the set-up in {}: {e}",
            cache.display()
        );
    }
    Ok((study, format!("{url} (GET /api/v1/setups)")))
}

/// Runs the console until Ctrl-C / SIGTERM. A recording in progress goes on.
pub async fn run(mut opts: ConsoleOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(opts.out.join(CONSOLE_DIR))
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    if !opts.listen.ip().is_loopback() && opts.console_token.is_none() {
        anyhow::bail!(
            "--listen {} reaches beyond this machine: give --console-token-file FILE too",
            opts.listen
        );
    }
    let (study, study_source) = load_study(&opts).await?;
    let resolved = Journey::resolve(None, &opts.journeys, Some(&study.life_situation))
        .ok()
        .flatten();
    // The recording gets it too: live observers see the step entered.
    opts.recorder.journey = resolved.as_ref().map(|r| r.path.clone());
    let journey = resolved.map(|r| r.journey);
    let station = match &opts.recorder.station {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("failed to read {}", p.display()))?;
            lab_model::StationConfig::from_toml(&text)
                .with_context(|| format!("in {}", p.display()))?
        }
        None => lab_model::StationConfig::default_station(),
    };
    let lab_setup = opts
        .recorder
        .exe
        .parent()
        .map(|d| d.join("lab-setup"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "lab-setup".into());
    let uploads = UploadQueue::start(&opts.out, opts.server.clone(), opts.delete_after_ack);
    let live = reattach(&opts, &study, &uploads).await;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let console = Arc::new(Console {
        opts,
        study,
        journey,
        live: Mutex::new(live),
        uploads,
        study_source,
        port: addr.port(),
        station,
        lab_setup,
        preflight: std::sync::Mutex::new(None),
        sync_result: std::sync::Mutex::new(None),
    });
    println!("console: http://{addr}/");
    axum::serve(
        listener,
        routes::router(console).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
    })
    .await?;
    Ok(())
}

/// A recording a previous console left running is taken back (even when its
/// endpoint is slow to answer: the page then shows the warning); one that
/// ended meanwhile goes to the upload queue. A console killed while a
/// recording was starting left only `starting.json`: the recorder is found
/// by its pid.
async fn reattach(
    opts: &ConsoleOptions,
    study: &Study,
    uploads: &UploadQueue,
) -> Option<LiveRecord> {
    let live = match LiveRecord::load(&opts.out) {
        Some(l) => l,
        None => live::recover_start(&opts.out, study).await?,
    };
    if live::recorder_alive(live.pid) {
        tracing::info!(
            "re-attached to the recording of {} (pid {})",
            live.participant,
            live.pid
        );
        return Some(live);
    }
    tracing::info!(
        "the recording of {} ended while the console was away",
        live.participant
    );
    LiveRecord::clear(&opts.out);
    uploads.push(&live.bundle);
    None
}
