//! What the uploader does after a failed request: the one table that sorts
//! lab-web's answers into "try again later", "re-read and go on" and
//! "refused" (docs/upload-protocol.md, "The station"), and the backoff that
//! spaces the tries.

use std::time::Duration;

use crate::lab_client::ClientError;

/// The first wait after a failure; it doubles on each failure in a row.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait a `Retry-After` header is honoured for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// ± this share of each wait is random, so stations that lost the server
/// together do not come back together.
const JITTER: f64 = 0.2;

/// What to do after a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A passing failure (no connection, timeout, 5xx, 429, `busy`): wait the
    /// backoff, or what the server asked for, then re-send the file list.
    Backoff { retry_after: Option<Duration> },
    /// The server's disk is full: wait the longest backoff.
    NoSpace,
    /// Our idea of the server's bytes is stale (`offset_mismatch`,
    /// `incomplete`, `not_receiving`): read its status and go on from there.
    Resync,
    /// The server does not know the upload (or this file in it): post the
    /// file list again; it answers the upload with what it holds.
    Repost,
    /// The server's copy of a full file did not hash to what we declared.
    Rehash,
    /// The server will not take this bundle as it is: stop, keep the bundle,
    /// and say why.
    Refused(String),
}

/// The table of docs/upload-protocol.md, "The station".
pub fn classify(e: &ClientError) -> Action {
    let (code, error, message, retry_after) = match e {
        ClientError::Transport(_) | ClientError::Timeout(_) => {
            return Action::Backoff { retry_after: None };
        }
        ClientError::BadAnswer { .. } => return Action::Refused(chain(e)),
        ClientError::Status {
            code,
            error,
            message,
            retry_after,
        } => (*code, error.as_str(), message.as_str(), *retry_after),
    };
    match (code, error) {
        (507, _) => Action::NoSpace,
        (429 | 503, _) | (409, "busy") => Action::Backoff { retry_after },
        (500..=599, _) => Action::Backoff { retry_after },
        (409, "offset_mismatch" | "incomplete" | "not_receiving") => Action::Resync,
        (404, _) => Action::Repost,
        (422, "checksum_mismatch") => Action::Rehash,
        (401, _) => Action::Refused(format!(
            "the server did not accept the station token (revoked?): {message}"
        )),
        _ => Action::Refused(format!(
            "the lab server refused the upload ({code} {error}): {message}"
        )),
    }
}

/// An error and its causes on one line, for logs and the state file.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Waits of [`FIRST_BACKOFF`] doubling up to a maximum, each ± 20 %.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Self::with_seed(max, seed)
    }

    /// The same waits for the same seed (tests).
    pub fn with_seed(max: Duration, seed: u64) -> Self {
        Self {
            next: FIRST_BACKOFF.min(max),
            max,
            rng: seed | 1,
        }
    }

    /// The wait before the next try; the one after it is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        self.jittered(base)
    }

    /// The longest wait (a full server disk does not clear in a second).
    pub fn longest(&mut self) -> Duration {
        self.jittered(self.max)
    }

    /// After progress: the next failure waits [`FIRST_BACKOFF`] again.
    pub fn reset(&mut self) {
        self.next = FIRST_BACKOFF.min(self.max);
    }

    fn jittered(&mut self, base: Duration) -> Duration {
        // xorshift64: plenty for spreading retries.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let factor = 1.0 - JITTER + 2.0 * JITTER * unit;
        base.mul_f64(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, error: &str, retry_after: Option<u64>) -> ClientError {
        ClientError::Status {
            code,
            error: error.into(),
            message: "the message".into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_backoff_doubles_from_one_second_to_its_cap_with_jitter() {
        let mut b = Backoff::with_seed(Duration::from_secs(60), 7);
        let delays: Vec<f64> = (0..9).map(|_| b.next_delay().as_secs_f64()).collect();
        let bases = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0];
        for (d, base) in delays.iter().zip(bases) {
            assert!(
                *d >= base * 0.8 - 1e-9 && *d <= (base * 1.2).min(60.0) + 1e-9,
                "{delays:?}"
            );
        }
        // The jitter is not a constant factor.
        let factors: Vec<f64> = delays[..6].iter().zip(bases).map(|(d, b)| d / b).collect();
        assert!(
            factors.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-6),
            "{factors:?}"
        );
        b.reset();
        let d = b.next_delay().as_secs_f64();
        assert!((0.8..=1.2).contains(&d), "{d}");
        // A cap below a second caps the first wait too.
        let mut b = Backoff::with_seed(Duration::from_millis(300), 3);
        for _ in 0..4 {
            assert!(b.next_delay() <= Duration::from_millis(300));
        }
        let mut b = Backoff::with_seed(Duration::from_secs(60), 9);
        let l = b.longest().as_secs_f64();
        assert!((48.0..=60.0).contains(&l), "{l}");
    }

    #[test]
    fn every_answer_has_its_action() {
        use Action::*;
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let table: Vec<(ClientError, Action)> = vec![
            (ClientError::Transport(io()), Backoff { retry_after: None }),
            (
                ClientError::Timeout(Duration::from_secs(5)),
                Backoff { retry_after: None },
            ),
            (status(500, "internal", None), Backoff { retry_after: None }),
            (status(502, "", None), Backoff { retry_after: None }),
            (
                status(503, "busy", Some(4)),
                Backoff {
                    retry_after: Some(Duration::from_secs(4)),
                },
            ),
            (
                status(429, "too_many", Some(2)),
                Backoff {
                    retry_after: Some(Duration::from_secs(2)),
                },
            ),
            (status(409, "busy", None), Backoff { retry_after: None }),
            (status(507, "no_space", None), NoSpace),
            (status(409, "offset_mismatch", None), Resync),
            (status(409, "incomplete", None), Resync),
            (status(409, "not_receiving", None), Resync),
            (status(404, "not_found", None), Repost),
            (status(422, "checksum_mismatch", None), Rehash),
        ];
        for (e, want) in table {
            assert_eq!(classify(&e), want, "{e}");
        }
        for (code, error) in [
            (401, "unauthorized"),
            (403, "forbidden"),
            (413, "too_large"),
            (422, "bad_path"),
            (422, "symlink"),
            (422, "bad_bundle"),
            (409, "conflict"),
            (400, "bad_request"),
        ] {
            match classify(&status(code, error, None)) {
                Refused(m) => assert!(m.contains("the message"), "{code} {error}: {m}"),
                other => panic!("{code} {error}: {other:?}"),
            }
        }
        let Refused(m) = classify(&status(401, "unauthorized", None)) else {
            panic!()
        };
        assert!(m.contains("station token (revoked?)"), "{m}");
        let bad = ClientError::BadAnswer {
            what: "uploads".into(),
            detail: "expected value".into(),
        };
        assert!(matches!(classify(&bad), Refused(m) if m.contains("expected value")));
    }

    #[test]
    fn a_chain_reads_as_one_line() {
        let e = ClientError::Transport(std::io::Error::other("connection reset"));
        assert_eq!(
            chain(&e),
            "the lab server could not be reached: connection reset"
        );
    }
}
