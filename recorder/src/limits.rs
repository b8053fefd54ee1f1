//! Every bound the event endpoint puts on what clients send, in one place.
//!
//! The endpoint is reachable by anything on the station: the probe, the
//! operator console, local tools, and (through the probe's page) a third-party
//! site. Each number here caps memory, disk, manifest size or time that one
//! client can cost the recording; crossing one gets a counted 413/422/429 (or a
//! WebSocket `reject`) rather than an unbounded structure or a panic.

use std::time::Duration;

/// Largest event, serialised (the wire JSON of one event); shared with
/// `lab-model` so every reader agrees on it.
pub const MAX_EVENT_BYTES: usize = lab_model::event::MAX_EVENT_BYTES;

/// Largest line one client event may take in `events.jsonl` (the event as
/// stored, with its envelope: seq, time, client, uncertainty). Checked on
/// the stored form, since re-serialised numbers can grow.
pub const MAX_STORED_EVENT_BYTES: usize = MAX_EVENT_BYTES + 1024;

/// Largest HTTP request body on any route. Every body is one event, one marker
/// or one sync sample, so it is the event limit; the body is read up to one byte
/// more than this and refused with a counted 413.
pub const MAX_BODY_BYTES: usize = MAX_EVENT_BYTES;

/// Largest WebSocket text message we parse: one event plus its envelope
/// (`type`, `id`). Over it: a counted `reject`.
pub const MAX_WS_MESSAGE_BYTES: usize = 2 * MAX_EVENT_BYTES;

/// Frames over this close the WebSocket in the protocol layer (never buffered).
pub const MAX_WS_FRAME_BYTES: usize = 4 * MAX_EVENT_BYTES;

/// A client-chosen event id (its JSON text): a number or a short string.
pub const MAX_ID_BYTES: usize = 64;

/// A client name (`hello.client`, `?client=`, sync `client`): 1-64 of
/// `A-Z a-z 0-9 - _ .`.
pub const MAX_CLIENT_ID_BYTES: usize = 64;

/// Clients with a clock estimate per recording. Every page load of the probe is
/// a new client, so this is sized for a long session of a multi-page site;
/// the manifest lists them all (≈ 200 bytes each).
pub const MAX_CLIENTS: usize = 512;

/// Sync samples one client may hold within the sample window
/// (`clock::SAMPLE_WINDOW_NS`). The probe sends 8 per (re)connect and 3 every 10 s.
pub const MAX_SAMPLES_PER_CLIENT: usize = 64;

/// Event rate per client (token bucket): a burst, then a sustained rate. The
/// probe's busiest moment is a resend of its queue (up to 5000) after a
/// reconnect; it retries events refused with `retry_after_ms`.
pub const EVENT_BURST: u32 = 1000;
pub const EVENTS_PER_SECOND: u32 = 200;

/// Messages per WebSocket connection (token bucket, all message types).
pub const WS_MESSAGE_BURST: u32 = 2000;
pub const WS_MESSAGES_PER_SECOND: u32 = 400;

/// Event ids remembered for resend dedup (oldest forgotten first). Far more
/// than a probe ever has unacknowledged (its queue holds 5000).
pub const MAX_REMEMBERED_IDS: usize = 20_000;

/// Open WebSocket connections from a browser page that holds neither the
/// probe token nor an allow-listed origin (they may sync, not send events).
pub const MAX_UNTRUSTED_WS: usize = 8;

/// Open WebSocket connections in all.
pub const MAX_WS: usize = 128;

/// Client clock readings (ms) must lie in `0..=MAX_CLIENT_TIME_MS`: Unix ms up
/// to the year 2096, and small enough that ms × 10⁶ fits an i64 with room.
pub const MAX_CLIENT_TIME_MS: f64 = 4e12;

/// A mapped event time may lie at most this far before its arrival (an event
/// queued by the probe while its connection was down) ...
pub const MAX_EVENT_AGE_NS: i64 = 300_000_000_000;

/// ... and at most this far after it, beyond the mapping's own uncertainty
/// (an event cannot happen after it arrived).
pub const MAX_EVENT_LEAD_NS: i64 = 2_000_000_000;

/// After a stop, in-flight requests get this long to finish before every
/// connection is cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1000);

/// How long closing the event log may wait for its last batch to be written.
pub const LOG_CLOSE_TIMEOUT: Duration = Duration::from_millis(1000);

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_ns: f64,
    last_ns: i64,
}

impl TokenBucket {
    pub fn new(burst: u32, per_second: u32, now_ns: i64) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_ns: f64::from(per_second) / 1e9,
            last_ns: now_ns,
        }
    }

    /// Whether the bucket would be full (its client idle) at `now_ns`.
    pub fn is_full_at(&self, now_ns: i64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns).max(0);
        self.tokens + elapsed as f64 * self.per_ns >= self.burst
    }

    /// Takes one token; on refusal returns how long until one is available.
    pub fn take(&mut self, now_ns: i64) -> Result<(), Duration> {
        let elapsed = now_ns.saturating_sub(self.last_ns).max(0);
        self.last_ns = self.last_ns.max(now_ns);
        self.tokens = (self.tokens + elapsed as f64 * self.per_ns).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ns = ((1.0 - self.tokens) / self.per_ns).ceil();
            Err(Duration::from_nanos(wait_ns.clamp(1.0, 60e9) as u64))
        }
    }
}

/// Whether `name` is an acceptable client name.
pub fn valid_client_id(name: &str) -> bool {
    (1..=MAX_CLIENT_ID_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `ms` is a plausible client clock reading.
pub fn valid_client_time(ms: f64) -> bool {
    ms.is_finite() && (0.0..=MAX_CLIENT_TIME_MS).contains(&ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_sustained_rate() {
        let mut b = TokenBucket::new(3, 10, 0);
        assert!((0..3).all(|_| b.take(0).is_ok()));
        let wait = b.take(0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(b.take(100_000_000).is_ok());
        assert!(b.take(100_000_000).is_err());
        // Time going backwards (a caller's stale reading) neither refills nor panics.
        assert!(b.take(-5).is_err());
        assert!(b.take(i64::MIN).is_err());
        // Refill stops at the burst.
        assert!((0..3).all(|_| b.take(1_000_000_000_000).is_ok()));
        assert!(b.take(1_000_000_000_000).is_err());
    }

    #[test]
    fn client_names_and_times() {
        assert!(valid_client_id("tab-abc_1.2"));
        for bad in ["", "a b", "ü", "x\n", &"a".repeat(65)] {
            assert!(!valid_client_id(bad), "{bad:?}");
        }
        assert!(valid_client_time(1.7e12) && valid_client_time(0.0));
        for bad in [-1.0, f64::NAN, f64::INFINITY, 9.3e12, 1e300] {
            assert!(!valid_client_time(bad), "{bad}");
        }
    }
}
