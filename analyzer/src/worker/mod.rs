//! `lab-analyze worker`: analysis jobs leased from lab-web over HTTP
//! (`docs/worker-protocol.md`). N slots, each a thread that leases a job
//! (long poll), runs it ([`job`]) and leases the next; transport errors are
//! retried with a backoff, a refused token stops the whole worker. SIGTERM
//! or SIGINT: no more leases, running jobs are killed and given back
//! (`/fail`, retry), then exit 0; a second signal exits at once.
//!
//! ```text
//! lab-analyze worker --server http://lab:8080 --worker-token T --concurrency 2
//! ```
//!
//! Layout: [`api`] the calls as a trait and the backoff, [`client`] their
//! HTTP, [`mirror`] the bundle copy, [`child`] the `lab-analyze run` child
//! and its progress, [`result`] the tar, [`job`] one job. Nothing below
//! this file uses it.

pub mod api;
pub mod child;
pub mod client;
pub mod job;
pub mod mirror;
pub(crate) mod purge;
pub mod result;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lab_model::worker::{KIND_ANALYZE, LeaseRequest, WORKER_PROTOCOL_VERSION, valid_capability};

use api::{Backoff, CallError, Server, sleep_unless};
use child::ChildSettings;
use job::{JobSettings, Outcome};

/// How long a lease request may wait for a job.
const LEASE_WAIT_S: u64 = 20;
/// Download tries in a row without a byte gained (with the standard
/// backoff, about two and a half minutes).
const DOWNLOAD_TRIES: u32 = 8;
/// The most slots one worker runs.
const MAX_CONCURRENCY: usize = 64;

/// `lab-analyze worker`'s options.
#[derive(Debug, Clone)]
pub struct Config {
    /// lab-web's address, `http://host:port`.
    pub server: String,
    pub token: String,
    pub concurrency: usize,
    pub work: PathBuf,
    pub capabilities: Vec<String>,
    /// `--model`, passed to each `lab-analyze run`.
    pub model: Option<PathBuf>,
    /// `--threads` of each run; default: the cores shared among the slots.
    pub threads: Option<usize>,
    /// The global `--models DIR`, passed on.
    pub models: Option<PathBuf>,
    /// Lease once per slot, run what came, exit.
    pub once: bool,
}

/// Runs the worker until a signal (or, with `--once`, one lease per slot).
pub fn run(config: Config) -> anyhow::Result<()> {
    if !(1..=MAX_CONCURRENCY).contains(&config.concurrency) {
        bail!("--concurrency must be 1 to {MAX_CONCURRENCY}");
    }
    if let Some(bad) = config.capabilities.iter().find(|c| !valid_capability(c)) {
        bail!("--capability {bad:?}: a capability is 1-32 of a-z 0-9 - _ .");
    }
    let server =
        client::HttpServer::new(&config.server, &config.token).map_err(anyhow::Error::msg)?;
    make_private_dir(&config.work)?;
    let mut program = vec![
        std::env::current_exe()
            .context("cannot find this executable to run `lab-analyze run`")?
            .into_os_string(),
    ];
    if let Some(m) = &config.models {
        program.extend(["--models".into(), m.clone().into_os_string()]);
    }
    let threads = config.threads.or_else(|| {
        (config.concurrency > 1).then(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / config.concurrency).max(1)
        })
    });
    let settings = JobSettings {
        work: config.work.clone(),
        child: ChildSettings {
            program,
            model: config.model.clone(),
            threads,
        },
        backoff: Backoff::standard(),
        download_tries: DOWNLOAD_TRIES,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // The second signal exits at once (status 1); the first asks.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
            .context("cannot handle signals")?;
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot handle signals")?;
    }
    let worker = Worker {
        server: &server,
        settings,
        request: LeaseRequest {
            protocol: WORKER_PROTOCOL_VERSION,
            kinds: vec![KIND_ANALYZE.to_string()],
            capabilities: config.capabilities.clone(),
            wait_s: LEASE_WAIT_S,
        },
        once: config.once,
        stop: &stop,
        backoff: Backoff::standard(),
        purged: Mutex::new(None),
    };
    say(&format!(
        "serving {} with {} slot(s){}, work folder {}",
        config.server,
        config.concurrency,
        if config.capabilities.is_empty() {
            String::new()
        } else {
            format!(", capabilities {}", config.capabilities.join(", "))
        },
        config.work.display()
    ));
    let served = serve(&worker, config.concurrency)?;
    if stop.load(Ordering::SeqCst) {
        say("stopped");
    }
    if config.once && served.not_done > 0 {
        bail!("{} of {} job(s) not done", served.not_done, served.jobs);
    }
    Ok(())
}

