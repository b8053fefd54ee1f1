//! Arousal as evidence: skin-conductance responses (SCRs) and heart-rate
//! rises from the session's sensor streams ([`crate::timeline::Signal`]).
//!
//! Arousal is not frustration by itself (surprise, effort and interest raise
//! it too), so it never makes a candidate alone: it strengthens a candidate
//! it follows ([`enrich`]: a response starting 1–3 s after the candidate
//! began, up to 3 s after it ended), and proposes one of its own only where
//! another signal agrees ([`detect`]: a response 1–3 s after a page error or
//! a help marker that no candidate covers).
//!
//! SCRs are found trough to peak (the classic method; Boucsein, *Electrodermal
//! Activity*, 2012): on the signal smoothed over [`SMOOTH_NS`], a rise of at
//! least [`MIN_SCR_US`] above the trough before it, reached within
//! [`MIN_RISE_NS`]–[`MAX_RISE_NS`] (slower drifts are the tonic level), is a
//! response; its onset is the trough, its amplitude the rise. A heart-rate
//! rise is the rate staying [`HR_RISE_BPM`] above its mean of the
//! [`HR_BASELINE_NS`] before for [`HR_SUSTAIN_NS`].

use lab_model::analysis::{Candidate, Evidence, StepAnalysis};

use super::candidate::{Confidence, adjust, candidate};
use super::notes::duration_ru;
use crate::timeline::{Signal, SignalKind, Timeline};

pub const NAME: &str = "arousal";

/// Smallest SCR, µS, trough to peak (the usual criterion is 0.01–0.05 µS;
/// the upper end keeps sensor noise out).
pub const MIN_SCR_US: f64 = 0.05;
/// Moving-average window applied before looking for responses.
pub const SMOOTH_NS: i64 = 500_000_000;
/// A response begins where the smoothed signal starts climbing at least
/// this fast (µS/s, over [`SLOPE_NS`]) and keeps climbing to its peak; a
/// slower rise before it is the tonic level drifting.
pub const ONSET_SLOPE: f64 = 0.02;
pub const SLOPE_NS: i64 = 250_000_000;
/// An SCR rises in 0.5–5 s.
pub const MIN_RISE_NS: i64 = 500_000_000;
pub const MAX_RISE_NS: i64 = 5_000_000_000;
/// A response follows its stimulus by 1–3 s.
pub const LATENCY_MIN_NS: i64 = 1_000_000_000;
pub const LATENCY_MAX_NS: i64 = 3_000_000_000;
/// A heart-rate rise: this many beats per minute above the mean of the
/// window before, held this long.
pub const HR_RISE_BPM: f64 = 10.0;
pub const HR_BASELINE_NS: i64 = 10_000_000_000;
pub const HR_SUSTAIN_NS: i64 = 2_000_000_000;
/// Added to a candidate a response follows.
pub const BONUS: f32 = 0.1;
/// A response after a page error or a help marker nothing else proposed.
pub const CONFIDENCE_WITH_STIMULUS: f32 = 0.4;

/// One response found in a signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Response {
    pub kind: SignalKind,
    pub onset_ns: i64,
    pub peak_ns: i64,
    /// µS for an SCR, beats per minute for a heart-rate rise.
    pub amplitude: f64,
}

impl Response {
    /// «кожно-гальваническая реакция 0,12 мкСм» / «пульс +14 уд/мин».
    fn describe(&self) -> String {
        match self.kind {
            SignalKind::Eda => format!(
                "кожно-гальваническая реакция {} мкСм",
                format!("{:.2}", self.amplitude).replace('.', ",")
            ),
            SignalKind::HeartRate => format!("пульс +{:.0} уд/мин", self.amplitude),
        }
    }
}

/// Every response in the session's signals, by onset.
pub fn responses(signals: &[Signal]) -> Vec<Response> {
    let mut out: Vec<Response> = signals
        .iter()
        .flat_map(|s| match s.kind {
            SignalKind::Eda => scrs(s),
            SignalKind::HeartRate => heart_rate_rises(s),
        })
        .collect();
    out.sort_by_key(|r| r.onset_ns);
    out
}

