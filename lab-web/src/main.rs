//! `lab-web`: the review web app.
//!
//!     lab-web serve [--data DIR] [--listen ADDR] [--database-url URL]
//!     lab-web user add --login L --password P --role admin|researcher|operator|viewer
//!     lab-web station add NAME
//!     lab-web import BUNDLE…
//!     lab-web bench [--hours N]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use lab_web::{AppState, Config, auth, db::Db};

#[derive(Parser)]
#[command(
    name = "lab-web",
    version,
    about = "Review web app for usability-lab sessions"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Data folder: the SQLite database, clips, and by default the sessions folder.
    #[arg(long, default_value = "lab-data")]
    data: PathBuf,
    /// PostgreSQL (postgres://user:pass@host/db) instead of the SQLite file in the data folder.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

impl Common {
    /// The database URL; creates the data folder, owner-only (see
    /// [`lab_web::db::prepare_data_dir`]).
    async fn url(&self) -> anyhow::Result<String> {
        let data = self.data.clone();
        tokio::task::spawn_blocking(move || lab_web::db::prepare_data_dir(&data)).await??;
        Ok(match &self.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}",
                self.data.join(lab_web::db::DB_FILE).display()
            ),
        })
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the web app.
    Serve {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Watched folder of session bundles [default: DATA/sessions].
        #[arg(long)]
        sessions: Option<PathBuf>,
        /// Folder of journey definitions `<life_situation>.toml` (repeatable)
        /// [default: DATA/journeys].
        #[arg(long)]
        journeys: Vec<PathBuf>,
        /// The `lab-analyze` binary [default: next to this one, else on PATH].
        #[arg(long)]
        analyzer: Option<PathBuf>,
        #[arg(long, default_value = "ffmpeg")]
        ffmpeg: PathBuf,
        /// Seconds between scans of the sessions folder (0: no watching).
        #[arg(long, default_value_t = 5)]
        watch_seconds: u64,
        /// In-process workers for analysis jobs (0: analysis is left to
        /// `lab-analyze worker` on other machines; clips still run here).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Queue an analysis of every bundle imported (watched folder,
        /// station upload) that is not fully analysed yet.
        #[arg(long)]
        analyze_new: bool,
        /// Seconds a job's lease lasts after its worker's last heartbeat:
        /// a worker silent this long (dead, cut off) loses its job to another.
        #[arg(long, default_value_t = lab_model::worker::LEASE_SECONDS)]
        lease_seconds: u64,
        /// Run no job at all in this process (neither analysis nor clips).
        #[arg(long)]
        no_worker: bool,
        /// Mark cookies Secure (when served behind https).
        #[arg(long)]
        secure_cookies: bool,
        /// Password of the first admin on a fresh database [default: random, printed].
        #[arg(long, env = "LAB_ADMIN_PASSWORD")]
        admin_password: Option<String>,
        /// The address users reach this server at, for absolute links in
        /// exports (e.g. https://lab.example) [default: http://LISTEN].
        #[arg(long, env = "LAB_PUBLIC_URL")]
        public_url: Option<String>,
        /// The reverse proxy's address, when served behind one: requests
        /// from it are throttled by the last X-Forwarded-For hop.
        #[arg(long, env = "LAB_TRUSTED_PROXY")]
        trusted_proxy: Option<std::net::IpAddr>,
        /// The largest bundle a station may upload, in GiB [default: 64].
        #[arg(long, env = "LAB_MAX_UPLOAD_GB")]
        max_upload_gb: Option<f64>,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Manage station accounts (tokens that upload bundles, nothing else).
    Station {
        #[command(subcommand)]
        cmd: StationCmd,
    },
    /// Manage analysis workers (tokens for `lab-analyze worker`).
    Worker {
        #[command(subcommand)]
        cmd: WorkerCmd,
    },
    /// Import session bundles once and exit.
    Import {
        #[command(flatten)]
        common: Common,
        /// Folder of journey definitions `<life_situation>.toml` (repeatable)
        /// [default: DATA/journeys].
        #[arg(long)]
        journeys: Vec<PathBuf>,
        /// Also queue an analysis of each bundle not fully analysed yet (run
        /// by `serve`'s workers or `lab-analyze worker`).
        #[arg(long)]
        analyze: bool,
        bundles: Vec<PathBuf>,
    },
    /// Timeline/transcript latency and search benchmark on synthetic data.
    Bench(lab_web::bench::BenchArgs),
}

