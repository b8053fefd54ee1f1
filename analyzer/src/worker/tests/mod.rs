//! The worker's lease loop against lab-web in memory; `fake` is that
//! lab-web, shared by every test module of the worker.

pub mod fake;

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use super::*;
use fake::{Fake, quick_backoff, temp_dir};

fn worker<'a>(fake: &'a Fake, stop: &'a AtomicBool, once: bool) -> Worker<'a> {
    Worker {
        server: fake,
        settings: JobSettings {
            work: temp_dir("serve"),
            child: ChildSettings {
                program: vec!["false".into()],
                model: None,
                threads: None,
            },
            backoff: quick_backoff(),
            download_tries: 1,
        },
        request: LeaseRequest {
            protocol: WORKER_PROTOCOL_VERSION,
            kinds: vec![KIND_ANALYZE.into()],
            capabilities: vec!["gpu".into()],
            wait_s: LEASE_WAIT_S,
        },
        once,
        stop,
        backoff: quick_backoff(),
        purged: Mutex::new(None),
    }
}

#[test]
fn a_refused_token_stops_the_worker_at_the_first_lease_with_a_clear_message() {
    for code in [401, 403] {
        let fake = Fake::default();
        fake.leases
            .lock()
            .unwrap()
            .push_back(Err(CallError::Refused(code)));
        let stop = AtomicBool::new(false);
        let e = serve(&worker(&fake, &stop, false), 1).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            format!("lab-web refused the worker token ({code})")
        );
        assert_eq!(fake.calls(), ["lease"], "asked once, not again and again");
        assert!(stop.load(Ordering::SeqCst));
    }
}

#[test]
fn a_refusal_in_one_slot_stops_the_others() {
    let fake = Fake::default();
    fake.leases
        .lock()
        .unwrap()
        .push_back(Err(CallError::Refused(401)));
    let stop = AtomicBool::new(false);
    let e = serve(&worker(&fake, &stop, false), 3).unwrap_err();
    assert_eq!(e.to_string(), "lab-web refused the worker token (401)");
}

#[test]
fn transport_errors_are_retried_until_lab_web_answers() {
    let fake = Fake::default();
    fake.leases.lock().unwrap().extend([
        Err(CallError::Transport("connection refused".into())),
        Err(CallError::Transport("503 : starting".into())),
        Ok(None),
    ]);
    let stop = AtomicBool::new(false);
    let served = serve(&worker(&fake, &stop, true), 1).unwrap();
    assert_eq!(served, Served::default());
    assert_eq!(fake.calls(), ["lease", "lease", "lease"]);
}

#[test]
fn a_lease_request_lab_web_will_never_take_stops_the_worker() {
    let fake = Fake::default();
    fake.leases
        .lock()
        .unwrap()
        .push_back(Err(CallError::Answer {
            status: 400,
            code: "bad_protocol".into(),
            message: "protocol 1 is not spoken here".into(),
        }));
    let stop = AtomicBool::new(false);
    let e = serve(&worker(&fake, &stop, false), 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "lab-web answered 400 bad_protocol: protocol 1 is not spoken here"
    );
}

#[test]
fn once_runs_one_job_per_slot_and_counts_what_was_not_done() {
    let fake = Fake::default();
    let mut lease = fake::lease(3, &[("manifest.json", b"{}")]);
    lease.kind = "clip".into();
    fake.leases.lock().unwrap().push_back(Ok(Some(lease)));
    let stop = AtomicBool::new(false);
    let served = serve(&worker(&fake, &stop, true), 1).unwrap();
    assert_eq!(
        served,
        Served {
            jobs: 1,
            not_done: 1
        }
    );
    assert_eq!(fake.calls_starting("lease").len(), 1);
    assert_eq!(fake.calls_starting("fail retry=false").len(), 1);
}

#[test]
fn a_stopped_worker_leases_nothing() {
    let fake = Fake::default();
    let stop = AtomicBool::new(true);
    assert_eq!(
        serve(&worker(&fake, &stop, false), 2).unwrap(),
        Served::default()
    );
    assert!(fake.calls().is_empty());
}
