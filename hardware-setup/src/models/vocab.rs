//! Whisper's byte-level BPE vocabulary: CTranslate2's `vocabulary.txt` read,
//! and each token mapped back to the raw bytes GGML stores.

use std::collections::HashMap;
use std::path::Path;

use super::error::ConvertError;

/// GPT-2's byte-level BPE alphabet, inverted: each printable stand-in character
/// back to the byte it represents. Bytes that are printable (`!`..`~`,
/// `¡`..`¬`, `®`..`ÿ`) stand for themselves; the other 68 are mapped, in
/// byte order, to U+0100 onwards.
fn bpe_byte_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(0x100 + next - 1).expect("U+0100..U+0143 are chars")
        };
        map.insert(c, b);
    }
    map
}

/// The raw bytes a byte-level BPE token stands for (`"Ġhello"` -> `b" hello"`),
/// or `None` if it contains a character outside the alphabet.
pub fn bpe_token_bytes(token: &str) -> Option<Vec<u8>> {
    thread_local! {
        static DECODER: HashMap<char, u8> = bpe_byte_decoder();
    }
    DECODER.with(|d| token.chars().map(|c| d.get(&c).copied()).collect())
}

/// Parses `vocabulary.txt` (one token per line, line i = token id i).
pub fn parse_vocabulary(path: &Path, bytes: &[u8]) -> Result<Vec<String>, ConvertError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ConvertError::Malformed {
        path: path.to_path_buf(),
        what: format!("not UTF-8 (at byte {})", e.valid_up_to()),
    })?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    // Byte-level tokens never contain a raw CR or LF (they are mapped to
    // printable stand-ins), so stripping a CR only undoes CRLF line endings.
    Ok(body
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect())
}

/// The token bytes to store in the GGML vocabulary block: the ordinary BPE
/// tokens only, i.e. everything before `<|endoftext|>` (50257 for multilingual,
/// 50256 for English-only models), which is what whisper.cpp's own converter
/// stores from OpenAI's tiktoken files. whisper.cpp then names the special
/// tokens itself (`[_EOT_]`, `[_SOT_]`, languages, timestamps) from their ids.
pub(super) fn ggml_vocabulary(
    path: &Path,
    tokens: &[String],
) -> Result<Vec<Vec<u8>>, ConvertError> {
    let n_base = tokens
        .iter()
        .position(|t| t == "<|endoftext|>")
        .ok_or_else(|| ConvertError::Malformed {
            path: path.to_path_buf(),
            what: "no <|endoftext|> token".into(),
        })?;
    tokens[..n_base]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            bpe_token_bytes(t).ok_or_else(|| ConvertError::VocabToken {
                path: path.to_path_buf(),
                line: i + 1,
                token: t.clone(),
            })
        })
        .collect()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_bpe_tokens_map_back_to_raw_bytes() {
        assert_eq!(bpe_token_bytes("Ġhello").unwrap(), b" hello");
        assert_eq!(bpe_token_bytes("Ð¿Ñĥ").unwrap(), "пу".as_bytes());
        assert_eq!(
            bpe_token_bytes("ĠÐ¿ÑĢÐ¸Ð²ÐµÑĤ").unwrap(),
            " привет".as_bytes()
        );
        assert_eq!(bpe_token_bytes("Ċ").unwrap(), b"\n");
        assert_eq!(bpe_token_bytes("ĉ").unwrap(), b"\t");
        assert_eq!(bpe_token_bytes("Ā").unwrap(), [0u8]);
        assert_eq!(bpe_token_bytes("ł").unwrap(), [0xA0]);
        assert_eq!(bpe_token_bytes("Ń").unwrap(), [0xAD]);
        assert_eq!(bpe_token_bytes("<|endoftext|>").unwrap(), b"<|endoftext|>");
        assert_eq!(bpe_token_bytes("").unwrap(), b"");
        assert!(bpe_token_bytes("€").is_none());
        // The alphabet is a bijection onto all 256 bytes.
        let dec = bpe_byte_decoder();
        let mut bytes: Vec<u8> = dec.values().copied().collect();
        bytes.sort();
        assert_eq!(bytes, (0..=255).collect::<Vec<u8>>());
    }
}
