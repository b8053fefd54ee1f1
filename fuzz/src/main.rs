//! `lab-fuzz`: runs the fuzz targets; see the crate docs and `scripts/fuzz`.
//!
//! ```sh
//! cargo run --release -p fuzz -- --execs 1000000
//! cargo run --release -p fuzz -- --target manifest --seed 7 --execs 50000
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fuzz::runner::{self, Config};
use fuzz::targets::{self, TARGETS};

/// Fuzzes every parser of outside input; exits 1 on any crash or hang.
#[derive(Parser)]
struct Args {
    /// Inputs per target.
    #[arg(long, env = "LAB_FUZZ_EXECS", default_value_t = 1_000_000)]
    execs: u64,
    /// Only this target (repeatable): manifest, events, incoming_event, clock,
    /// journey, station, renditions, qa, ct2, ggml.
    #[arg(long)]
    target: Vec<String>,
    /// Seed of the input generator (runs are reproducible from it).
    #[arg(long, env = "LAB_FUZZ_SEED", default_value_t = 1)]
    seed: u64,
    /// 20,000 inputs per target instead of --execs.
    #[arg(long)]
    quick: bool,
    /// An input that runs longer than this many milliseconds is a hang.
    #[arg(long, default_value_t = 1000)]
    hang_ms: u64,
    /// Where the first failing input of each target is written.
    #[arg(long, default_value = "target/fuzz-crashes")]
    crash_dir: PathBuf,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for t in TARGETS {
            println!("{}", t.name);
        }
        return ExitCode::SUCCESS;
    }
    let mut chosen = Vec::new();
    for name in &args.target {
        match targets::find(name) {
            Some(t) => chosen.push(t),
            None => {
                eprintln!("lab-fuzz: unknown target {name:?}; --list shows them");
                return ExitCode::from(2);
            }
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().collect();
    }
    let config = Config {
        execs: if args.quick { 20_000 } else { args.execs },
        seed: args.seed,
        hang: Duration::from_millis(args.hang_ms),
        crash_dir: args.crash_dir,
    };
    let outcomes = runner::run(&chosen, &config, &mut |l| println!("{l}"));
    if outcomes.iter().any(|o| o.crashes > 0 || o.hangs > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
