//! Whole jobs against lab-web in memory, with `/bin/sh` standing in for
//! `lab-analyze run` (it gets the same arguments: `run BUNDLE …`).

use std::sync::atomic::AtomicBool;

use lab_model::worker::JourneyFile;

use super::*;
use crate::worker::tests::fake::{self, Fake, quick_backoff, temp_dir};

/// Writes progress and prose like lab-analyze, then `analysis/`; `$SLEEP`
/// seconds before it ends, `$FAIL` its exit status.
const ANALYZER: &str = r#"
b="$2"
test -f "$b/manifest.json" || { echo "no manifest in $b" >&2; exit 9; }
echo '{"lab_progress":1,"stage":"speech","done":1,"total":2}' >&2
echo 'lab-analyze: speech: running' >&2
mkdir -p "$b/analysis/web"
printf out > "$b/analysis/out.txt"
printf w > "$b/analysis/web/w.bin"
echo "$@" > "$b/analysis/args.txt"
sleep "${SLEEP:-0}"
if [ -n "$FAIL" ]; then
  echo 'lab-analyze: cannot decode media/main-00001.mkv' >&2
  echo 'lab-analyze: analysis failed' >&2
  exit "$FAIL"
fi
"#;

fn settings(name: &str, env: &[(&str, &str)]) -> JobSettings {
    let mut script = String::new();
    for (k, v) in env {
        script.push_str(&format!("{k}={v}\n"));
    }
    script.push_str(ANALYZER);
    JobSettings {
        work: temp_dir(name),
        child: ChildSettings {
            program: vec![
                "/bin/sh".into(),
                "-c".into(),
                script.into(),
                "lab-analyze".into(),
            ],
            model: Some("/models/ggml-x.bin".into()),
            threads: Some(2),
        },
        backoff: quick_backoff(),
        download_tries: 3,
    }
}

fn setup() -> (Fake, Lease) {
    let files = fake::bundle_files();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
    let mut lease = fake::lease(7, &refs);
    lease.heartbeat_seconds = 1;
    (Fake::with_files(&refs), lease)
}

fn run_job(settings: &JobSettings, fake: &Fake, lease: &Lease) -> Report {
    run(
        settings,
        fake,
        lease,
        Instant::now(),
        &AtomicBool::new(false),
    )
}

fn fails(fake: &Fake) -> Vec<String> {
    fake.calls_starting("fail")
}

#[test]
fn a_job_downloads_the_bundle_runs_and_sends_analysis() {
    let s = settings("done", &[("SLEEP", "1.5")]);
    let (fake, mut lease) = setup();
    lease.force = vec!["speech".into()];
    lease.journey = Some(JourneyFile {
        file: "child-benefit.toml".into(),
        toml: "id = \"child-benefit\"\n".into(),
    });
    let r = run_job(&s, &fake, &lease);
    assert_eq!(r.outcome, Outcome::Done, "{:?}", fake.calls());
    let start = r.lease_to_start.expect("the child started");
    assert!(start <= r.took);
    let line = r.line();
    assert!(line.starts_with("job 7 session S1: done in "), "{line}");
    assert!(
        line.contains(" (lease→start ") && line.ends_with(" s)"),
        "{line}"
    );
    // The progress line went out with a heartbeat.
    let beats = fake.calls_starting("heartbeat");
    assert!(
        beats
            .iter()
            .any(|b| b.ends_with(" speech") && !b.starts_with("heartbeat 0.000")),
        "{beats:?}"
    );
    // One result, the contents of analysis/ with the arguments the child had.
    let results = fake.results.lock().unwrap();
    assert_eq!(results.len(), 1);
    let mut ar = tar::Archive::new(&results[0][..]);
    let mut names = Vec::new();
    let mut args = String::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "args.txt" {
            std::io::Read::read_to_string(&mut e, &mut args).unwrap();
        }
        names.push(p);
    }
    assert_eq!(names, ["args.txt", "out.txt", "web/", "web/w.bin"]);
    let bundle = s.bundle_dir("S1");
    let journey = s.work.join("journeys/7.toml");
    assert_eq!(
        args.trim(),
        format!(
            "run {} --journey {} --force speech --model /models/ggml-x.bin --threads 2",
            bundle.display(),
            journey.display()
        )
    );
    assert!(!journey.exists(), "the journey file goes with the job");
    assert!(
        !s.work.join("results/7.tar").exists(),
        "the tar goes once sent"
    );
    assert!(fails(&fake).is_empty());
}

