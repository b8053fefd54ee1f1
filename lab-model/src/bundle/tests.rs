use super::limits::*;
use super::*;

pub(crate) fn sample_manifest() -> Manifest {
    Manifest {
        format: BUNDLE_FORMAT.into(),
        format_version: BUNDLE_FORMAT_VERSION,
        session_id: "20261123T101500Z-P01".into(),
        station: "lab-1".into(),
        study: None,
        life_situation: None,
        journey_version: None,
        participant: "P01".into(),
        consent: "C01".into(),
        moderator: None,
        clock: ClockMapping {
            session_zero_monotonic_ns: 1,
            session_zero_unix_ns: 2,
            session_zero_utc: "2026-11-23T10:15:00Z".into(),
            clients: vec![],
        },
        tracks: vec![],
        segments: vec![],
        status: SessionStatus::Recording,
        stop_reason: None,
        duration_ns: None,
        gaps: vec![],
        events: EventStats::default(),
        recorder: RecorderInfo {
            version: "0".into(),
            pid: 1,
            events_url: None,
        },
        sensors: vec![],
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lab-model-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn an_event_line_over_the_limit_is_refused_before_parsing() {
    let huge = format!(
        "{{\"seq\":1,\"t_ns\":0,\"source\":\"operator\",\"kind\":\"marker\",\"data\":{{\"x\":[{}0]}}}}",
        "0,".repeat(limits::MAX_EVENT_LINE_BYTES)
    );
    let e = parse_events(format!("{huge}\n").as_bytes()).unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.source.to_string().contains("byte limit"), "{}", e.source);
    // Unterminated at the end, it is a torn line.
    assert_eq!(parse_events(huge.as_bytes()).unwrap().1, 1);
}

#[test]
fn bundles_with_links_fifos_or_hard_links_are_refused() {
    let dir = temp_dir("contents");
    fs::create_dir_all(dir.join("media")).unwrap();
    fs::write(dir.join("media/main-00001.mkv"), b"x").unwrap();
    let b = Bundle::new(&dir);
    b.check_contents().unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("media/main-00002.mkv")).unwrap();
    assert!(matches!(
        b.check_contents(),
        Err(BundleError::Unsafe { .. })
    ));
    fs::remove_file(dir.join("media/main-00002.mkv")).unwrap();
    fs::hard_link(dir.join("media/main-00001.mkv"), dir.join("copy.mkv")).unwrap();
    assert!(matches!(
        b.check_contents(),
        Err(BundleError::Unsafe { .. })
    ));
    fs::remove_file(dir.join("copy.mkv")).unwrap();
    std::os::unix::fs::symlink(&dir, dir.with_extension("link")).unwrap();
    assert!(
        Bundle::new(dir.with_extension("link"))
            .check_contents()
            .is_err()
    );
    let _ = fs::remove_file(dir.with_extension("link"));
    // A planted link at the temporary name is replaced, not written through.
    let target = dir.with_extension("target");
    fs::write(&target, b"server file").unwrap();
    std::os::unix::fs::symlink(&target, dir.join("state.tmp")).unwrap();
    write_atomic(&dir.join("state.json"), b"{}").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"server file");
    assert_eq!(fs::read(dir.join("state.json")).unwrap(), b"{}");
}

#[test]
fn manifest_round_trips_and_rejects_newer_versions() {
    let b = Bundle::new(temp_dir("manifest"));
    let mut m = sample_manifest();
    b.write_manifest(&m).unwrap();
    assert_eq!(b.read_manifest().unwrap(), m);
    m.format_version = BUNDLE_FORMAT_VERSION + 1;
    b.write_manifest(&m).unwrap();
    let err = b.read_manifest().unwrap_err().to_string();
    assert!(err.contains("expected \"lab-session-bundle\""), "{err}");
}

const GOOD_EVENT: &str = r#"{"seq":1,"t_ns":5,"source":"operator","kind":"marker","data":{}}"#;

