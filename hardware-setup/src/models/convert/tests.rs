//! Converter tests on a tiny synthetic CTranslate2 checkpoint, read back with
//! an independent GGML reader written here (not `inspect_ggml`).

use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::models::ggml::inspect_ggml;
use crate::models::quantize::{f16_to_f32, f32_to_f16};

/// A scratch directory removed on drop (no tempfile crate in the workspace).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lab-models-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Model width: a multiple of 32 so that q8_0 blocks fit the rows.
const D: usize = 32;
const HEADS: i16 = 2;
const N_MELS: usize = 80;
const AUDIO_CTX: usize = 6;
const TEXT_CTX: usize = 5;
const ENC_LAYERS: usize = 2;
const DEC_LAYERS: usize = 1;

const TOKENS: [&str; 10] = [
    "!",
    "Ġhello",
    "Ð¿Ñĥ",
    "",
    "Ċ",
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|0.00|>",
    "<|0.02|>",
];

/// One variable: name, dims, CTranslate2 dtype id, and its values as f32
/// (kept to compare with what the converter wrote).
struct Var {
    name: String,
    dims: Vec<usize>,
    dtype: u8,
    values: Vec<f32>,
    raw: Option<Vec<u8>>,
}

struct Builder {
    spec: String,
    vars: Vec<Var>,
    aliases: Vec<(String, String)>,
    /// Variable whose byte count is written off by this much.
    bad_count: Option<(String, i64)>,
}

impl Builder {
    /// A structurally complete Whisper checkpoint with tiny dimensions. Values
    /// are multiples of 1/256 in [-4, 4), exact in f16, distinct per variable.
    fn whisper() -> Self {
        Self::shaped(N_MELS, TOKENS.len(), ENC_LAYERS, DEC_LAYERS)
    }

    /// [`Builder::whisper`] with other mel bins, vocabulary size and layer
    /// counts (large-v3: 128 mels and 51866 tokens; turbo: 4 decoder layers).
    fn shaped(n_mels: usize, n_vocab: usize, enc_layers: usize, dec_layers: usize) -> Self {
        let mut b = Builder {
            spec: "WhisperSpec".into(),
            vars: Vec::new(),
            aliases: Vec::new(),
            bad_count: None,
        };
        let d = D;
        // Position encodings in f32 and conv2 in f32 exercise the f32->f32
        // and f32->f16 paths; everything else is f16 like the real checkpoints.
        b.float("encoder/position_encodings/encodings", &[AUDIO_CTX, d], 0);
        b.float("decoder/position_encodings/encodings", &[TEXT_CTX, d], 4);
        b.float("encoder/conv1/weight", &[d, n_mels, 3], 4);
        b.float("encoder/conv1/bias", &[d], 4);
        b.float("encoder/conv2/weight", &[d, d, 3], 0);
        b.float("encoder/conv2/bias", &[d], 4);
        b.norm("encoder/layer_norm");
        b.float("decoder/embeddings/weight", &[n_vocab, d], 4);
        b.norm("decoder/layer_norm");
        for i in 0..enc_layers {
            let c = format!("encoder/layer_{i}");
            b.self_attention(&c);
            b.ffn(&c);
        }
        for i in 0..dec_layers {
            let c = format!("decoder/layer_{i}");
            b.self_attention(&c);
            b.norm(&format!("{c}/attention/layer_norm"));
            b.linear(&format!("{c}/attention/linear_0"), d, d);
            b.linear(&format!("{c}/attention/linear_1"), 2 * d, d);
            b.linear(&format!("{c}/attention/linear_2"), d, d);
            b.ffn(&c);
        }
        b.int16("encoder/num_heads", HEADS);
        b.int16("decoder/num_heads", HEADS);
        b.scalar_i8("decoder/scale_embeddings", 0);
        b.aliases.push((
            "decoder/projection/weight".into(),
            "decoder/embeddings/weight".into(),
        ));
        b
    }

    fn float(&mut self, name: &str, dims: &[usize], dtype: u8) {
        let n: usize = dims.iter().product();
        let k = self.vars.len();
        let values = (0..n)
            .map(|i| ((i + 37 * k) % 2048) as f32 / 256.0 - 4.0)
            .collect();
        self.vars.push(Var {
            name: name.into(),
            dims: dims.to_vec(),
            dtype,
            values,
            raw: None,
        });
    }

