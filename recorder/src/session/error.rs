//! Why a recording could not be made (or was cut short while starting).

use std::path::PathBuf;

use gstreamer as gst;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "consent is required: pass --consent with the reference of the participant's signed consent form"
    )]
    ConsentRequired,
    #[error(
        "participant code {0:?} must be 1-32 letters, digits, '-' or '_' (a pseudonymous code, not a name)"
    )]
    Participant(String),
    #[error(
        "life situation {0:?} must be a journey id: 1-64 of a-z, 0-9, '-' or '_', starting with a letter or digit (the name of its journeys/<id>.toml)"
    )]
    LifeSituation(String),
    #[error("failed to build the capture pipeline")]
    Pipeline(#[source] gst::glib::Error),
    #[error("failed to start capture: {0}")]
    Start(String),
    #[error("failed to listen for events on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create the session bundle in {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] lab_model::BundleError),
    #[error("failed to launch the station browser")]
    Browser(#[source] anyhow::Error),
    #[error("sensor streams were asked for (--lsl) but cannot be recorded: {0}")]
    Sensors(#[source] lab_lsl::LslError),
}
