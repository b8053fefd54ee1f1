//! Limits a manifest must keep (`Manifest::validate`). Far above any real
//! session, low enough that a hostile manifest cannot make a reader allocate
//! or loop without bound, and that session-time arithmetic cannot overflow.

/// Longest line of `events.jsonl`: the recorder stores at most 17 KiB per
/// client event (16 KiB plus its envelope) and less for its own events.
pub const MAX_EVENT_LINE_BYTES: usize = 64 * 1024;
/// Largest `manifest.json` read: 200,000 segments pretty-printed are ~35 MB.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;
/// Longest `session_id` (it is also the bundle's directory name).
pub const MAX_SESSION_ID_LEN: usize = 128;
/// Longest participant code (the recorder's rule: 1-32 of `A-Za-z0-9_-`).
pub const MAX_PARTICIPANT_LEN: usize = 32;
/// Segments in one manifest: 24 h of 1 s segments in two groups is 172,800.
pub const MAX_SEGMENTS: usize = 200_000;
/// Tracks (screen, camera and microphones).
pub const MAX_TRACKS: usize = 64;
/// Segment groups one track may be carried by.
pub const MAX_TRACK_GROUPS: usize = 8;
/// Longest track id or segment group name.
pub const MAX_NAME_LEN: usize = 64;
/// Event clients with a measured clock offset.
pub const MAX_CLIENTS: usize = 10_000;
/// Gaps (device losses).
pub const MAX_GAPS: usize = 10_000;
/// Largest video frame rate, frames per second.
pub const MAX_FRAMERATE: u32 = 1000;
/// Largest video width or height, pixels.
pub const MAX_FRAME_SIZE: u32 = 16_384;
/// Largest audio sample rate, Hz.
pub const MAX_SAMPLE_RATE: u32 = 768_000;
/// Most audio channels of one track.
pub const MAX_CHANNELS: u32 = 64;
/// Largest magnitude of any session time or duration in a manifest:
/// 30 days. Differences of two such times, and such a time multiplied by
/// a frame or sample rate within the limits, fit an i64.
pub const MAX_SESSION_NS: i64 = 30 * 24 * 3600 * 1_000_000_000;
/// Largest JSON file the analyzer writes under `analysis/` that a reader
/// accepts (transcript, steps, candidates, QA, renditions, peaks; a two-hour
/// transcript is a few MB).
pub const MAX_ANALYSIS_JSON_BYTES: u64 = 64 << 20;

/// One plain path component: `[A-Za-z0-9_-]` (plus `.` where `dot`), never `.`-first.
pub(crate) fn safe_component(s: &str, max: usize, dot: bool) -> bool {
    (1..=max).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || (dot && c == b'.'))
}
