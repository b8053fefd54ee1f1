//! The session's checks, and its teardown on the ways out after `Playing`
//! that an orderly stop does not take: a failing step, a panic, a dropped
//! future. The recordings use GStreamer's test sources, so no device is needed.

use std::sync::{Arc, Mutex};

use lab_model::SegmentState;

use super::*;

#[test]
fn identity_rules() {
    assert!(matches!(
        check_identity("P01", ""),
        Err(RecordError::ConsentRequired)
    ));
    assert!(matches!(
        check_identity("P01", "  "),
        Err(RecordError::ConsentRequired)
    ));
    assert!(matches!(
        check_identity("Ivan Petrov", "C1"),
        Err(RecordError::Participant(_))
    ));
    assert!(check_identity("P01", "C-2026-17").is_ok());
    assert!(check_life_situation(Some("child-benefit")).is_ok());
    assert!(check_life_situation(None).is_ok());
    for bad in ["../../evil", "Рождение", "", "a b"] {
        assert!(matches!(
            check_life_situation(Some(bad)),
            Err(RecordError::LifeSituation(_))
        ));
    }
}

/// A recording of the default station on test sources into a fresh directory.
fn options(name: &str) -> RecordOptions {
    let mut station = StationConfig::default_station();
    station.screen.width = 320;
    station.screen.height = 240;
    if let Some(c) = &mut station.camera {
        c.width = 320;
        c.height = 240;
    }
    let out_dir = std::env::temp_dir().join(format!(
        "recorder-session-{name}-{}-{}",
        std::process::id(),
        unix_ns(SystemTime::now())
    ));
    RecordOptions {
        station,
        test_sources: true,
        duration: Some(Duration::from_secs(30)),
        participant: "P01".into(),
        consent: "C-1".into(),
        moderator: None,
        study: None,
        life_situation: None,
        out_dir,
        events_listen: Some("127.0.0.1:0".into()),
        browser: None,
        lsl: vec![],
        lsl_library: PathBuf::new(),
        lsl_announce: false,
        live: None,
    }
}

/// The pipeline a recording plays, kept by the `after_playing` hook so the
/// test can look at its state after the recording has ended.
#[derive(Clone, Default)]
struct Watched(Arc<Mutex<Option<gst::Pipeline>>>);

impl Watched {
    fn keep(&self, pipeline: &gst::Pipeline) {
        assert_eq!(pipeline.current_state(), gst::State::Playing);
        *self.0.lock().unwrap() = Some(pipeline.clone());
    }

    fn state(&self) -> gst::State {
        let p = self.0.lock().unwrap();
        p.as_ref().expect("the pipeline played").current_state()
    }
}

/// The only bundle a recording left in `out_dir`.
fn only_bundle(out_dir: &Path) -> Bundle {
    let dirs: Vec<_> = fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    Bundle::new(&dirs[0])
}

/// The event log could not be opened after the pipeline was playing: the
/// early return skipped `set_state(Null)` and left the manifest `recording`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_failing_after_playing_stops_the_pipeline_and_keeps_the_recording() {
    let opts = options("fail");
    let out_dir = opts.out_dir.clone();
    let watched = Watched::default();
    let hook = watched.clone();
    let result = record_with(opts, std::future::pending(), move |pipeline, bundle| {
        hook.keep(pipeline);
        // Let the first segment get data, then make the event log's path a
        // directory, so the next step fails the way a full or read-only disk would.
        let written = || {
            fs::read_dir(bundle.media_dir())
                .unwrap()
                .any(|e| e.unwrap().metadata().unwrap().len() > 0)
        };
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !written() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        fs::create_dir_all(bundle.events_path()).unwrap();
    })
    .await;

    let bundle = only_bundle(&out_dir);
    match result {
        Err(RecordError::Create { path, .. }) => assert_eq!(path, bundle.events_path()),
        other => panic!("expected the event log to fail, got {other:?}"),
    }
    assert_eq!(watched.state(), gst::State::Null);
    let m = bundle.read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Interrupted);
    let why = m.stop_reason.unwrap_or_default();
    assert!(why.contains("events.jsonl"), "{why}");
    assert!(
        !why.contains(&*bundle.dir.to_string_lossy()),
        "the bundle's own folder leaked into it: {why}"
    );
    assert!(m.duration_ns.is_some_and(|d| d > 0));
    assert!(
        !m.segments.is_empty(),
        "the segments that were written are listed"
    );
    for s in &m.segments {
        assert_ne!(s.state, SegmentState::Open, "{s:?}");
        let len = fs::metadata(bundle.dir.join(&s.file)).unwrap().len();
        assert!(len > 0, "{} is empty", s.file);
    }
    assert!(!bundle.dir.join(RESERVE_FILE).exists());
    fs::remove_dir_all(&out_dir).unwrap();
}

/// A panic after `Playing` unwinds through the guard: the pipeline stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_after_playing_stops_the_pipeline() {
    let opts = options("panic");
    let out_dir = opts.out_dir.clone();
    let watched = Watched::default();
    let hook = watched.clone();
    let task = tokio::spawn(record_with(
        opts,
        std::future::pending(),
        move |pipeline, _| {
            hook.keep(pipeline);
            panic!("injected after Playing");
        },
    ));
    let joined = task.await;
    assert!(joined.is_err_and(|e| e.is_panic()));
    assert_eq!(watched.state(), gst::State::Null);
    fs::remove_dir_all(&out_dir).unwrap();
}

/// A caller that drops the recording future (a timeout, a `select!`) drops
/// the guard: the pipeline stops and the endpoint no longer answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_recording_stops_the_pipeline_and_the_endpoint() {
    let opts = options("dropped");
    let out_dir = opts.out_dir.clone();
    let watched = Watched::default();
    let hook = watched.clone();
    let recording = record_with(opts, std::future::pending(), move |pipeline, _| {
        hook.keep(pipeline)
    });
    let r = tokio::time::timeout(Duration::from_secs(2), recording).await;
    assert!(r.is_err(), "the recording ran until it was dropped");
    assert_eq!(watched.state(), gst::State::Null);
    let m = only_bundle(&out_dir).read_manifest().unwrap();
    let url = m.recorder.events_url.unwrap();
    let addr = url.strip_prefix("http://").unwrap();
    // The aborted serving task drops its listener when the runtime next runs it.
    let mut closed = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "{addr} still accepts connections");
    fs::remove_dir_all(&out_dir).unwrap();
}
