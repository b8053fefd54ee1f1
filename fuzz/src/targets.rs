//! The fuzz targets: for each parser of outside input, its seeds, a
//! structure-aware generator and the check that runs one input. A check
//! panics on a crash of the parser and also on a broken property (an accepted
//! value that does not survive its own round trip, a converter output its
//! own reader refuses), which the runner reports like a crash.

use std::io::Cursor;

use arbitrary::{Result, Unstructured};
use hardware_setup::models::{self, Weights};
use lab_model::analysis::{QaReport, Renditions};
use lab_model::{IncomingEvent, Journey, StationConfig, journey, parse_events, parse_manifest};
use recorder::clock::{ClientClock, SyncSample};

use crate::ct2::{self, Checkpoint};
use crate::{seeds, tree};

pub struct Target {
    pub name: &'static str,
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// A structured input, usually an edit of the given seed.
    pub generate: fn(&mut Unstructured, &[u8]) -> Result<Vec<u8>>,
    /// Runs one input; panics are failures.
    pub check: fn(&[u8]),
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "manifest",
        seeds: seeds::manifests,
        generate: edit_json_seed,
        check: check_manifest,
    },
    Target {
        name: "events",
        seeds: seeds::events,
        generate: gen_events,
        check: check_events,
    },
    Target {
        name: "incoming_event",
        seeds: seeds::incoming_events,
        generate: edit_json_seed,
        check: check_incoming_event,
    },
    Target {
        name: "clock",
        seeds: seeds::clock_samples,
        generate: gen_clock,
        check: check_clock,
    },
    Target {
        name: "journey",
        seeds: seeds::journeys,
        generate: edit_toml_seed,
        check: check_journey,
    },
    Target {
        name: "station",
        seeds: seeds::stations,
        generate: edit_toml_seed,
        check: check_station,
    },
    Target {
        name: "renditions",
        seeds: seeds::renditions,
        generate: edit_json_seed,
        check: check_json_round_trip::<Renditions>,
    },
    Target {
        name: "qa",
        seeds: seeds::qa_reports,
        generate: edit_json_seed,
        check: check_json_round_trip::<QaReport>,
    },
    Target {
        name: "ct2",
        seeds: ct2_seeds,
        generate: gen_ct2,
        check: check_ct2,
    },
    Target {
        name: "ggml",
        seeds: ggml_seeds,
        generate: gen_ggml,
        check: check_ggml,
    },
];

pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

// --- JSON documents ---------------------------------------------------------

fn edit_json_seed(u: &mut Unstructured, seed: &[u8]) -> Result<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(seed).unwrap_or_default();
    tree::edit_json(u, &mut v)?;
    Ok(if u.arbitrary()? {
        serde_json::to_vec_pretty(&v)
    } else {
        serde_json::to_vec(&v)
    }
    .expect("a JSON value serialises"))
}

fn check_manifest(bytes: &[u8]) {
    let Ok(m) = parse_manifest(bytes) else {
        return;
    };
    // What was accepted stays accepted, and equal, after a write and a read.
    let again = parse_manifest(&serde_json::to_vec_pretty(&m).expect("manifest serialises"))
        .expect("an accepted manifest re-reads");
    assert_eq!(again, m, "manifest round trip");
    // The session-time arithmetic readers do must not overflow within the limits.
    for s in &m.segments {
        if let Some(end) = s.end_ns {
            let _ = (end - s.start_ns)
                .checked_mul(1000)
                .expect("duration x rate");
        }
    }
    if let Some(ls) = &m.life_situation {
        assert!(journey::valid_id(ls));
    }
}

fn check_json_round_trip<T>(bytes: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(v) = serde_json::from_slice::<T>(bytes) else {
        return;
    };
    let again: T = serde_json::from_slice(&serde_json::to_vec(&v).expect("serialises"))
        .expect("an accepted document re-reads");
    assert_eq!(again, v, "JSON round trip");
}

fn check_incoming_event(bytes: &[u8]) {
    let Ok(e) = IncomingEvent::parse(bytes) else {
        return;
    };
    e.validate().expect("a parsed event is valid");
    let text = serde_json::to_vec(&e).expect("event serialises");
    if text.len() <= lab_model::event::MAX_EVENT_BYTES {
        IncomingEvent::parse(&text).expect("an accepted event, re-serialised, is accepted");
    }
}

// --- events.jsonl -------------------------------------------------------------

/// Lines edited from the seed events, maybe one torn at a random byte.
fn gen_events(u: &mut Unstructured, seed: &[u8]) -> Result<Vec<u8>> {
    let lines: Vec<&[u8]> = seed
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let line = if lines.is_empty() {
            &b"{}"[..]
        } else {
            *u.choose(&lines)?
        };
        let mut v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
        if u.ratio(1, 2)? {
            tree::edit_json(u, &mut v)?;
        }
        out.extend(serde_json::to_vec(&v).expect("serialises"));
        out.push(b'\n');
    }
    if u.ratio(1, 2)? && !out.is_empty() {
        let cut = u.choose_index(out.len())?;
        out.truncate(cut);
    }
    Ok(out)
}