/// A power cut tore the last line inside a two-byte Cyrillic character:
/// the bundle became unreadable ("stream did not contain valid UTF-8").
#[test]
fn torn_last_line_with_a_split_utf8_character_is_skipped() {
    let torn = "{\"seq\":2,\"t_ns\":9,\"source\":\"operator\",\"kind\":\"marker\",\"data\":{\"label\":\"Вход";
    let mut bytes = format!("{GOOD_EVENT}\n").into_bytes();
    bytes.extend_from_slice(&torn.as_bytes()[..torn.len() - 1]);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the tail must split a character"
    );
    let (events, torn) = parse_events(&bytes).unwrap();
    assert_eq!((events.len(), torn), (1, 1));
    let b = Bundle::new(temp_dir("events-utf8"));
    fs::write(b.events_path(), &bytes).unwrap();
    let (events, torn) = b.read_events().unwrap();
    assert_eq!((events.len(), torn), (1, 1));
}

#[test]
fn event_lines_table() {
    /// (events, torn) or the line of the error.
    type Want = Result<(usize, usize), usize>;
    let cases: Vec<(Vec<u8>, Want)> = vec![
        (b"".to_vec(), Ok((0, 0))),
        (b"\n\n  \n".to_vec(), Ok((0, 0))),
        (
            format!("{GOOD_EVENT}\n{GOOD_EVENT}\n").into_bytes(),
            Ok((2, 0)),
        ),
        // A whole event that only lacks its newline is kept.
        (
            format!("{GOOD_EVENT}\n{GOOD_EVENT}").into_bytes(),
            Ok((2, 0)),
        ),
        (format!("{GOOD_EVENT}\n{{\"seq").into_bytes(), Ok((1, 1))),
        (format!("{GOOD_EVENT}\n\0\0\0\0").into_bytes(), Ok((1, 1))),
        // A bad line that has its newline was not torn by a crash.
        (format!("{GOOD_EVENT}\n{{\"seq\n").into_bytes(), Err(2)),
        (format!("nonsense\n{GOOD_EVENT}\n").into_bytes(), Err(1)),
        (
            b"{\"seq\":1,\"t_ns\":5,\"source\":\"operator\",\"kind\":\"m\xd0\",\"data\":{}}\n{}"
                .to_vec(),
            Err(1),
        ),
    ];
    for (input, want) in &cases {
        let got = parse_events(input)
            .map(|(e, t)| (e.len(), t))
            .map_err(|e| e.line);
        assert_eq!(&got, want, "{}", String::from_utf8_lossy(input));
    }
}

/// `lab-recorder recover` must leave an events file every reader accepts,
/// without throwing the torn bytes away.
#[test]
fn repair_moves_a_torn_utf8_tail_to_events_torn_and_loses_no_byte() {
    let b = Bundle::new(temp_dir("repair"));
    assert_eq!(b.repair_torn_events().unwrap(), None, "no events file");
    let head = format!("{GOOD_EVENT}\n");
    let tail = &"{\"seq\":2,\"kind\":\"Вход".as_bytes()[..20];
    let mut bytes = head.clone().into_bytes();
    bytes.extend_from_slice(tail);
    fs::write(b.events_path(), &bytes).unwrap();
    assert_eq!(b.repair_torn_events().unwrap(), Some(tail.len()));
    assert_eq!(fs::read(b.events_path()).unwrap(), head.as_bytes());
    assert_eq!(fs::read(b.torn_events_path()).unwrap(), tail);
    assert_eq!(b.read_events().unwrap().1, 0);
    // Idempotent.
    assert_eq!(b.repair_torn_events().unwrap(), None);
    assert_eq!(fs::read(b.torn_events_path()).unwrap(), tail);
    // A complete last event without its newline gets one and stays.
    fs::write(b.events_path(), format!("{head}{GOOD_EVENT}")).unwrap();
    assert_eq!(b.repair_torn_events().unwrap(), None);
    assert_eq!(
        fs::read_to_string(b.events_path()).unwrap(),
        format!("{head}{GOOD_EVENT}\n")
    );
}

