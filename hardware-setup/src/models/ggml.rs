//! The GGML Whisper file: written from a checked plan, and walked back to
//! check that a file is complete and consistent.
//!
//! Layout (as whisper.cpp's `whisper_model_load` reads it, all little-endian
//! `i32` unless noted): magic `0x67676d6c`; hparams `n_vocab, n_audio_ctx,
//! n_audio_state, n_audio_head, n_audio_layer, n_text_ctx, n_text_state,
//! n_text_head, n_text_layer, n_mels, ftype`; mel filters `n_mel, n_fft` then
//! `n_mel * n_fft` `f32` row-major; vocabulary `count` then per token a `u32`
//! length and the raw bytes; then tensor records `n_dims, name_len, ttype,
//! ne[n_dims], name, data` until end of file, with `ne` in GGML order (fastest
//! dimension first, i.e. the row-major shape reversed).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use super::ct2::{Ct2Dtype, Ct2Model};
use super::error::ConvertError;
use super::hparams::WhisperHparams;
use super::plan::Checked;
use super::quantize::{GgmlType, convert_elements};

const GGML_MAGIC: u32 = 0x6767_6d6c;

/// Writes the GGML file to `path`, synced; returns its size.
pub(super) fn write_ggml(path: &Path, c: &Checked, m: &Ct2Model) -> Result<u64, ConvertError> {
    let werr = |source: io::Error| ConvertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(werr)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let n = write_ggml_to(&mut w, c, m).map_err(werr)?;
    w.flush().map_err(werr)?;
    w.get_ref().sync_all().map_err(werr)?;
    Ok(n)
}

/// Writes the GGML file; returns its size.
pub(super) fn write_ggml_to(out: &mut dyn Write, c: &Checked, m: &Ct2Model) -> io::Result<u64> {
    let (h, mel, vocab, plans) = (&c.hparams, &c.mel, &c.vocab, &c.plans);
    let mut w = CountingWriter {
        inner: out,
        count: 0,
    };
    w.i32(GGML_MAGIC as i32)?;
    for v in h.fields() {
        w.i32(v)?;
    }
    let n_bins = mel.len() / h.n_mels as usize;
    w.i32(h.n_mels)?;
    w.i32(n_bins as i32)?;
    for v in mel {
        w.write_all(&v.to_le_bytes())?;
    }
    w.i32(vocab.len() as i32)?;
    for t in vocab {
        w.write_all(&(t.len() as u32).to_le_bytes())?;
        w.write_all(t)?;
    }
    for p in plans {
        // Every source was checked by `check_conversion` before writing began,
        // and every dimension is at least 1.
        let v = m.get(&p.src).expect("source checked before writing");
        let row_bytes = v.data.len() / p.src_shape[0];
        let start = v.data.start + p.rows.start * row_bytes;
        let src = &m.bytes[start..start + p.rows.len() * row_bytes];
        w.i32(p.shape.len() as i32)?;
        w.i32(p.ggml.len() as i32)?;
        w.i32(p.out as i32)?;
        for &n in p.shape.iter().rev() {
            w.i32(n as i32)?;
        }
        w.write_all(p.ggml.as_bytes())?;
        match (v.dtype, p.out) {
            (Ct2Dtype::F32, GgmlType::F32) | (Ct2Dtype::F16, GgmlType::F16) => w.write_all(src)?,
            (from, to) => w.write_all(&convert_elements(src, from, to))?,
        }
    }
    Ok(w.count)
}

struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> CountingWriter<W> {
    fn i32(&mut self, v: i32) -> io::Result<()> {
        self.write_all(&v.to_le_bytes())
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One tensor record of a GGML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgmlTensorInfo {
    pub name: String,
    /// GGML order (fastest dimension first).
    pub ne: Vec<i32>,
    pub ttype: i32,
}

/// The structure of a GGML Whisper file, without the weights.
#[derive(Debug, Clone)]
pub struct GgmlSummary {
    pub hparams: WhisperHparams,
    pub mel_dims: (i32, i32),
    pub vocab_tokens: usize,
    pub tensors: Vec<GgmlTensorInfo>,
}

/// (block size in elements, bytes per block) of the GGML types whisper.cpp
/// files use, so that official quantized models can be walked too.
fn ggml_type_layout(t: i32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (1, 4),   // f32
        1 => (1, 2),   // f16
        2 => (32, 18), // q4_0
        3 => (32, 20), // q4_1
        6 => (32, 22), // q5_0
        7 => (32, 24), // q5_1
        8 => (32, 34), // q8_0
        _ => return None,
    })
}

/// Walks a GGML Whisper file (header, mel filters, vocabulary, every tensor
/// record, skipping the data) and checks that it is complete and consistent:
/// what `lab-setup models` uses to decide that an installed model is usable.
pub fn inspect_ggml(path: &Path) -> Result<GgmlSummary, ConvertError> {
    let rerr = |source: io::Error| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(rerr)?;
    let len = file.metadata().map_err(rerr)?.len();
    inspect_ggml_from(path, BufReader::new(file), len)
}

