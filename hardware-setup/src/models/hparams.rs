//! Whisper's hyper-parameters as the GGML header stores them: what the
//! converter derives from a checkpoint (`plan`), writes and reads back (`ggml`).

/// The GGML header's hyper-parameters, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperHparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// 1 = "mostly f16": matrices f16, biases/norms/positional embeddings f32.
    pub ftype: i32,
}

impl WhisperHparams {
    pub(super) fn fields(&self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    pub(super) fn from_fields(f: [i32; 11]) -> Self {
        Self {
            n_vocab: f[0],
            n_audio_ctx: f[1],
            n_audio_state: f[2],
            n_audio_head: f[3],
            n_audio_layer: f[4],
            n_text_ctx: f[5],
            n_text_state: f[6],
            n_text_head: f[7],
            n_text_layer: f[8],
            n_mels: f[9],
            ftype: f[10],
        }
    }

    /// How many tensors whisper.cpp creates for these hparams; it refuses a file
    /// that does not load every one of them.
    pub fn expected_tensors(&self) -> usize {
        7 + 15 * self.n_audio_layer as usize + 4 + 24 * self.n_text_layer as usize
    }

    /// Name of the model size as whisper.cpp logs it (by encoder depth).
    pub fn size_name(&self) -> &'static str {
        match self.n_audio_layer {
            4 => "tiny",
            6 => "base",
            12 => "small",
            24 => "medium",
            32 => "large",
            _ => "unknown",
        }
    }
}
