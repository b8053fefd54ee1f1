//! `lab-recorder`: records a usability-test session into a bundle.
//!
//! ```text
//! lab-recorder record --test-sources --duration 6 --participant P01 --consent C01 --out /tmp/x
//! lab-recorder record --station station.toml --participant P07 --consent C-2026-07 --browser https://www.gosuslugi.ru
//! lab-recorder recover /tmp/x/20261123T101500Z-P01
//! LAB_STATION_TOKEN=… lab-recorder upload /tmp/x/20261123T101500Z-P01 --server http://lab-server:8080
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lab_model::StationConfig;
use recorder::browser::BrowserOptions;
use recorder::lab_client::LabClient;
use recorder::upload::{Phase, Progress, UploadOptions, mib, upload_bundle};
use recorder::{RecordOptions, record};

/// `println!` that ignores a closed stdout: the bundle is finished either
/// way, and a panic there would exit 101 after a good recording.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! warn_ {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "lab-recorder",
    version,
    about = "Records screen, camera, microphones and interaction events of a usability-test session"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Record a session. Stops at --duration, on Ctrl-C / SIGTERM, or on POST /api/stop.
    /// Prints the bundle's path as the last line of stdout.
    Record(Box<RecordArgs>),
    /// Finalize the manifest of a bundle whose recorder was killed (status becomes "interrupted").
    Recover {
        bundle: PathBuf,
        /// Recover even if the recorder process recorded in the manifest still exists.
        #[arg(long)]
        force: bool,
    },
    /// Send a finished bundle to the lab server (lab-web) and wait for its acknowledgement.
    ///
    /// Resumes where the server stands after a dropped connection, a server restart or a
    /// killed uploader; retries with backoff while the server is unreachable.
    /// Exit 0: acknowledged, the last line of stdout is `acknowledged: <session id on the server>`.
    /// Exit 1: refused (the server's reason is printed) or the bundle cannot be sent as it is.
    /// Exit 2: gave up after --give-up-after without progress; nothing is lost, run again.
    ///
    /// Example: LAB_STATION_TOKEN=… lab-recorder upload sessions/20261123T101500Z-P07 --server http://10.0.0.2:8080
    Upload(UploadArgs),
    /// The station console: run whole sessions from a browser page (Russian; English available).
    ///
    /// Open http://127.0.0.1:7600/ on the operator's screen. The recording runs as a separate
    /// process: closing or restarting the console does not stop it. Finished bundles are
    /// uploaded to --server in the background. Manual: docs/station-console.md.
    Console(Box<ConsoleArgs>),
}

#[derive(clap::Args)]
struct ConsoleArgs {
    /// Station config (see `lab-setup probe --write`); without it, this machine's defaults.
    #[arg(long, env = "LAB_STATION")]
    station: Option<PathBuf>,
    /// The study set-up (TOML, docs/study-format.md); without it, taken from --server.
    #[arg(long)]
    study: Option<PathBuf>,
    /// Which of the lab server's study set-ups, when it has several.
    #[arg(long)]
    study_id: Option<String>,
    /// Folder of journey files `<life_situation>.toml` (step titles for the participant; repeatable).
    #[arg(long)]
    journeys: Vec<PathBuf>,
    /// Where the console answers. Another machine (a tablet) needs --console-token-file too.
    #[arg(long, default_value = "127.0.0.1:7600")]
    listen: std::net::SocketAddr,
    /// A file holding the token other machines must present (open /?token=… once).
    #[arg(long, value_name = "FILE")]
    console_token_file: Option<PathBuf>,
    /// Directory that receives the session bundles.
    #[arg(long, default_value = "sessions", env = "LAB_SESSIONS")]
    out: PathBuf,
    /// The lab server (lab-web), http://host:port: study set-ups and uploads.
    #[arg(long, env = "LAB_SERVER")]
    server: Option<String>,
    /// A file holding this station's token (`lab-web station add NAME`); or LAB_STATION_TOKEN.
    #[arg(long, value_name = "FILE")]
    station_token_file: Option<PathBuf>,
    /// Delete a bundle from the station once the server acknowledged it.
    #[arg(long)]
    delete_after_ack: bool,
    /// Stream every session live to the lab server's observation room
    /// (`--live-server` of `record`; needs --server).
    #[arg(long)]
    live: bool,
    /// Record GStreamer test patterns instead of devices (dry runs, CI).
    #[arg(long)]
    test_sources: bool,
    /// Open this prototype address in the station's Chromium, the probe in every page.
    #[arg(long)]
    browser: Option<String>,
    #[arg(long, env = "LAB_CHROMIUM")]
    chromium: Option<PathBuf>,
    /// Extra Chromium flag (repeatable).
    #[arg(long = "browser-arg", allow_hyphen_values = true)]
    browser_args: Vec<String>,
}

