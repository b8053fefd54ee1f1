//! The conversion plan: Whisper's hyper-parameters derived from the
//! checkpoint's own shapes, every GGML tensor whisper.cpp loads mapped to the
//! CTranslate2 variable (and rows of it) it comes from, and the whole plan
//! checked against the checkpoint and the vocabulary before anything is written.

use std::ops::Range;
use std::path::Path;

use super::ct2::Ct2Model;
use super::error::ConvertError;
use super::hparams::WhisperHparams;
use super::mel::mel_filterbank;
use super::quantize::{GgmlType, Weights};
use super::vocab::{ggml_vocabulary, parse_vocabulary};

/// Derives the hparams from the checkpoint's own shapes and scalars.
fn derive_hparams(m: &Ct2Model) -> Result<WhisperHparams, ConvertError> {
    let conv1 = m.dims("encoder/conv1/weight", 3)?;
    let (d, n_mels) = (conv1[0], conv1[1]);
    if conv1[2] != 3 {
        return Err(ConvertError::Shape {
            path: m.path.clone(),
            name: "encoder/conv1/weight".into(),
            found: conv1.to_vec(),
            expected: vec![d, n_mels, 3],
        });
    }
    let n_audio_ctx = m.dims("encoder/position_encodings/encodings", 2)?[0];
    let n_text_ctx = m.dims("decoder/position_encodings/encodings", 2)?[0];
    let n_vocab = m.dims("decoder/embeddings/weight", 2)?[0];
    let n_audio_layer = m.count_layers("encoder");
    let n_text_layer = m.count_layers("decoder");
    for (stack, n) in [("encoder", n_audio_layer), ("decoder", n_text_layer)] {
        if n == 0 {
            return Err(ConvertError::Missing {
                path: m.path.clone(),
                name: format!("{stack}/layer_0/self_attention/linear_0/weight"),
            });
        }
    }
    let heads = |stack: &str| -> Result<usize, ConvertError> {
        let name = format!("{stack}/num_heads");
        let h = m.scalar_int(&name)?;
        if h <= 0 || d % h as usize != 0 {
            return Err(ConvertError::Malformed {
                path: m.path.clone(),
                what: format!("{name} = {h} does not divide the model width {d}"),
            });
        }
        Ok(h as usize)
    };
    let n_audio_head = heads("encoder")?;
    let n_text_head = heads("decoder")?;
    // whisper.cpp (and the OpenAI model) tie the output projection to the token
    // embedding; an untied or biased projection cannot be represented.
    if let Some(p) = m.get("decoder/projection/weight") {
        let e = m.require("decoder/embeddings/weight")?;
        if m.bytes[p.data.clone()] != m.bytes[e.data.clone()] {
            return Err(ConvertError::Malformed {
                path: m.path.clone(),
                what: "decoder/projection/weight differs from decoder/embeddings/weight \
                       (whisper.cpp ties them)"
                    .into(),
            });
        }
    }
    if m.get("decoder/projection/bias").is_some() {
        return Err(ConvertError::Malformed {
            path: m.path.clone(),
            what: "decoder/projection/bias is not supported by whisper.cpp".into(),
        });
    }
    if m.get("decoder/scale_embeddings").is_some() && m.scalar_int("decoder/scale_embeddings")? != 0
    {
        return Err(ConvertError::Malformed {
            path: m.path.clone(),
            what: "decoder/scale_embeddings is set; Whisper does not scale embeddings".into(),
        });
    }
    let int = |what: &str, v: usize| -> Result<i32, ConvertError> {
        // A zero dimension would make every shape check pass on empty data.
        match i32::try_from(v) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConvertError::Malformed {
                path: m.path.clone(),
                what: format!("{what} = {v} does not fit the GGML header (1..=2^31-1)"),
            }),
        }
    };
    Ok(WhisperHparams {
        n_vocab: int("n_vocab", n_vocab)?,
        n_audio_ctx: int("n_audio_ctx", n_audio_ctx)?,
        n_audio_state: int("n_audio_state", d)?,
        n_audio_head: int("n_audio_head", n_audio_head)?,
        n_audio_layer: int("n_audio_layer", n_audio_layer)?,
        n_text_ctx: int("n_text_ctx", n_text_ctx)?,
        n_text_state: int("n_text_state", d)?,
        n_text_head: int("n_text_head", n_text_head)?,
        n_text_layer: int("n_text_layer", n_text_layer)?,
        n_mels: int("n_mels", n_mels)?,
        ftype: 1,
    })
}

