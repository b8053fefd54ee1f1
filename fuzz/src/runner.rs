//! The fuzz loop: per target, a worker thread runs inputs while the calling
//! thread watches it. A panic in a check is caught with `catch_unwind` (a
//! quiet panic hook keeps the message, location and backtrace instead of
//! printing them); an input that runs longer than the hang limit is a hang,
//! and the worker is abandoned. The first failing input of each target is
//! written to the crash folder, as hex and as escaped text.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbitrary::Unstructured;

use crate::mutate;
use crate::rng::Rng;
use crate::targets::Target;

/// Largest input a run makes (bytes): the manifest and model seeds are a few
/// KiB, the largest generated arrays a few MiB before this cut.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Config {
    pub execs: u64,
    pub seed: u64,
    /// An input running longer than this is a hang.
    pub hang: Duration,
    /// Where failing inputs are written.
    pub crash_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub target: &'static str,
    pub execs: u64,
    pub crashes: u64,
    pub hangs: u64,
    pub secs: f64,
    /// Files written for the first crash and the hang, if any.
    pub reports: Vec<PathBuf>,
}

impl Outcome {
    pub fn line(&self) -> String {
        format!(
            "fuzz {}: {} execs, {} crashes, {} hangs, {:.1} s",
            self.target, self.execs, self.crashes, self.hangs, self.secs
        )
    }
}

/// What the worker shares with the watchdog.
struct Shared {
    execs: AtomicU64,
    crashes: AtomicU64,
    /// Micros since `start` when the current input began; `u64::MAX` between inputs.
    started_us: AtomicU64,
    input: Mutex<Vec<u8>>,
    first_crash: Mutex<Option<PathBuf>>,
    done: AtomicBool,
}

thread_local! {
    /// Message, location and backtrace of the last panic on this thread.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces the panic hook with one that records instead of printing, for
/// the fuzz worker threads only (named `fuzz-*`); others keep the default.
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("fuzz-"))
            {
                let bt = std::backtrace::Backtrace::force_capture();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{info}\n{bt}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Writes one failing input as hex and escaped text, with what happened.
fn write_report(dir: &Path, name: &str, what: &str, input: &[u8]) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(name);
    let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
    let text = format!(
        "{what}\n\ninput ({} bytes), escaped:\n{}\n\ninput, hex:\n{hex}\n",
        input.len(),
        input.escape_ascii()
    );
    let _ = std::fs::write(&path, text);
    path
}

/// Runs one target for `config.execs` inputs.
pub fn run_target(target: &'static Target, config: &Config) -> Outcome {
    install_quiet_hook();
    let shared = Arc::new(Shared {
        execs: AtomicU64::new(0),
        crashes: AtomicU64::new(0),
        started_us: AtomicU64::new(u64::MAX),
        input: Mutex::new(Vec::new()),
        first_crash: Mutex::new(None),
        done: AtomicBool::new(false),
    });
    let start = Instant::now();
    let worker = {
        let shared = shared.clone();
        let config = config.clone();
        std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name))
            .spawn(move || work(target, &config, &shared, start))
            .expect("spawn fuzz worker")
    };
    // Watchdog: the worker marks when each input starts.
    let mut hang_report = None;
    while !shared.done.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20));
        let began = shared.started_us.load(Ordering::Acquire);
        let now = start.elapsed().as_micros() as u64;
        if began != u64::MAX && now.saturating_sub(began) > config.hang.as_micros() as u64 {
            let input = shared.input.lock().map(|i| i.clone()).unwrap_or_default();
            hang_report = Some(write_report(
                &config.crash_dir,
                &format!("{}-hang.txt", target.name),
                &format!(
                    "fuzz {}: hang: one input ran longer than {:?} (seed {})",
                    target.name, config.hang, config.seed
                ),
                &input,
            ));
            break;
        }
    }
    if hang_report.is_none() {
        let _ = worker.join();
    } // else: the worker is stuck; it is left behind (the process ends soon).
    let mut reports: Vec<PathBuf> = shared
        .first_crash
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    reports.extend(hang_report.iter().cloned());
    Outcome {
        target: target.name,
        execs: shared.execs.load(Ordering::Acquire),
        crashes: shared.crashes.load(Ordering::Acquire),
        hangs: u64::from(hang_report.is_some()),
        secs: start.elapsed().as_secs_f64(),
        reports,
    }
}

