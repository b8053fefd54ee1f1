//! Where the installed models and runtimes are, and which Whisper model is
//! the default. `lab-setup models` puts them in `models/` at the repository
//! root; `LAB_MODELS` or `--models` point elsewhere. Nothing is ever
//! downloaded or written from here. The file names and the default-model
//! record are `lab_model::models`', shared with `lab-setup models`.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use lab_model::models::{
    ORT_LIBRARY, VAD_MODEL, WHISPER_BASE, WHISPER_DEFAULT, WhisperModelInfo, ggml_ftype_name,
};
use sha2::{Digest, Sha256};

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

    /// The recorded default Whisper model (`whisper-default.json`, written by
    /// `lab-setup models`), if the record is readable and its file is there.
    pub fn default_whisper(&self) -> Option<WhisperModelInfo> {
        let text = fs::read_to_string(self.dir.join(WHISPER_DEFAULT)).ok()?;
        let info = WhisperModelInfo::from_json(&text).ok()?;
        // A record names a file in this folder, never a path elsewhere.
        let plain = Path::new(&info.file).file_name() == Some(info.file.as_ref());
        (plain && self.dir.join(&info.file).is_file()).then_some(info)
    }

    /// The Whisper model to use without `--model`: the recorded default, else
    /// `ggml-base.bin` (installs from before the record).
    pub fn whisper(&self) -> PathBuf {
        match self.default_whisper() {
            Some(info) => self.dir.join(info.file),
            None => self.dir.join(WHISPER_BASE),
        }
    }

    /// What identifies the Whisper model at `path` (see [`describe_whisper`]),
    /// reusing the default record's checksum when it describes this file.
    pub fn describe_whisper(&self, path: &Path) -> io::Result<WhisperModelInfo> {
        let record = self
            .default_whisper()
            .filter(|r| same_file(&self.dir.join(&r.file), path));
        describe_whisper(path, record.as_ref())
    }

    pub fn vad(&self) -> PathBuf {
        self.dir.join(VAD_MODEL)
    }

    pub fn onnxruntime(&self) -> PathBuf {
        self.dir.join(ORT_LIBRARY)
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// The first four bytes of a GGML Whisper file ("ggml" as a little-endian u32).
pub const GGML_MAGIC: u32 = 0x6767_6d6c;

/// Name, size, weight type (from the GGML header's `ftype`) and SHA-256 of
/// the Whisper model file at `path`. The checksum is `record`'s when the
/// record is of this file and its size and modification time still match
/// (`lab-setup models` hashed it); otherwise the file is hashed (base: 148 MB,
/// about 0.5 s). The name is the record's, else the file name without
/// `ggml-` and `.bin`.
pub fn describe_whisper(
    path: &Path,
    record: Option<&WhisperModelInfo>,
) -> io::Result<WhisperModelInfo> {
    let meta = fs::metadata(path)?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128);
    let mut f = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut head = [0u8; 48];
    f.read_exact(&mut head)?;
    let ftype = i32::from_le_bytes([head[44], head[45], head[46], head[47]]);
    let weights = if head[..4] == GGML_MAGIC.to_le_bytes() {
        ggml_ftype_name(ftype)
    } else {
        "unknown"
    };
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fresh = record.filter(|r| {
        r.bytes == meta.len() && r.modified_ns.is_some() && r.modified_ns == modified_ns
    });
    let (name, sha256) = match fresh {
        Some(r) => (r.name.clone(), r.sha256.clone()),
        None => {
            let mut hash = Sha256::new();
            hash.update(head);
            io::copy(&mut f, &mut hash)?;
            let stem = file.strip_suffix(".bin").unwrap_or(&file);
            let name = record
                .map(|r| r.name.clone())
                .unwrap_or_else(|| stem.strip_prefix("ggml-").unwrap_or(stem).to_string());
            (name, format!("{:x}", hash.finalize()))
        }
    };
    Ok(WhisperModelInfo {
        file,
        name,
        bytes: meta.len(),
        weights: weights.to_string(),
        sha256,
        modified_ns: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with a GGML Whisper header (ftype `ftype`) and some bytes.
    fn fake_model(dir: &Path, name: &str, ftype: i32) -> PathBuf {
        let mut b = GGML_MAGIC.to_le_bytes().to_vec();
        for v in [51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, ftype] {
            b.extend_from_slice(&i32::to_le_bytes(v));
        }
        b.extend_from_slice(b"weights");
        let p = dir.join(name);
        fs::write(&p, b).unwrap();
        p
    }

    #[test]
    fn the_recorded_default_is_used_and_its_checksum_reused_while_the_file_is_unchanged() {
        let dir = std::env::temp_dir().join(format!("analyzer-models-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let models = Models { dir: dir.clone() };
        // Nothing recorded: base, as before the record existed.
        assert_eq!(models.whisper(), dir.join(WHISPER_BASE));
        let q5 = fake_model(&dir, "ggml-large-v3-turbo-q5_0.bin", 2008);
        let info = describe_whisper(&q5, None).unwrap();
        assert_eq!(info.name, "large-v3-turbo-q5_0");
        assert_eq!(info.weights, "q5_0");
        assert_eq!(info.bytes, 55);
        let mut h = Sha256::new();
        h.update(fs::read(&q5).unwrap());
        assert_eq!(info.sha256, format!("{:x}", h.finalize()));

        // Recorded: used by default; the record's checksum is trusted while
        // size and mtime match (a made-up one shows it was not recomputed).
        let meta = fs::metadata(&q5).unwrap();
        let record = WhisperModelInfo {
            name: "turbo".into(),
            sha256: "f".repeat(64),
            modified_ns: Some(
                meta.modified()
                    .unwrap()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as i128,
            ),
            ..info.clone()
        };
        fs::write(dir.join(WHISPER_DEFAULT), record.to_json()).unwrap();
        assert_eq!(models.whisper(), q5);
        let d = models.describe_whisper(&q5).unwrap();
        assert_eq!(
            (d.name.as_str(), d.sha256.as_str()),
            ("turbo", &*"f".repeat(64))
        );
        assert_eq!(d.modified_ns, None);
        // Another file is hashed, not given the record's checksum.
        let f16 = fake_model(&dir, WHISPER_BASE, 1);
        let d = models.describe_whisper(&f16).unwrap();
        assert_eq!((d.name.as_str(), d.weights.as_str()), ("base", "f16"));
        assert_ne!(d.sha256, record.sha256);
        // The file changed since it was recorded: hashed again.
        fs::write(
            &q5,
            b"changed, and not a GGML file at all, 48+ bytes long....",
        )
        .unwrap();
        let d = models.describe_whisper(&q5).unwrap();
        assert_eq!(d.weights, "unknown");
        assert_ne!(d.sha256, record.sha256);
        // A record whose file is gone, or that points outside the folder, is ignored.
        fs::remove_file(&q5).unwrap();
        assert_eq!(models.whisper(), dir.join(WHISPER_BASE));
        let outside = WhisperModelInfo {
            file: format!("../{WHISPER_BASE}"),
            ..record
        };
        fs::write(dir.join(WHISPER_DEFAULT), outside.to_json()).unwrap();
        assert_eq!(models.whisper(), dir.join(WHISPER_BASE));
        let _ = fs::remove_dir_all(&dir);
    }
}
