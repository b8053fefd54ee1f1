//! The pre-flight check the station console shows before a session: every
//! configured device with a live preview (JPEG snapshots of screen and
//! camera at 2 fps, level meters per microphone channel), what is missing
//! or silent named in Russian and English, disk space and hours of
//! recording left, and the sync self-test of `lab-setup check`.
//!
//! Each device previews in a pipeline of its own (`preview`), so a camera
//! that is unplugged or busy is reported while the screen and microphones
//! go on; the devices are opened with the recorder's own source strings
//! (`crate::pipeline`), so what the preview shows is what a recording will
//! open. `state` turns what the pipelines deliver into snapshots, levels and
//! problems; `problems` words them; `disk` estimates the hours left;
//! `sync_test` runs `lab-setup check --json` as a child process.
//!
//! ```text
//! let pf = Preflight::start(&station, false)?;
//! pf.snapshot("camera");   // latest JPEG, ≤ 640 px wide
//! pf.levels();             // dB per microphone channel, every 100 ms
//! pf.problems();           // «Камера /dev/video0 не найдена — …»
//! pf.stop();               // devices released: the recording may start
//! ```

mod branch;
mod disk;
mod error;
mod preview;
mod problems;
mod state;
mod sync_test;
#[cfg(test)]
mod tests;

pub use branch::{PREVIEW_FPS, PREVIEW_MAX_WIDTH, PreflightOptions, PreviewDevice};
pub use disk::{DiskState, bytes_per_hour, disk};
pub use error::PreflightError;
pub use preview::Preflight;
pub use problems::{DeviceKind, DeviceProblem, ProblemKind};
pub use state::{ChannelLevel, FLOOR_DB, Snapshot};
pub use sync_test::{
    OffsetStats, SYNC_FIGURES_VERSION, SYNC_TEST_SECONDS, SYNC_TEST_TIMEOUT, SyncFigures,
    TrackFrameFigures, offsets_or_none, sync_self_test,
};