#[test]
fn a_failing_run_is_reported_without_retry_with_its_last_lines() {
    let s = settings("fail", &[("FAIL", "3")]);
    let (fake, lease) = setup();
    let r = run_job(&s, &fake, &lease);
    let error = "lab-analyze run exited with status 3:\n\
                 lab-analyze: speech: running\n\
                 lab-analyze: cannot decode media/main-00001.mkv\n\
                 lab-analyze: analysis failed";
    assert_eq!(
        r.outcome,
        Outcome::Failed {
            error: error.into(),
            retry: false
        }
    );
    assert_eq!(fails(&fake), [format!("fail retry=false: {error}")]);
    assert!(fake.calls_starting("result").is_empty());
    assert!(
        r.line()
            .contains(": failed (lab-analyze run exited with status 3:) in "),
        "{}",
        r.line()
    );
}

#[test]
fn a_cancel_kills_the_run_and_is_reported_as_cancelled() {
    let s = settings("cancel", &[("SLEEP", "60")]);
    let (fake, lease) = setup();
    fake.cancel.store(true, Ordering::SeqCst);
    let r = run_job(&s, &fake, &lease);
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert!(r.took < Duration::from_secs(20), "{:?}", r.took);
    assert_eq!(fails(&fake), ["fail retry=false: cancelled"]);
    assert!(fake.calls_starting("result").is_empty());
}

#[test]
fn a_lost_lease_drops_the_job_and_tells_lab_web_nothing() {
    let s = settings("lost", &[("SLEEP", "60")]);
    let (fake, lease) = setup();
    *fake.heartbeat_error.lock().unwrap() = Some(CallError::LeaseLost);
    let r = run_job(&s, &fake, &lease);
    assert_eq!(r.outcome, Outcome::LeaseLost);
    assert!(fails(&fake).is_empty() && fake.calls_starting("result").is_empty());
    assert_eq!(fake.calls_starting("heartbeat").len(), 1);
}

#[test]
fn a_stopping_worker_kills_the_run_and_gives_the_job_back() {
    let s = settings("stop", &[("SLEEP", "60")]);
    let (fake, lease) = setup();
    let stop = AtomicBool::new(false);
    let r = std::thread::scope(|sc| {
        sc.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            stop.store(true, Ordering::SeqCst);
        });
        run(&s, &fake, &lease, Instant::now(), &stop)
    });
    assert_eq!(r.outcome, Outcome::Stopped);
    assert_eq!(fails(&fake), ["fail retry=true: worker stopped"]);
}

#[test]
fn a_checksum_mismatch_fails_the_job_for_good() {
    let s = settings("mismatch", &[]);
    let (fake, lease) = setup();
    fake.corrupt
        .lock()
        .unwrap()
        .insert("media/main-00001.mkv".into(), 2);
    let r = run_job(&s, &fake, &lease);
    assert!(r.lease_to_start.is_none());
    assert!(r.line().ends_with("(lease→start -)"), "{}", r.line());
    let f = fails(&fake);
    assert_eq!(f.len(), 1);
    assert!(
        f[0].starts_with(
            "fail retry=false: checksum mismatch: media/main-00001.mkv: lab-web listed "
        ),
        "{f:?}"
    );
}

#[test]
fn a_withdrawn_session_is_dropped_and_its_copy_deleted() {
    let s = settings("withdrawn", &[]);
    let (fake, lease) = setup();
    let r = run_job(&s, &fake, &lease);
    assert_eq!(r.outcome, Outcome::Done);
    assert!(s.bundle_dir("S1").exists());
    fake.files
        .lock()
        .unwrap()
        .insert("events.jsonl".into(), b"{}\n{}\n".to_vec());
    fake.withdrawn.store(true, Ordering::SeqCst);
    let mut again = lease.clone();
    again.files[1] = fake::listing(&[("events.jsonl", b"{}\n{}\n")]).remove(0);
    let r = run_job(&s, &fake, &again);
    assert_eq!(r.outcome, Outcome::Withdrawn);
    assert!(!s.bundle_dir("S1").exists());
    assert!(fails(&fake).is_empty());
}

