//! Which cross-attention heads whisper.cpp aligns tokens to audio with
//! (dynamic time warping over their attention, as faster-whisper's and
//! OpenAI's word timestamps), chosen from the model's shape.
//!
//! Word starts from these alignments are what faster-whisper reports; the
//! token-timestamp heuristic we used before was about twice as far off on
//! the bench (docs/transcription.md). The heads are published per model
//! (whisper.cpp's presets, from OpenAI's `_ALIGNMENT_HEADS`); a model of
//! another shape uses the upper half of its decoder layers, OpenAI's own
//! fallback.

use whisper_rs::{DtwMode, DtwModelPreset};

use crate::models::GGML_MAGIC;

/// The fields of a GGML Whisper header that tell models apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub n_vocab: i32,
    pub n_audio_state: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
}

impl Shape {
    /// From the first 48 bytes of a GGML Whisper file (magic, then eleven
    /// little-endian i32: vocab, audio ctx/state/head/layer, text
    /// ctx/state/head/layer, mels, ftype). `None` if it is not one.
    pub fn from_header(head: &[u8; 48]) -> Option<Self> {
        if head[..4] != GGML_MAGIC.to_le_bytes() {
            return None;
        }
        let field = |i: usize| {
            let at = 4 + 4 * i;
            i32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]])
        };
        Some(Self {
            n_vocab: field(0),
            n_audio_state: field(2),
            n_text_layer: field(8),
            n_mels: field(9),
        })
    }
}

/// The alignment heads for a model of this shape. English-only models have
/// a vocabulary of 51,864 tokens, multilingual ones more. The large models
/// v1 and v2 share a shape; v2's heads are used (v1 is rarely deployed).
pub fn heads(shape: &Shape) -> DtwMode<'static> {
    let en = shape.n_vocab == 51_864;
    let preset = match (shape.n_audio_state, en) {
        (384, true) => Some(DtwModelPreset::TinyEn),
        (384, false) => Some(DtwModelPreset::Tiny),
        (512, true) => Some(DtwModelPreset::BaseEn),
        (512, false) => Some(DtwModelPreset::Base),
        (768, true) => Some(DtwModelPreset::SmallEn),
        (768, false) => Some(DtwModelPreset::Small),
        (1024, true) => Some(DtwModelPreset::MediumEn),
        (1024, false) => Some(DtwModelPreset::Medium),
        (1280, false) if shape.n_mels == 128 && shape.n_text_layer == 4 => {
            Some(DtwModelPreset::LargeV3Turbo)
        }
        (1280, false) if shape.n_mels == 128 && shape.n_text_layer == 32 => {
            Some(DtwModelPreset::LargeV3)
        }
        (1280, false) if shape.n_mels == 80 && shape.n_text_layer == 32 => {
            Some(DtwModelPreset::LargeV2)
        }
        _ => None,
    };
    match preset {
        Some(model_preset) => DtwMode::ModelPreset { model_preset },
        None => DtwMode::TopMost {
            n_top: (shape.n_text_layer / 2).max(1),
        },
    }
}

/// Token start and end times (centiseconds in the window) from DTW times:
/// whisper.cpp's `t_dtw` is where the alignment path leaves a token (its
/// end), so a token starts where the text token before it in the window
/// ended. The window's first token keeps the `first_start` it has (its
/// timestamp-token time). A token without a DTW time (-1) keeps `heuristic`.
pub fn token_times(t_dtw: &[i64], heuristic: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut last_end: Option<i64> = None;
    t_dtw
        .iter()
        .zip(heuristic)
        .map(|(&end, &(t0, t1))| {
            if end < 0 {
                return (t0, t1);
            }
            let start = last_end.unwrap_or(t0).min(end);
            last_end = Some(end);
            (start, end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fields: [i32; 11]) -> [u8; 48] {
        let mut h = [0u8; 48];
        h[..4].copy_from_slice(&GGML_MAGIC.to_le_bytes());
        for (i, f) in fields.iter().enumerate() {
            h[4 + 4 * i..8 + 4 * i].copy_from_slice(&f.to_le_bytes());
        }
        h
    }

    fn preset(mode: DtwMode<'_>) -> String {
        format!("{mode:?}")
    }

    #[test]
    fn the_published_heads_are_chosen_by_shape() {
        // base (multilingual): the shape of models/ggml-base.bin.
        let base =
            Shape::from_header(&header([51_865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 1])).unwrap();
        assert_eq!(
            base,
            Shape {
                n_vocab: 51_865,
                n_audio_state: 512,
                n_text_layer: 6,
                n_mels: 80
            }
        );
        assert!(preset(heads(&base)).contains("Base"));
        assert!(!preset(heads(&base)).contains("BaseEn"));
        let en = Shape {
            n_vocab: 51_864,
            ..base
        };
        assert!(preset(heads(&en)).contains("BaseEn"));
        let turbo = Shape {
            n_vocab: 51_866,
            n_audio_state: 1280,
            n_text_layer: 4,
            n_mels: 128,
        };
        assert!(preset(heads(&turbo)).contains("LargeV3Turbo"));
        let v3 = Shape {
            n_text_layer: 32,
            ..turbo
        };
        assert!(preset(heads(&v3)).ends_with("LargeV3 }"));
        let v2 = Shape {
            n_vocab: 51_865,
            n_mels: 80,
            ..v3
        };
        assert!(preset(heads(&v2)).contains("LargeV2"));
    }

    #[test]
    fn an_unknown_shape_uses_the_upper_half_of_its_decoder() {
        let odd = Shape {
            n_vocab: 51_865,
            n_audio_state: 640,
            n_text_layer: 10,
            n_mels: 80,
        };
        assert_eq!(preset(heads(&odd)), preset(DtwMode::TopMost { n_top: 5 }));
        assert!(Shape::from_header(&[0u8; 48]).is_none());
    }

    #[test]
    fn a_token_starts_where_the_one_before_it_ended() {
        let times = token_times(
            &[120, 150, -1, 210],
            &[(100, 110), (110, 140), (140, 160), (160, 200)],
        );
        // First: its own start, its DTW end; second: from 120; the third has
        // no DTW time and keeps the heuristic; the fourth starts at 150.
        assert_eq!(times, vec![(100, 120), (120, 150), (140, 160), (150, 210)]);
        // A start never falls after the end.
        assert_eq!(
            token_times(&[300, 250], &[(290, 300), (0, 0)]),
            vec![(290, 300), (250, 250)]
        );
    }
}
