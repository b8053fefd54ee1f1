//! `lab-fleet-bench`: analysis throughput with 1, 2 and 3 workers
//! (`lab-analyze worker` processes on this machine standing in for machines,
//! each with its own working folder) against one lab-web on a private
//! PostgreSQL. Every run analyses the same bundles (copies of one recording)
//! from a fresh database; the cores are shared among the workers
//! (`--threads` = cores / workers, at least 1), so each run has the same
//! total CPU. Prints throughput, the queue overhead per job (from the
//! worker's lease to its `lab-analyze run` starting, download included) as a
//! share of the job's time, and the speed-up against one worker.
//!
//!     scripts/bench-workers [--bundles 24] [--speech] [--workers 1,2,3]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clap::Parser;
use lab_tests::postgres::PrivatePostgres;
use lab_tests::scripted::{copy_bundle_as, models, record_session, record_test_sources, speech};
use lab_tests::web::{Api, LabWeb, lab_web_command};
use lab_tests::{bin, temp_dir};

#[derive(Parser)]
struct Args {
    /// Bundles analysed in each run.
    #[arg(long, default_value_t = 24)]
    bundles: usize,
    /// Worker counts to compare, comma-separated.
    #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
    workers: Vec<usize>,
    /// Record Russian speech (Whisper runs for real; minutes per run)
    /// instead of the test sources.
    #[arg(long)]
    speech: bool,
    /// Seconds of the test-source recording.
    #[arg(long, default_value_t = 30)]
    duration: u32,
}

struct Run {
    workers: usize,
    wall: f64,
    /// (job seconds, lease→start seconds, download seconds) per job.
    jobs: Vec<(f64, f64, f64)>,
}

fn record(root: &Path, args: &Args) -> PathBuf {
    if args.speech {
        let wav = speech(
            root,
            "think",
            "Я не понимаю, что такое льготная категория. Где нажать, чтобы продолжить? Кнопка не работает.",
            0.5,
        );
        return record_session(root, &wav);
    }
    record_test_sources(&root.join("station"), args.duration)
}

/// `job 42 session X: done in 12.3 s (lease→start 0.05 s, download 0.04 s)`
/// → (12.3, 0.05, 0.04).
fn parse_job_line(line: &str) -> Option<(f64, f64, f64)> {
    let num =
        |after: &str| -> Option<f64> { line.split(after).nth(1)?.split(' ').next()?.parse().ok() };
    Some((
        num("done in ")?,
        num("lease→start ")?,
        num("download ").unwrap_or(0.0),
    ))
}

fn run(root: &Path, recorded: &Path, n: usize, k: usize) -> Run {
    let dir = root.join(format!("run-{k}"));
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("sessions")).unwrap();
    let pg = PrivatePostgres::start(&dir.join("pg")).unwrap();
    let url = pg.url();
    let mut bundles = vec![];
    for i in 1..=n {
        let id = format!("BENCH-{i:02}");
        let b = data.join("sessions").join(&id);
        copy_bundle_as(recorded, &b, &id);
        bundles.push(b);
    }
    let serve = [
        "--database-url",
        url.as_str(),
        "--workers",
        "0",
        "--watch-seconds",
        "0",
    ];
    let args: Vec<&OsStr> = serve.iter().map(OsStr::new).collect();
    let web = LabWeb::serve_as("web", &data, "bench-admin-password", &args, &[]);
    let head = [
        "import",
        "--analyze",
        "--database-url",
        url.as_str(),
        "--data",
    ];
    let mut import: Vec<&OsStr> = head.iter().map(OsStr::new).collect();
    import.push(data.as_os_str());
    import.extend(bundles.iter().map(|b| b.as_os_str()));
    lab_web_command(&import);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / k).max(1).to_string();
    let t0 = Instant::now();
    let mut children: Vec<(Child, PathBuf)> = (1..=k)
        .map(|w| {
            let name = format!("w{w}");
            let token = lab_web_command(&[
                "worker".as_ref(),
                "add".as_ref(),
                name.as_ref(),
                "--database-url".as_ref(),
                url.as_ref(),
                "--data".as_ref(),
                data.as_os_str(),
            ]);
            let out = dir.join(format!("{name}.out"));
            let child = Command::new(bin("lab-analyze"))
                .arg("--models")
                .arg(models())
                .args(["worker", "--server", &web.url, "--threads", &threads])
                .arg("--work")
                .arg(dir.join(format!("{name}-work")))
                .env("LAB_WORKER_TOKEN", token)
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let api = Api::login(&web.url, "admin", "bench-admin-password");
    loop {
        let js = api.get("/api/v1/jobs")["jobs"].as_array().unwrap().clone();
        let ended = js
            .iter()
            .filter(|j| !matches!(j["status"].as_str(), Some("queued" | "running")))
            .count();
        if let Some(bad) = js
            .iter()
            .find(|j| matches!(j["status"].as_str(), Some("failed" | "dead")))
        {
            panic!("a job failed: {bad}");
        }
        if ended >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = t0.elapsed().as_secs_f64();
    let mut jobs = vec![];
    for (child, out) in &mut children {
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(out).unwrap_or_default();
        jobs.extend(text.lines().filter_map(parse_job_line));
    }
    drop(web);
    drop(pg);
    Run {
        workers: k,
        wall,
        jobs,
    }
}

fn main() {
    let args = Args::parse();
    let root = temp_dir("fleet-bench");
    let recorded = record(&root, &args);
    let n = args.bundles;
    println!(
        "fleet bench: {n} bundles per run, copies of {}",
        recorded.display()
    );
    let runs: Vec<Run> = args
        .workers
        .iter()
        .map(|&k| run(&root, &recorded, n, k))
        .collect();
    let base = runs.first().map(|r| n as f64 / r.wall).unwrap_or(1.0);
    println!(
        "workers  wall s  jobs/min  mean job s  lease→start s  of it download s  queue overhead %  speed-up"
    );
    for r in &runs {
        let mean_job = r.jobs.iter().map(|j| j.0).sum::<f64>() / r.jobs.len().max(1) as f64;
        let mean_over = r.jobs.iter().map(|j| j.1).sum::<f64>() / r.jobs.len().max(1) as f64;
        let mean_dl = r.jobs.iter().map(|j| j.2).sum::<f64>() / r.jobs.len().max(1) as f64;
        let tput = n as f64 / r.wall;
        println!(
            "{:>7}  {:>6.1}  {:>8.2}  {:>10.2}  {:>13.3}  {:>16.3}  {:>16.2}  {:>8.2}",
            r.workers,
            r.wall,
            tput * 60.0,
            mean_job,
            mean_over,
            mean_dl,
            100.0 * (mean_over - mean_dl).max(0.0) / mean_job.max(1e-9),
            tput / base
        );
    }
    println!(
        "queue overhead = lease→start minus the download (checks, journey, starting the run). \
         Goals: < 1 % of job time; throughput does not fall as workers are added (same total CPU)"
    );
    let _ = std::fs::remove_dir_all(&root);
}
