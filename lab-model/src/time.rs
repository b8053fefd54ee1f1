//! Session time: signed nanoseconds from the instant the recording pipeline
//! started (its base time on the monotonic clock). Media timestamps, events
//! and analysis results all use it; signed because a browser event may be
//! mapped to a moment just before the pipeline started.

/// Nanoseconds per millisecond, for the many ms <-> ns conversions at the edges.
pub const NS_PER_MS: i64 = 1_000_000;

/// Formats a session time as `H:MM:SS.mmm` for logs and reports.
pub fn format_session_time(t_ns: i64) -> String {
    let sign = if t_ns < 0 { "-" } else { "" };
    let ms = t_ns.unsigned_abs() / 1_000_000;
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{sign}{h}:{m:02}:{s:02}.{milli:03}")
}

/// Seconds as f64, for human-facing figures.
pub fn ns_to_secs(t_ns: i64) -> f64 {
    t_ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_session_times() {
        for (ns, want) in [
            (0, "0:00:00.000"),
            (1_234_000_000, "0:00:01.234"),
            (3_723_004_000_000, "1:02:03.004"),
            (-5_000_000, "-0:00:00.005"),
        ] {
            assert_eq!(format_session_time(ns), want, "{ns}");
        }
    }
}
