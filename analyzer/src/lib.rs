//! Offline analysis of session bundles: transcription, speech activity,
//! journey steps, friction candidates, renditions. It depends only on
//! `lab-model`, never on `recorder`: the two meet in the bundle on disk.
//!
//! The pure stages work on a [`timeline::Timeline`] (events and transcript
//! words on the session clock): [`steps::segment`] splits it into visits of
//! journey steps, [`friction::detect_all`] proposes friction candidates with
//! their evidence, using the phrase lexicons of [`lexicon`].

pub mod audio;
pub mod bundle_run;
pub mod chunks;
pub mod formats;
pub mod friction;
pub mod lexicon;
pub mod models;
pub mod prompt;
pub mod qa;
pub mod renditions;
pub mod speech;
pub mod step_arousal;
pub mod steps;
pub mod timeline;
pub mod transcribe;
pub mod vad;
pub mod word_times;
pub mod worker;
pub mod xdf;
