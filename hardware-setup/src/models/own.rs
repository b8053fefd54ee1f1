//! `lab-setup models --whisper FILE_OR_DIR`: a Whisper model the lab brings
//! (an official GGML file, or a CTranslate2 checkpoint directory, tiny to
//! large-v3-turbo), verified, optionally quantized, installed into the models
//! folder as `ggml-<name>.bin` and recorded as the analyzer's default in
//! `whisper-default.json`; and the record itself, which a plain `lab-setup
//! models` writes for base when there is none.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use lab_model::models::{WHISPER_DEFAULT, WhisperModelInfo, ggml_ftype_name, whisper_file_name};
use sha2::{Digest, Sha256};

use super::convert::convert;
use super::ct2::Ct2Dtype;
use super::error::{ConvertError, InstallError};
use super::files::{CT2_MODEL, partial_path};
use super::quantize::{GgmlType, Weights, narrow, widen};
use super::verify::{model_name, verify_ggml};

/// What `lab-setup models --whisper` installs.
#[derive(Debug, Clone)]
pub struct WhisperImport {
    /// An official GGML file, or a CTranslate2 checkpoint directory.
    pub source: PathBuf,
    /// The models folder.
    pub dir: PathBuf,
    /// Store the matrices as q8_0 or q5_0 (f16 if `None`, or as the GGML
    /// file has them).
    pub quantize: Option<Weights>,
    /// Installed as `ggml-<name>.bin`; default: the model's own name
    /// (`large-v3-turbo`, or the GGML file's) plus `-q5_0` when quantized.
    pub name: Option<String>,
}

/// Installs the model `w` describes and records it as the default; returns
/// the record.
pub fn import_whisper(
    w: &WhisperImport,
    log: &mut dyn FnMut(&str),
) -> Result<WhisperModelInfo, InstallError> {
    let ioerr = |path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| InstallError::Io { path, source }
    };
    fs::create_dir_all(&w.dir).map_err(ioerr(&w.dir))?;
    let suffix = w
        .quantize
        .map(|q| format!("-{}", q.name()))
        .unwrap_or_default();
    let staged = w.dir.join(".whisper-import.bin");
    let (staged_or_source, default_name) = if w.source.is_dir() {
        if !w.source.join(CT2_MODEL).is_file() {
            return Err(InstallError::Verify {
                path: w.source.clone(),
                what: format!(
                    "a CTranslate2 checkpoint directory has a {CT2_MODEL}; this has none"
                ),
            });
        }
        let weights = w.quantize.unwrap_or(Weights::F16);
        log(&format!(
            "converting {} ({}) -> GGML",
            w.source.display(),
            weights.name()
        ));
        let report = convert(&w.source, &staged, weights)?;
        for line in report.render().lines() {
            log(&format!("  {line}"));
        }
        (staged.clone(), model_name(&report.hparams))
    } else {
        let s = verify_ggml(&w.source)?;
        log(&format!(
            "{}: GGML whisper {} ({}), {} tensors, verified",
            w.source.display(),
            model_name(&s.hparams),
            ggml_ftype_name(s.hparams.ftype),
            s.tensors.len()
        ));
        let stem = w
            .source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = stem.strip_suffix(".bin").unwrap_or(&stem);
        let stem = stem.strip_prefix("ggml-").unwrap_or(stem).to_string();
        match w.quantize {
            Some(q) => {
                log(&format!(
                    "quantizing {} -> {}",
                    w.source.display(),
                    q.name()
                ));
                requantize(&w.source, &staged, q)?;
                (staged.clone(), stem)
            }
            None => (w.source.clone(), stem),
        }
    };
    let name = w.name.clone().unwrap_or(default_name + &suffix);
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        let _ = fs::remove_file(&staged);
        return Err(InstallError::Verify {
            path: w.source.clone(),
            what: format!("{name:?} cannot be a model name (it names the file ggml-<name>.bin)"),
        });
    }
    let dest = w.dir.join(whisper_file_name(&name));
    if staged_or_source == staged {
        fs::rename(&staged, &dest).map_err(ioerr(&dest))?;
    } else if !same_file(&staged_or_source, &dest) {
        let tmp = partial_path(&dest);
        fs::copy(&staged_or_source, &tmp).map_err(ioerr(&tmp))?;
        fs::rename(&tmp, &dest).map_err(ioerr(&dest))?;
    }
    let s = verify_ggml(&dest)?;
    let info = describe(&dest, &name, ggml_ftype_name(s.hparams.ftype))?;
    log(&format!(
        "{}: whisper {name}, {} bytes, {}, sha256 {}",
        dest.display(),
        info.bytes,
        info.weights,
        info.sha256
    ));
    write_default(&w.dir, &info)?;
    log(&format!(
        "{}: lab-analyze now uses {} by default",
        w.dir.join(WHISPER_DEFAULT).display(),
        info.file
    ));
    Ok(info)
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// The record of the model file `path` (name `name`): its size, modification
/// time and SHA-256 (read once, here).
pub fn describe(path: &Path, name: &str, weights: &str) -> Result<WhisperModelInfo, InstallError> {
    let ioerr = |source: io::Error| InstallError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(ioerr)?;
    let mut f = BufReader::with_capacity(1 << 20, File::open(path).map_err(ioerr)?);
    let mut hash = Sha256::new();
    io::copy(&mut f, &mut hash).map_err(ioerr)?;
    Ok(WhisperModelInfo {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        name: name.to_string(),
        bytes: meta.len(),
        weights: weights.to_string(),
        sha256: format!("{:x}", hash.finalize()),
        modified_ns: meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128),
    })
}