#[derive(clap::Args)]
struct UploadArgs {
    /// The bundle folder (as `record` printed it).
    bundle: PathBuf,
    /// The lab server's LAN address, http://host:port (https is not built in).
    #[arg(long, env = "LAB_SERVER")]
    server: String,
    /// The station token (`lab-web station add NAME` prints it). Visible to other users in
    /// `ps`: prefer the LAB_STATION_TOKEN variable or --station-token-file.
    #[arg(long, env = "LAB_STATION_TOKEN", hide_env_values = true)]
    station_token: Option<String>,
    /// A file holding the station token (wins over --station-token and LAB_STATION_TOKEN).
    #[arg(long, value_name = "FILE")]
    station_token_file: Option<PathBuf>,
    /// Delete the station's copy once the server's acknowledgement is recorded.
    #[arg(long)]
    delete_after_ack: bool,
    /// The longest wait between tries, in seconds (waits start at 1 s and double).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    max_backoff: u64,
    /// Stop with exit 2 after failing this many seconds in a row without progress.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    give_up_after: u64,
}

#[derive(clap::Args)]
struct RecordArgs {
    /// Station config (see `lab-setup probe --write`); without it, this machine's defaults.
    #[arg(long, env = "LAB_STATION")]
    station: Option<PathBuf>,
    /// Replace every source with GStreamer test patterns (dry runs, CI).
    #[arg(long)]
    test_sources: bool,
    /// Stop after this many seconds of session time.
    #[arg(long)]
    duration: Option<f64>,
    /// Pseudonymous participant code (e.g. P07), never a name.
    #[arg(long)]
    participant: String,
    /// Reference of the participant's signed consent form. Required.
    #[arg(long, default_value = "")]
    consent: String,
    #[arg(long)]
    moderator: Option<String>,
    #[arg(long)]
    study: Option<String>,
    /// Life situation under test, e.g. "rozhdenie-rebenka".
    #[arg(long)]
    life_situation: Option<String>,
    /// Directory that receives the session bundle.
    #[arg(long, default_value = "sessions", env = "LAB_SESSIONS")]
    out: PathBuf,
    /// Event endpoint address (overrides the station config; port 0 picks a free one).
    #[arg(long, env = "LAB_EVENTS_LISTEN")]
    listen: Option<String>,
    /// Also record this Lab Streaming Layer stream (repeatable): by its name,
    /// or by `type=EDA`, `source_id=…` or `hostname=…` (the first stream
    /// that matches). Its samples go to sensors/<name>.jsonl on the session
    /// clock, a marker stream's samples become events too. `lab-setup
    /// probe` lists the streams it sees.
    #[arg(long = "lsl", value_name = "NAME")]
    lsl: Vec<String>,
    /// Announce the session on the LSL marker stream `lab-session` (`start
    /// <session id>` stamped at session time 0, `stop <session id>`), so a
    /// LabRecorder file made beside it can be imported on its clock
    /// (`lab-analyze import-xdf --align marker`).
    #[arg(long)]
    lsl_announce: bool,
    /// The models folder (`lab-setup models`), where liblsl is.
    #[arg(long, default_value = "models", env = "LAB_MODELS")]
    models: PathBuf,
    /// Stream the session live to this lab server's observation room
    /// (http://host:port): screen with sound, camera and events, and
    /// observers' notes back into the bundle. Needs the station token
    /// (LAB_STATION_TOKEN or --station-token-file). The recording never
    /// waits for it.
    #[arg(long, value_name = "URL")]
    live_server: Option<String>,
    /// A file holding the station token for --live-server.
    #[arg(long, value_name = "FILE")]
    station_token_file: Option<PathBuf>,
    /// The life situation's journey file (docs/journey-format.md): with
    /// --live-server, observers see each step as the participant enters it.
    #[arg(long, value_name = "FILE")]
    journey: Option<PathBuf>,
    /// Open this URL in the station's Chromium with the probe injected into every page.
    #[arg(long)]
    browser: Option<String>,
    #[arg(long, default_value = "chromium", env = "LAB_CHROMIUM")]
    chromium: PathBuf,
    /// Show the browser as a normal window instead of kiosk mode.
    #[arg(long)]
    no_kiosk: bool,
    /// Extra Chromium flag (repeatable), e.g. --browser-arg=--disable-gpu.
    #[arg(long = "browser-arg", allow_hyphen_values = true)]
    browser_args: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // A closed stderr (a gone `| tee`, a dropped ssh session) must not
        // panic the process: tracing would report its own write error with
        // eprintln!, which panics on EPIPE.
        .log_internal_errors(false)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            warn_!("lab-recorder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Upload(a) => return upload(a).await,
        Cmd::Console(a) => {
            console(*a).await?;
        }
        Cmd::Record(a) => {
            let a = *a;
            // Consent first: nothing is read, bound or created without it.
            recorder::session::check_identity(&a.participant, &a.consent)?;
            recorder::session::check_life_situation(a.life_situation.as_deref())?;
            let station = match &a.station {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("failed to read {}", p.display()))?;
                    StationConfig::from_toml(&text)
                        .with_context(|| format!("in {}", p.display()))?
                }
                None => StationConfig::default_station(),
            };
            let browser = a.browser.map(|url| BrowserOptions {
                chromium: a.chromium.clone(),
                url,
                kiosk: !a.no_kiosk,
                window: (station.screen.width, station.screen.height),
                extra_args: a.browser_args.clone(),
            });
            let duration = match a.duration {
                Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
                Some(d) => {
                    anyhow::bail!("--duration must be a positive number of seconds, got {d}")
                }
                None => None,
            };
            // Checked whenever given (it must define the life situation),
            // used by the live view.
            let journey = match &a.journey {
                Some(f) => lab_model::Journey::resolve(Some(f), &[], a.life_situation.as_deref())?
                    .map(|r| r.journey),
                None => None,
            };
            let live = match &a.live_server {
                None => None,
                Some(server) => {
                    let token = match &a.station_token_file {
                        Some(f) => std::fs::read_to_string(f)
                            .with_context(|| {
                                format!("failed to read the station token from {}", f.display())
                            })?
                            .trim()
                            .to_string(),
                        None => std::env::var("LAB_STATION_TOKEN")
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    if token.is_empty() {
                        anyhow::bail!(
                            "--live-server needs the station token: --station-token-file FILE or LAB_STATION_TOKEN"
                        );
                    }
                    if !server.starts_with("http://") {
                        anyhow::bail!("--live-server takes http://host:port, got {server}");
                    }
                    Some(recorder::live::LiveOptions {
                        server: server.clone(),
                        token,
                        journey,
                    })
                }
            };
            let opts = RecordOptions {
                station,
                live,
                test_sources: a.test_sources,
                duration,
                participant: a.participant,
                consent: a.consent,
                moderator: a.moderator,
                study: a.study,
                life_situation: a.life_situation,
                out_dir: a.out,
                events_listen: a.listen,
                browser,
                lsl: a.lsl,
                lsl_library: a.models.join(lab_lsl::LIBRARY),
                lsl_announce: a.lsl_announce,
            };
            let dir = record(opts, shutdown_signal()).await?;
            let m = lab_model::Bundle::new(&dir).read_manifest()?;
            warn_!(
                "lab-recorder: {:?}, {:.1} s, {} segments, {} events ({} rejected)",
                m.status,
                m.duration_ns.unwrap_or(0) as f64 / 1e9,
                m.segments.len(),
                m.events.accepted,
                m.events.rejected
            );
            say!("{}", dir.display());
            if m.status != lab_model::SessionStatus::Complete {
                // The bundle is valid and printed above, but the session did not end as planned.
                anyhow::bail!(
                    "recording stopped early: {}",
                    m.stop_reason.unwrap_or_default()
                );
            }
        }
        Cmd::Recover { bundle, force } => {
            let r = recorder::recover::recover(&bundle, force)?;
            if let Some(n) = r.torn_bytes {
                say!(
                    "{}: a torn last event line ({n} bytes) moved to {}",
                    bundle.display(),
                    lab_model::bundle::TORN_EVENTS_FILE
                );
            }
            if r.changed {
                say!(
                    "{}: now {:?}, {} segments, {:.1} s recorded",
                    bundle.display(),
                    r.status,
                    r.segments,
                    r.recorded_secs
                );
            } else {
                say!(
                    "{}: already {:?}, nothing to recover",
                    bundle.display(),
                    r.status
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn console(a: ConsoleArgs) -> anyhow::Result<()> {
    let read_secret = |f: &PathBuf, what: &str| {
        std::fs::read_to_string(f)
            .map(|t| t.trim().to_string())
            .with_context(|| format!("failed to read the {what} from {}", f.display()))
    };
    let token = match (&a.station_token_file, std::env::var("LAB_STATION_TOKEN")) {
        (Some(f), _) => Some(read_secret(f, "station token")?),
        (None, Ok(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
        _ => None,
    };
    let server = match (a.server, token) {
        (Some(s), Some(t)) => Some((s, t)),
        (Some(_), None) => anyhow::bail!(
            "--server needs the station token: --station-token-file FILE or LAB_STATION_TOKEN"
        ),
        (None, _) => None,
    };
    if a.live && server.is_none() {
        anyhow::bail!("--live streams to the lab server: give --server too");
    }
    let console_token = match &a.console_token_file {
        Some(f) => Some(read_secret(f, "console token")?),
        None => None,
    };
    if console_token.as_ref().is_some_and(|t| t.len() < 16) {
        anyhow::bail!("the console token must have at least 16 characters");
    }
    let out = std::path::absolute(&a.out)?;
    let live = if a.live { server.clone() } else { None };
    let opts = recorder::console::ConsoleOptions {
        listen: a.listen,
        out: out.clone(),
        study_file: a.study,
        study_id: a.study_id,
        journeys: a.journeys,
        server,
        delete_after_ack: a.delete_after_ack,
        console_token,
        recorder: recorder::console::RecorderCommand {
            exe: std::env::current_exe()?,
            out,
            station: a.station.map(std::path::absolute).transpose()?,
            test_sources: a.test_sources,
            browser: a.browser,
            chromium: a.chromium,
            browser_args: a.browser_args,
            live,
            journey: None,
        },
    };
    recorder::console::run(opts).await
}

async fn upload(a: UploadArgs) -> anyhow::Result<ExitCode> {
    let token = match (&a.station_token_file, a.station_token) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("failed to read the station token from {}", file.display()))?,
        (None, Some(token)) => token,
        (None, None) => anyhow::bail!(
            "no station token: set LAB_STATION_TOKEN or pass --station-token-file FILE \
             (`lab-web station add NAME` prints one)"
        ),
    };
    if a.max_backoff == 0 {
        anyhow::bail!("--max-backoff must be at least 1 second");
    }
    let mut client = LabClient::new(&a.server, &token)?;
    let opts = UploadOptions {
        delete_after_ack: a.delete_after_ack,
        max_backoff: Duration::from_secs(a.max_backoff),
        give_up_after: Duration::from_secs(a.give_up_after),
        ..UploadOptions::default()
    };
    let (progress, mut seen) = tokio::sync::watch::channel(Progress::default());
    let ticker = tokio::spawn(async move {
        // A line every 2 s while bytes move; silence while waiting (retries say so).
        let mut last = (Phase::Queued, u64::MAX);
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let p = seen.borrow_and_update().clone();
            if (p.phase, p.bytes_done) == last {
                continue;
            }
            last = (p.phase, p.bytes_done);
            let pct = p.bytes_done as f64 * 100.0 / p.bytes_total.max(1) as f64;
            match p.phase {
                Phase::Hashing => warn_!(
                    "hashing: {} of {} ({pct:.0} %)",
                    mib(p.bytes_done),
                    mib(p.bytes_total)
                ),
                Phase::Uploading => warn_!(
                    "uploading: {} of {} ({pct:.0} %), {}/{} files verified",
                    mib(p.bytes_done),
                    mib(p.bytes_total),
                    p.files_done,
                    p.files_total
                ),
                _ => {}
            }
        }
    });
    let note = |n| warn_!("{n}");
    let result = upload_bundle(&mut client, &a.bundle, &opts, &progress, &note).await;
    ticker.abort();
    match result {
        Ok(ack) => {
            if ack.earlier {
                warn_!(
                    "{}: acknowledged by {} earlier; nothing to send",
                    a.bundle.display(),
                    client.server()
                );
            }
            say!("acknowledged: {}", ack.server_session_id);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.gave_up() => {
            warn_!("lab-recorder: {}: {e:#}", a.bundle.display());
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "{} was not uploaded (it is kept)",
            a.bundle.display()
        ))),
    }
}

async fn shutdown_signal() -> String {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "signal: interrupt".into(),
        _ = term.recv() => "signal: terminate".into(),
    }
}
