//! A CTranslate2 Whisper checkpoint (`model.bin` version 6, `WhisperSpec`
//! revision 3) built field by field, small enough to convert in microseconds:
//! the seed of the `ct2` target and, converted, of the `ggml` target. The
//! generator perturbs it structurally (dims, dtypes, counts, names, aliases)
//! before the byte-level mutator gets it.

use arbitrary::{Result, Unstructured};

/// The byte-level BPE tokens of the vocabulary; `<|endoftext|>` ends the base tokens.
pub const TOKENS: &[&str] = &["!", "Ġhello", "Ð¿Ñĥ", "Ċ", "<|endoftext|>", "<|en|>"];

pub struct Var {
    pub name: String,
    pub dims: Vec<u32>,
    pub dtype: u8,
    pub data: Vec<u8>,
}

pub struct Checkpoint {
    pub version: u32,
    pub spec: String,
    pub revision: u32,
    pub vars: Vec<Var>,
    pub aliases: Vec<(String, String)>,
    pub vocabulary: Vec<String>,
}

impl Checkpoint {
    /// A complete checkpoint: width `d`, `n_mels` mel bins, one encoder and one decoder layer.
    pub fn whisper(d: u32, n_mels: u32) -> Self {
        let mut vars = Vec::new();
        let mut float = |name: &str, dims: &[u32]| {
            let n: u32 = dims.iter().product();
            let data = (0..n)
                .flat_map(|i| half((i % 64) as f32 / 16.0 - 2.0).to_le_bytes())
                .collect();
            vars.push(Var {
                name: name.into(),
                dims: dims.to_vec(),
                dtype: 4,
                data,
            });
        };
        let v = TOKENS.len() as u32;
        float("encoder/position_encodings/encodings", &[2, d]);
        float("decoder/position_encodings/encodings", &[2, d]);
        float("encoder/conv1/weight", &[d, n_mels, 3]);
        float("encoder/conv1/bias", &[d]);
        float("encoder/conv2/weight", &[d, d, 3]);
        float("encoder/conv2/bias", &[d]);
        float("decoder/embeddings/weight", &[v, d]);
        for scope in ["encoder/layer_norm", "decoder/layer_norm"] {
            float(&format!("{scope}/gamma"), &[d]);
            float(&format!("{scope}/beta"), &[d]);
        }
        for c in ["encoder/layer_0", "decoder/layer_0"] {
            let mut linear = |s: &str, o: u32, i: u32| {
                float(&format!("{c}/{s}/weight"), &[o, i]);
                float(&format!("{c}/{s}/bias"), &[o]);
            };
            linear("self_attention/linear_0", 3 * d, d);
            linear("self_attention/linear_1", d, d);
            linear("ffn/linear_0", 4 * d, d);
            linear("ffn/linear_1", d, 4 * d);
            if c.starts_with("decoder") {
                linear("attention/linear_0", d, d);
                linear("attention/linear_1", 2 * d, d);
                linear("attention/linear_2", d, d);
            }
            let mut norms = vec!["self_attention/layer_norm", "ffn/layer_norm"];
            if c.starts_with("decoder") {
                norms.push("attention/layer_norm");
            }
            for n in norms {
                float(&format!("{c}/{n}/gamma"), &[d]);
                float(&format!("{c}/{n}/beta"), &[d]);
            }
        }
        for stack in ["encoder", "decoder"] {
            vars.push(Var {
                name: format!("{stack}/num_heads"),
                dims: vec![],
                dtype: 2,
                data: 2i16.to_le_bytes().to_vec(),
            });
        }
        Self {
            version: 6,
            spec: "WhisperSpec".into(),
            revision: 3,
            vars,
            aliases: vec![(
                "decoder/projection/weight".into(),
                "decoder/embeddings/weight".into(),
            )],
            vocabulary: TOKENS.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// Structural perturbations, each of which some check must catch.
    pub fn perturb(&mut self, u: &mut Unstructured) -> Result<()> {
        for _ in 0..u.int_in_range(0..=3)? {
            if self.vars.is_empty() {
                break;
            }
            let i = u.choose_index(self.vars.len())?;
            match u.int_in_range(0..=9)? {
                0 => {
                    self.vars.remove(i);
                }
                1 => {
                    let v = &mut self.vars[i];
                    if !v.dims.is_empty() {
                        let k = u.choose_index(v.dims.len())?;
                        v.dims[k] = *u.choose(&[0, 1, 2, 3, 0x7fff_ffff, 0xffff_ffff, 1 << 16])?;
                    }
                }
                2 => self.vars[i].dtype = u.int_in_range(0..=6)?,
                3 => {
                    let v = &self.vars[i];
                    let copy = Var {
                        name: v.name.clone(),
                        dims: v.dims.clone(),
                        dtype: v.dtype,
                        data: v.data.clone(),
                    };
                    self.vars.push(copy);
                }
                4 => self.vars[i].name = u.arbitrary()?,
                5 => {
                    let v = &mut self.vars[i];
                    v.dims.clear();
                    v.data.truncate(u.int_in_range(0..=4)?);
                    v.dtype = u.int_in_range(0..=5)?;
                }
                6 => {
                    let target = u.arbitrary::<String>()?;
                    self.aliases.push((self.vars[i].name.clone(), target));
                }
                7 => self.vocabulary.truncate(u.int_in_range(0..=6)?),
                8 => self.vocabulary.push(u.arbitrary()?),
                _ => {
                    self.version = *u.choose(&[6, 5, 0, u32::MAX])?;
                    self.revision = *u.choose(&[3, 2, 4])?;
                }
            }
        }
        Ok(())
    }

    /// `model.bin`, serialised as CTranslate2's `_serialize` writes it.
    pub fn model_bytes(&self) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_le_bytes());
        string(&mut out, &self.spec);
        out.extend_from_slice(&self.revision.to_le_bytes());
        out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
        for v in &self.vars {
            string(&mut out, &v.name);
            out.push(v.dims.len() as u8);
            for d in &v.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.push(v.dtype);
            out.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&v.data);
        }
        out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (a, t) in &self.aliases {
            string(&mut out, a);
            string(&mut out, t);
        }
        out
    }

    pub fn vocabulary_bytes(&self) -> Vec<u8> {
        let mut v = self.vocabulary.join("\n");
        v.push('\n');
        v.into_bytes()
    }
}

fn half(x: f32) -> u16 {
    hardware_setup::models::f32_to_f16(x)
}

/// One fuzz input of the `ct2` target: a flags byte (bit 0: q8_0 weights),
/// the model's length (u32 LE), `model.bin`, then `vocabulary.txt`.
pub fn encode(q8: bool, model: &[u8], vocabulary: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(q8)];
    out.extend_from_slice(&(model.len() as u32).to_le_bytes());
    out.extend_from_slice(model);
    out.extend_from_slice(vocabulary);
    out
}

/// The inverse of [`encode`], forgiving: a short input is all model.
pub fn decode(input: &[u8]) -> (bool, &[u8], &[u8]) {
    let q8 = input.first().is_some_and(|f| f & 1 == 1);
    let rest = input.get(1..).unwrap_or_default();
    let Some((len, body)) = rest.split_first_chunk::<4>() else {
        return (q8, rest, &[]);
    };
    let n = (u32::from_le_bytes(*len) as usize).min(body.len());
    (q8, &body[..n], &body[n..])
}
