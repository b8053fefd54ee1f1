//! Helpers shared by the analyzer's integration tests that run real models.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Fails the test unless `tool --version` runs.
pub fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} is needed (hardware-setup/install.sh installs it)"
    );
}

/// The installed models (`LAB_MODELS`, else the repository's `models/`),
/// Whisper and the VAD present.
pub fn models() -> analyzer::models::Models {
    let dir = std::env::var_os("LAB_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"));
    let m = analyzer::models::Models { dir };
    assert!(
        m.whisper().exists() && m.vad().exists(),
        "models are not installed in {}: run `lab-setup models` (scripts/test does)",
        m.dir.display()
    );
    m
}