/// Writes `whisper-default.json` in `dir` (complete or absent).
pub fn write_default(dir: &Path, info: &WhisperModelInfo) -> Result<(), InstallError> {
    let path = dir.join(WHISPER_DEFAULT);
    let tmp = partial_path(&path);
    let ioerr = |source: io::Error| InstallError::Io {
        path: path.clone(),
        source,
    };
    fs::write(&tmp, info.to_json()).map_err(ioerr)?;
    fs::rename(&tmp, &path).map_err(ioerr)
}

/// The recorded default, if there is a readable record whose file exists.
pub fn read_default(dir: &Path) -> Option<WhisperModelInfo> {
    let text = fs::read_to_string(dir.join(WHISPER_DEFAULT)).ok()?;
    let info = WhisperModelInfo::from_json(&text).ok()?;
    dir.join(&info.file).is_file().then_some(info)
}

/// Re-encodes an f16 or f32 GGML Whisper file with its 2-D matrices (all but
/// the positional embeddings and conv biases, as whisper.cpp's own
/// `quantize` tool chooses) in `to`. Streams tensor by tensor.
fn requantize(src: &Path, out: &Path, to: Weights) -> Result<(), InstallError> {
    let (ty, block) = to.matrix_type().expect("f16 is not a quantization");
    let rerr = |source: io::Error| {
        InstallError::Convert(ConvertError::Read {
            path: src.to_path_buf(),
            source,
        })
    };
    let mut r = BufReader::with_capacity(1 << 20, File::open(src).map_err(rerr)?);
    let tmp = partial_path(out);
    let werr = |source: io::Error| InstallError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(werr)?);
    let result = (|| -> Result<(), InstallError> {
        let i32s = |r: &mut BufReader<File>, n: usize| -> Result<Vec<i32>, InstallError> {
            let mut b = vec![0u8; 4 * n];
            r.read_exact(&mut b).map_err(rerr)?;
            Ok(b.chunks(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let put = |w: &mut BufWriter<File>, v: &[i32]| -> Result<(), InstallError> {
            for x in v {
                w.write_all(&x.to_le_bytes()).map_err(werr)?;
            }
            Ok(())
        };
        let mut head = i32s(&mut r, 12)?;
        let ftype = head[11] % 1000;
        if ftype > 1 {
            return Err(InstallError::Verify {
                path: src.to_path_buf(),
                what: format!(
                    "is already quantized ({}); quantize from the f16 file",
                    ggml_ftype_name(ftype)
                ),
            });
        }
        head[11] = to.ftype();
        put(&mut w, &head)?;
        let mel = i32s(&mut r, 2)?;
        put(&mut w, &mel)?;
        let n = 4 * mel[0] as u64 * mel[1] as u64;
        io::copy(&mut (&mut r).take(n), &mut w).map_err(werr)?;
        let n_tokens = i32s(&mut r, 1)?;
        put(&mut w, &n_tokens)?;
        for _ in 0..n_tokens[0] {
            let len = i32s(&mut r, 1)?;
            put(&mut w, &len)?;
            io::copy(&mut (&mut r).take(len[0] as u32 as u64), &mut w).map_err(werr)?;
        }
        loop {
            let mut first = [0u8; 4];
            match r.read_exact(&mut first) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(rerr(e)),
            }
            let n_dims = i32::from_le_bytes(first);
            let rest = i32s(&mut r, 2 + n_dims as usize)?;
            let (name_len, ttype, ne) = (rest[0], rest[1], &rest[2..]);
            let mut name = vec![0u8; name_len as usize];
            r.read_exact(&mut name).map_err(rerr)?;
            let count: usize = ne.iter().map(|&d| d as usize).product();
            let elem = if ttype == 0 { 4 } else { 2 };
            let mut data = vec![0u8; count * elem];
            r.read_exact(&mut data).map_err(rerr)?;
            let skip = [
                &b"encoder.conv1.bias"[..],
                b"encoder.conv2.bias",
                b"encoder.positional_embedding",
                b"decoder.positional_embedding",
            ];
            let quantize =
                n_dims == 2 && !skip.contains(&&name[..]) && (ne[0] as usize).is_multiple_of(block);
            let from = if ttype == 0 {
                Ct2Dtype::F32
            } else {
                Ct2Dtype::F16
            };
            let (out_type, bytes) = if quantize {
                (ty, narrow(&widen(&data, from), ty))
            } else if n_dims == 3 && ttype == 0 {
                // Conv kernels: f32 only in an all-f32 file, f16 otherwise.
                (GgmlType::F16, narrow(&widen(&data, from), GgmlType::F16))
            } else if ttype == 0 {
                (GgmlType::F32, data)
            } else {
                (GgmlType::F16, data)
            };
            put(&mut w, &[n_dims, name_len, out_type as i32])?;
            put(&mut w, ne)?;
            w.write_all(&name).map_err(werr)?;
            w.write_all(&bytes).map_err(werr)?;
        }
        w.flush().map_err(werr)?;
        w.get_ref().sync_all().map_err(werr)?;
        fs::rename(&tmp, out).map_err(werr)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