fn work(target: &'static Target, config: &Config, shared: &Shared, start: Instant) {
    // Each target gets its own stream, so `--target` alone reproduces a run.
    let name_hash = target.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = Rng::new(config.seed ^ name_hash);
    let seeds = (target.seeds)();
    // Generated inputs join the pool the mutator splices from (bounded).
    let mut pool: Vec<Vec<u8>> = seeds.clone();
    let mut entropy = vec![0u8; 4096];
    for i in 0..config.execs {
        let input = if (i as usize) < seeds.len() {
            seeds[i as usize].clone()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            let structured = rng.chance(2);
            let mut input = if structured {
                rng.fill(&mut entropy);
                let mut u = Unstructured::new(&entropy);
                (target.generate)(&mut u, seed).unwrap_or_else(|_| seed.clone())
            } else {
                pool[rng.below(pool.len())].clone()
            };
            if !structured || rng.chance(3) {
                mutate::mutate(&mut rng, &mut input, &pool, MAX_INPUT_BYTES);
            }
            input.truncate(MAX_INPUT_BYTES);
            if structured && rng.chance(16) {
                if pool.len() < 256 {
                    pool.push(input.clone());
                } else {
                    let k = seeds.len() + rng.below(256 - seeds.len());
                    pool[k] = input.clone();
                }
            }
            input
        };
        if let Ok(mut slot) = shared.input.lock() {
            slot.clone_from(&input);
        }
        shared
            .started_us
            .store(start.elapsed().as_micros() as u64, Ordering::Release);
        let result = panic::catch_unwind(AssertUnwindSafe(|| (target.check)(&input)));
        shared.started_us.store(u64::MAX, Ordering::Release);
        shared.execs.fetch_add(1, Ordering::AcqRel);
        if result.is_err() {
            let n = shared.crashes.fetch_add(1, Ordering::AcqRel);
            if n == 0 {
                let what = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_default();
                let path = write_report(
                    &config.crash_dir,
                    &format!("{}-crash.txt", target.name),
                    &format!(
                        "fuzz {}: crash (seed {}, input #{i}): {what}",
                        target.name, config.seed
                    ),
                    &input,
                );
                if let Ok(mut c) = shared.first_crash.lock() {
                    *c = Some(path);
                }
            }
        }
    }
    shared.done.store(true, Ordering::Release);
}

/// Runs `targets` one after another.
pub fn run(
    targets: &[&'static Target],
    config: &Config,
    print: &mut dyn FnMut(&str),
) -> Vec<Outcome> {
    let mut out = Vec::new();
    for t in targets {
        let o = run_target(t, config);
        print(&o.line());
        for r in &o.reports {
            print(&format!("  first failing input: {}", r.display()));
        }
        out.push(o);
    }
    let (e, c, h, s) = out.iter().fold((0, 0, 0, 0.0), |(e, c, h, s), o| {
        (e + o.execs, c + o.crashes, h + o.hangs, s + o.secs)
    });
    print(&format!(
        "fuzz total: {e} execs, {c} crashes, {h} hangs, {s:.1} s"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{TARGETS, Target};

    fn config(execs: u64, hang: Duration) -> Config {
        Config {
            execs,
            seed: 1,
            hang,
            crash_dir: std::env::temp_dir()
                .join(format!("lab-fuzz-selftest-{}", std::process::id())),
        }
    }

    /// The runner itself: a planted panic is caught and written out, a planted
    /// hang is caught by the watchdog.
    #[test]
    fn a_planted_crash_and_hang_are_reported() {
        static CRASHY: Target = Target {
            name: "selftest-crash",
            seeds: || vec![b"ok".to_vec()],
            generate: |_, s| Ok(s.to_vec()),
            check: |b| assert!(!b.contains(&b'!'), "planted"),
        };
        let o = run_target(&CRASHY, &config(2000, Duration::from_secs(5)));
        assert!(o.crashes > 0 && o.hangs == 0, "{o:?}");
        let report = std::fs::read_to_string(&o.reports[0]).unwrap();
        assert!(
            report.contains("planted") && report.contains("input, hex:"),
            "{report}"
        );

        static HANGS: Target = Target {
            name: "selftest-hang",
            seeds: || vec![b"x".to_vec()],
            generate: |_, s| Ok(s.to_vec()),
            check: |_| std::thread::sleep(Duration::from_secs(3600)),
        };
        let o = run_target(&HANGS, &config(10, Duration::from_millis(200)));
        assert_eq!((o.hangs, o.execs), (1, 0), "{o:?}");
    }

    /// The short run that is part of the test suite (`scripts/fuzz --quick`
    /// runs the same in release mode): 20,000 inputs per target.
    #[test]
    fn short_fuzz_run_of_every_target_finds_no_crash_or_hang() {
        let targets: Vec<&'static Target> = TARGETS.iter().collect();
        // Debug build on two busy cores: the hang limit is generous here, 1 s in scripts/fuzz.
        let mut cfg = config(20_000, Duration::from_secs(10));
        cfg.crash_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
        let outcomes = run(&targets, &cfg, &mut |l| println!("{l}"));
        for o in &outcomes {
            assert_eq!(o.execs, 20_000, "{}", o.line());
            assert!(
                o.crashes == 0 && o.hangs == 0,
                "{} (see {:?})",
                o.line(),
                o.reports
            );
        }
    }
}
