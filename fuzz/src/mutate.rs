//! Byte-level mutation, the way AFL and libFuzzer mutate: flips, interesting
//! values, inserts, deletes, duplicated runs, dictionary tokens, splices with
//! other inputs, and cuts anywhere (also inside a multi-byte character, which
//! is how a power cut tears a line).

use crate::rng::Rng;

/// Tokens that hit the edges of the formats here: path escapes, integer and
/// float extremes, JSON and TOML syntax, Cyrillic text, GGML/CT2 integers.
pub const DICTIONARY: &[&[u8]] = &[
    b"../",
    b"..",
    b"/etc/passwd",
    b"media/",
    b"-9223372036854775808",
    b"9223372036854775807",
    b"18446744073709551616",
    b"-1",
    b"0",
    b"1e309",
    b"-1e309",
    b"1e-400",
    b"-0.0",
    b"NaN",
    b"nan",
    b"inf",
    b"-inf",
    b"null",
    b"true",
    b"\"\"",
    b"{}",
    b"[]",
    b"[[",
    b"]]",
    b"\\u0000",
    b"\\ud800",
    b"\\\"",
    b"\"\"\"",
    b"'''",
    b"\n",
    b"\r\n",
    b"\0",
    "Вход".as_bytes(),
    "ё".as_bytes(),
    b"[[steps]]",
    b"[screen]",
    b"=",
    b",",
    b":",
    b"*",
    b"?",
    b"*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?",
    b"system.",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x80",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x00",
    b"\x06\x00\x00\x00",
    b"lmgg",
];

/// Applies 1-8 random mutations to `data`, keeping it at most `max_len` bytes.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>], max_len: usize) {
    for _ in 0..1 + rng.below(8) {
        mutate_once(rng, data, pool);
    }
    data.truncate(max_len);
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = data.len();
    let pos = |rng: &mut Rng| if len == 0 { 0 } else { rng.below(len + 1) };
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = [0, 1, 0x7f, 0x80, 0xff, b'"', b'\n', b'\\', b'{', 0xd0][rng.below(10)];
        }
        2 => {
            let i = pos(rng);
            let n = 1 + rng.below(16);
            let mut bytes = vec![0; n];
            rng.fill(&mut bytes);
            data.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(64)).min(len);
            data.drain(a..b);
        }
        4 if len > 0 => {
            // Repeat a run: makes long arrays, deep nesting, many lines.
            let a = rng.below(len);
            let b = (a + 1 + rng.below(256)).min(len);
            let run = data[a..b].to_vec();
            let times = 1 + rng.below(32);
            let at = pos(rng);
            data.splice(at..at, run.iter().copied().cycle().take(run.len() * times));
        }
        5 | 6 => {
            let t = DICTIONARY[rng.below(DICTIONARY.len())];
            let i = pos(rng);
            if rng.chance(2) && i + t.len() <= len {
                data[i..i + t.len()].copy_from_slice(t);
            } else {
                data.splice(i..i, t.iter().copied());
            }
        }
        7 if !pool.is_empty() => {
            let other = &pool[rng.below(pool.len())];
            if !other.is_empty() {
                let a = rng.below(other.len());
                let b = (a + 1 + rng.below(512)).min(other.len());
                let i = pos(rng);
                data.splice(i..i, other[a..b].iter().copied());
            }
        }
        8 if len > 0 => data.truncate(rng.below(len)),
        9 if len >= 4 => {
            // A little-endian integer somewhere: sizes, counts and dims of the model formats.
            let i = rng.below(len - 3);
            let v: u32 = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x10000, 3, 6][rng.below(8)];
            data[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
        _ if len > 1 => {
            let (a, b) = (rng.below(len), rng.below(len));
            data.swap(a, b);
        }
        _ => data.push(rng.next_u64() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_is_reproducible_and_bounded() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut data = b"{\"a\": 1}".to_vec();
            for _ in 0..1000 {
                mutate(&mut rng, &mut data, &[b"xyz".to_vec()], 4096);
            }
            data
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).len() <= 4096);
    }
}
