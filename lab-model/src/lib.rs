//! The shared data model of the lab: what the recorder writes, the analyzer
//! enriches and lab-web imports. Only types and (de)serialisation live here,
//! no I/O beyond reading and writing the bundle's own files, so every crate
//! can depend on it without pulling in GStreamer, FFmpeg or SQL.
//!
//! The on-disk format is documented in `docs/bundle-format.md`; the
//! `FORMAT_VERSION` constants below are bumped whenever a saved shape changes.

pub mod analysis;
pub mod bundle;
pub mod event;
pub mod journey;
pub mod models;
pub mod self_report;
pub mod station;
pub mod step_tracker;
pub mod study;
pub mod subtitles;
pub mod time;
pub mod upload;
pub mod worker;

pub use bundle::{
    BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, Bundle, BundleError, ChannelRole, ClockMapping,
    ClockOffsetEstimate, EventLineError, EventStats, Gap, Manifest, ManifestError, SENSORS_DIR,
    Segment, SegmentState, SensorTrack, SessionStatus, Track, TrackKind, parse_events,
    parse_manifest,
};
pub use event::{Event, EventError, EventSource, IncomingEvent};
pub use journey::{Journey, JourneyError};
pub use station::{StationConfig, StationError};
