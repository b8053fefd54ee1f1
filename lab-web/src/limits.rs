//! Every limit lab-web enforces on outside input, in one place, so
//! `docs/security.md` can list them and each has a test that crosses it.

use std::time::Duration;

/// Largest request body (JSON API); bigger bodies get a JSON 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest `manifest.json` read from a bundle (the bundle contract's limit).
pub const MAX_MANIFEST_BYTES: u64 = lab_model::bundle::limits::MAX_MANIFEST_BYTES;
/// Largest `events.jsonl` read from a bundle (a two-hour session is ~25 MB;
/// each line is at most `lab_model::bundle::limits::MAX_EVENT_LINE_BYTES`).
pub const MAX_EVENTS_BYTES: u64 = 256 << 20;
/// Largest analysis JSON file (transcript, steps, candidates, QA,
/// renditions; a two-hour transcript is a few MB): the analysis contract's limit.
pub const MAX_ANALYSIS_JSON_BYTES: u64 = lab_model::bundle::limits::MAX_ANALYSIS_JSON_BYTES;
/// Largest journey definition (the journey format's limit).
pub const MAX_JOURNEY_BYTES: u64 = lab_model::journey::MAX_JOURNEY_BYTES;

/// Log-in throttling: attempts (not only failures) counted in the database
/// per window, so every lab-web process sharing it sees the same counts and
/// an attempt is reserved before the password is checked (no check-then-act
/// race). Exceeding any of them answers 429 without hashing.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(600);
/// Per login name and client address: a guesser at one address.
pub const LOGIN_PER_ACCOUNT_AND_ADDRESS: i64 = 5;
/// Per client address over all login names: password spraying.
pub const LOGIN_PER_ADDRESS: i64 = 30;
/// Per login name over all addresses: a distributed guesser. One address
/// adds at most its own five to it; addresses that logged in to the account
/// before are exempt ([`LOGIN_KNOWN_FOR`]).
pub const LOGIN_PER_ACCOUNT: i64 = 100;

/// An address that logged in to an account successfully within this time is
/// not held to [`LOGIN_PER_ACCOUNT`] for it.
pub const LOGIN_KNOWN_FOR: Duration = Duration::from_secs(30 * 86_400);

/// Password hashes (argon2id, ~19 MiB and ~50 ms each) computed at once;
/// more wait up to [`HASH_WAIT`] and then get 503.
pub fn max_concurrent_hashes() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}
pub const HASH_WAIT: Duration = Duration::from_secs(5);

/// Tag ranges: within the session (its recorded duration plus this slack),
/// and never beyond [`MAX_SESSION_MS`] when the duration is unknown.
pub const TAG_SLACK_MS: i64 = 60_000;
/// The longest session lab-web accepts times for: the bundle contract's
/// limit (30 days), so any valid manifest's times fit.
pub const MAX_SESSION_MS: i64 = lab_model::bundle::limits::MAX_SESSION_NS / 1_000_000;
/// Free text on tags (note, quote) in characters.
pub const MAX_TAG_TEXT_CHARS: usize = 10_000;
/// A tag's step id in characters.
pub const MAX_STEP_CHARS: usize = 200;

/// The watcher retries a bundle that failed to import only when its files
/// change, or after this delay, doubling per failure up to [`IMPORT_RETRY_MAX`].
pub const IMPORT_RETRY_FIRST: Duration = Duration::from_secs(30);
pub const IMPORT_RETRY_MAX: Duration = Duration::from_secs(3600);

/// A session time from a bundle (ns) in milliseconds, bounded to the
/// longest session, so later arithmetic on it (durations, exports) cannot
/// overflow whatever a hostile analysis file holds.
pub fn session_ms(ns: i64) -> i64 {
    (ns / 1_000_000).clamp(-MAX_SESSION_MS, MAX_SESSION_MS)
}

/// The body of `PUT /setups/{id}`: a study set-up's JSON. Real ones are a
/// few KB; the set-up's own bounds (100 tasks of at most 10,000-byte
/// instructions, 20,000 bytes of consent text) can add up past
/// [`MAX_BODY_BYTES`].
pub const MAX_SETUP_BYTES: usize = 4 << 20;

/// Station uploads (`docs/upload-protocol.md`): the largest bundle taken by
/// default (`serve --max-upload-gb`); a two-hour session is 5–10 GB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 << 30;
/// The body of `POST /uploads` (a two-hour session's file list is ~1 MB).
pub const MAX_UPLOAD_LIST_BYTES: usize = 32 << 20;
/// The body of one `PUT` chunk.
pub const MAX_UPLOAD_CHUNK_BYTES: usize = lab_model::upload::CHUNK_BYTES as usize;
/// Free space the staging filesystem must keep beyond what an upload still
/// has to send; less answers 507 and the station keeps its copy.
pub const UPLOAD_FREE_MARGIN_BYTES: u64 = 1 << 30;
/// Uploads one station may have in progress at once.
pub const MAX_RECEIVING_PER_STATION: i64 = 8;