/// The work folder, readable by this user only (it holds recordings).
fn make_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot make the work folder {}", dir.display()))
}

fn say(msg: &str) {
    eprintln!("lab-analyze worker: {msg}");
}

/// What the slots share.
pub struct Worker<'a> {
    pub server: &'a dyn Server,
    pub settings: JobSettings,
    pub request: LeaseRequest,
    pub once: bool,
    /// Set by a signal (or a refused token): lease no more.
    pub stop: &'a AtomicBool,
    /// The wait after a failed lease request (doubling).
    pub backoff: Backoff,
    /// When the copies of withdrawn sessions were last purged (`purge`).
    pub purged: Mutex<Option<Instant>>,
}

impl Worker<'_> {
    /// Deletes the copies of withdrawn sessions, at most every
    /// `FORGET_EVERY_SECONDS` (and at the first call).
    fn purge_if_due(&self) {
        let every = Duration::from_secs(lab_model::worker::FORGET_EVERY_SECONDS);
        {
            let mut last = self.purged.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < every) {
                return;
            }
            *last = Some(Instant::now());
        }
        match purge::forget_withdrawn(&self.settings, self.server) {
            Ok(0) => {}
            Ok(n) => say(&format!(
                "deleted {n} local cop(ies) of withdrawn or removed sessions"
            )),
            Err(e) => say(&format!("cannot ask which copies to delete: {e}")),
        }
    }
}

/// Jobs the slots ran.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub jobs: usize,
    pub not_done: usize,
}

/// Runs `concurrency` slots to their end; the first refusal (token, or a
/// lease request lab-web will never take) is the error.
pub fn serve(worker: &Worker<'_>, concurrency: usize) -> anyhow::Result<Served> {
    let refusal: Mutex<Option<CallError>> = Mutex::new(None);
    let served = Mutex::new(Served::default());
    let running = AtomicUsize::new(concurrency);
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| {
                let r = slot(worker, &served);
                if let Err(e) = r {
                    worker.stop.store(true, Ordering::SeqCst);
                    refusal
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                }
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }
        // A slot in a long poll ends when lab-web answers (a lease that
        // arrives then is given back, not left to expire).
        let mut told = false;
        while running.load(Ordering::SeqCst) > 0 {
            if !told
                && worker.stop.load(Ordering::SeqCst)
                && refusal.lock().is_ok_and(|r| r.is_none())
            {
                say(&format!(
                    "stopping: giving running jobs back, waiting up to {LEASE_WAIT_S} s for pending lease requests (a second signal exits at once)"
                ));
                told = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    if let Some(e) = refusal.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(anyhow::Error::new(e));
    }
    Ok(served.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// One slot: lease, run, repeat. `Err`: the worker must stop.
fn slot(worker: &Worker<'_>, served: &Mutex<Served>) -> Result<(), CallError> {
    let mut backoff = worker.backoff.clone();
    let mut failing_since: Option<Instant> = None;
    let stopped = || worker.stop.load(Ordering::SeqCst);
    while !stopped() {
        worker.purge_if_due();
        match worker.server.lease(&worker.request) {
            Ok(got) => {
                if let Some(since) = failing_since.take() {
                    say(&format!(
                        "lab-web answers again (after {:.0} s)",
                        since.elapsed().as_secs_f64()
                    ));
                }
                backoff.reset();
                let Some(lease) = got else {
                    if worker.once {
                        say("no job waiting");
                        return Ok(());
                    }
                    continue;
                };
                let received = Instant::now();
                let report = job::run(
                    &worker.settings,
                    worker.server,
                    &lease,
                    received,
                    worker.stop,
                );
                println!("{}", report.line());
                {
                    let mut s = served.lock().unwrap_or_else(|e| e.into_inner());
                    s.jobs += 1;
                    if report.outcome != Outcome::Done {
                        s.not_done += 1;
                    }
                }
                if let Outcome::Refused(code) = report.outcome {
                    return Err(CallError::Refused(code));
                }
                if worker.once {
                    return Ok(());
                }
            }
            Err(e @ (CallError::Transport(_) | CallError::LeaseLost)) => {
                let wait = backoff.next_delay();
                say(&format!("{e}; asking again in {} s", wait.as_secs()));
                failing_since.get_or_insert_with(Instant::now);
                sleep_unless(wait, &stopped);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
