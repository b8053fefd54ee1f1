//! Synthetic session bundles with analysis outputs, for the API tests and the
//! benchmark: a manifest, `events.jsonl` and `analysis/*.json` written in the
//! formats the recorder and the analyzer write (`docs/bundle-format.md`),
//! through `lab-model`'s own types. No media: what needs real media is tested
//! on real recordings (`tests/`).

use std::path::{Path, PathBuf};

use lab_model::analysis::{
    ANALYSIS_FORMAT_VERSION, AnalysisDoc, AnalysisFile, Candidate, CandidateList, ConfidenceTerm,
    Evidence, SpeechActivity, SpeechSpan, State, StepAnalysis, StepInterval, StepSummary,
    Transcript, TranscriptSegment, Word,
};
use lab_model::bundle::{ChannelRole, EVENTS_FILE, MANIFEST_FILE};
use lab_model::event::{Event, EventSource};
use serde_json::json;

/// A three-step journey (`test-benefit`).
pub const JOURNEY_TOML: &str = r#"format_version = 1
id = "test-benefit"
title = "Тестовая услуга: пособие"
version = "1"

[[steps]]
id = "catalog"
title = "Найти услугу"
significance = 3
expected_seconds = 20
enter = [{ url = "*/catalog*" }]

[[steps]]
id = "form"
title = "Заполнить заявление"
significance = 5
expected_seconds = 30
enter = [{ url = "*/form*" }]

[[steps]]
id = "done"
title = "Отправить"
significance = 4
expected_seconds = 10
enter = [{ url = "*/done*" }]
"#;

const PHRASES: &[&str] = &[
    "так сейчас посмотрим где здесь кнопка",
    "не понимаю куда нажимать дальше",
    "вводим дату рождения ребёнка",
    "непонятно что значит это поле",
    "ага вот здесь загрузить документы",
    "почему ничего не происходит когда я нажимаю",
    "хорошо выбираю способ получения выплаты",
    "а где посмотреть статус заявления",
];

#[derive(Debug, Clone)]
pub struct Spec {
    pub session_id: String,
    pub participant: String,
    pub study: String,
    pub duration_ms: i64,
    pub events: usize,
    pub words: usize,
    /// Unix ms of session time 0.
    pub started_at: i64,
    /// Samples a second of a skin-conductance stream (`sensors/EDA.jsonl`);
    /// 0 for none.
    pub eda_hz: f64,
}

impl Spec {
    pub fn small(id: &str, participant: &str) -> Self {
        Self {
            session_id: id.into(),
            participant: participant.into(),
            study: "Демо".into(),
            duration_ms: 90_000,
            events: 60,
            words: 120,
            started_at: 1_795_400_000_000,
            eda_hz: 16.0,
        }
    }
}

/// Skin conductance at `t_s`: a tonic level drifting up from 2 µS, and a
/// 0.3 µS response rising over 1 s every 20 s (from 10 s on).
pub fn synth_eda(t_s: f64) -> f64 {
    let since = (t_s - 10.0).rem_euclid(20.0);
    let phasic = if t_s < 10.0 {
        0.0
    } else if since < 1.0 {
        0.3 * since
    } else {
        0.3 * (-(since - 1.0) / 4.0).exp()
    };
    2.0 + 0.0001 * t_s + phasic
}

/// What the analyzer says of [`synth_eda`] in a step from `start_ms` to
/// `end_ms`: its responses (onsets at 10 s, 30 s, ...) per minute, 0.3 µS each.
pub fn synth_arousal(start_ms: i64, end_ms: i64) -> lab_model::analysis::StepArousal {
    let n = (0..)
        .map(|k| 10_000 + 20_000 * k)
        .take_while(|t| *t < end_ms)
        .filter(|t| *t >= start_ms)
        .count();
    lab_model::analysis::StepArousal {
        eda_per_min: Some(n as f64 / ((end_ms - start_ms) as f64 / 60_000.0)),
        eda_amplitude_us: (n > 0).then_some(0.3),
        hr_change_bpm: None,
    }
}