/// The signal averaged over the [`SMOOTH_NS`] before each sample.
fn smoothed(s: &Signal) -> Vec<f64> {
    let mut out = Vec::with_capacity(s.v.len());
    let (mut from, mut sum) = (0usize, 0.0);
    for i in 0..s.v.len() {
        sum += s.v[i];
        while s.t_ns[i] - s.t_ns[from] > SMOOTH_NS {
            sum -= s.v[from];
            from += 1;
        }
        out.push(sum / (i + 1 - from) as f64);
    }
    out
}

/// The response from a trough to a peak, if it is one: its onset moved up
/// to where the steady climb to the peak begins ([`ONSET_SLOPE`]), its
/// amplitude measured from there.
fn response(t: &[i64], v: &[f64], trough: usize, peak: usize) -> Option<Response> {
    let slope = |i: usize| {
        let j = (0..i).rev().find(|&j| t[i] - t[j] >= SLOPE_NS)?;
        Some((v[i] - v[j]) / ((t[i] - t[j]) as f64 / 1e9))
    };
    // From the steepest point of the rise (the top flattens), back to where
    // the climb began.
    let mut onset = (trough..=peak)
        .max_by(|&a, &b| {
            let (x, y) = (slope(a).unwrap_or(f64::MIN), slope(b).unwrap_or(f64::MIN));
            x.total_cmp(&y)
        })
        .unwrap_or(peak);
    while onset > trough && slope(onset).is_some_and(|s| s >= ONSET_SLOPE) {
        onset -= 1;
    }
    // The slope at `onset` looks back SLOPE_NS: the climb began there.
    let onset = (trough..=onset)
        .rev()
        .find(|&j| t[onset] - t[j] >= SLOPE_NS)
        .unwrap_or(trough);
    let rise = t[peak] - t[onset];
    let amplitude = v[peak] - v[onset];
    ((MIN_RISE_NS..=MAX_RISE_NS).contains(&rise) && amplitude >= MIN_SCR_US).then_some(Response {
        kind: SignalKind::Eda,
        onset_ns: t[onset],
        peak_ns: t[peak],
        amplitude,
    })
}

/// Skin-conductance responses, trough to peak.
pub fn scrs(s: &Signal) -> Vec<Response> {
    let v = smoothed(s);
    let t = &s.t_ns;
    let mut out = Vec::new();
    if v.is_empty() {
        return out;
    }
    let mut trough = 0usize;
    let mut peak: Option<usize> = None;
    for i in 1..v.len() {
        match peak {
            None => {
                // The trough is the lowest point of the last MAX_RISE_NS:
                // a rise slower than that is the tonic level moving.
                if v[i] <= v[trough] || t[i] - t[trough] > MAX_RISE_NS {
                    trough = i;
                } else if v[i] - v[trough] >= MIN_SCR_US {
                    peak = Some(i);
                }
            }
            Some(p) => {
                if v[i] > v[p] {
                    peak = Some(i);
                } else if v[p] - v[i] >= MIN_SCR_US / 2.0 || t[i] - t[p] > MAX_RISE_NS {
                    out.extend(response(t, &v, trough, p));
                    peak = None;
                    trough = i;
                }
            }
        }
    }
    if let Some(p) = peak {
        out.extend(response(t, &v, trough, p));
    }
    out
}

/// Heart-rate rises over the mean of the window before.
pub fn heart_rate_rises(s: &Signal) -> Vec<Response> {
    let (t, v) = (&s.t_ns, &s.v);
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let window: Vec<f64> = (0..i)
            .filter(|&j| t[i] - t[j] <= HR_BASELINE_NS)
            .map(|j| v[j])
            .collect();
        // A baseline needs most of its window.
        let covered = (0..i).any(|j| t[i] - t[j] >= HR_BASELINE_NS * 8 / 10);
        if window.is_empty() || !covered {
            i += 1;
            continue;
        }
        let base = window.iter().sum::<f64>() / window.len() as f64;
        if v[i] - base < HR_RISE_BPM {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut top = i;
        while j + 1 < v.len() && v[j + 1] - base >= HR_RISE_BPM {
            j += 1;
            if v[j] > v[top] {
                top = j;
            }
        }
        if t[j] - t[i] >= HR_SUSTAIN_NS {
            out.push(Response {
                kind: SignalKind::HeartRate,
                onset_ns: t[i],
                peak_ns: t[top],
                amplitude: v[top] - base,
            });
        }
        i = j + 1;
    }
    out
}

