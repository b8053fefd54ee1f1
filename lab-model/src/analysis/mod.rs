//! What the analyzer adds to a bundle under `analysis/`: the one contract
//! between `lab-analyze` and its readers (lab-web, the tests). `files` names
//! every file and holds the one reader and writer of each ([`AnalysisDoc`]);
//! `types` their shapes; `stage` the stage list, its weights and the progress
//! line. Every JSON file carries `format_version`; times are session
//! nanoseconds like everything else in the bundle; every path stored in them
//! is relative to the bundle folder. Documented in `docs/bundle-format.md`
//! ("Added by analysis").

mod files;
mod stage;
mod types;

pub use files::{
    ANALYSIS_DIR, ANALYSIS_FORMAT_VERSION, AnalysisDoc, AnalysisError, AnalysisFile, THUMBS_DIR,
    WEB_DIR, thumbnail_file, thumbnail_name, video_file,
};
pub use stage::{FORCE_ALL, PROGRESS_FORMAT_VERSION, Progress, Stage, UnknownStage};
pub use types::*;

#[cfg(test)]
mod tests;