#[derive(Debug)]
pub(super) struct TensorPlan {
    pub(super) ggml: String,
    pub(super) src: String,
    /// Full shape the source variable must have (row-major, CTranslate2 order).
    pub(super) src_shape: Vec<usize>,
    /// Rows of the source taken (fused q|k|v and k|v are split by rows).
    pub(super) rows: Range<usize>,
    /// Row-major shape written; GGML's `ne` is this reversed.
    pub(super) shape: Vec<usize>,
    pub(super) out: GgmlType,
}

/// Collects [`TensorPlan`]s; the helpers mirror how CTranslate2 groups weights.
struct Planner {
    d: usize,
    plans: Vec<TensorPlan>,
}

impl Planner {
    fn tensor(
        &mut self,
        ggml: String,
        src: String,
        src_shape: Vec<usize>,
        rows: Range<usize>,
        out: GgmlType,
    ) {
        let mut shape = src_shape.clone();
        shape[0] = rows.len();
        self.plans.push(TensorPlan {
            ggml,
            src,
            src_shape,
            rows,
            shape,
            out,
        });
    }

    /// A whole variable.
    fn whole(&mut self, ggml: &str, src: &str, shape: &[usize], out: GgmlType) {
        self.tensor(ggml.into(), src.into(), shape.to_vec(), 0..shape[0], out);
    }

    /// CTranslate2 layer norms are `gamma`/`beta`; whisper.cpp's `weight`/`bias`.
    fn norm(&mut self, ggml: &str, src: &str) {
        let d = self.d;
        self.whole(
            &format!("{ggml}.weight"),
            &format!("{src}/gamma"),
            &[d],
            GgmlType::F32,
        );
        self.whole(
            &format!("{ggml}.bias"),
            &format!("{src}/beta"),
            &[d],
            GgmlType::F32,
        );
    }

    /// A linear layer `[n_out, n_in]`, or part `split.1` of a source that fuses
    /// `split.0` such layers by rows (q|k|v, k|v). `bias` false drops the bias:
    /// whisper.cpp has no key bias, and none is needed, since it would add the
    /// same q·b_k to a query's score against every key, which softmax cancels.
    fn linear(
        &mut self,
        ggml: &str,
        src: &str,
        [n_out, n_in]: [usize; 2],
        split: (usize, usize),
        bias: bool,
    ) {
        let (fused, part) = split;
        let rows = part * n_out..(part + 1) * n_out;
        self.tensor(
            format!("{ggml}.weight"),
            format!("{src}/weight"),
            vec![fused * n_out, n_in],
            rows.clone(),
            GgmlType::F16,
        );
        if bias {
            self.tensor(
                format!("{ggml}.bias"),
                format!("{src}/bias"),
                vec![fused * n_out],
                rows,
                GgmlType::F32,
            );
        }
    }

    fn self_attention(&mut self, g: &str, c: &str) {
        let d = self.d;
        let qkv = format!("{c}/self_attention/linear_0");
        self.linear(&format!("{g}.attn.query"), &qkv, [d, d], (3, 0), true);
        self.linear(&format!("{g}.attn.key"), &qkv, [d, d], (3, 1), false);
        self.linear(&format!("{g}.attn.value"), &qkv, [d, d], (3, 2), true);
        let out = format!("{c}/self_attention/linear_1");
        self.linear(&format!("{g}.attn.out"), &out, [d, d], (1, 0), true);
        self.norm(
            &format!("{g}.attn_ln"),
            &format!("{c}/self_attention/layer_norm"),
        );
    }

    fn mlp(&mut self, g: &str, c: &str) {
        let d = self.d;
        self.linear(
            &format!("{g}.mlp.0"),
            &format!("{c}/ffn/linear_0"),
            [4 * d, d],
            (1, 0),
            true,
        );
        self.linear(
            &format!("{g}.mlp.2"),
            &format!("{c}/ffn/linear_1"),
            [d, 4 * d],
            (1, 0),
            true,
        );
        self.norm(&format!("{g}.mlp_ln"), &format!("{c}/ffn/layer_norm"));
    }
}

