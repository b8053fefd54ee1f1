//! Offline analysis of session bundles. Not built yet: the analyzer issue
//! fills this crate (transcription, speech activity, journey steps, friction
//! candidates, renditions). It depends only on `lab-model`, never on
//! `recorder`: the two meet in the bundle on disk.