fn check_events(bytes: &[u8]) {
    let Ok((events, torn)) = parse_events(bytes) else {
        return;
    };
    assert!(torn <= 1, "only the last line can be torn");
    if bytes.ends_with(b"\n") || bytes.is_empty() {
        assert_eq!(torn, 0, "a file ending on a newline has no torn line");
    }
    let lines = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .count();
    assert_eq!(
        events.len() + torn,
        lines,
        "every non-blank line is an event or torn"
    );
}

// --- the recorder's clock math ------------------------------------------------

const CLIENT_MS: &[f64] = &[
    0.0,
    -0.0,
    -1.0,
    1.0,
    1_795_428_902_986.25,
    9.007_199_254_740_992e15,
    1e300,
    f64::MAX,
    f64::MIN_POSITIVE,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
];

fn gen_clock(u: &mut Unstructured, seed: &[u8]) -> Result<Vec<u8>> {
    let mut out = seed.to_vec();
    for _ in 0..u.int_in_range(0..=70)? {
        let t0 = if u.ratio(1, 2)? {
            *u.choose(CLIENT_MS)?
        } else {
            u.arbitrary()?
        };
        let t1 = if u.ratio(1, 2)? {
            t0 + f64::from(u.int_in_range(0u32..=70_000)?)
        } else {
            u.arbitrary()?
        };
        let ts: i64 = if u.ratio(1, 2)? {
            *u.choose(tree::INTS)?
        } else {
            u.arbitrary()?
        };
        out.extend_from_slice(&t0.to_le_bytes());
        out.extend_from_slice(&t1.to_le_bytes());
        out.extend_from_slice(&ts.to_le_bytes());
    }
    Ok(out)
}

/// 24-byte records (t0 f64, t1 f64, ts i64); each arrives at `now = ts + k ms`.
fn check_clock(bytes: &[u8]) {
    let mut clock = ClientClock::default();
    for (k, rec) in bytes.chunks_exact(24).enumerate() {
        let f = |i: usize| <[u8; 8]>::try_from(&rec[i..i + 8]).expect("8 bytes");
        let (t0, t1, ts) = (
            f64::from_le_bytes(f(0)),
            f64::from_le_bytes(f(8)),
            i64::from_le_bytes(f(16)),
        );
        let now = ts.saturating_add((k as i64 % 7) * 1_000_000);
        let _ = clock.add(
            SyncSample {
                t0_ms: t0,
                t1_ms: t1,
                ts_ns: ts,
            },
            now,
        );
        let _ = clock.to_session(t0);
        let _ = clock.to_session(t1);
    }
    if let Some(e) = clock.estimate("tab") {
        assert!(e.uncertainty_ns >= 0 && e.rtt_ns >= 0, "{e:?}");
    }
}

// --- TOML files people edit -----------------------------------------------------

fn edit_toml_seed(u: &mut Unstructured, seed: &[u8]) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(seed).unwrap_or_default();
    let mut table: toml::Table = toml::from_str(text).unwrap_or_default();
    tree::edit_toml(u, &mut table)?;
    Ok(toml::to_string(&table)
        .map(String::into_bytes)
        .unwrap_or_else(|_| seed.to_vec()))
}

fn check_journey(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(j) = Journey::from_toml(text) else {
        return;
    };
    assert!(journey::valid_id(&j.id), "journey id {:?} accepted", j.id);
    // Entry rules are globs matched against every event: they must not hang.
    let long = "ab*".repeat(200);
    for rule in j.steps.iter().flat_map(|s| &s.enter) {
        for p in [
            &rule.url,
            &rule.title,
            &rule.selector,
            &rule.click_text,
            &rule.marker,
        ]
        .into_iter()
        .flatten()
        {
            journey::glob_match(p, p);
            journey::glob_match(p, &long);
        }
    }
}

fn check_station(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(c) = StationConfig::from_toml(text) else {
        return;
    };
    let again = StationConfig::from_toml(&c.to_toml()).expect("an accepted config re-reads");
    assert_eq!(again, c, "station config round trip");
}

// --- model files ---------------------------------------------------------------

fn ct2_seeds() -> Vec<Vec<u8>> {
    let small = Checkpoint::whisper(4, 2);
    let q8 = Checkpoint::whisper(32, 2);
    vec![
        ct2::encode(false, &small.model_bytes(), &small.vocabulary_bytes()),
        ct2::encode(true, &q8.model_bytes(), &q8.vocabulary_bytes()),
    ]
}

fn gen_ct2(u: &mut Unstructured, _seed: &[u8]) -> Result<Vec<u8>> {
    let q8 = u.ratio(1, 8)?;
    // Width and mel bins 0 included: a zero dimension once passed every check.
    let mut c = Checkpoint::whisper(
        if q8 { 32 } else { *u.choose(&[0, 1, 2, 4, 8])? },
        u.int_in_range(0..=3)?,
    );
    c.perturb(u)?;
    Ok(ct2::encode(q8, &c.model_bytes(), &c.vocabulary_bytes()))
}

