use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// The library `lab-setup models` installed (LAB_MODELS, else ./models).
fn library() -> PathBuf {
    let dir = std::env::var_os("LAB_MODELS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"),
        PathBuf::from,
    );
    let path = dir.join(LIBRARY);
    assert!(
        path.exists(),
        "{} is missing: run `lab-setup models` (scripts/test does)",
        path.display()
    );
    path
}

fn lsl() -> Arc<Lsl> {
    Lsl::open(&library(), None).unwrap()
}

fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A name no other test process uses.
fn unique(tag: &str) -> String {
    format!("lab-lsl-test-{tag}-{}", std::process::id())
}

#[test]
fn lsl_clock_is_the_monotonic_clock() {
    let lsl = lsl();
    assert!(lsl.library_version() >= 116, "{}", lsl.library_version());
    let before = monotonic();
    let t = lsl.local_clock();
    let after = monotonic();
    assert!(before <= t && t <= after, "{before} {t} {after}");
}

#[test]
fn samples_arrive_with_their_stamps_channels_and_offset() {
    let lsl = lsl();
    let name = unique("eda");
    let channels = vec![
        Channel {
            label: "EDA".into(),
            unit: "microsiemens".into(),
            kind: "EDA".into(),
        },
        Channel {
            label: "HR".into(),
            unit: "bpm".into(),
            kind: "HeartRate".into(),
        },
    ];
    let mut outlet = lsl
        .outlet(&name, "EDA", &channels, 128.0, Format::Float32, &name)
        .unwrap();
    let found = lsl
        .resolve_by("name", &name, Duration::from_secs(10))
        .unwrap();
    assert_eq!(found.len(), 1);
    let info = &found[0].info;
    assert_eq!(
        (
            info.kind.as_str(),
            info.channel_count,
            info.nominal_srate,
            info.format
        ),
        ("EDA", 2, 128.0, Format::Float32)
    );
    let mut inlet = found[0].open(60).unwrap();
    let full = inlet.full_info(Duration::from_secs(5)).unwrap();
    assert_eq!(full.channels, channels);
    inlet.open_stream(Duration::from_secs(5)).unwrap();
    assert!(outlet.wait_for_consumers(Duration::from_secs(5)));

    let t0 = lsl.local_clock();
    let sent: Vec<(f64, [f64; 2])> = (0..256)
        .map(|i| (t0 + i as f64 / 128.0, [i as f64 * 0.25, 60.0 + i as f64]))
        .collect();
    for (t, v) in &sent {
        outlet.push(v, *t).unwrap();
    }
    let mut got = Chunk::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.stamps.len() < sent.len() && std::time::Instant::now() < deadline {
        let c = inlet.pull_numeric(64, Duration::from_millis(200)).unwrap();
        got.stamps.extend(c.stamps);
        got.values.extend(c.values);
    }
    assert_eq!(got.stamps.len(), sent.len());
    for (i, (t, v)) in sent.iter().enumerate() {
        // float32 on the wire: values exact at these magnitudes; stamps as sent.
        assert_eq!(got.stamps[i], *t, "stamp {i}");
        assert_eq!(&got.values[2 * i..2 * i + 2], v, "sample {i}");
    }
    let c = inlet.time_correction(Duration::from_secs(5)).unwrap();
    assert!(c.offset.abs() < 0.001, "{c:?}");
    assert!(c.uncertainty >= 0.0 && c.uncertainty < 0.05, "{c:?}");
    assert!(inlet.pull_strings(4, Duration::ZERO).is_ok());
}

#[test]
fn markers_arrive_as_strings() {
    let lsl = lsl();
    let name = unique("markers");
    let mut outlet = lsl
        .outlet(
            &name,
            "Markers",
            &[Channel::default()],
            0.0,
            Format::String,
            &name,
        )
        .unwrap();
    let found = lsl
        .resolve_by("name", &name, Duration::from_secs(10))
        .unwrap();
    let mut inlet = found[0].open(60).unwrap();
    inlet.open_stream(Duration::from_secs(5)).unwrap();
    assert!(outlet.wait_for_consumers(Duration::from_secs(5)));
    let t = lsl.local_clock();
    for (i, m) in ["start «задание 1»", "", "stop"].iter().enumerate() {
        outlet.push_strings(&[m], t + i as f64).unwrap();
    }
    let mut got = Chunk::default();
    for _ in 0..50 {
        let c = inlet.pull_strings(8, Duration::from_millis(200)).unwrap();
        got.stamps.extend(c.stamps);
        got.values.extend(c.values);
        if got.values.len() == 3 {
            break;
        }
    }
    assert_eq!(got.values, ["start «задание 1»", "", "stop"]);
    assert_eq!(got.stamps, [t, t + 1.0, t + 2.0]);
    assert!(matches!(
        inlet.pull_numeric(1, Duration::ZERO),
        Err(LslError::Argument(_))
    ));
    assert!(matches!(
        outlet.push_strings(&["a", "b"], 0.0),
        Err(LslError::Argument(_))
    ));
}

#[test]
fn a_missing_library_is_named() {
    let Err(err) = Lsl::open(std::path::Path::new("/nonexistent/liblsl.so.2"), None) else {
        panic!("loaded a library that does not exist");
    };
    assert!(
        err.to_string().contains("/nonexistent/liblsl.so.2"),
        "{err}"
    );
}