/// [`inspect_ggml`] over any seekable reader of `len` bytes (`path` only
/// names it in errors): `io::Cursor` over bytes for fuzzing.
pub fn inspect_ggml_from<R: Read + Seek>(
    path: &Path,
    mut r: R,
    len: u64,
) -> Result<GgmlSummary, ConvertError> {
    let rerr = |source: io::Error| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bad = |what: String| ConvertError::Malformed {
        path: path.to_path_buf(),
        what,
    };
    let mut pos = 0u64;
    let read_i32 = |r: &mut R, pos: &mut u64, what: &str| {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ConvertError::Truncated {
                path: path.to_path_buf(),
                what: what.to_string(),
                offset: *pos as usize,
                need: 4,
                len: len as usize,
            },
            _ => rerr(e),
        })?;
        *pos += 4;
        Ok::<i32, ConvertError>(i32::from_le_bytes(b))
    };
    let magic = read_i32(&mut r, &mut pos, "magic")? as u32;
    if magic != GGML_MAGIC {
        return Err(bad(format!("bad magic {magic:#010x}, not a GGML file")));
    }
    let mut f = [0i32; 11];
    for v in &mut f {
        *v = read_i32(&mut r, &mut pos, "hparams")?;
    }
    let hparams = WhisperHparams::from_fields(f);
    if f[..10].iter().any(|&v| v <= 0) {
        return Err(bad(format!("implausible hparams {hparams:?}")));
    }
    let skip = |r: &mut R, pos: &mut u64, n: Option<u64>, what: &str| -> Result<(), ConvertError> {
        // `None`: a size that does not even fit in 64 bits.
        let n = n.unwrap_or(u64::MAX);
        if len - *pos < n {
            return Err(ConvertError::Truncated {
                path: path.to_path_buf(),
                what: what.to_string(),
                offset: *pos as usize,
                need: n as usize,
                len: len as usize,
            });
        }
        r.seek_relative(n as i64).map_err(rerr)?;
        *pos += n;
        Ok(())
    };
    let n_mel = read_i32(&mut r, &mut pos, "mel filter rows")?;
    let n_fft = read_i32(&mut r, &mut pos, "mel filter columns")?;
    if n_mel != hparams.n_mels || n_fft <= 0 {
        return Err(bad(format!(
            "mel filter block is {n_mel} x {n_fft} for a model with {} mels",
            hparams.n_mels
        )));
    }
    skip(
        &mut r,
        &mut pos,
        4u64.checked_mul(n_mel as u64)
            .and_then(|n| n.checked_mul(n_fft as u64)),
        "mel filters",
    )?;
    let n_tokens = read_i32(&mut r, &mut pos, "vocabulary size")?;
    if n_tokens < 0 || n_tokens > hparams.n_vocab {
        return Err(bad(format!(
            "vocabulary block has {n_tokens} tokens for n_vocab {}",
            hparams.n_vocab
        )));
    }
    for _ in 0..n_tokens {
        let n = read_i32(&mut r, &mut pos, "token length")?;
        skip(&mut r, &mut pos, Some(u64::from(n as u32)), "token")?;
    }
    let mut tensors = Vec::new();
    let mut seen = HashSet::new();
    while pos < len {
        let n_dims = read_i32(&mut r, &mut pos, "tensor rank")?;
        let name_len = read_i32(&mut r, &mut pos, "tensor name length")?;
        let ttype = read_i32(&mut r, &mut pos, "tensor type")?;
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(bad(format!(
                "tensor record at offset {} has rank {n_dims} and name length {name_len}",
                pos - 12
            )));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(read_i32(&mut r, &mut pos, "tensor dims")?);
        }
        let mut name = vec![0u8; name_len as usize];
        if len - pos < name.len() as u64 {
            return Err(ConvertError::Truncated {
                path: path.to_path_buf(),
                what: "tensor name".into(),
                offset: pos as usize,
                need: name.len(),
                len: len as usize,
            });
        }
        r.read_exact(&mut name).map_err(rerr)?;
        pos += name.len() as u64;
        let name = String::from_utf8(name).map_err(|_| bad("tensor name is not UTF-8".into()))?;
        let (block, block_bytes) = ggml_type_layout(ttype)
            .ok_or_else(|| bad(format!("{name}: unknown GGML type {ttype}")))?;
        let n = ne
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d.max(0) as u64));
        let Some(n) = n.filter(|&n| n != 0 && n.is_multiple_of(block)) else {
            return Err(bad(format!("{name}: dims {ne:?} do not fit type {ttype}")));
        };
        skip(
            &mut r,
            &mut pos,
            (n / block).checked_mul(block_bytes),
            &format!("data of {name}"),
        )?;
        if !seen.insert(name.clone()) {
            return Err(bad(format!("tensor {name} appears twice")));
        }
        tensors.push(GgmlTensorInfo { name, ne, ttype });
    }
    if tensors.len() != hparams.expected_tensors() {
        return Err(bad(format!(
            "{} tensors, whisper.cpp expects {} for these hparams",
            tensors.len(),
            hparams.expected_tensors()
        )));
    }
    Ok(GgmlSummary {
        hparams,
        mel_dims: (n_mel, n_fft),
        vocab_tokens: n_tokens as usize,
        tensors,
    })
}
