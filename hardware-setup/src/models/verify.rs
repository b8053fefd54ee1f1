//! Verifying a GGML Whisper file a lab brings (an official `ggml-*.bin`, or
//! one we wrote): every tensor record walked and its data size checked
//! against the file (`inspect_ggml`), the hyper-parameters those of a known
//! Whisper model, and every tensor whisper.cpp loads present once with the
//! name, shape and type it allocates for them.

use std::path::Path;

use super::error::ConvertError;
use super::ggml::{GgmlSummary, inspect_ggml};
use super::hparams::WhisperHparams;
use super::plan::plan_tensors;
use super::quantize::GgmlType;

/// (width, heads, encoder layers) of the published Whisper sizes.
const SIZES: [(i32, i32, i32); 5] = [
    (384, 6, 4),    // tiny
    (512, 8, 6),    // base
    (768, 12, 12),  // small
    (1024, 16, 24), // medium
    (1280, 20, 32), // large, large-v2, large-v3, large-v3-turbo
];

/// Whether `h` is a published Whisper shape (tiny ... large-v3-turbo, and
/// distilled models, whose decoders are shallower than their encoders); why
/// not otherwise.
pub(super) fn check_known(h: &WhisperHparams) -> Result<(), String> {
    let size = (h.n_audio_state, h.n_audio_head, h.n_audio_layer);
    if !SIZES.contains(&size) {
        return Err(format!(
            "width {}, {} heads, {} encoder layers is not a Whisper size (tiny ... large)",
            size.0, size.1, size.2
        ));
    }
    let checks = [
        (
            h.n_text_state == h.n_audio_state,
            "decoder width differs from the encoder's",
        ),
        (
            h.n_text_head == h.n_audio_head,
            "decoder heads differ from the encoder's",
        ),
        (
            (1..=h.n_audio_layer).contains(&h.n_text_layer),
            "decoder layers are not 1 ..= encoder layers",
        ),
        (h.n_audio_ctx == 1500, "audio context is not 1500 frames"),
        (h.n_text_ctx == 448, "text context is not 448 tokens"),
        (matches!(h.n_mels, 80 | 128), "mel bins are not 80 or 128"),
        (
            matches!(h.n_vocab, 51864..=51866),
            "vocabulary is not 51864 (English), 51865 or 51866 (large-v3) tokens",
        ),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, why)) => Err(format!("{why}: {h:?}")),
        None => Ok(()),
    }
}

/// The GGML type of the 2-D matrices for a header `ftype` (whisper.cpp's
/// `ggml_ftype_to_ggml_type`), for the types whose layout we know.
fn matrix_type(ftype: i32) -> Option<i32> {
    Some(match ftype % 1000 {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        7 => 8,
        8 => 6,
        9 => 7,
        _ => return None,
    })
}

/// Checks that the tensors of `s` are exactly those whisper.cpp loads for its
/// hparams: each name once, its shape, and its type (vectors and positional
/// embeddings f32; conv kernels f16, or f32 in an all-f32 file; the other
/// matrices the header's weight type).
pub(super) fn check_layout(s: &GgmlSummary) -> Result<(), String> {
    let h = &s.hparams;
    let wtype = matrix_type(h.ftype).ok_or_else(|| {
        format!(
            "weight type {} (ftype {}) is not one this checker knows",
            lab_model::models::ggml_ftype_name(h.ftype),
            h.ftype
        )
    })?;
    let plans = plan_tensors(h);
    if plans.len() != s.tensors.len() {
        return Err(format!(
            "{} tensors, whisper.cpp loads {}",
            s.tensors.len(),
            plans.len()
        ));
    }
    for p in &plans {
        let t = s
            .tensors
            .iter()
            .find(|t| t.name == p.ggml)
            .ok_or_else(|| format!("tensor {} is missing", p.ggml))?;
        let ne: Vec<i32> = p.shape.iter().rev().map(|&n| n as i32).collect();
        if t.ne != ne {
            return Err(format!(
                "tensor {} has ne {:?}, expected {ne:?}",
                t.name, t.ne
            ));
        }
        let want = match p.out {
            GgmlType::F32 => 0,
            _ if p.shape.len() == 3 => i32::from(wtype != 0),
            _ => wtype,
        };
        if t.ttype != want {
            return Err(format!(
                "tensor {} has GGML type {}, expected {want}",
                t.name, t.ttype
            ));
        }
    }
    Ok(())
}

/// [`inspect_ggml`], then [`check_known`] and [`check_layout`]: what
/// `lab-setup models --whisper` requires of a GGML file before installing it.
pub fn verify_ggml(path: &Path) -> Result<GgmlSummary, ConvertError> {
    let s = inspect_ggml(path)?;
    check_known(&s.hparams)
        .and_then(|()| check_layout(&s))
        .map_err(|what| ConvertError::Malformed {
            path: path.to_path_buf(),
            what,
        })?;
    Ok(s)
}

/// A name for a model with these hparams, as whisper.cpp's files are named:
/// `tiny` ... `large`, `.en` for English-only, `large-v3` for 128 mel bins
/// and `large-v3-turbo` for its 4-layer decoder. large v1 and v2 cannot be
/// told apart (both `large`); a distilled decoder is marked `distil-`.
pub(super) fn model_name(h: &WhisperHparams) -> String {
    let size = h.size_name();
    let en = if h.n_vocab == 51864 { ".en" } else { "" };
    match (size, h.n_mels, h.n_text_layer) {
        ("large", 128, 4) => "large-v3-turbo".into(),
        ("large", 128, 32) => "large-v3".into(),
        (_, _, n) if n < h.n_audio_layer => format!("distil-{size}{en}"),
        _ => format!("{size}{en}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(state: i32, head: i32, enc: i32, dec: i32, mels: i32, vocab: i32) -> WhisperHparams {
        WhisperHparams {
            n_vocab: vocab,
            n_audio_ctx: 1500,
            n_audio_state: state,
            n_audio_head: head,
            n_audio_layer: enc,
            n_text_ctx: 448,
            n_text_state: state,
            n_text_head: head,
            n_text_layer: dec,
            n_mels: mels,
            ftype: 1,
        }
    }

    #[test]
    fn published_shapes_are_known_and_named() {
        for (h, name) in [
            (hp(384, 6, 4, 4, 80, 51864), "tiny.en"),
            (hp(512, 8, 6, 6, 80, 51865), "base"),
            (hp(768, 12, 12, 12, 80, 51865), "small"),
            (hp(1024, 16, 24, 24, 80, 51865), "medium"),
            (hp(1280, 20, 32, 32, 80, 51865), "large"),
            (hp(1280, 20, 32, 32, 128, 51866), "large-v3"),
            (hp(1280, 20, 32, 4, 128, 51866), "large-v3-turbo"),
            (hp(1280, 20, 32, 2, 128, 51866), "distil-large"),
        ] {
            assert_eq!(check_known(&h), Ok(()), "{name}");
            assert_eq!(model_name(&h), name);
        }
        let bad = [
            hp(512, 8, 5, 5, 80, 51865),
            hp(512, 8, 6, 7, 80, 51865),
            hp(512, 8, 6, 6, 64, 51865),
            hp(512, 8, 6, 6, 80, 52000),
            WhisperHparams {
                n_audio_ctx: 1499,
                ..hp(512, 8, 6, 6, 80, 51865)
            },
        ];
        for h in bad {
            assert!(check_known(&h).is_err(), "{h:?}");
        }
    }
}