#[derive(Subcommand)]
enum UserCmd {
    Add {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        login: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Subcommand)]
enum StationCmd {
    /// Adds a station and prints its token (shown once) on standard output.
    Add {
        #[command(flatten)]
        common: Common,
        /// The station's name: 1–32 of a-z, 0-9, _ and - (e.g. lab-1).
        name: String,
    },
}

#[derive(Subcommand)]
enum WorkerCmd {
    /// Adds a worker and prints its token (shown once) on standard output.
    Add {
        #[command(flatten)]
        common: Common,
        /// The worker's name: 1–32 of a-z, 0-9, _ and - (e.g. gpu-1).
        name: String,
    },
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The config is built with the data folder made absolute at start-up, so
/// no folder depends on the working directory later.
async fn state(
    common: &Common,
    config: impl FnOnce(PathBuf) -> Config,
) -> anyhow::Result<AppState> {
    let url = common.url().await?;
    let db = Db::connect(&url).await?;
    let data = std::path::absolute(&common.data)
        .with_context(|| format!("data folder {}", common.data.display()))?;
    Ok(AppState::new(db, config(data)))
}

/// The journeys folders: those given (made absolute), else DATA/journeys.
fn journeys_dirs(given: &[PathBuf], data: &std::path::Path) -> Vec<PathBuf> {
    if given.is_empty() {
        return default_journeys_dirs(data);
    }
    given
        .iter()
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
        .collect()
}

fn default_journeys_dirs(data: &std::path::Path) -> Vec<PathBuf> {
    vec![data.join("journeys")]
}

fn plain_config(data: PathBuf) -> Config {
    Config {
        sessions_dir: data.join("sessions"),
        journeys_dirs: default_journeys_dirs(&data),
        data_dir: data,
        analyzer: sibling("lab-analyze"),
        ffmpeg: PathBuf::from("ffmpeg"),
        secure_cookies: false,
        watch_every: Duration::ZERO,
        workers: 0,
        clip_worker: false,
        analyze_new: false,
        lease_seconds: lab_model::worker::LEASE_SECONDS,
        public_url: "http://127.0.0.1:8080".into(),
        trusted_proxy: None,
        max_upload_bytes: lab_web::limits::DEFAULT_MAX_UPLOAD_BYTES,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Serve {
            common,
            listen,
            sessions,
            journeys,
            analyzer,
            ffmpeg,
            watch_seconds,
            no_worker,
            workers,
            analyze_new,
            lease_seconds,
            secure_cookies,
            admin_password,
            public_url,
            trusted_proxy,
            max_upload_gb,
        } => {
            let max_upload_bytes = match max_upload_gb {
                Some(gb) if gb.is_finite() && gb > 0.0 => (gb * (1u64 << 30) as f64) as u64,
                Some(gb) => anyhow::bail!("--max-upload-gb must be a positive number, not {gb}"),
                None => lab_web::limits::DEFAULT_MAX_UPLOAD_BYTES,
            };
            let state = state(&common, |data| {
                let j = journeys_dirs(&journeys, &data);
                Config {
                    sessions_dir: sessions.clone().unwrap_or_else(|| data.join("sessions")),
                    journeys_dirs: j,
                    data_dir: data,
                    analyzer: analyzer.clone().unwrap_or_else(|| sibling("lab-analyze")),
                    ffmpeg,
                    secure_cookies,
                    watch_every: Duration::from_secs(watch_seconds),
                    workers: if no_worker { 0 } else { workers },
                    clip_worker: !no_worker,
                    analyze_new,
                    lease_seconds,
                    public_url: public_url
                        .clone()
                        .unwrap_or_else(|| format!("http://{listen}")),
                    trusted_proxy,
                    max_upload_bytes,
                }
            })
            .await?;
            tokio::fs::create_dir_all(&state.config.sessions_dir)
                .await
                .with_context(|| {
                    format!("sessions folder {}", state.config.sessions_dir.display())
                })?;
            first_admin(&state, admin_password).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            lab_web::start_background(&state);
            let addr = listener.local_addr()?;
            eprintln!(
                "lab-web: serving http://{addr}/ (database: {}, sessions: {})",
                lab_web::db::redact(&common.url().await?),
                state.config.sessions_dir.display()
            );
            // SIGTERM (systemd, a supervisor) or SIGINT stops taking new
            // connections; requests in flight get a few seconds, then the
            // process ends (open event streams never end by themselves).
            // Leases held by this process's workers lapse and other workers
            // take the jobs.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            // No Nagle delay: a live view's small messages (an observer's
            // note, an event) go out at once, not 40-200 ms later.
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let server = axum::serve(
                listener,
                lab_web::app(state).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown({
                let mut rx = stop_rx.clone();
                async move {
                    let _ = rx.changed().await;
                }
            });
            let signalled = async move {
                stop_signal().await;
                eprintln!("lab-web: stopping");
                let _ = stop_tx.send(true);
                tokio::time::sleep(Duration::from_secs(5)).await;
            };
            tokio::select! {
                r = server => r?,
                () = signalled => {}
            }
        }
        Cmd::User {
            cmd:
                UserCmd::Add {
                    common,
                    login,
                    password,
                    role,
                    name,
                },
        } => {
            let state = state(&common, plain_config).await?;
            let id = auth::create_user(&state, &login, &name, &password, &role)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            auth::audit(
                &state,
                None,
                "create_user",
                &format!("user:{id}"),
                &format!("{login} {role} (command line)"),
            )
            .await;
            println!("user {login} ({role}) created, id {id}");
        }
        Cmd::Station {
            cmd: StationCmd::Add { common, name },
        } => {
            let state = state(&common, plain_config).await?;
            let (id, token) = auth::create_station(&state, &name, 0)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            auth::audit(
                &state,
                None,
                "create_station",
                &format!("token:{id}"),
                &format!("{name} (command line)"),
            )
            .await;
            eprintln!(
                "station {name} added (token id {id}); the token is shown once, keep it on the station"
            );
            println!("{token}");
        }
        Cmd::Worker {
            cmd: WorkerCmd::Add { common, name },
        } => {
            let state = state(&common, plain_config).await?;
            let (id, token) = auth::create_worker(&state, &name, 0)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            auth::audit(
                &state,
                None,
                "create_worker",
                &format!("token:{id}"),
                &format!("{name} (command line)"),
            )
            .await;
            eprintln!(
                "worker {name} added (token id {id}); the token is shown once: give it to `lab-analyze worker --worker-token`"
            );
            println!("{token}");
        }
        Cmd::Import {
            common,
            journeys,
            analyze,
            bundles,
        } => {
            let state = state(&common, |data| Config {
                journeys_dirs: journeys_dirs(&journeys, &data),
                ..plain_config(data)
            })
            .await?;
            let mut failed = 0;
            for b in bundles {
                match lab_web::import::import(&state, &b).await {
                    Ok((id, outcome)) => {
                        let mut queued = String::new();
                        if analyze && outcome != lab_web::import::Outcome::Withdrawn {
                            let b = std::path::absolute(&b)?;
                            if let Some(job) =
                                lab_web::jobs::analyze_if_needed(&state, &id, &b).await?
                            {
                                queued = format!(" (analysis queued: job {job})");
                            }
                        }
                        println!("{}: {id} {outcome:?}{queued}", b.display())
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("lab-web: import of {} failed: {e:#}", b.display());
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} bundle(s) failed to import");
        }
        Cmd::Bench(args) => lab_web::bench::run(args).await?,
    }
    Ok(())
}

/// SIGTERM or SIGINT, whichever comes first.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A fresh database gets one admin, so the app can be entered at all.
async fn first_admin(state: &AppState, password: Option<String>) -> anyhow::Result<()> {
    let n = lab_web::store::users::count(&state.db.pool).await?;
    if n > 0 {
        return Ok(());
    }
    let (password, generated) = match password {
        Some(p) => (p, false),
        None => (auth::new_token()[..20].to_string(), true),
    };
    if let Err(e) = auth::create_user(state, "admin", "Администратор", &password, "admin").await
    {
        // Another process on the same database created it a moment before.
        if lab_web::store::users::count(&state.db.pool).await? > 0 {
            return Ok(());
        }
        anyhow::bail!("cannot create the first admin: {e:?}");
    }
    if generated {
        let file = state
            .config
            .data_dir
            .join(lab_web::db::INITIAL_PASSWORD_FILE);
        tokio::fs::write(&file, format!("admin\n{password}\n")).await?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).await?;
        }
        eprintln!(
            "lab-web: created user admin with password {password} (also in {})",
            file.display()
        );
    } else {
        eprintln!("lab-web: created user admin");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Everything lab-web creates (database, clips, the first admin's
    // password, analysis written by its jobs) is for its own user only.
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
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
            eprintln!("lab-web: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
