//! `lab-analyze`: offline analysis of recordings and session bundles.
//!
//! ```text
//! lab-analyze transcribe interview.wav --language ru --format txt
//! lab-analyze run sessions/20261123T101500Z-P07
//! lab-analyze worker --server http://lab:8080 --worker-token-file worker.token
//! ```

use std::path::PathBuf;

use analyzer::bundle_run::{RunEvent, RunOptions};
use analyzer::formats::{Format, render};
use analyzer::models::Models;
use analyzer::transcribe::{DEFAULT_BEAM, Options, Transcriber};
use analyzer::vad::Vad;
use analyzer::{audio, speech};
use anyhow::Context;
use clap::{Parser, Subcommand};
use lab_model::analysis::{Speaker, Stage};

#[derive(Parser)]
#[command(
    name = "lab-analyze",
    version,
    about = "Offline analysis: Russian transcription with word timestamps, journey steps, friction candidates"
)]
struct Cli {
    /// Directory with the installed models (`lab-setup models`).
    #[arg(long, global = true, env = "LAB_MODELS")]
    models: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Transcribe any audio or video file FFmpeg can read; prints the transcript.
    Transcribe {
        file: PathBuf,
        /// A GGML Whisper model file; any official ggml-*.bin works. Default:
        /// the one recorded in models/whisper-default.json by `lab-setup
        /// models`, else models/ggml-base.bin.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Spoken language (ISO code) or `auto`.
        #[arg(long, default_value = "ru")]
        language: String,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Decoder threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Beam width; 1 is greedy decoding (faster, less accurate).
        #[arg(long, default_value_t = DEFAULT_BEAM)]
        beam: usize,
        /// Initial prompt: text Whisper reads as said just before each window
        /// (names, terms it should spell), e.g. --prompt "СНИЛС, Госуслуги."
        #[arg(long, value_name = "TEXT")]
        prompt: Option<String>,
        /// Domain terms, one per line (`#` comments), put first in the prompt.
        #[arg(long, value_name = "FILE")]
        vocabulary: Option<PathBuf>,
    },
    /// Run every analysis stage over a session bundle (idempotent; finished stages are skipped).
    Run {
        bundle: PathBuf,
        /// Journey definition file (any name); its id must be the session's
        /// life situation when the manifest names one.
        #[arg(long)]
        journey: Option<PathBuf>,
        /// Folder with journey definitions `<life situation>.toml` (repeatable,
        /// searched in order; used when --journey is not given). No folder is
        /// searched unless given here.
        #[arg(long = "journeys", value_name = "DIR")]
        journeys_dirs: Vec<PathBuf>,
        /// Redo a stage and the ones after it (repeatable): speech, steps, candidates, renditions, qa, all.
        #[arg(long, value_parser = parse_force)]
        force: Vec<Stage>,
        /// A GGML Whisper model file (default as for `transcribe`).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value = "ru")]
        language: String,
        #[arg(long)]
        threads: Option<usize>,
        /// Beam width; 1 (the default here) is greedy decoding (`transcribe`
        /// defaults to 5). Beam search spells better on the bench, but on the
        /// demo's sessions greedy heard as well (pooled WER 0.64 vs 0.70) in
        /// less time. When whisper.cpp emits one segment over a whole window
        /// (beam search does, sometimes), its token times collapse and words
        /// are placed by their length instead (`word_times`).
        #[arg(long, default_value_t = 1)]
        beam: usize,
        /// Give Whisper the journey's `vocabulary` as its initial prompt. Off
        /// by default: on the bench it spelled the terms where they were said
        /// but raised the word error rate where they were not (0.68 -> 0.88
        /// on a clean clip), and on unclear speech Whisper writes the prompt's
        /// words instead of what was said (docs/transcription.md).
        #[arg(long)]
        vocabulary_prompt: bool,
    },
    /// Run analysis jobs leased from lab-web over HTTP: download each bundle,
    /// `lab-analyze run` it, send `analysis/` back (docs/worker-protocol.md).
    /// Stops on SIGTERM/SIGINT, giving running jobs back.
    Worker {
        /// lab-web's address, e.g. http://lab:8080 (plain HTTP).
        #[arg(long, value_name = "URL")]
        server: String,
        /// The worker token (`lab-web worker add NAME` prints it). A command
        /// line is visible to every user of the machine: prefer the
        /// environment variable or --worker-token-file.
        #[arg(
            long,
            value_name = "T",
            env = "LAB_WORKER_TOKEN",
            hide_env_values = true
        )]
        worker_token: Option<String>,
        /// A file holding the worker token (used instead of --worker-token).
        #[arg(long, value_name = "FILE")]
        worker_token_file: Option<PathBuf>,
        /// Jobs at once, each its own `lab-analyze run` (without --threads,
        /// the cores are shared among them).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Folder for the bundles' copies (kept between jobs, so a bundle
        /// leased again is not downloaded again) and the results.
        #[arg(long, value_name = "DIR", default_value = "lab-worker")]
        work: PathBuf,
        /// A capability this worker has (repeatable), e.g. gpu: jobs that
        /// require one go only to workers listing it.
        #[arg(long = "capability", value_name = "NAME")]
        capabilities: Vec<String>,
        /// A GGML Whisper model file for every run (default as for `run`).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Decoder threads of each run.
        #[arg(long)]
        threads: Option<usize>,
        /// Lease once per slot, run what came, then exit (status 1 if a job
        /// was not done). Each job's line on stdout says how long it took
        /// and the time from its lease to the start of its run.
        #[arg(long)]
        once: bool,
    },
    /// Find confusion cues in text, one utterance a line on stdin; prints one
    /// JSON line per input line: the phrases found, the words they cover and
    /// the sound edits each took (for measuring a lexicon's coverage,
    /// `scripts/lexicon-coverage`).
    Cues {
        /// A lexicon file (repeatable) instead of the built-in ones.
        #[arg(long)]
        lexicon: Vec<PathBuf>,
    },
    /// Put the streams of a LabRecorder XDF file (EDA, heart rate, EEG,
    /// markers) into a session bundle on the session clock: clocks
    /// synchronised and dejittered as pyxdf does, then aligned to the session
    /// (docs/bundle-format.md, "Sensor streams").
    ImportXdf {
        /// The .xdf file (.xdfz or .xdf.gz: compressed).
        file: PathBuf,
        bundle: PathBuf,
        /// `marker`: the recorder's `lab-session` start marker (recorded with
        /// --lsl-announce) is session time 0; `offset`: LabRecorder ran on
        /// the station, its clock is the session's monotonic clock.
        #[arg(long, value_enum, default_value = "marker")]
        align: analyzer::xdf::import::Align,
    },
    /// Describe an XDF file's streams after clock synchronisation and
    /// dejittering (`--json` with every stamp, as pyxdf's load_xdf gives them).
    XdfInfo {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // A closed stderr (a gone `| tee`, a dropped ssh session) must not
        // panic the process: tracing would report its own write error with
        // eprintln!, which panics on EPIPE.
        .log_internal_errors(false)
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab-analyze: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let models = Models::locate(cli.models.as_deref());
    match cli.command {
        Cmd::Cues { lexicon } => cues(&lexicon)?,
        Cmd::ImportXdf {
            file,
            bundle,
            align,
        } => analyzer::xdf::import_command(&file, &bundle, align)?,
        Cmd::XdfInfo { file, json } => analyzer::xdf::info_command(&file, json)?,
        Cmd::Worker {
            server,
            worker_token,
            worker_token_file,
            concurrency,
            work,
            capabilities,
            model,
            threads,
            once,
        } => {
            let token = match (worker_token_file, worker_token) {
                (Some(file), _) => std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
                    .trim()
                    .to_string(),
                (None, Some(t)) => t,
                (None, None) => {
                    anyhow::bail!(
                        "give the worker token: --worker-token-file FILE, LAB_WORKER_TOKEN or --worker-token"
                    )
                }
            };
            analyzer::worker::run(analyzer::worker::Config {
                server,
                token,
                concurrency,
                work,
                capabilities,
                model,
                threads,
                models: cli.models,
                once,
            })?;
        }
        Cmd::Transcribe {
            file,
            model,
            language,
            format,
            threads,
            beam,
            prompt,
            vocabulary,
        } => {
            let terms = match &vocabulary {
                Some(path) => analyzer::prompt::parse_vocabulary(
                    &std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => Vec::new(),
            };
            let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
            let prompt = analyzer::prompt::build(
                &terms,
                prompt
                    .as_slice()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .as_slice(),
            );
            let pcm = audio::decode(&file)
                .with_context(|| format!("cannot read audio from {}", file.display()))?;
            for e in &pcm.errors {
                eprintln!("lab-analyze: warning: {}: {e}", file.display());
            }
            let mono = pcm.mono();
            let mut vad = Vad::new(&models.onnxruntime(), &models.vad())?;
            let found = speech::detect(&mut vad, &mono, pcm.start_ns, Speaker::Mixed)?;
            let model = model.unwrap_or_else(|| models.whisper());
            let info = models
                .describe_whisper(&model)
                .with_context(|| {
                    format!(
                        "cannot read the Whisper model {} (run `lab-setup models`, or pass --model with a GGML file)",
                        model.display()
                    )
                })?;
            eprintln!("lab-analyze: {}", describe(&info));
            // Plain text carries no word times: no alignment pass for it.
            let whisper = Transcriber::with_word_alignment(&model, format != Format::Txt)?;
            let mut opts = Options {
                language: language.clone(),
                beam,
                prompt,
                ..Options::default()
            };
            if let Some(t) = threads {
                opts.threads = t;
            }
            let bar = progress_bar(pcm.duration_ns());
            let segments = speech::transcribe_speech(
                &whisper,
                &mono,
                &found,
                pcm.start_ns,
                Speaker::Mixed,
                &opts,
                &mut |done, total| {
                    if let Some(b) = &bar {
                        b.set_length(total as u64);
                        b.set_position(done as u64);
                    }
                },
            )?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let mut out = render(format, &segments, &language, &whisper.model_name);
            if format == Format::Json {
                out = with_model_info(&out, &info)?;
            }
            print!("{out}");
        }
        Cmd::Run {
            bundle,
            journey,
            journeys_dirs,
            force,
            model,
            language,
            threads,
            beam,
            vocabulary_prompt,
        } => {
            let mut transcribe = Options {
                language,
                beam,
                ..Options::default()
            };
            if let Some(t) = threads {
                transcribe.threads = t;
            }
            let opts = RunOptions {
                models,
                whisper_model: model,
                journey,
                journeys_dirs,
                force,
                transcribe,
                vocabulary_prompt,
            };
            let started = std::time::Instant::now();
            let report = analyzer::bundle_run::run(&bundle, &opts, &mut |event| {
                use std::io::Write as _;
                // lab-web reads the progress lines (`lab_model::analysis::Progress`);
                // the others are for people. If stderr is gone, analysis still finishes.
                let _ = match event {
                    RunEvent::Progress(p) => writeln!(std::io::stderr(), "{}", p.to_line()),
                    RunEvent::Line(line) => writeln!(std::io::stderr(), "lab-analyze: {line}"),
                };
            })
            .with_context(|| format!("analysis of {} failed", bundle.display()))?;
            for (stage, status) in &report.stages {
                println!("{stage:>11}: {status}");
            }
            println!(
                "analysed {} in {:.1} s",
                bundle.display(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn cues(files: &[PathBuf]) -> anyhow::Result<()> {
    use analyzer::lexicon::{Lexicon, tokens};
    use std::io::{BufRead, Write};
    let lexicon = if files.is_empty() {
        Lexicon::builtin()
    } else {
        let mut all = Lexicon::default();
        for f in files {
            all.extend(Lexicon::load(f)?);
        }
        all
    };
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let toks = tokens(&line.context("reading stdin")?);
        let hits: Vec<serde_json::Value> = lexicon
            .find(&toks)
            .into_iter()
            .map(|h| {
                serde_json::json!({
                    "phrase": lexicon.phrases[h.phrase].text,
                    "words": toks[h.first..=h.last].join(" "),
                    "first": h.first,
                    "last": h.last,
                    "edits": h.edits,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::json!({ "hits": hits }))?;
    }
    Ok(())
}

/// The model line on stderr: which model made the transcript.
fn describe(info: &lab_model::models::WhisperModelInfo) -> String {
    format!(
        "model {} ({}, {}, {} bytes, sha256 {})",
        info.name, info.file, info.weights, info.bytes, info.sha256
    )
}

/// Adds the `model_info` object (as in `analysis/transcript.json`) to the
/// JSON rendering of a transcript.
fn with_model_info(
    json: &str,
    info: &lab_model::models::WhisperModelInfo,
) -> anyhow::Result<String> {
    let mut v: serde_json::Value = serde_json::from_str(json)?;
    v["model_info"] = serde_json::to_value(info)?;
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

/// `--force NAME`: a stage, or `all` (the first stage, so every stage).
fn parse_force(name: &str) -> Result<Stage, String> {
    Stage::forced_from(name).map_err(|e| e.to_string())
}

/// A progress bar on stderr for inputs longer than a few seconds.
fn progress_bar(duration_ns: i64) -> Option<indicatif::ProgressBar> {
    (duration_ns > 5_000_000_000).then(|| {
        let b =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} transcribing [{bar:30}] {pos}/{len} windows {elapsed}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        b
    })
}
