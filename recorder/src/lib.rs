//! The station recorder: records screen, camera and microphones of a station
//! with GStreamer into a session bundle, and takes interaction and operator
//! events on the same clock through a local HTTP + WebSocket endpoint.
//!
//! `session::record` is the whole recording; `pipeline` turns a station
//! config into GStreamer elements; `server` is the event endpoint;
//! `event_log` makes acknowledged events durable; `limits` holds every
//! bound on client input; `clock` places client
//! events on the session clock; `browser` launches the station's Chromium
//! with the probe injected; `recover` repairs the manifest of a bundle whose
//! recorder was killed; `upload` sends a finished bundle to lab-web through
//! `lab_client`, resuming where the server stands after any interruption;
//! `live` streams a recording to lab-web's observation room.

pub mod audio_clock;
pub mod browser;
pub mod clock;
pub mod console;
pub mod event_log;
pub mod lab_client;
pub mod limits;
pub mod live;
pub mod pipeline;
pub mod preflight;
pub mod priority;
pub mod recover;
pub mod screen_convert;
pub mod sensors;
pub mod server;
pub mod session;
pub mod upload;

pub use session::{RecordError, RecordOptions, record};