fn check_ct2(bytes: &[u8]) {
    let (q8, model, vocabulary) = ct2::decode(bytes);
    let weights = if q8 { Weights::Q8_0 } else { Weights::F16 };
    let Ok(ggml) = models::convert_bytes(model.to_vec(), vocabulary, weights) else {
        return;
    };
    // What the converter writes, its own reader must accept.
    let len = ggml.len() as u64;
    let s = models::inspect_ggml_from(std::path::Path::new("out.bin"), Cursor::new(ggml), len)
        .expect("converted GGML passes inspect_ggml");
    assert_eq!(s.tensors.len(), s.hparams.expected_tensors());
}

fn ggml_seeds() -> Vec<Vec<u8>> {
    ct2_seeds()
        .iter()
        .map(|s| {
            let (q8, model, vocab) = ct2::decode(s);
            let w = if q8 { Weights::Q8_0 } else { Weights::F16 };
            models::convert_bytes(model.to_vec(), vocab, w).expect("the seed checkpoint converts")
        })
        .collect()
}

/// A converted seed with header fields, counts or tensor records changed.
fn gen_ggml(u: &mut Unstructured, seed: &[u8]) -> Result<Vec<u8>> {
    let mut out = seed.to_vec();
    for _ in 0..u.int_in_range(1..=4)? {
        // Header ints are at 4-byte offsets up to the mel block; tensor records
        // too start 4-aligned in a file of whole i32s and f16 pairs.
        let words = out.len() / 4;
        if words == 0 {
            break;
        }
        let i = if u.ratio(2, 3)? {
            u.int_in_range(0..=words.min(16) - 1)?
        } else {
            u.choose_index(words)?
        };
        let v: i32 = if u.ratio(1, 2)? {
            *u.choose(&[0, 1, -1, 2, 3, 4, 8, 32, i32::MAX, i32::MIN, 0x10000])?
        } else {
            u.arbitrary()?
        };
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    if u.ratio(1, 4)? && !out.is_empty() {
        let cut = u.choose_index(out.len())?;
        out.truncate(cut);
    }
    Ok(out)
}

fn check_ggml(bytes: &[u8]) {
    let _ = models::inspect_ggml_from(
        std::path::Path::new("model.bin"),
        Cursor::new(bytes),
        bytes.len() as u64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed passes its own check, so a failure in a run is the mutation's.
    #[test]
    fn every_seed_passes_its_check() {
        for t in TARGETS {
            let seeds = (t.seeds)();
            assert!(!seeds.is_empty(), "{} has no seeds", t.name);
            for s in &seeds {
                (t.check)(s);
            }
        }
        // The ct2 seeds really convert, so the generator starts from valid models.
        assert_eq!(ggml_seeds().len(), 2);
    }

    /// A checkpoint of width 0 passed every shape check on empty data and
    /// then divided by zero while writing (`row_bytes = len / rows`).
    #[test]
    fn a_zero_width_checkpoint_is_refused_instead_of_dividing_by_zero() {
        let c = Checkpoint::whisper(0, 2);
        let input = ct2::encode(false, &c.model_bytes(), &c.vocabulary_bytes());
        check_ct2(&input);
        let err = models::convert_bytes(c.model_bytes(), &c.vocabulary_bytes(), Weights::F16)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not fit the GGML header"), "{err}");
    }

    /// A variable count of 2^32-1 in a few bytes reserved a hash map for four
    /// billion variables (capacity overflow, or the allocator aborting).
    #[test]
    fn a_huge_ct2_variable_count_does_not_reserve_memory() {
        let mut model = 6u32.to_le_bytes().to_vec();
        model.extend_from_slice(&12u16.to_le_bytes());
        model.extend_from_slice(b"WhisperSpec\0");
        model.extend_from_slice(&3u32.to_le_bytes());
        model.extend_from_slice(&u32::MAX.to_le_bytes());
        check_ct2(&ct2::encode(false, &model, b""));
        let err = models::convert_bytes(model, b"", Weights::F16)
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated: name of variable #0"), "{err}");
    }

    /// GGML tensor dims whose product overflows u64 panicked (debug) or
    /// wrapped to a small size (release) in `inspect_ggml`.
    #[test]
    fn ggml_tensor_dims_whose_product_overflows_are_refused() {
        let mut b = Vec::new();
        let mut i32s = |v: &[i32]| v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        i32s(&[0x6767_6d6c]);
        i32s(&[1; 11]); // hparams: one of everything
        i32s(&[1, 1, 0]); // mel 1 x 1, its one f32
        i32s(&[0]); // no tokens
        i32s(&[4, 1, 0, i32::MAX, i32::MAX, i32::MAX, i32::MAX]); // rank 4, name "a", f32
        b.push(b'a');
        check_ggml(&b);
        let err = models::inspect_ggml_from(
            std::path::Path::new("x.bin"),
            Cursor::new(&b),
            b.len() as u64,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("do not fit type 0"), "{err}");
    }
}