    fn int16(&mut self, name: &str, v: i16) {
        self.vars.push(Var {
            name: name.into(),
            dims: vec![],
            dtype: 2,
            values: vec![],
            raw: Some(v.to_le_bytes().to_vec()),
        });
    }

    fn scalar_i8(&mut self, name: &str, v: i8) {
        self.vars.push(Var {
            name: name.into(),
            dims: vec![],
            dtype: 1,
            values: vec![],
            raw: Some(vec![v as u8]),
        });
    }

    fn norm(&mut self, scope: &str) {
        self.float(&format!("{scope}/gamma"), &[D], 4);
        self.float(&format!("{scope}/beta"), &[D], 4);
    }

    fn linear(&mut self, scope: &str, n_out: usize, n_in: usize) {
        self.float(&format!("{scope}/weight"), &[n_out, n_in], 4);
        self.float(&format!("{scope}/bias"), &[n_out], 4);
    }

    fn self_attention(&mut self, c: &str) {
        self.norm(&format!("{c}/self_attention/layer_norm"));
        self.linear(&format!("{c}/self_attention/linear_0"), 3 * D, D);
        self.linear(&format!("{c}/self_attention/linear_1"), D, D);
    }

    fn ffn(&mut self, c: &str) {
        self.norm(&format!("{c}/ffn/layer_norm"));
        self.linear(&format!("{c}/ffn/linear_0"), 4 * D, D);
        self.linear(&format!("{c}/ffn/linear_1"), D, 4 * D);
    }

    fn values(&self, name: &str) -> &[f32] {
        &self.vars.iter().find(|v| v.name == name).unwrap().values
    }

    fn remove(&mut self, name: &str) {
        self.vars.retain(|v| v.name != name);
    }

    /// Serialises like CTranslate2's `_serialize`: sorted variables, then aliases.
    fn bytes(&self) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&6u32.to_le_bytes());
        string(&mut out, &self.spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        let mut vars: Vec<&Var> = self.vars.iter().collect();
        vars.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for v in vars {
            string(&mut out, &v.name);
            out.push(v.dims.len() as u8);
            for &d in &v.dims {
                out.extend_from_slice(&(d as u32).to_le_bytes());
            }
            out.push(v.dtype);
            let data = match &v.raw {
                Some(raw) => raw.clone(),
                None => v
                    .values
                    .iter()
                    .flat_map(|&x| match v.dtype {
                        0 => x.to_le_bytes().to_vec(),
                        4 => f32_to_f16(x).to_le_bytes().to_vec(),
                        _ => unreachable!(),
                    })
                    .collect(),
            };
            let mut count = data.len() as i64;
            if let Some((name, delta)) = &self.bad_count
                && *name == v.name
            {
                count += delta;
            }
            out.extend_from_slice(&(count as u32).to_le_bytes());
            out.extend_from_slice(&data);
        }
        out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (a, t) in &self.aliases {
            string(&mut out, a);
            string(&mut out, t);
        }
        out
    }

    /// Writes `model.bin` and `vocabulary.txt` into a fresh directory.
    fn write(&self, tokens: &[&str]) -> Scratch {
        let dir = Scratch::new("ct2");
        fs::write(dir.0.join("model.bin"), self.bytes()).unwrap();
        let mut vocab = tokens.join("\n");
        vocab.push('\n');
        fs::write(dir.0.join("vocabulary.txt"), vocab).unwrap();
        dir
    }
}

/// Everything in a GGML file, parsed independently of the converter.
struct Ggml {
    magic: u32,
    hparams: [i32; 11],
    n_mel: i32,
    n_fft: i32,
    mel: Vec<f32>,
    vocab: Vec<Vec<u8>>,
    tensors: Vec<(String, Vec<i32>, i32, Vec<u8>)>,
}