/// A manifest naming `../../x/evil` as its life situation made lab-web and
/// the analyzer load a TOML from outside the journeys folder.
#[test]
fn hostile_manifest_values_are_refused_by_read_manifest() {
    let b = Bundle::new(temp_dir("hostile"));
    let seg = |file: &str, start: i64, end: Option<i64>| Segment {
        group: "main".into(),
        index: 0,
        file: file.into(),
        start_ns: start,
        end_ns: end,
        state: SegmentState::Closed,
    };
    type Edit = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|m| m.life_situation = Some("../../../../tmp/evil".into())),
            "life_situation \"../../../../tmp/evil\" is not a journey id",
        ),
        (
            Box::new(|m| m.life_situation = Some("Пособие".into())),
            "not a journey id",
        ),
        (Box::new(|m| m.session_id = "../x".into()), "session_id"),
        (Box::new(|m| m.session_id = ".hidden".into()), "session_id"),
        (Box::new(|m| m.session_id = "a".repeat(129)), "session_id"),
        (
            Box::new(|m| m.participant = "Иван Петров".into()),
            "participant",
        ),
        (Box::new(|m| m.participant = "P".repeat(33)), "participant"),
        (Box::new(|m| m.consent = " ".into()), "consent"),
        (
            Box::new(move |m| m.segments = vec![seg("/etc/passwd", 0, None)]),
            "segment file \"/etc/passwd\"",
        ),
        (
            Box::new(move |m| m.segments = vec![seg("media/../../x.mkv", 0, None)]),
            "segment file",
        ),
        (
            Box::new(move |m| m.segments = vec![seg("analysis/x.mkv", 0, None)]),
            "segment file",
        ),
        (
            Box::new(move |m| m.segments = vec![seg("media/a/b.mkv", 0, None)]),
            "segment file",
        ),
        (
            Box::new(move |m| m.segments = vec![seg("media/x.mkv", -1, None)]),
            "start_ns = -1",
        ),
        (
            Box::new(move |m| m.segments = vec![seg("media/x.mkv", 0, Some(i64::MAX))]),
            "end_ns",
        ),
        (
            Box::new(move |m| m.segments = vec![seg("media/x.mkv", 0, None); MAX_SEGMENTS + 1]),
            "segments: 200001, more than the limit of 200000",
        ),
        (Box::new(|m| m.duration_ns = Some(i64::MIN)), "duration_ns"),
        (
            Box::new(|m| {
                m.tracks = vec![video_track("../../screen", 30)];
            }),
            "track id",
        ),
        (
            Box::new(|m| m.tracks = vec![video_track("screen", 0)]),
            "framerate = 0",
        ),
        (
            Box::new(|m| {
                let mut t = video_track("screen", 30);
                t.groups.clear();
                m.tracks = vec![t];
            }),
            "groups",
        ),
    ];
    for (edit, want) in cases {
        let mut m = sample_manifest();
        edit(&mut m);
        b.write_manifest(&m).unwrap();
        let err = b.read_manifest().unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains(want), "want {want:?} in {chain}");
    }
    let mut m = sample_manifest();
    m.life_situation = Some("child-benefit".into());
    m.tracks = vec![video_track("screen", 30)];
    m.segments = vec![seg("media/main-00000.mkv", 0, Some(2_000_000_000))];
    b.write_manifest(&m).unwrap();
    assert_eq!(b.read_manifest().unwrap(), m);
}

fn video_track(id: &str, fps: u32) -> Track {
    Track {
        id: id.into(),
        kind: TrackKind::Video,
        codec: "h264".into(),
        encoder: "x264enc".into(),
        source: "videotestsrc".into(),
        device: String::new(),
        groups: vec!["main".into()],
        width: Some(320),
        height: Some(240),
        framerate: Some(fps),
        sample_rate: None,
        channels: None,
        channel_roles: vec![],
    }
}

#[test]
fn an_oversized_manifest_is_refused_before_parsing() {
    let b = Bundle::new(temp_dir("huge"));
    let f = File::create(b.manifest_path()).unwrap();
    f.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
    let err = b.read_manifest().unwrap_err().to_string();
    assert!(err.contains("-byte limit"), "{err}");
}

#[test]
fn torn_last_event_line_is_skipped_but_a_bad_middle_line_is_an_error() {
    let b = Bundle::new(temp_dir("events"));
    fs::write(b.events_path(), format!("{GOOD_EVENT}\n{{\"seq\":2,\"t_")).unwrap();
    let (events, torn) = b.read_events().unwrap();
    assert_eq!((events.len(), torn), (1, 1));
    fs::write(b.events_path(), format!("nonsense\n{GOOD_EVENT}\n")).unwrap();
    let err = b.read_events().unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
}