/// `sensors/EDA.jsonl` and its manifest entry.
fn write_eda(dir: &Path, spec: &Spec) -> anyhow::Result<serde_json::Value> {
    use lab_model::bundle::sensors::{SampleValues, SensorLine};
    let stream = json!({"name": "Shimmer EDA", "type": "EDA", "file": "sensors/EDA.jsonl",
        "channel_format": "float32", "nominal_srate": spec.eda_hz, "source_id": "synth",
        "hostname": "synth", "channels": [{"label": "EDA", "unit": "microsiemens", "type": "EDA"}]});
    std::fs::create_dir_all(dir.join("sensors"))?;
    let mut text = serde_json::to_string(&json!({"header": {"format": "lab-sensor",
        "format_version": 1, "stream": stream, "session_zero_monotonic_ns": 1}}))?;
    text.push('\n');
    let n = (spec.duration_ms as f64 / 1000.0 * spec.eda_hz) as i64;
    let t_ns = |i: i64| (i as f64 / spec.eda_hz * 1e9) as i64;
    for start in (0..n).step_by(128) {
        let idx: Vec<i64> = (start..(start + 128).min(n)).collect();
        let line = SensorLine::Samples {
            t_ns: idx.iter().map(|&i| t_ns(i)).collect(),
            lsl_t: idx.iter().map(|&i| t_ns(i) as f64 / 1e9).collect(),
            v: SampleValues::Numbers(
                idx.iter()
                    .map(|&i| vec![Some(synth_eda(t_ns(i) as f64 / 1e9))])
                    .collect(),
            ),
        };
        text += &serde_json::to_string(&line)?;
        text.push('\n');
    }
    std::fs::write(dir.join("sensors/EDA.jsonl"), text)?;
    let mut track = stream;
    track["samples"] = json!(n);
    track["first_ns"] = json!(0);
    track["last_ns"] = json!(t_ns(n - 1));
    Ok(track)
}

const NS: i64 = 1_000_000;

/// A confidence term of a synthetic candidate.
fn term(why: &str, delta: f32) -> ConfidenceTerm {
    ConfidenceTerm {
        why: why.into(),
        delta,
    }
}