impl Ggml {
    fn read(path: &Path) -> Ggml {
        let b = fs::read(path).unwrap();
        let mut pos = 0;
        let i32_at = |pos: &mut usize| {
            let v = i32::from_le_bytes(b[*pos..*pos + 4].try_into().unwrap());
            *pos += 4;
            v
        };
        let magic = i32_at(&mut pos) as u32;
        let mut hparams = [0; 11];
        for h in &mut hparams {
            *h = i32_at(&mut pos);
        }
        let n_mel = i32_at(&mut pos);
        let n_fft = i32_at(&mut pos);
        let mel = (0..(n_mel * n_fft) as usize)
            .map(|_| f32::from_bits(i32_at(&mut pos) as u32))
            .collect();
        let n_vocab = i32_at(&mut pos);
        let mut vocab = Vec::new();
        for _ in 0..n_vocab {
            let n = i32_at(&mut pos) as usize;
            vocab.push(b[pos..pos + n].to_vec());
            pos += n;
        }
        let mut tensors = Vec::new();
        while pos < b.len() {
            let n_dims = i32_at(&mut pos);
            let name_len = i32_at(&mut pos) as usize;
            let ttype = i32_at(&mut pos);
            let ne: Vec<i32> = (0..n_dims).map(|_| i32_at(&mut pos)).collect();
            let name = String::from_utf8(b[pos..pos + name_len].to_vec()).unwrap();
            pos += name_len;
            let n = ne.iter().product::<i32>() as usize;
            let size = match ttype {
                0 => n * 4,
                1 => n * 2,
                8 => n / 32 * 34,
                6 => n / 32 * 22,
                t => panic!("unexpected type {t}"),
            };
            tensors.push((name, ne, ttype, b[pos..pos + size].to_vec()));
            pos += size;
        }
        assert_eq!(pos, b.len(), "tensor data runs past the end");
        Ggml {
            magic,
            hparams,
            n_mel,
            n_fft,
            mel,
            vocab,
            tensors,
        }
    }

