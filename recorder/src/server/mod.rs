//! The station's local event endpoint: HTTP for operator markers and simple
//! clients, a WebSocket for the browser probe (clock sync + events), the probe
//! script itself, a small operator console, and stop/status control.
//!
//! ```text
//! curl -X POST localhost:7700/api/markers -H 'Content-Type: application/json' -d '{"type":"task_start","label":"Задание 1"}'
//! curl -X POST localhost:7700/api/events -H 'Content-Type: application/json' -d '{"source":"observer","kind":"note","data":{"text":"…"}}'
//! curl -X POST localhost:7700/api/stop
//! ```
//!
//! Malformed input gets a 4xx with a JSON `{"error": ...}` and is counted in
//! the manifest's `events.rejected`; nothing a client sends can stop the
//! recording except `/api/stop`.
//!
//! Who may do what. The station's browser shows a third-party site, and any
//! page can send requests to 127.0.0.1; so the endpoint only serves requests
//! that name it by its own address (`Host` an IP literal or `localhost` with
//! our port: a DNS-rebinding page has its own name there), refuses any
//! request whose `Origin` is not the endpoint's own (browsers always send it
//! on cross-origin POSTs and WebSocket handshakes; local tools such as curl,
//! the demo's personas and the tests send none), refuses POST bodies that are
//! not `application/json` (so a plain form cannot reach it either), and sends
//! no CORS headers. A WebSocket from a page is the probe only if it presents
//! the per-recording token, which the recorder passes to the probe it injects
//! into an isolated world over DevTools (never in `/probe.js`), or if its
//! origin is in the station's `recording.probe_origins`; any other page may
//! open one and sync clocks, but its events are refused and counted.
//! Every limit is in [`crate::limits`].
//!
//! Layout, lowest first (each file uses only those above it): `config` (who
//! the endpoint is), `dedup` (resend memory), `error` (the 4xx answer),
//! `state` (what is shared with the session, and `accept`), `guard` (the
//! request check and security headers), `ws` (the probe's WebSocket),
//! `routes` (the router and HTTP handlers), `shutdown` (the running server
//! and its bounded stop).

mod config;
mod dedup;
mod error;
mod guard;
mod routes;
mod shutdown;
mod state;
mod ws;

pub use config::EndpointConfig;
pub use error::ApiError;
pub use guard::host_is_ours;
pub use routes::{PROBE_JS, router};
pub use shutdown::Server;
pub use state::{Accepted, EndpointState};
