//! `lab-recorder`: records a usability-test session into a bundle.
//!
//! ```text
//! lab-recorder record --test-sources --duration 6 --participant P01 --consent C01 --out /tmp/x
//! lab-recorder record --station station.toml --participant P07 --consent C-2026-07 --browser https://www.gosuslugi.ru
//! lab-recorder recover /tmp/x/20261123T101500Z-P01
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lab_model::StationConfig;
use recorder::browser::BrowserOptions;
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
async fn main() -> std::process::ExitCode {
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
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            warn_!("lab-recorder: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
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
            let opts = RecordOptions {
                station,
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
    Ok(())
}

async fn shutdown_signal() -> String {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "signal: interrupt".into(),
        _ = term.recv() => "signal: terminate".into(),
    }
}