#[test]
fn copies_of_withdrawn_sessions_are_purged_when_lab_web_says_so() {
    let s = settings("purge", &[]);
    let (fake, lease) = setup();
    assert_eq!(run_job(&s, &fake, &lease).outcome, Outcome::Done);
    assert!(s.bundle_dir("S1").exists());
    // Nothing withdrawn: the copy stays.
    assert_eq!(
        crate::worker::purge::forget_withdrawn(&s, &fake).unwrap(),
        0
    );
    assert!(s.bundle_dir("S1").exists());
    // A copy a running job holds is left to that job.
    fake.withdrawn.store(true, Ordering::SeqCst);
    {
        let _held = lock_session(&s, "S1").unwrap().expect("free");
        assert_eq!(
            crate::worker::purge::forget_withdrawn(&s, &fake).unwrap(),
            0
        );
    }
    assert_eq!(
        crate::worker::purge::forget_withdrawn(&s, &fake).unwrap(),
        1
    );
    assert!(!s.bundle_dir("S1").exists());
    assert!(!s.sums_file("S1").exists());
    assert!(
        fake.calls_starting("forget")
            .iter()
            .all(|c| c == "forget S1")
    );
}

#[test]
fn a_result_that_does_not_get_through_is_sent_again() {
    let s = settings("resend", &[]);
    let (fake, lease) = setup();
    fake.result_answers.lock().unwrap().extend([
        CallError::Transport("connection reset".into()),
        CallError::Answer {
            status: 422,
            code: "checksum_mismatch".into(),
            message: "the body does not match X-Lab-Sha256".into(),
        },
    ]);
    let r = run_job(&s, &fake, &lease);
    assert_eq!(r.outcome, Outcome::Done);
    assert_eq!(fake.calls_starting("result").len(), 3);
}

#[test]
fn a_result_lab_web_refuses_fails_the_job_for_good() {
    let s = settings("badresult", &[]);
    let (fake, lease) = setup();
    fake.result_answers
        .lock()
        .unwrap()
        .push_back(CallError::Answer {
            status: 422,
            code: "bad_result".into(),
            message: "a link".into(),
        });
    let r = run_job(&s, &fake, &lease);
    assert_eq!(
        fails(&fake),
        ["fail retry=false: lab-web refused the result: lab-web answered 422 bad_result: a link"]
    );
    assert!(matches!(r.outcome, Outcome::Failed { retry: false, .. }));
}

#[test]
fn a_lease_is_checked_before_anything_is_written() {
    let (_, lease) = setup();
    assert!(check_lease(&lease).unwrap().is_empty());
    let mut l = lease.clone();
    l.force = vec!["all".into(), "qa".into()];
    assert_eq!(check_lease(&l).unwrap(), [Stage::ALL[0], Stage::Qa]);
    l.force = vec!["everything".into()];
    assert!(check_lease(&l).unwrap_err().contains("unknown stage"));
    let mut l = lease.clone();
    l.kind = "clip".into();
    assert!(check_lease(&l).unwrap_err().contains("\"clip\""));
    let mut l = lease.clone();
    l.files[1].path = "../../etc/passwd".into();
    assert!(check_lease(&l).unwrap_err().contains("../../etc/passwd"));
    let mut l = lease.clone();
    l.session_id = "../S".into();
    assert!(check_lease(&l).is_err());
    // Refused at once, with nothing downloaded.
    let s = settings("badlease", &[]);
    let fake = Fake::default();
    let r = run_job(&s, &fake, &l);
    assert!(matches!(r.outcome, Outcome::Failed { retry: false, .. }));
    assert!(fake.calls_starting("get").is_empty());
    assert!(!s.work.join("bundles").exists());
}

#[test]
fn two_jobs_on_one_session_do_not_share_its_copy() {
    let s = settings("busy", &[]);
    let _held = lock_session(&s, "S1").unwrap().expect("free");
    assert!(lock_session(&s, "S1").unwrap().is_none());
    let (fake, lease) = setup();
    let r = run_job(&s, &fake, &lease);
    assert_eq!(fails(&fake), ["fail retry=true: worker stopped"]);
    // Released, not failed: the attempt does not count against the job.
    assert!(matches!(r.outcome, Outcome::Stopped));
}