    fn tensor(&self, name: &str) -> &(String, Vec<i32>, i32, Vec<u8>) {
        self.tensors
            .iter()
            .find(|t| t.0 == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }

    /// A tensor's data as f32 whatever its stored type.
    fn values(&self, name: &str) -> Vec<f32> {
        let (_, _, ttype, data) = self.tensor(name);
        match ttype {
            0 => data
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            1 => data
                .chunks(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            8 => data
                .chunks(34)
                .flat_map(|b| {
                    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                    b[2..].iter().map(move |&q| q as i8 as f32 * d)
                })
                .collect(),
            6 => crate::models::quantize::dequantize_q5_0(data),
            t => panic!("unexpected type {t}"),
        }
    }
}

/// whisper.cpp's tensor names for these layer counts (from `ASR_TENSOR_NAMES`).
fn expected_names() -> Vec<String> {
    expected_names_for(ENC_LAYERS, DEC_LAYERS)
}

fn expected_names_for(enc_layers: usize, dec_layers: usize) -> Vec<String> {
    let mut names: Vec<String> = [
        "encoder.positional_embedding",
        "encoder.conv1.weight",
        "encoder.conv1.bias",
        "encoder.conv2.weight",
        "encoder.conv2.bias",
        "encoder.ln_post.weight",
        "encoder.ln_post.bias",
        "decoder.positional_embedding",
        "decoder.token_embedding.weight",
        "decoder.ln.weight",
        "decoder.ln.bias",
    ]
    .map(String::from)
    .to_vec();
    let attn = |p: &str, a: &str| {
        [
            format!("{p}.{a}_ln.weight"),
            format!("{p}.{a}_ln.bias"),
            format!("{p}.{a}.query.weight"),
            format!("{p}.{a}.query.bias"),
            format!("{p}.{a}.key.weight"),
            format!("{p}.{a}.value.weight"),
            format!("{p}.{a}.value.bias"),
            format!("{p}.{a}.out.weight"),
            format!("{p}.{a}.out.bias"),
        ]
    };
    let mlp = |p: &str| {
        [
            format!("{p}.mlp_ln.weight"),
            format!("{p}.mlp_ln.bias"),
            format!("{p}.mlp.0.weight"),
            format!("{p}.mlp.0.bias"),
            format!("{p}.mlp.2.weight"),
            format!("{p}.mlp.2.bias"),
        ]
    };
    for i in 0..enc_layers {
        let p = format!("encoder.blocks.{i}");
        names.extend(attn(&p, "attn"));
        names.extend(mlp(&p));
    }
    for i in 0..dec_layers {
        let p = format!("decoder.blocks.{i}");
        names.extend(attn(&p, "attn"));
        names.extend(attn(&p, "cross_attn"));
        names.extend(mlp(&p));
    }
    names.sort();
    names
}

#[test]
fn converts_synthetic_checkpoint_to_ggml_whisper_cpp_layout() {
    let b = Builder::whisper();
    let dir = b.write(&TOKENS);
    let out = dir.0.join("ggml-test.bin");
    let report = convert(&dir.0, &out, Weights::F16).unwrap();
    let g = Ggml::read(&out);

    assert_eq!(g.magic, 0x6767_6d6c);
    let d = D as i32;
    assert_eq!(
        g.hparams,
        [
            10,
            AUDIO_CTX as i32,
            d,
            2,
            ENC_LAYERS as i32,
            TEXT_CTX as i32,
            d,
            2,
            DEC_LAYERS as i32,
            80,
            1
        ]
    );
    assert_eq!((g.n_mel, g.n_fft), (80, 201));
    assert_eq!(g.mel.len(), 80 * 201);
    // Only the tokens before <|endoftext|>, as raw bytes.
    assert_eq!(
        g.vocab,
        vec![
            b"!".to_vec(),
            b" hello".to_vec(),
            "пу".as_bytes().to_vec(),
            vec![],
            b"\n".to_vec()
        ]
    );

    let mut names: Vec<String> = g.tensors.iter().map(|t| t.0.clone()).collect();
    names.sort();
    assert_eq!(names, expected_names());
    assert_eq!(g.tensors.len(), report.tensors);
    assert!(g.tensors.iter().all(|t| !t.0.contains(".key.bias")));

    // Types as whisper.cpp allocates them: f32 for biases, norms, positional
    // embeddings; f16 for matrices and conv kernels.
    for (name, _, ttype, _) in &g.tensors {
        let f32_expected = name.ends_with(".bias")
            || name.ends_with("_ln.weight")
            || name.ends_with("ln_post.weight")
            || name == "decoder.ln.weight"
            || name.ends_with("positional_embedding");
        assert_eq!(*ttype, if f32_expected { 0 } else { 1 }, "{name}");
    }

    // Shapes in GGML order (reversed row-major).
    let ne = |n: &str| g.tensor(n).1.clone();
    assert_eq!(
        ne("encoder.positional_embedding"),
        vec![d, AUDIO_CTX as i32]
    );
    assert_eq!(ne("decoder.positional_embedding"), vec![d, TEXT_CTX as i32]);
    assert_eq!(ne("encoder.conv1.weight"), vec![3, 80, d]);
    assert_eq!(ne("encoder.conv2.weight"), vec![3, d, d]);
    assert_eq!(ne("encoder.conv1.bias"), vec![1, d]);
    assert_eq!(ne("decoder.token_embedding.weight"), vec![d, 10]);
    assert_eq!(ne("encoder.blocks.1.attn.query.weight"), vec![d, d]);
    assert_eq!(ne("encoder.blocks.1.attn.query.bias"), vec![d]);
    assert_eq!(ne("encoder.blocks.0.mlp.0.weight"), vec![d, 4 * d]);
    assert_eq!(ne("encoder.blocks.0.mlp.2.weight"), vec![4 * d, d]);
    assert_eq!(ne("decoder.blocks.0.cross_attn.value.weight"), vec![d, d]);
    assert_eq!(ne("decoder.ln.bias"), vec![d]);

    // Data: fused q|k|v and k|v are split by rows, norms renamed, values kept.
    let n = D * D;
    let qkv = b.values("encoder/layer_1/self_attention/linear_0/weight");
    assert_eq!(g.values("encoder.blocks.1.attn.query.weight"), qkv[..n]);
    assert_eq!(g.values("encoder.blocks.1.attn.key.weight"), qkv[n..2 * n]);
    assert_eq!(g.values("encoder.blocks.1.attn.value.weight"), qkv[2 * n..]);
    let qkv_b = b.values("encoder/layer_1/self_attention/linear_0/bias");
    assert_eq!(g.values("encoder.blocks.1.attn.query.bias"), qkv_b[..D]);
    assert_eq!(g.values("encoder.blocks.1.attn.value.bias"), qkv_b[2 * D..]);
    let kv = b.values("decoder/layer_0/attention/linear_1/weight");
    assert_eq!(g.values("decoder.blocks.0.cross_attn.key.weight"), kv[..n]);
    assert_eq!(
        g.values("decoder.blocks.0.cross_attn.value.weight"),
        kv[n..]
    );
    let kv_b = b.values("decoder/layer_0/attention/linear_1/bias");
    assert_eq!(
        g.values("decoder.blocks.0.cross_attn.value.bias"),
        kv_b[D..]
    );
    for (ggml, ct2) in [
        (
            "encoder.positional_embedding",
            "encoder/position_encodings/encodings",
        ),
        ("encoder.conv1.bias", "encoder/conv1/bias"),
        ("encoder.conv2.weight", "encoder/conv2/weight"),
        ("encoder.ln_post.weight", "encoder/layer_norm/gamma"),
        ("decoder.ln.bias", "decoder/layer_norm/beta"),
        (
            "decoder.token_embedding.weight",
            "decoder/embeddings/weight",
        ),
        (
            "decoder.blocks.0.mlp_ln.weight",
            "decoder/layer_0/ffn/layer_norm/gamma",
        ),
        (
            "decoder.blocks.0.mlp.2.weight",
            "decoder/layer_0/ffn/linear_1/weight",
        ),
        (
            "decoder.blocks.0.cross_attn.out.bias",
            "decoder/layer_0/attention/linear_2/bias",
        ),
        (
            "decoder.blocks.0.cross_attn_ln.bias",
            "decoder/layer_0/attention/layer_norm/beta",
        ),
        (
            "encoder.blocks.0.attn.out.weight",
            "encoder/layer_0/self_attention/linear_1/weight",
        ),
    ] {
        assert_eq!(g.values(ggml), b.values(ct2), "{ggml} <- {ct2}");
    }

    assert_eq!(report.vocab_tokens, 5);
    assert_eq!(report.source_dtype, "float16");
    assert_eq!(report.out_bytes, fs::metadata(&out).unwrap().len());
    assert_eq!(report.model_sha256.len(), 64);
    assert!(!partial_path(&out).exists());

    // The library's own walker agrees.
    let s = inspect_ggml(&out).unwrap();
    assert_eq!(s.tensors.len(), expected_names().len());
    assert_eq!(s.vocab_tokens, 5);
    assert_eq!(s.mel_dims, (80, 201));
}

#[test]
fn q8_0_quantizes_the_matrices_and_keeps_the_rest() {
    let b = Builder::whisper();
    let dir = b.write(&TOKENS);
    let f16 = dir.0.join("f16.bin");
    let q8 = dir.0.join("q8_0.bin");
    convert(&dir.0, &f16, Weights::F16).unwrap();
    let report = convert(&dir.0, &q8, Weights::Q8_0).unwrap();
    let (a, g) = (Ggml::read(&f16), Ggml::read(&q8));
    // ftype 7 (mostly q8_0) plus ggml's quantization version 2 * 1000.
    assert_eq!(g.hparams[10], 2007);
    assert_eq!(g.hparams[..10], a.hparams[..10]);
    assert_eq!(g.vocab, a.vocab);
    assert_eq!(g.mel, a.mel);
    for ((name, ne, f16_type, _), (qname, qne, qtype, _)) in a.tensors.iter().zip(&g.tensors) {
        assert_eq!((name, ne), (qname, qne));
        // 2-D f16 matrices become q8_0; conv kernels (3-D) and f32 tensors stay.
        let want = if *f16_type == 1 && ne.len() == 2 {
            8
        } else {
            *f16_type
        };
        assert_eq!(*qtype, want, "{name}");
        let (exact, approx) = (a.values(name), g.values(name));
        if want != 8 {
            assert_eq!(approx, exact, "{name}");
            continue;
        }
        for (block, (x, y)) in exact.chunks(32).zip(approx.chunks(32)).enumerate() {
            let step = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (u, v) in x.iter().zip(y) {
                // Half a step of rounding, plus the f16 rounding of the scale.
                assert!(
                    (u - v).abs() <= step * 0.5 + u.abs() * 1e-3,
                    "{name} block {block}: {u} vs {v}"
                );
            }
        }
    }
    assert!(report.out_bytes < fs::metadata(&f16).unwrap().len());
    assert_eq!(
        inspect_ggml(&q8).unwrap().tensors.len(),
        expected_names().len()
    );
}

fn convert_err(b: &Builder, tokens: &[&str]) -> ConvertError {
    let dir = b.write(tokens);
    let out = dir.0.join("out.bin");
    let err = convert(&dir.0, &out, Weights::F16).unwrap_err();
    assert!(!out.exists(), "no output on error");
    err
}

#[test]
fn truncated_model_bin_is_reported_as_truncated() {
    let b = Builder::whisper();
    let dir = b.write(&TOKENS);
    let model = dir.0.join("model.bin");
    let bytes = fs::read(&model).unwrap();
    fs::write(&model, &bytes[..bytes.len() - 100]).unwrap();
    let err = convert(&dir.0, &dir.0.join("out.bin"), Weights::F16).unwrap_err();
    assert!(matches!(err, ConvertError::Truncated { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("truncated") && msg.contains("model.bin"),
        "{msg}"
    );
}

#[test]
fn unknown_spec_is_rejected() {
    let mut b = Builder::whisper();
    b.spec = "TransformerSpec".into();
    let err = convert_err(&b, &TOKENS);
    assert!(
        matches!(&err, ConvertError::UnsupportedSpec { found, .. } if found == "TransformerSpec"),
        "{err}"
    );
}

#[test]
fn wrong_byte_count_is_rejected_with_the_variable_named() {
    let mut b = Builder::whisper();
    b.bad_count = Some(("encoder/conv1/bias".into(), -2));
    let err = convert_err(&b, &TOKENS);
    assert!(
        matches!(&err, ConvertError::ByteCount { name, found: 62, expected: 64, .. } if name == "encoder/conv1/bias"),
        "{err}"
    );
}

#[test]
fn missing_tensor_wrong_shape_and_vocabulary_mismatch_are_rejected() {
    let mut b = Builder::whisper();
    b.remove("decoder/layer_0/attention/linear_2/weight");
    let err = convert_err(&b, &TOKENS);
    assert!(
        matches!(&err, ConvertError::Missing { name, .. } if name == "decoder/layer_0/attention/linear_2/weight"),
        "{err}"
    );

    let mut b = Builder::whisper();
    b.remove("encoder/layer_1/ffn/linear_0/weight");
    b.float("encoder/layer_1/ffn/linear_0/weight", &[3 * D, D], 4);
    let err = convert_err(&b, &TOKENS);
    assert!(
        matches!(&err, ConvertError::Shape { name, found, .. } if name == "encoder/layer_1/ffn/linear_0/weight" && *found == vec![3 * D, D]),
        "{err}"
    );

    let err = convert_err(&Builder::whisper(), &TOKENS[..9]);
    assert!(
        matches!(
            err,
            ConvertError::VocabSize {
                found: 9,
                expected: 10,
                ..
            }
        ),
        "{err}"
    );

    let mut tokens = TOKENS;
    tokens[1] = "hello€";
    let err = convert_err(&Builder::whisper(), &tokens);
    assert!(
        matches!(err, ConvertError::VocabToken { line: 2, .. }),
        "{err}"
    );
}

#[test]
fn inspect_rejects_truncated_ggml() {
    let dir = Builder::whisper().write(&TOKENS);
    let out = dir.0.join("ggml.bin");
    convert(&dir.0, &out, Weights::F16).unwrap();
    let bytes = fs::read(&out).unwrap();
    fs::write(&out, &bytes[..bytes.len() - 3]).unwrap();
    let err = inspect_ggml(&out).unwrap_err();
    assert!(matches!(err, ConvertError::Truncated { .. }), "{err}");
    fs::write(&out, b"not a model at all").unwrap();
    assert!(inspect_ggml(&out).is_err());
}

/// large-v3 and large-v3-turbo shapes in miniature: 128 mel bins, the
/// 51866-token vocabulary (100 languages), and fewer decoder layers (4) than
/// encoder layers (5); converted to f16 and q5_0, read back independently,
/// and checked against whisper.cpp's layout by `verify`'s layout check.
#[test]
fn converts_large_v3_turbo_shapes_128_mels_51866_tokens_4_decoder_layers() {
    let (n_mels, n_vocab, enc, dec) = (128, 51866, 5, 4);
    let b = Builder::shaped(n_mels, n_vocab, enc, dec);
    // 50257 byte-level BPE tokens, then <|endoftext|> and the specials.
    let mut tokens: Vec<String> = (0..50257).map(|i| format!("t{i}")).collect();
    tokens.push("<|endoftext|>".into());
    tokens.extend((tokens.len()..n_vocab).map(|i| format!("<|s{i}|>")));
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let dir = b.write(&refs);
    let f16 = dir.0.join("f16.bin");
    let q5 = dir.0.join("q5_0.bin");
    let report = convert(&dir.0, &f16, Weights::F16).unwrap();
    convert(&dir.0, &q5, Weights::Q5_0).unwrap();
    let (a, g) = (Ggml::read(&f16), Ggml::read(&q5));
    let d = D as i32;
    assert_eq!(
        a.hparams,
        [
            n_vocab as i32,
            AUDIO_CTX as i32,
            d,
            2,
            enc as i32,
            TEXT_CTX as i32,
            d,
            2,
            dec as i32,
            128,
            1
        ]
    );
    assert_eq!(report.hparams.n_text_layer, 4);
    assert_eq!(report.vocab_tokens, 50257);
    assert_eq!(a.vocab.len(), 50257);
    assert_eq!(a.vocab[50256], b"t50256");
    // The mel block is Whisper's 128-bin filterbank (bit for bit: mel.rs).
    assert_eq!((a.n_mel, a.n_fft), (128, 201));
    assert_eq!(a.mel, crate::models::mel_filterbank(16000.0, 400, 128));
    assert_eq!(a.tensor("encoder.conv1.weight").1, vec![3, 128, d]);
    assert_eq!(
        a.tensor("decoder.token_embedding.weight").1,
        vec![d, n_vocab as i32]
    );
    let mut names: Vec<String> = a.tensors.iter().map(|t| t.0.clone()).collect();
    names.sort();
    assert_eq!(names, expected_names_for(enc, dec));
    assert!(a.tensors.iter().all(|t| !t.0.contains("decoder.blocks.4.")));

    // q5_0: ftype 8 + 2000; 2-D matrices type 6, within a step of the f16 values.
    assert_eq!(g.hparams[10], 2008);
    assert_eq!(g.hparams[..10], a.hparams[..10]);
    assert_eq!(
        (g.mel.clone(), g.vocab.clone()),
        (a.mel.clone(), a.vocab.clone())
    );
    for ((name, ne, f16_type, _), (qname, qne, qtype, _)) in a.tensors.iter().zip(&g.tensors) {
        assert_eq!((name, ne), (qname, qne));
        let want = if *f16_type == 1 && ne.len() == 2 {
            6
        } else {
            *f16_type
        };
        assert_eq!(*qtype, want, "{name}");
        let (exact, approx) = (a.values(name), g.values(name));
        if want != 6 {
            assert_eq!(approx, exact, "{name}");
            continue;
        }
        for (x, y) in exact.chunks(32).zip(approx.chunks(32)) {
            let step = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 16.0;
            for (u, v) in x.iter().zip(y) {
                assert!((u - v).abs() <= step * 1.001, "{name}: {u} vs {v}");
            }
        }
    }
    for path in [&f16, &q5] {
        let s = inspect_ggml(path).unwrap();
        crate::models::verify::check_layout(&s).unwrap();
        // Not a published size (width 32), so a lab's file like it is refused.
        assert!(crate::models::verify::check_known(&s.hparams).is_err());
    }
}

/// A quantized CTranslate2 checkpoint (int8 matrices) is refused with the
/// variable named and what to do instead.
#[test]
fn int8_checkpoints_are_refused_clearly() {
    let mut b = Builder::whisper();
    b.remove("encoder/layer_0/ffn/linear_0/weight");
    b.vars.push(Var {
        name: "encoder/layer_0/ffn/linear_0/weight".into(),
        dims: vec![4 * D, D],
        dtype: 1,
        values: Vec::new(),
        raw: Some(vec![3u8; 4 * D * D]),
    });
    let err = convert_err(&b, &TOKENS);
    assert!(
        matches!(&err, ConvertError::Dtype { dtype: "int8", .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("int8") && text.contains("--quantization float16"),
        "{text}"
    );
}