/// Every tensor whisper.cpp's loader creates, with the type it allocates:
/// matrices and conv kernels f16, biases, norms and positional embeddings f32
/// (a different type is rejected, since it reads the bytes as they are).
/// The names follow whisper.cpp's `ASR_TENSOR_NAMES`; the shapes are its `ne`
/// reversed, which is also CTranslate2's (and PyTorch's) row-major order, so
/// no data needs transposing. whisper.cpp looks tensors up by name; the order
/// is that of OpenAI's state dict, as in whisper.cpp's own conversions.
pub(super) fn plan_tensors(h: &WhisperHparams) -> Vec<TensorPlan> {
    let d = h.n_audio_state as usize;
    let mut p = Planner {
        d,
        plans: Vec::with_capacity(h.expected_tensors()),
    };
    p.whole(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        &[h.n_audio_ctx as usize, d],
        GgmlType::F32,
    );
    for (conv, n_in) in [("conv1", h.n_mels as usize), ("conv2", d)] {
        p.whole(
            &format!("encoder.{conv}.weight"),
            &format!("encoder/{conv}/weight"),
            &[d, n_in, 3],
            GgmlType::F16,
        );
        p.whole(
            &format!("encoder.{conv}.bias"),
            &format!("encoder/{conv}/bias"),
            &[d],
            GgmlType::F32,
        );
        // whisper.cpp keeps conv biases as (d, 1) so they broadcast over time.
        p.plans.last_mut().expect("just pushed").shape = vec![d, 1];
    }
    for i in 0..h.n_audio_layer as usize {
        let (g, c) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        p.self_attention(&g, &c);
        p.mlp(&g, &c);
    }
    p.norm("encoder.ln_post", "encoder/layer_norm");

    p.whole(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        &[h.n_text_ctx as usize, d],
        GgmlType::F32,
    );
    p.whole(
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
        &[h.n_vocab as usize, d],
        GgmlType::F16,
    );
    for i in 0..h.n_text_layer as usize {
        let (g, c) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        p.self_attention(&g, &c);
        // Cross-attention: linear_0 = q, linear_1 = k|v fused, linear_2 = out.
        let (q, kv, out) = (
            format!("{c}/attention/linear_0"),
            format!("{c}/attention/linear_1"),
            format!("{c}/attention/linear_2"),
        );
        p.linear(&format!("{g}.cross_attn.query"), &q, [d, d], (1, 0), true);
        p.linear(&format!("{g}.cross_attn.key"), &kv, [d, d], (2, 0), false);
        p.linear(&format!("{g}.cross_attn.value"), &kv, [d, d], (2, 1), true);
        p.linear(&format!("{g}.cross_attn.out"), &out, [d, d], (1, 0), true);
        p.norm(
            &format!("{g}.cross_attn_ln"),
            &format!("{c}/attention/layer_norm"),
        );
        p.mlp(&g, &c);
    }
    p.norm("decoder.ln", "decoder/layer_norm");
    p.plans
}

/// Everything the GGML writer needs, checked against the checkpoint.
pub(super) struct Checked {
    pub(super) hparams: WhisperHparams,
    pub(super) plans: Vec<TensorPlan>,
    pub(super) source_dtype: &'static str,
    pub(super) vocab: Vec<Vec<u8>>,
    pub(super) mel: Vec<f32>,
}

/// Checks every source tensor and the vocabulary before anything is written.
pub(super) fn check_conversion(
    m: &Ct2Model,
    vocab_path: &Path,
    vocab_bytes: &[u8],
    weights: Weights,
) -> Result<Checked, ConvertError> {
    let model_path = &m.path;
    let mut h = derive_hparams(m)?;
    h.ftype = weights.ftype();
    let mut plans = plan_tensors(&h);
    if let Some((ty, block)) = weights.matrix_type() {
        // whisper.cpp's loader gives every 2-D matrix the file's weight type;
        // conv kernels (3-D) stay f16, vectors and positional embeddings f32.
        for p in plans
            .iter_mut()
            .filter(|p| p.out == GgmlType::F16 && p.shape.len() == 2)
        {
            if p.shape[1] % block != 0 {
                return Err(ConvertError::Malformed {
                    path: model_path.clone(),
                    what: format!(
                        "{}: rows of {} values cannot be split into {} blocks of {block}",
                        p.src,
                        p.shape[1],
                        weights.name()
                    ),
                });
            }
            p.out = ty;
        }
    }

    let mut source_dtype = None;
    for p in &plans {
        let v = m.require(&p.src)?;
        if v.dims != p.src_shape {
            return Err(ConvertError::Shape {
                path: model_path.clone(),
                name: p.src.clone(),
                found: v.dims.clone(),
                expected: p.src_shape.clone(),
            });
        }
        if !v.dtype.is_float() {
            return Err(ConvertError::Dtype {
                path: model_path.clone(),
                name: p.src.clone(),
                dtype: v.dtype.name(),
            });
        }
        if p.out != GgmlType::F32 {
            source_dtype.get_or_insert(v.dtype.name());
        }
    }

    let tokens = parse_vocabulary(vocab_path, vocab_bytes)?;
    if tokens.len() != h.n_vocab as usize {
        return Err(ConvertError::VocabSize {
            path: vocab_path.to_path_buf(),
            found: tokens.len(),
            expected: h.n_vocab as usize,
        });
    }
    let vocab = ggml_vocabulary(vocab_path, &tokens)?;
    let mel = mel_filterbank(16000.0, 400, h.n_mels as usize);
    Ok(Checked {
        hparams: h,
        plans,
        source_dtype: source_dtype.unwrap_or("float32"),
        vocab,
        mel,
    })
}