/// Writes a bundle under `parent/<session_id>` and returns its path.
pub fn write_bundle(parent: &Path, spec: &Spec) -> anyhow::Result<PathBuf> {
    let dir = parent.join(&spec.session_id);
    std::fs::create_dir_all(&dir)?;
    let d = spec.duration_ms;
    let sensors = if spec.eda_hz > 0.0 {
        vec![write_eda(&dir, spec)?]
    } else {
        vec![]
    };
    let manifest = json!({
        "format": "lab-session-bundle", "format_version": 1, "session_id": spec.session_id, "station": "synth-station",
        "study": spec.study, "life_situation": "test-benefit", "journey_version": null, "participant": spec.participant,
        "consent": "SYNTH-CONSENT", "moderator": "M1",
        "clock": {"session_zero_monotonic_ns": 1, "session_zero_unix_ns": spec.started_at * NS,
                  "session_zero_utc": "2026-11-23T10:00:00Z", "clients": []},
        "tracks": [{"id": "mic0", "kind": "audio", "codec": "opus", "encoder": "opusenc", "source": "pulsesrc",
                    "device": "synth", "groups": ["main"], "sample_rate": 48000, "channels": 1,
                    "channel_roles": ["participant"]}],
        "segments": [], "status": "complete", "stop_reason": "api", "duration_ns": d * NS, "gaps": [],
        "events": {"accepted": spec.events, "rejected": 0},
        "recorder": {"version": "synth", "pid": 1, "events_url": null},
        "sensors": sensors
    });
    std::fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_vec_pretty(&manifest)?,
    )?;

    // Steps: catalog for the first 20 %, form until 85 %, then done.
    let bounds = [
        ("catalog", 0, d / 5),
        ("form", d / 5, d * 85 / 100),
        ("done", d * 85 / 100, d),
    ];
    let mut events = Vec::with_capacity(spec.events);
    let mut lines = String::new();
    for i in 0..spec.events {
        let t = (i as i64 * d) / spec.events.max(1) as i64;
        let step = bounds
            .iter()
            .find(|b| t >= b.1 && t < b.2)
            .map(|b| b.0)
            .unwrap_or("done");
        let (kind, data) = match i % 5 {
            0 => (
                "navigation",
                json!({"url": format!("http://proto.local/{step}.html"), "title": step}),
            ),
            1 | 2 => (
                "click",
                json!({"selector": format!("#{step}-button-{}", i % 3), "text": "Далее", "x": 10, "y": 20}),
            ),
            3 => (
                "input",
                json!({"selector": "#child-birth-date", "name": "birth_date", "value_length": 10, "value_kind": "date"}),
            ),
            _ => ("scroll", json!({"y": i})),
        };
        let e = Event {
            seq: i as u64 + 1,
            t_ns: t * NS,
            source: EventSource::Browser,
            kind: kind.into(),
            data,
            client: Some("tab-synth".into()),
            client_time_ms: None,
            uncertainty_ns: Some(200_000),
        };
        lines.push_str(&serde_json::to_string(&e)?);
        lines.push('\n');
        events.push(e);
    }
    std::fs::write(dir.join(EVENTS_FILE), lines)?;

    // Transcript: segments of one phrase, spread evenly.
    let mut segments = vec![];
    let mut spans = vec![];
    let mut n = 0usize;
    let mut k = 0usize;
    let per_segment = 6usize;
    let n_segments = spec.words.div_ceil(per_segment).max(1);
    let slot = d / n_segments as i64;
    while n < spec.words {
        let phrase: Vec<&str> = PHRASES[k % PHRASES.len()].split(' ').collect();
        let start = k as i64 * slot;
        let take = phrase.len().min(spec.words - n);
        let wlen = (slot * 8 / 10) / take.max(1) as i64;
        let words: Vec<Word> = phrase[..take]
            .iter()
            .enumerate()
            .map(|(j, w)| Word {
                start_ns: (start + j as i64 * wlen) * NS,
                end_ns: (start + (j as i64 + 1) * wlen - 10) * NS,
                text: format!(" {w}"),
                confidence: 0.9,
                speaker: ChannelRole::Participant,
            })
            .collect();
        let end = start + take as i64 * wlen;
        segments.push(TranscriptSegment {
            suspect: false,
            suspect_reason: None,
            start_ns: start * NS,
            end_ns: end * NS,
            text: words.iter().map(|w| w.text.as_str()).collect::<String>(),
            speaker: ChannelRole::Participant,
            words,
        });
        spans.push(SpeechSpan {
            start_ns: start * NS,
            end_ns: end * NS,
            speaker: ChannelRole::Participant,
        });
        n += take;
        k += 1;
    }
    let transcript = Transcript {
        initial_prompt: None,
        format_version: ANALYSIS_FORMAT_VERSION,
        language: "ru".into(),
        model: "synth".into(),
        model_info: None,
        status: "ok".into(),
        segments,
    };
    transcript.write(&dir)?;
    SpeechActivity {
        format_version: ANALYSIS_FORMAT_VERSION,
        spans,
    }
    .write(&dir)?;
    let titles = [
        ("catalog", "Найти услугу", 20_000),
        ("form", "Заполнить заявление", 30_000),
        ("done", "Отправить", 10_000),
    ];
    let steps = StepAnalysis {
        format_version: ANALYSIS_FORMAT_VERSION,
        journey_id: "test-benefit".into(),
        journey_version: "1".into(),
        intervals: bounds
            .iter()
            .map(|b| StepInterval {
                step: b.0.into(),
                start_ns: b.1 * NS,
                end_ns: b.2 * NS,
                visit: 1,
                entered_by: 1,
            })
            .collect(),
        steps: bounds
            .iter()
            .zip(titles)
            .map(|(b, t)| StepSummary {
                step: b.0.into(),
                title: t.1.into(),
                time_spent_ns: (b.2 - b.1) * NS,
                visits: 1,
                completed: true,
                expected_ns: t.2 * NS,
                events: vec![],
                arousal: (spec.eda_hz > 0.0).then(|| synth_arousal(b.1, b.2)),
            })
            .collect(),
    };
    steps.write(&dir)?;
    let form = (d / 5, d * 85 / 100);
    let candidates = CandidateList {
        format_version: ANALYSIS_FORMAT_VERSION,
        candidates: vec![
            Candidate {
                id: "rage_click-1".into(),
                detector: "rage_click".into(),
                start_ns: (form.0 + 6_000) * NS,
                end_ns: (form.0 + 7_500) * NS,
                step: Some("form".into()),
                confidence: 0.9,
                evidence: Evidence {
                    events: events
                        .iter()
                        .filter(|e| e.kind == "click" && e.t_ns >= form.0 * NS)
                        .take(3)
                        .map(|e| e.seq)
                        .collect(),
                    words: vec![],
                    note: "4 клика за 1,5 с по #form-button-1; 4 клика без отклика".into(),
                    basis: vec![
                        term("3 клика подряд в одно место", 0.5),
                        term("ещё 1 клик в том же месте", 0.15),
                        term("как у клика без отклика на этих же кликах", 0.2),
                        term(
                            "два правила видят одно: яростные клики и клик без отклика",
                            0.05,
                        ),
                    ],
                },
                // The burst was also a dead click (merged, as the analyzer does).
                also: vec!["dead_click".into()],
            },
            Candidate {
                id: "verbal_confusion-1".into(),
                detector: "verbal_confusion".into(),
                start_ns: (form.0 + 10_000) * NS,
                end_ns: (form.0 + 12_000) * NS,
                step: Some("form".into()),
                confidence: 0.7,
                evidence: Evidence {
                    events: vec![],
                    words: vec![],
                    note: "«не понимаю»".into(),
                    basis: vec![
                        term("фраза из словаря замешательства («не понимаю»)", 0.55),
                        term("перед этим 12 с без действий: участник застрял", 0.15),
                    ],
                },
                also: vec![],
            },
        ],
    };
    candidates.write(&dir)?;
    std::fs::write(AnalysisFile::Journey.path(&dir), JOURNEY_TOML)?;
    State::default().write(&dir)?;
    Ok(dir)
}
