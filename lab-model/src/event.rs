//! Interaction and operator events. `IncomingEvent` is what a client sends
//! (validated here, so the recorder, tests and lab-web agree on what is
//! malformed); `Event` is the line written to `events.jsonl` once the event
//! has a place on the session clock.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest accepted event, serialised. A click with a long selector and
/// visible text fits easily; anything bigger is a bug or hostile.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// The participant's browser (probe script).
    Browser,
    /// The operator's console or markers API.
    Operator,
    /// A second researcher watching live.
    Observer,
    /// The recorder itself (segments, device loss, disk full, ...).
    System,
    /// Physiological or other sensors.
    Sensor,
    /// The participant's own answers (`crate::self_report`).
    Participant,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Order of acceptance, from 1, without gaps.
    pub seq: u64,
    /// Session time in nanoseconds.
    pub t_ns: i64,
    pub source: EventSource,
    pub kind: String,
    pub data: Value,
    /// Client (browser tab, console) that sent it, for events mapped through a clock offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The client's own timestamp (ms, the client's clock), kept for re-mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_time_ms: Option<f64>,
    /// How far `t_ns` may be off: half the best round trip of the client's clock sync,
    /// or the receive latency bound for server-stamped events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_ns: Option<i64>,
}

/// What a client sends. `t` is the client's clock in milliseconds
/// (`performance.timeOrigin + performance.now()` in a browser); without it the
/// recorder stamps the event with its receive time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    pub source: EventSource,
    pub kind: String,
    #[serde(default = "empty_object")]
    pub data: Value,
    #[serde(default)]
    pub t: Option<f64>,
    /// Client-chosen id echoed in the acknowledgement.
    #[serde(default)]
    pub id: Option<Value>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("event is not valid JSON of the expected shape: {0}")]
    Shape(String),
    #[error("event is {0} bytes, more than the {MAX_EVENT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error(
        "event kind {0:?} must be 1-64 characters of a-z, 0-9, '_' or '.' starting with a letter"
    )]
    Kind(String),
    #[error("event data must be a JSON object")]
    Data,
    #[error("event time {0} is not a finite positive number of milliseconds")]
    Time(f64),
    #[error("{kind} event needs field {field:?} ({what})")]
    Field {
        kind: String,
        field: &'static str,
        what: &'static str,
    },
    #[error("{0} may not send events of kind {1:?} (only the recorder writes system events)")]
    Forbidden(&'static str, String),
    #[error("participant answer: {0}")]
    Participant(String),
}

/// Replaces every lone UTF-16 surrogate escape (`\ud800` without its pair)
/// in JSON text with `\ufffd`; `None` if there was none. Browsers produce
/// them whenever a string is cut between the two halves of an emoji
/// (`"…😀".slice(0, n)`), `JSON.stringify` writes them as escapes, and
/// serde_json refuses them: without this, such an event (a click on a
/// button whose label was cut there) would be refused on every resend.
pub fn replace_lone_surrogates(json: &[u8]) -> Option<Vec<u8>> {
    fn hex4(b: &[u8]) -> Option<u16> {
        let s = std::str::from_utf8(b.get(..4)?).ok()?;
        u16::from_str_radix(s, 16).ok()
    }
    let is_high = |u: u16| (0xD800..0xDC00).contains(&u);
    let is_low = |u: u16| (0xDC00..0xE000).contains(&u);
    let mut out = Vec::with_capacity(json.len());
    let mut changed = false;
    let mut i = 0;
    while i < json.len() {
        if json[i] != b'\\' {
            out.push(json[i]);
            i += 1;
            continue;
        }
        // An escape: `\uXXXX` is looked at, any other is copied whole.
        if json.get(i + 1) != Some(&b'u') {
            out.extend_from_slice(&json[i..(i + 2).min(json.len())]);
            i += 2;
            continue;
        }
        let Some(u) = hex4(&json[i + 2..]) else {
            out.extend_from_slice(&json[i..]);
            break;
        };
        let paired_low = || {
            (json.get(i + 6) == Some(&b'\\') && json.get(i + 7) == Some(&b'u'))
                .then(|| hex4(&json[i + 8..]))
                .flatten()
                .filter(|&l| is_low(l))
        };
        if is_high(u) && paired_low().is_some() {
            out.extend_from_slice(&json[i..i + 12]);
            i += 12;
        } else if is_high(u) || is_low(u) {
            out.extend_from_slice(b"\\ufffd");
            changed = true;
            i += 6;
        } else {
            out.extend_from_slice(&json[i..i + 6]);
            i += 6;
        }
    }
    changed.then_some(out)
}

