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

use gstreamer::prelude::*;
use lab_model::ClockOffsetEstimate;

/// Samples older than this (session time) no longer compete for "best".
pub const SAMPLE_WINDOW_NS: i64 = 60_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncSample {
    /// Client time when the request left, in ms.
    pub t0_ms: f64,
    /// Client time when the reply arrived, in ms.
    pub t1_ms: f64,
    /// Session time stamped by the recorder when answering.
    pub ts_ns: i64,
}

impl SyncSample {
    pub fn rtt_ns(&self) -> i64 {
        ((self.t1_ms - self.t0_ms) * 1e6).round() as i64
    }

    pub fn offset_ns(&self) -> i64 {
        self.ts_ns - ((self.t0_ms + self.t1_ms) / 2.0 * 1e6).round() as i64
    }

    /// A reply that arrived before its request left, or a round trip over a
    /// minute, is a broken or lying client, not a measurement.
    pub fn is_plausible(&self) -> bool {
        self.t0_ms.is_finite()
            && self.t1_ms.is_finite()
            && (0..60_000_000_000).contains(&self.rtt_ns())
    }
}

/// The offset estimate of one client.
#[derive(Debug, Clone, Default)]
pub struct ClientClock {
    samples: Vec<SyncSample>,
    total: u32,
}

impl ClientClock {
    /// Adds a sample; returns false (and ignores it) if it is implausible.
    pub fn add(&mut self, s: SyncSample) -> bool {
        if !s.is_plausible() {
            return false;
        }
        self.total += 1;
        self.samples.push(s);
        let newest = self.samples.iter().map(|s| s.ts_ns).max().unwrap_or(0);
        self.samples
            .retain(|x| newest - x.ts_ns <= SAMPLE_WINDOW_NS);
        true
    }

    fn best(&self) -> Option<&SyncSample> {
        self.samples.iter().min_by_key(|s| s.rtt_ns())
    }

    /// Maps a client timestamp (ms) to session time (ns) with its uncertainty.
    pub fn to_session(&self, client_ms: f64) -> Option<(i64, i64)> {
        let b = self.best()?;
        Some((
            (client_ms * 1e6).round() as i64 + b.offset_ns(),
            b.rtt_ns() / 2,
        ))
    }

    pub fn estimate(&self, client: &str) -> Option<ClockOffsetEstimate> {
        let b = self.best()?;
        Some(ClockOffsetEstimate {
            client: client.to_string(),
            offset_ns: b.offset_ns(),
            uncertainty_ns: b.rtt_ns() / 2,
            rtt_ns: b.rtt_ns(),
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
            assert!(c.add(sample(at, -1.7e12, up, down)));
        }
        let e = c.estimate("tab").unwrap();
        assert_eq!(e.rtt_ns, 1_000_000);
        assert_eq!(e.uncertainty_ns, 500_000);
        // True offset is +1.7e12 ms; the estimate is off by (up - down) / 2 = 0.1 ms.
        let true_offset = 1.7e18 as i64;
        assert!(
            (e.offset_ns - true_offset).abs() <= e.uncertainty_ns,
            "{}",
            e.offset_ns - true_offset
        );
        // A client stamp that reads session time 5 s maps back to 5 s.
        let (t, u) = c.to_session(-1.7e12 + 5000.0).unwrap();
        assert_eq!(u, 500_000);
        assert!((t - 5_000_000_000).abs() <= u, "{t}");
    }

    #[test]
    fn old_samples_leave_the_window_so_drift_is_followed() {
        let mut c = ClientClock::default();
        c.add(sample(0.0, 0.0, 0.1, 0.1));
        // Later exchanges are slower, and the client clock has drifted by 5 ms.
        c.add(sample(70_000.0, 5.0, 2.0, 2.0));
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
        assert!(!c.add(SyncSample {
            t0_ms: 10.0,
            t1_ms: 9.0,
            ts_ns: 0
        }));
        assert!(!c.add(SyncSample {
            t0_ms: f64::NAN,
            t1_ms: 9.0,
            ts_ns: 0
        }));
        assert!(c.to_session(1.0).is_none());
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
        self.clock.time().nseconds() as i64 - self.base_ns as i64
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
