//! Seed inputs from real files of the repository: the journeys, the test
//! journey, the examples in the format docs, a manifest, renditions and QA
//! report written by a real `lab-recorder --test-sources` recording and
//! `lab-analyze run` (in `fuzz/seeds/`), the station config the recorder
//! writes by default, and a tiny CTranslate2 checkpoint built field by field.

use lab_model::StationConfig;

const BUNDLE_FORMAT_MD: &str = include_str!("../../docs/bundle-format.md");
const JOURNEY_FORMAT_MD: &str = include_str!("../../docs/journey-format.md");
const STATION_CONFIG_MD: &str = include_str!("../../docs/station-config.md");
const CHILD_BENEFIT: &str = include_str!("../../journeys/child-benefit.toml");
const TEST_JOURNEY: &str = include_str!("../../tests/data/journey-test.toml");
const MANIFEST_RECORDED: &str = include_str!("../seeds/manifest-recorded.json");
const RENDITIONS_RECORDED: &str = include_str!("../seeds/renditions-recorded.json");
const QA_RECORDED: &str = include_str!("../seeds/qa-recorded.json");

/// The fenced code blocks of a Markdown text with the given language.
fn blocks(md: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = md.lines();
    while let Some(l) = lines.next() {
        if l.trim() == format!("```{lang}") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push(body.join("\n") + "\n");
        }
    }
    out
}

pub fn manifests() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = blocks(BUNDLE_FORMAT_MD, "json")
        .into_iter()
        .filter(|b| b.contains("\"format\""))
        .map(String::into_bytes)
        .collect();
    v.push(MANIFEST_RECORDED.as_bytes().to_vec());
    v
}

pub fn events() -> Vec<Vec<u8>> {
    let lines: Vec<String> = blocks(BUNDLE_FORMAT_MD, "json")
        .into_iter()
        .filter(|b| b.starts_with("{\"seq\""))
        .collect();
    let mut v: Vec<Vec<u8>> = lines.iter().map(|b| b.clone().into_bytes()).collect();
    // The same lines torn at every tenth byte, inside Cyrillic letters too.
    let all = lines.concat().into_bytes();
    for cut in (1..all.len()).step_by(10) {
        v.push(all[..cut].to_vec());
    }
    v
}

/// Wire events (`IncomingEvent`): the documented event examples without the
/// fields the recorder adds, and the probe's shapes.
pub fn incoming_events() -> Vec<Vec<u8>> {
    let mut v = vec![
        r#"{"source":"browser","kind":"click","data":{"x":1,"y":2,"selector":"a.b","text":"Далее"},"t":1795428902986.2856,"id":7}"#.as_bytes().to_vec(),
        r#"{"source":"operator","kind":"marker","data":{"type":"task_start","label":"Задание 1"}}"#.as_bytes().to_vec(),
        r#"{"source":"browser","kind":"navigation","data":{"url":"http://proto.local/form.html","title":"Форма"},"t":1.5,"id":"e-1"}"#.as_bytes().to_vec(),
        r#"{"source":"browser","kind":"js_error","data":{"message":"x is undefined"}}"#.as_bytes().to_vec(),
    ];
    let block = events().swap_remove(0);
    for line in block.split(|&b| b == b'\n') {
        if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(line) {
            for k in ["seq", "t_ns", "client", "client_time_ms", "uncertainty_ns"] {
                m.remove(k);
            }
            v.push(serde_json::to_vec(&m).expect("serialises"));
        }
    }
    v
}

pub fn journeys() -> Vec<Vec<u8>> {
    let mut v = vec![
        CHILD_BENEFIT.as_bytes().to_vec(),
        TEST_JOURNEY.as_bytes().to_vec(),
    ];
    v.extend(
        blocks(JOURNEY_FORMAT_MD, "toml")
            .into_iter()
            .map(String::into_bytes),
    );
    v
}

pub fn stations() -> Vec<Vec<u8>> {
    let mut v = vec![StationConfig::default_station().to_toml().into_bytes()];
    v.extend(
        blocks(STATION_CONFIG_MD, "toml")
            .into_iter()
            .map(String::into_bytes),
    );
    v
}

pub fn renditions() -> Vec<Vec<u8>> {
    vec![RENDITIONS_RECORDED.as_bytes().to_vec()]
}

pub fn qa_reports() -> Vec<Vec<u8>> {
    vec![QA_RECORDED.as_bytes().to_vec()]
}

/// Sync samples as the probe sends them: `t0,t1` in ms and the session `ts_ns`,
/// as 24 little-endian bytes, followed by the same for more samples.
pub fn clock_samples() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (t0, t1, ts) in [
        (
            1_795_428_902_986.25f64,
            1_795_428_902_987.5f64,
            2_000_000_000i64,
        ),
        (1000.0, 1000.4, 1_000_000),
        (0.0, 0.0, 0),
    ] {
        let mut b = Vec::new();
        b.extend_from_slice(&t0.to_le_bytes());
        b.extend_from_slice(&t1.to_le_bytes());
        b.extend_from_slice(&ts.to_le_bytes());
        v.push(b);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_found_and_mostly_valid() {
        assert!(manifests().len() >= 2);
        for m in manifests() {
            lab_model::parse_manifest(&m).unwrap();
        }
        assert_eq!(lab_model::parse_events(&events()[0]).unwrap().0.len(), 3);
        for j in journeys() {
            lab_model::Journey::from_toml(std::str::from_utf8(&j).unwrap()).unwrap();
        }
        StationConfig::from_toml(std::str::from_utf8(&stations()[0]).unwrap()).unwrap();
        assert!(incoming_events().len() >= 6);
    }
}
