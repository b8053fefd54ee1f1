//! Placing client events on the session clock.
//!
//! A client (a browser tab, an operator console) stamps events with its own
//! clock. We estimate `offset = session - client` by round trips: the client
//! sends its time `t0`, we answer with the session time `ts`, the client
//! notes its time `t1` on receipt. If the reply was stamped halfway through
//! the round trip, `offset = ts - (t0 + t1) / 2`, and whatever the asymmetry
//! it is off by at most `(t1 - t0) / 2`. So the sample with the smallest
//! round trip is the best one (NTP's clock filter keeps it for the same
//! reason). Clocks drift, so only samples from the recent window compete.
//!
//! Every number here comes from a client, so nothing is trusted: client
//! times must lie in `0..=MAX_CLIENT_TIME_MS`, `ts` must be a session time the
//! recorder could have issued in the last window (`0 <= now - ts <= window`),
//! and all arithmetic runs in i128 and is converted back with a check, so a
//! hostile sample is refused with a reason instead of overflowing (a panic in
//! debug builds, silently wrapped offsets in release builds).

use gstreamer::prelude::*;
use lab_model::ClockOffsetEstimate;

use crate::limits::{MAX_CLIENT_TIME_MS, MAX_SAMPLES_PER_CLIENT, valid_client_time};

/// Samples older than this (session time) no longer compete for "best".
pub const SAMPLE_WINDOW_NS: i64 = 60_000_000_000;

