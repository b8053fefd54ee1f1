//! `lab-demo-truth`: compares analysed demo sessions with the ground truth the
//! scripted participants wrote (`demo/personas.js`, via `demo/run-personas`),
//! by the rules of `lab_tests::truth` (the same the end-to-end test
//! `tests/tests/demo_personas.rs` applies).
//!
//! ```sh
//! lab-demo-truth OUT_DIR           # OUT_DIR/truth/*.json, bundles named inside
//! lab-demo-truth TRUTH.json ...
//! ```
//!
//! Prints each session's details and figures, the pooled figures, a
//! per-detector table (recall, precision, start error), a calibration table
//! (candidates binned by confidence against the share that were right) and
//! every problem; exits 1 if a bound is broken, 2 if a file cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lab_tests::truth::{self, Bounds};

/// Compares analysed demo sessions with the personas' ground truth.
#[derive(Parser)]
#[command(name = "lab-demo-truth")]
struct Cli {
    /// run-personas / run-demo output folders (their truth/*.json) or truth JSON files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Step boundary tolerance, seconds.
    #[arg(long, default_value_t = truth::STEP_TOLERANCE_S)]
    step_tolerance: f64,
    /// Friction start tolerance, seconds.
    #[arg(long, default_value_t = truth::FRICTION_TOLERANCE_S)]
    friction_tolerance: f64,
    /// Candidates matching no injected friction, per session.
    #[arg(long, default_value_t = truth::MAX_FALSE)]
    max_false: usize,
    /// Word error rate per session.
    #[arg(long, default_value_t = truth::MAX_WER_SESSION)]
    max_wer: f64,
    /// Word error rate over all sessions.
    #[arg(long, default_value_t = truth::MAX_WER_POOLED)]
    max_pooled_wer: f64,
    /// Pooled share of the spoken words found in the transcripts.
    #[arg(long, default_value_t = truth::MIN_HEARD_POOLED)]
    min_heard: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let bounds = Bounds {
        step_tolerance_s: cli.step_tolerance,
        friction_tolerance_s: cli.friction_tolerance,
        max_false: cli.max_false,
        max_wer_session: cli.max_wer,
        max_wer_pooled: cli.max_pooled_wer,
        min_heard_pooled: cli.min_heard,
    };
    match run(&cli.paths, &bounds) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lab-demo-truth: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints the figures; whether every bound holds.
fn run(paths: &[PathBuf], bounds: &Bounds) -> anyhow::Result<bool> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(truth::truth_files(p)?);
        } else {
            files.push(p.clone());
        }
    }
    let mut sessions = Vec::new();
    for f in &files {
        let m = truth::check_session(f, bounds)?;
        println!(
            "{} ({}, {}): task {:.1} s",
            m.persona, m.participant, m.session_id, m.task_s
        );
        println!("{m}");
        sessions.push(m);
    }
    let pooled = truth::pool(&sessions, bounds);
    println!("{pooled}");
    println!(
        "\nper detector:\n{}",
        truth::detector_table(&truth::by_detector(&sessions))
    );
    let (bins, ece) = truth::calibration(&sessions);
    println!("calibration:\n{}", truth::calibration_table(&bins, ece));
    let problems = truth::problems(&sessions, &pooled);
    for p in &problems {
        println!("PROBLEM: {p}");
    }
    Ok(problems.is_empty())
}