impl IncomingEvent {
    /// Parses and validates one event as received on the wire.
    pub fn parse(bytes: &[u8]) -> Result<Self, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge(bytes.len()));
        }
        let event: IncomingEvent = match serde_json::from_slice(bytes) {
            Ok(e) => e,
            Err(e) => match replace_lone_surrogates(bytes) {
                Some(fixed) => {
                    serde_json::from_slice(&fixed).map_err(|e| EventError::Shape(e.to_string()))?
                }
                None => return Err(EventError::Shape(e.to_string())),
            },
        };
        event.validate()?;
        Ok(event)
    }

    pub fn validate(&self) -> Result<(), EventError> {
        let k = &self.kind;
        let kind_ok = (1..=64).contains(&k.len())
            && k.starts_with(|c: char| c.is_ascii_lowercase())
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if !kind_ok {
            return Err(EventError::Kind(k.clone()));
        }
        let Value::Object(data) = &self.data else {
            return Err(EventError::Data);
        };
        if let Some(t) = self.t
            && !(t.is_finite() && t > 0.0)
        {
            return Err(EventError::Time(t));
        }
        // Only the recorder itself writes system events; clients cannot forge them.
        if self.source == EventSource::System || k.starts_with("system.") {
            return Err(EventError::Forbidden("a client", k.clone()));
        }
        let need = |field: &'static str, what: &'static str, ok: fn(&Value) -> bool| {
            if data.get(field).is_some_and(ok) {
                Ok(())
            } else {
                Err(EventError::Field {
                    kind: k.clone(),
                    field,
                    what,
                })
            }
        };
        match (self.source, k.as_str()) {
            (EventSource::Browser, "click") => {
                need("x", "a number", Value::is_number)?;
                need("y", "a number", Value::is_number)?;
                need("selector", "a string", Value::is_string)
            }
            (EventSource::Browser, "click_effect") => {
                need("click_id", "a number", Value::is_number)
            }
            (EventSource::Browser, "navigation") => need("url", "a string", Value::is_string),
            (EventSource::Browser, "input" | "change" | "focus" | "validation_error") => {
                need("selector", "a string", Value::is_string)
            }
            (EventSource::Browser, "js_error") => need("message", "a string", Value::is_string),
            (EventSource::Operator | EventSource::Observer, "marker") => {
                need("type", "a string", Value::is_string)
            }
            (EventSource::Participant, _) => crate::self_report::SelfReport::parse(k, &self.data)
                .map(|_| ())
                .map_err(EventError::Participant),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogates_from_a_cut_emoji_become_replacement_characters() {
        // The label «Далее 😀» cut after the emoji's first half.
        let cut = br#"{"source":"browser","kind":"click","data":{"x":1,"y":2,"selector":"b","text":"\u0414\ud83d"}}"#;
        assert!(serde_json::from_slice::<IncomingEvent>(cut).is_err());
        let e = IncomingEvent::parse(cut).expect("repaired");
        assert_eq!(e.data["text"], "Д\u{fffd}");
        // A whole pair, an escaped backslash before `u`, and other escapes stay as they are.
        assert_eq!(
            replace_lone_surrogates(br#""\ud83d\ude00 \\ud800 \n""#),
            None
        );
        assert_eq!(
            replace_lone_surrogates(br#"["\udc00", "\ud800x", "\ud800\u0041"]"#).unwrap(),
            br#"["\ufffd", "\ufffdx", "\ufffd\u0041"]"#.to_vec()
        );
        // Truncated escapes never panic.
        for t in [&b"\\"[..], b"\\u", b"\\ud8", b"\\ud800\\u", b"\\ud800\\udc"] {
            let _ = replace_lone_surrogates(t);
        }
    }

    #[test]
    fn validation_table() {
        let big = format!(
            r#"{{"source":"browser","kind":"custom","data":{{"x":"{}"}}}}"#,
            "a".repeat(MAX_EVENT_BYTES)
        );
        let cases: &[(&str, Result<(), &str>)] = &[
            (
                r#"{"source":"browser","kind":"click","data":{"x":1,"y":2,"selector":"a.b"},"t":1.5}"#,
                Ok(()),
            ),
            (
                r#"{"source":"operator","kind":"marker","data":{"type":"task_start"}}"#,
                Ok(()),
            ),
            (
                r#"{"source":"browser","kind":"click","data":{"x":1}}"#,
                Err("needs field \"y\""),
            ),
            (
                r#"{"source":"participant","kind":"self_report.seq","data":{"task":"t1","score":6}}"#,
                Ok(()),
            ),
            (
                r#"{"source":"participant","kind":"self_report.seq","data":{"task":"t1","score":9}}"#,
                Err("score is 1–7"),
            ),
            (
                r#"{"source":"participant","kind":"click","data":{"x":1,"y":2,"selector":"a"}}"#,
                Err("participant answer"),
            ),
            (
                r#"{"source":"browser","kind":"Click!","data":{}}"#,
                Err("event kind"),
            ),
            (
                r#"{"source":"browser","kind":"x","data":[1]}"#,
                Err("must be a JSON object"),
            ),
            (r#"{"source":"robot","kind":"x"}"#, Err("expected shape")),
            (
                r#"{"source":"browser","kind":"x","extra":1}"#,
                Err("expected shape"),
            ),
            (
                r#"{"source":"browser","kind":"x","t":-3}"#,
                Err("not a finite positive"),
            ),
            (
                r#"{"source":"browser","kind":"system.stop"}"#,
                Err("may not send"),
            ),
            (
                r#"{"source":"system","kind":"recording_stopped"}"#,
                Err("may not send"),
            ),
            (
                r#"{"source":"browser","kind":"click_effect","data":{}}"#,
                Err("click_id"),
            ),
            (r#"not json"#, Err("expected shape")),
            (&big, Err("byte limit")),
        ];
        for (input, want) in cases {
            let got = IncomingEvent::parse(input.as_bytes()).map(|_| ());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "{input}: {e}")
                }
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}
