//! Where the installed models and runtimes are. `lab-setup models` puts them
//! in `models/` at the repository root; `LAB_MODELS` or `--models` point
//! elsewhere. Nothing is ever downloaded from here. The file names are
//! `lab_model::models`', shared with `lab-setup models`.

use std::path::{Path, PathBuf};

use lab_model::models::{ORT_LIBRARY, VAD_MODEL, WHISPER_BASE};

#[derive(Debug, Clone)]
pub struct Models {
    pub dir: PathBuf,
}

impl Models {
    /// `explicit`, else `$LAB_MODELS`, else `./models`, else `models/` next to the
    /// workspace the binary was built in (`target/<profile>/../../models`).
    pub fn locate(explicit: Option<&Path>) -> Self {
        if let Some(d) = explicit {
            return Self {
                dir: d.to_path_buf(),
            };
        }
        if let Some(d) = std::env::var_os("LAB_MODELS") {
            return Self {
                dir: PathBuf::from(d),
            };
        }
        let local = PathBuf::from("models");
        if local.join(VAD_MODEL).exists() {
            return Self { dir: local };
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent()?.parent()?.parent().map(|w| w.join("models")))
            .filter(|d| d.join(VAD_MODEL).exists());
        Self {
            dir: beside.unwrap_or(local),
        }
    }

    pub fn whisper(&self) -> PathBuf {
        self.dir.join(WHISPER_BASE)
    }

    pub fn vad(&self) -> PathBuf {
        self.dir.join(VAD_MODEL)
    }

    pub fn onnxruntime(&self) -> PathBuf {
        self.dir.join(ORT_LIBRARY)
    }
}