/// Whether a response with this onset follows a moment that began at
/// `start` and ended at `end`.
fn follows(onset: i64, start: i64, end: i64) -> bool {
    onset >= start + LATENCY_MIN_NS && onset <= end.max(start) + LATENCY_MAX_NS
}

/// Strengthens each candidate a response follows, and says so; returns
/// which responses were used.
pub fn enrich(candidates: &mut [Candidate], responses: &[Response]) -> Vec<bool> {
    let mut used = vec![false; responses.len()];
    for c in candidates.iter_mut() {
        let Some((k, r)) = responses
            .iter()
            .enumerate()
            .find(|(_, r)| follows(r.onset_ns, c.start_ns, c.end_ns))
        else {
            continue;
        };
        used[k] = true;
        let said = format!(
            "{} через {} после начала",
            r.describe(),
            duration_ru(r.onset_ns - c.start_ns)
        );
        adjust(c, BONUS, format!("{said}: тело подтверждает"));
        c.evidence.note += &format!("; {said}");
    }
    used
}

/// Candidates of arousal together with a stimulus nothing else proposed: a
/// response 1–3 s after a validation or script error, or after the
/// operator's help marker. `used` says which responses a candidate took
/// already ([`enrich`]).
pub fn detect(
    timeline: &Timeline,
    steps: &StepAnalysis,
    responses: &[Response],
    used: &[bool],
) -> Vec<Candidate> {
    let stimuli: Vec<_> = timeline
        .events
        .iter()
        .filter(|e| {
            timeline.browser("validation_error").any(|x| x.seq == e.seq)
                || timeline.browser("js_error").any(|x| x.seq == e.seq)
                || timeline.markers("help").any(|x| x.seq == e.seq)
        })
        .collect();
    let mut out = Vec::new();
    for (r, _) in responses.iter().zip(used).filter(|(_, u)| !**u) {
        let Some(e) = stimuli
            .iter()
            .rev()
            .find(|e| follows(r.onset_ns, e.t_ns, e.t_ns))
        else {
            continue;
        };
        let what = if e.kind == "marker" {
            "просьба о помощи (отметка оператора)"
        } else {
            "ошибка на странице"
        };
        let latency = duration_ru(r.onset_ns - e.t_ns);
        let confidence = Confidence::rule(
            format!("{} через {latency} после события «{what}»", r.describe()),
            CONFIDENCE_WITH_STIMULUS,
        );
        out.push(candidate(
            NAME,
            steps,
            e.t_ns,
            r.peak_ns,
            confidence,
            Evidence {
                events: vec![e.seq],
                note: format!("{what}, через {latency} — {}", r.describe()),
                ..Evidence::default()
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::segment;
    use crate::timeline::testkit::*;

    const S: i64 = 1_000_000_000;

    /// `secs` of EDA at 32 Hz: a tonic level drifting slowly up, and an SCR
    /// (a 1 s rise of `amp` µS, then a slow fall) at each onset.
    fn eda(secs: f64, onsets: &[(f64, f64)]) -> Signal {
        let n = (secs * 32.0) as usize;
        let t_ns: Vec<i64> = (0..n).map(|i| i as i64 * S / 32).collect();
        let v = t_ns
            .iter()
            .map(|&t| {
                let x = t as f64 / 1e9;
                let mut v = 2.0 + 0.004 * x + 0.003 * (x * 7.0).sin();
                for &(on, amp) in onsets {
                    let d = x - on;
                    if d > 0.0 {
                        v += amp * if d < 1.0 { d } else { (-(d - 1.0) / 4.0).exp() };
                    }
                }
                v
            })
            .collect();
        Signal {
            kind: SignalKind::Eda,
            t_ns,
            v,
        }
    }

    #[test]
    fn scrs_are_found_at_their_onsets_and_drift_is_not() {
        // (case, signal, the (onset s, amplitude µS) to find)
        type Case<'a> = (&'a str, Signal, &'a [(f64, f64)]);
        let cases: &[Case] = &[
            (
                "two responses",
                eda(60.0, &[(10.0, 0.2), (30.0, 0.08)]),
                &[(10.0, 0.2), (30.0, 0.08)],
            ),
            ("below the amplitude", eda(60.0, &[(10.0, 0.03)]), &[]),
            ("drift and noise only", eda(120.0, &[]), &[]),
            (
                "a response on the fall of another",
                eda(60.0, &[(10.0, 0.3), (14.0, 0.2)]),
                &[(10.0, 0.3), (14.0, 0.2)],
            ),
        ];
        for (name, signal, want) in cases {
            let got = scrs(signal);
            assert_eq!(got.len(), want.len(), "{name}: {got:?}");
            for (r, (on, amp)) in got.iter().zip(want.iter()) {
                let onset = r.onset_ns as f64 / 1e9;
                assert!((onset - on).abs() < 0.5, "{name}: onset {onset} vs {on}");
                assert!(
                    (r.amplitude - amp).abs() < amp * 0.35,
                    "{name}: {} vs {amp}",
                    r.amplitude
                );
            }
        }
    }

    #[test]
    fn heart_rate_rises_need_a_baseline_and_to_last() {
        let hr = |bumps: &[(f64, f64, f64)]| {
            let t_ns: Vec<i64> = (0..60).map(|i| i as i64 * S).collect();
            let v = t_ns
                .iter()
                .map(|&t| {
                    let x = t as f64 / 1e9;
                    72.0 + bumps
                        .iter()
                        .filter(|(from, to, _)| x >= *from && x < *to)
                        .map(|b| b.2)
                        .sum::<f64>()
                })
                .collect();
            Signal {
                kind: SignalKind::HeartRate,
                t_ns,
                v,
            }
        };
        let got = heart_rate_rises(&hr(&[(20.0, 25.0, 15.0)]));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].onset_ns, 20 * S);
        assert!((got[0].amplitude - 15.0).abs() < 0.01);
        assert!(
            heart_rate_rises(&hr(&[(20.0, 21.0, 15.0)])).is_empty(),
            "one second is no rise"
        );
        assert!(
            heart_rate_rises(&hr(&[(3.0, 8.0, 15.0)])).is_empty(),
            "no baseline yet"
        );
        assert!(
            heart_rate_rises(&hr(&[(20.0, 25.0, 6.0)])).is_empty(),
            "too small"
        );
    }

    #[test]
    fn arousal_strengthens_what_it_follows_and_needs_a_stimulus_alone() {
        let error = browser(
            20.0,
            "validation_error",
            serde_json::json!({"field": "snils"}),
        );
        let t = tl(vec![error]);
        let steps = segment(&journey(), &t);
        let signal = eda(60.0, &[(21.5, 0.2), (40.0, 0.2)]);
        let found = responses(&[signal]);
        assert_eq!(found.len(), 2, "{found:?}");
        // No candidate: the response after the error is one, the other is not.
        let own = detect(&t, &steps, &found, &vec![false; found.len()]);
        assert_eq!(own.len(), 1, "{own:?}");
        assert_eq!(own[0].detector, NAME);
        assert_eq!(own[0].start_ns, 20 * S);
        let note = &own[0].evidence.note;
        assert!(
            note.starts_with("ошибка на странице, через 1,")
                && note.contains(" с — кожно-гальваническая реакция 0,"),
            "{note}"
        );
        // A candidate at the error takes the response instead.
        let mut cands = own.clone();
        cands[0].detector = "field_struggle".into();
        let before = cands[0].confidence;
        let used = enrich(&mut cands, &found);
        assert_eq!(used, vec![true, false]);
        assert!((cands[0].confidence - before - BONUS).abs() < 0.011);
        assert!(
            cands[0]
                .evidence
                .basis
                .last()
                .unwrap()
                .why
                .contains("тело подтверждает")
        );
        let left = detect(&t, &steps, &found, &used);
        assert!(left.is_empty(), "{found:?} {left:?}");
    }
}
