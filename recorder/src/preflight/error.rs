//! Why the pre-flight check could not run at all. A device that fails is not
//! an error here: it is a `DeviceProblem` beside the devices that work.

use std::path::PathBuf;

use gstreamer as gst;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("failed to initialise GStreamer")]
    Init(#[source] gst::glib::Error),
    #[error("failed to measure free space at {path}")]
    Disk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the sync self-test needs the station's real screen and devices: `lab-setup check` \
         measures a flashing, beeping page shown by Chromium on the X display, which test \
         sources cannot show"
    )]
    SyncNeedsRealStation,
    #[error("failed to write the station config for the sync self-test to {path}")]
    SyncStationFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start {program}")]
    SyncSpawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the sync self-test did not finish within {seconds} s and was stopped")]
    SyncTimeout { seconds: u64 },
    #[error("the sync self-test failed ({status}): {stderr}")]
    SyncFailed { status: String, stderr: String },
    #[error(
        "the sync self-test printed figures of format version {found}; this build reads version {wanted}"
    )]
    SyncVersion { found: u64, wanted: u32 },
    #[error("the sync self-test printed no figures this build reads")]
    SyncOutput(#[source] serde_json::Error),
}