/// Longest plausible round trip.
const MAX_RTT_NS: i128 = 60_000_000_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClockError {
    #[error("client time {0} ms is not within 0..={MAX_CLIENT_TIME_MS} ms")]
    ClientTime(f64),
    #[error("round trip of {0} ms is not within 0..60000 ms")]
    RoundTrip(f64),
    #[error("ts_ns {ts_ns} is not a session time issued in the last 60 s (now {now_ns})")]
    ServerTime { ts_ns: i64, now_ns: i64 },
    #[error("client already has {MAX_SAMPLES_PER_CLIENT} sync samples in the last 60 s")]
    TooManySamples,
    #[error("client time {0} ms maps outside the representable session time")]
    Overflow(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncSample {
    /// Client time when the request left, in ms.
    pub t0_ms: f64,
    /// Client time when the reply arrived, in ms.
    pub t1_ms: f64,
    /// Session time stamped by the recorder when answering.
    pub ts_ns: i64,
}

/// Client ms to ns, exactly enough for bounded inputs; `as` saturates, never wraps.
fn ms_to_ns(ms: f64) -> i128 {
    (ms * 1e6).round() as i128
}

/// A sample that passed every check, with its derived values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measured {
    ts_ns: i64,
    rtt_ns: i64,
    offset_ns: i64,
}

impl SyncSample {
    /// Checks the sample against `now_ns` (the session time at its arrival)
    /// and derives round trip and offset.
    fn measure(&self, now_ns: i64) -> Result<Measured, ClockError> {
        for t in [self.t0_ms, self.t1_ms] {
            if !valid_client_time(t) {
                return Err(ClockError::ClientTime(t));
            }
        }
        // Differences first, in f64, as the client measured them: each reading
        // alone is only exact to ~0.25 µs at Unix-epoch magnitudes.
        let rtt = ms_to_ns(self.t1_ms - self.t0_ms);
        if !(0..MAX_RTT_NS).contains(&rtt) {
            return Err(ClockError::RoundTrip(self.t1_ms - self.t0_ms));
        }
        let age = i128::from(now_ns) - i128::from(self.ts_ns);
        if self.ts_ns < 0 || !(0..=i128::from(SAMPLE_WINDOW_NS)).contains(&age) {
            return Err(ClockError::ServerTime {
                ts_ns: self.ts_ns,
                now_ns,
            });
        }
        let offset = i128::from(self.ts_ns) - ms_to_ns((self.t0_ms + self.t1_ms) / 2.0);
        // Bounded inputs keep both in range; the checks make that a proof, not a hope.
        let rtt_ns = i64::try_from(rtt).map_err(|_| ClockError::RoundTrip(rtt as f64 / 1e6))?;
        let offset_ns = i64::try_from(offset).map_err(|_| ClockError::Overflow(self.t0_ms))?;
        Ok(Measured {
            ts_ns: self.ts_ns,
            rtt_ns,
            offset_ns,
        })
    }
}

/// The offset estimate of one client.
#[derive(Debug, Clone, Default)]
pub struct ClientClock {
    samples: Vec<Measured>,
    total: u32,
}

impl ClientClock {
    /// Adds a sample received at session time `now_ns`, or says why it is refused.
    pub fn add(&mut self, s: SyncSample, now_ns: i64) -> Result<(), ClockError> {
        let m = s.measure(now_ns)?;
        let newest = self
            .samples
            .iter()
            .map(|x| x.ts_ns)
            .chain([m.ts_ns])
            .max()
            .unwrap_or(m.ts_ns);
        self.samples
            .retain(|x| i128::from(newest) - i128::from(x.ts_ns) <= i128::from(SAMPLE_WINDOW_NS));
        if self.samples.len() >= MAX_SAMPLES_PER_CLIENT {
            return Err(ClockError::TooManySamples);
        }
        self.total = self.total.saturating_add(1);
        self.samples.push(m);
        Ok(())
    }

    fn best(&self) -> Option<&Measured> {
        self.samples.iter().min_by_key(|s| s.rtt_ns)
    }

    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Maps a client timestamp (ms) to session time (ns) with its uncertainty;
    /// `None` if the client has no sample yet.
    pub fn to_session(&self, client_ms: f64) -> Result<Option<(i64, i64)>, ClockError> {
        if !valid_client_time(client_ms) {
            return Err(ClockError::ClientTime(client_ms));
        }
        let Some(b) = self.best() else {
            return Ok(None);
        };
        let t = ms_to_ns(client_ms) + i128::from(b.offset_ns);
        let t = i64::try_from(t).map_err(|_| ClockError::Overflow(client_ms))?;
        Ok(Some((t, b.rtt_ns / 2)))
    }

    pub fn estimate(&self, client: &str) -> Option<ClockOffsetEstimate> {
        let b = self.best()?;
        Some(ClockOffsetEstimate {
            client: client.to_string(),
            offset_ns: b.offset_ns,
            uncertainty_ns: b.rtt_ns / 2,
            rtt_ns: b.rtt_ns,
            samples: self.total,
            measured_at_ns: self.samples.iter().map(|s| s.ts_ns).max().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose clock reads `session + skew` and whose messages take
    /// `up`/`down` ms each way.
    fn sample(at_ms: f64, skew_ms: f64, up: f64, down: f64) -> SyncSample {
        let t0 = at_ms + skew_ms;
        SyncSample {
            t0_ms: t0,
            ts_ns: ((at_ms + up) * 1e6) as i64,
            t1_ms: t0 + up + down,
        }
    }

    /// Adds a sample as if it arrived right after the recorder stamped it.
    fn add(c: &mut ClientClock, s: SyncSample) -> Result<(), ClockError> {
        c.add(s, s.ts_ns)
    }

    #[test]
    fn keeps_the_minimum_rtt_sample_and_bounds_its_error() {
        let mut c = ClientClock::default();
        // Asymmetric, slow exchanges, then one quick one.
        for (at, up, down) in [
            (1000.0, 30.0, 2.0),
            (2000.0, 1.0, 40.0),
            (3000.0, 0.4, 0.6),
            (4000.0, 9.0, 9.0),
        ] {
            add(&mut c, sample(at, 1.7e12, up, down)).unwrap();
        }
        let e = c.estimate("tab").unwrap();
        assert_eq!(e.rtt_ns, 1_000_000);
        assert_eq!(e.uncertainty_ns, 500_000);
        // True offset is -1.7e12 ms; the estimate is off by (up - down) / 2 = 0.1 ms.
        let true_offset = -1.7e18 as i64;
        assert!(
            (e.offset_ns - true_offset).abs() <= e.uncertainty_ns,
            "{}",
            e.offset_ns - true_offset
        );
        // A client stamp that reads session time 5 s maps back to 5 s.
        let (t, u) = c.to_session(1.7e12 + 5000.0).unwrap().unwrap();
        assert_eq!(u, 500_000);
        assert!((t - 5_000_000_000).abs() <= u, "{t}");
    }

    #[test]
    fn old_samples_leave_the_window_so_drift_is_followed() {
        let mut c = ClientClock::default();
        add(&mut c, sample(0.0, 0.0, 0.1, 0.1)).unwrap();
        // Later exchanges are slower, and the client clock has drifted by 5 ms.
        add(&mut c, sample(70_000.0, 5.0, 2.0, 2.0)).unwrap();
        let e = c.estimate("tab").unwrap();
        assert_eq!(e.samples, 2);
        assert_eq!(
            e.rtt_ns, 4_000_000,
            "the fast but stale sample must not win"
        );
        assert_eq!(e.offset_ns, -5_000_000);
    }

    #[test]
    fn rejects_implausible_samples() {
        let mut c = ClientClock::default();
        let s = |t0_ms, t1_ms, ts_ns| SyncSample {
            t0_ms,
            t1_ms,
            ts_ns,
        };
        assert!(matches!(
            c.add(s(10.0, 9.0, 0), 0),
            Err(ClockError::RoundTrip(_))
        ));
        assert!(matches!(
            c.add(s(f64::NAN, 9.0, 0), 0),
            Err(ClockError::ClientTime(_))
        ));
        assert!(c.to_session(1.0).unwrap().is_none());
    }

    /// The probe found `ts_ns: i64::MIN` accepted, and the manifest refresh 2 s
    /// later panicked on `i64` overflow (or, in release, wrapped the offset).
    #[test]
    fn extreme_sync_samples_are_refused_not_overflowed() {
        let now = 5_000_000_000;
        let cases = [
            (1.0, 2.0, i64::MIN),
            (1.0, 2.0, i64::MAX),
            (1.0, 2.0, -1),
            (1.0, 2.0, now + 1),
            (1.0, 2.0, now - SAMPLE_WINDOW_NS - 1),
            (-9.2e12, -9.2e12, now),
            (9.2e15, 9.2e15, now),
            (1e308, 1e308, now),
            (f64::MIN, f64::MAX, now),
            (0.0, f64::INFINITY, now),
        ];
        let mut c = ClientClock::default();
        for (t0_ms, t1_ms, ts_ns) in cases {
            let r = c.add(
                SyncSample {
                    t0_ms,
                    t1_ms,
                    ts_ns,
                },
                now,
            );
            assert!(r.is_err(), "{t0_ms} {t1_ms} {ts_ns} was accepted");
        }
        assert!(c.estimate("x").is_none());
        // The extremes that are allowed give exact, unwrapped answers.
        c.add(
            SyncSample {
                t0_ms: 0.0,
                t1_ms: 0.0,
                ts_ns: now,
            },
            now,
        )
        .unwrap();
        c.add(
            SyncSample {
                t0_ms: MAX_CLIENT_TIME_MS,
                t1_ms: MAX_CLIENT_TIME_MS,
                ts_ns: 0,
            },
            now,
        )
        .unwrap();
        let e = c.estimate("x").unwrap();
        assert_eq!(e.rtt_ns, 0);
        let (t, _) = c.to_session(MAX_CLIENT_TIME_MS).unwrap().unwrap();
        assert_eq!(
            i128::from(t),
            4_000_000_000_000_000_000 + i128::from(e.offset_ns)
        );
        assert!(matches!(
            c.to_session(1e300),
            Err(ClockError::ClientTime(_))
        ));
        assert!(matches!(c.to_session(-1.0), Err(ClockError::ClientTime(_))));
    }

    #[test]
    fn samples_per_client_are_bounded_within_the_window() {
        let mut c = ClientClock::default();
        for i in 0..MAX_SAMPLES_PER_CLIENT {
            add(&mut c, sample(i as f64, 0.0, 0.5, 0.5)).unwrap();
        }
        assert_eq!(
            add(&mut c, sample(100.0, 0.0, 0.5, 0.5)),
            Err(ClockError::TooManySamples)
        );
        assert_eq!(c.sample_count(), MAX_SAMPLES_PER_CLIENT);
        // Once the window has moved on, old samples leave and new ones fit.
        add(&mut c, sample(61_000.0, 0.0, 0.5, 0.5)).unwrap();
        assert_eq!(c.sample_count(), 1);
    }
}

/// Reads session time: the pipeline clock (CLOCK_MONOTONIC) minus the
/// pipeline's base time. Cheap enough to call per event.
#[derive(Clone)]
pub struct SessionClock {
    clock: gstreamer::Clock,
    base_ns: u64,
}

impl SessionClock {
    pub fn new(clock: gstreamer::Clock, base_ns: u64) -> Self {
        Self { clock, base_ns }
    }

    pub fn now_ns(&self) -> i64 {
        let t = i128::from(self.clock.time().nseconds()) - i128::from(self.base_ns);
        t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    pub fn base_ns(&self) -> u64 {
        self.base_ns
    }
}

impl std::fmt::Debug for SessionClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionClock")
            .field("base_ns", &self.base_ns)
            .finish()
    }
}
