//! Number formats of the converted weights: f32 to and from IEEE half and
//! bfloat16 (through the `half` crate), and ggml's q8_0 block quantization,
//! which is GGML's own format and so written here. Also what the user picks
//! between ([`Weights`]) and the GGML element types that choice maps to.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::ct2::Ct2Dtype;

/// GGML element types we write (whisper.cpp's `GGML_TYPE_F32`, `_F16`, `_Q8_0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
}

/// Elements per q8_0 block: an f16 scale, then 32 signed bytes.
pub(super) const Q8_0_BLOCK: usize = 32;
/// ggml's `GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR`, added to `ftype` in
/// quantized files; whisper.cpp takes `ftype % 1000` as the type.
const QNT_VERSION_OFFSET: i32 = 2 * 1000;

/// The type the converted model's matrices are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// Half precision, like the official `ggml-*.bin` files.
    F16,
    /// 8-bit blocks (ggml's q8_0) for the 2-D matrices; conv kernels stay f16.
    #[value(name = "q8_0")]
    Q8_0,
}

impl Weights {
    /// whisper.cpp's `ftype` header field (`GGML_FTYPE_MOSTLY_F16` = 1,
    /// `GGML_FTYPE_MOSTLY_Q8_0` = 7, plus the quantization version).
    pub(super) fn ftype(self) -> i32 {
        match self {
            Weights::F16 => 1,
            Weights::Q8_0 => 7 + QNT_VERSION_OFFSET,
        }
    }
}

/// IEEE half to single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// Single to half precision, rounding to nearest even (as numpy's astype does).
pub fn f32_to_f16(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// Converts little-endian elements of `from` into bytes of `to`, a whole
/// tensor at a time through `half`'s slice conversions (F16C where the CPU
/// has it; the same bits either way).
pub(super) fn convert_elements(src: &[u8], from: Ct2Dtype, to: GgmlType) -> Vec<u8> {
    let mut values = vec![0f32; src.len() / from.size()];
    match from {
        Ct2Dtype::F32 => {
            for (v, b) in values.iter_mut().zip(src.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ct2Dtype::F16 => {
            let h: Vec<f16> = src
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]))
                .collect();
            h.convert_to_f32_slice(&mut values);
        }
        Ct2Dtype::Bf16 => {
            let h: Vec<bf16> = src
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]))
                .collect();
            h.convert_to_f32_slice(&mut values);
        }
        _ => unreachable!("dtype checked before conversion"),
    }
    let mut out = Vec::with_capacity(values.len() * 4);
    match to {
        GgmlType::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
        GgmlType::F16 => {
            let mut halves = vec![f16::ZERO; values.len()];
            halves.convert_from_f32_slice(&values);
            out.extend(halves.iter().flat_map(|h| h.to_le_bytes()));
        }
        GgmlType::Q8_0 => quantize_q8_0(&values, &mut out),
    }
    out
}

/// ggml's reference q8_0 quantization of one row (a multiple of 32 values):
/// per block, scale d = max|x| / 127 stored as f16, and each value as
/// round(x / d) in an i8. The division uses the f32 scale, as ggml does.
fn quantize_q8_0(values: &[f32], out: &mut Vec<u8>) {
    for block in values.chunks(Q8_0_BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        out.extend(block.iter().map(|v| ((v * id).round() as i8) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f16 or bf16 bit patterns widened the way tensors are, by [`convert_elements`].
    fn to_f32(from: Ct2Dtype, bits: &[u16]) -> Vec<f32> {
        let src: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        convert_elements(&src, from, GgmlType::F32)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// f32 values narrowed to f16 bits the way tensors are, by [`convert_elements`].
    fn to_f16(values: &[f32]) -> Vec<u16> {
        let src: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        convert_elements(&src, Ct2Dtype::F32, GgmlType::F16)
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn q8_0_block_rounding() {
        let mut out = Vec::new();
        // max |x| = 2.54 gives the scale 0.02; 0.01 is half a step: rounds away from 0.
        let mut block = vec![0f32; 32];
        block[0] = -2.54;
        block[1] = 0.01;
        block[2] = 1.0;
        block[3] = -0.029;
        quantize_q8_0(&block, &mut out);
        quantize_q8_0(&[0f32; 32], &mut out);
        assert_eq!(out.len(), 2 * 34);
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), f32_to_f16(0.02));
        assert_eq!(
            out[2..6].iter().map(|&q| q as i8).collect::<Vec<_>>(),
            [-127, 1, 50, -1]
        );
        assert!(out[6..34].iter().all(|&q| q == 0));
        // An all-zero block has scale 0 and zero values, not NaN.
        assert!(out[34..].iter().all(|&q| q == 0));
    }

    #[test]
    fn half_precision_conversions() {
        assert_eq!(f32_to_f16(1.0), 0x3C00);
        assert_eq!(f32_to_f16(-2.0), 0xC000);
        assert_eq!(f32_to_f16(65504.0), 0x7BFF);
        assert_eq!(f32_to_f16(65520.0), 0x7C00); // halfway to 65536 rounds to even: inf
        assert_eq!(f32_to_f16(2f32.powi(-24)), 0x0001);
        assert_eq!(f32_to_f16(2f32.powi(-26)), 0x0000);
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3C00); // tie to even
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3C02); // tie to even (up)
        assert_eq!(f32_to_f16(1.0 / 3.0), 0x3555);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7E00).is_nan());
        assert_eq!(to_f32(Ct2Dtype::Bf16, &[0x3F80]), [1.0]);
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if !x.is_nan() {
                assert_eq!(f32_to_f16(x), h, "{h:#06x}");
            }
        }
    }

    /// The hand-written conversions `half` replaced, kept as the reference:
    /// `half` must give the same bits for every finite value and infinity.
    /// IEEE half to single precision (exact).
    fn old_f16_to_f32(h: u16) -> f32 {
        let sign = ((h >> 15) as u32) << 31;
        let exp = ((h >> 10) & 0x1f) as u32;
        let man = (h & 0x3ff) as u32;
        let bits = match (exp, man) {
            (0, 0) => sign,
            (0, _) => {
                // Subnormal: shift the mantissa up until the implicit bit appears.
                let mut e = 127 - 15 + 1;
                let mut m = man;
                while m & 0x400 == 0 {
                    m <<= 1;
                    e -= 1;
                }
                sign | (e << 23) | ((m & 0x3ff) << 13)
            }
            (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
            _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
        };
        f32::from_bits(bits)
    }

    /// Single to half precision, rounding to nearest even (as numpy's astype does).
    fn old_f32_to_f16(x: f32) -> u16 {
        let b = x.to_bits();
        let sign = ((b >> 16) & 0x8000) as u16;
        let exp = ((b >> 23) & 0xff) as i32;
        let man = b & 0x7f_ffff;
        if exp == 0xff {
            return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
        }
        let e = exp - 127 + 15;
        if e >= 0x1f {
            return sign | 0x7c00;
        }
        let round = |m: u32, shift: u32| -> u32 {
            let kept = m >> shift;
            let rem = m & ((1 << shift) - 1);
            let half = 1 << (shift - 1);
            if rem > half || (rem == half && kept & 1 == 1) {
                kept + 1
            } else {
                kept
            }
        };
        if e <= 0 {
            // Subnormal in half precision: value = m * 2^-24.
            let shift = (14 - e) as u32;
            if shift > 24 {
                return sign;
            }
            return sign | round(man | 0x80_0000, shift) as u16;
        }
        // A carry out of the mantissa correctly bumps the exponent (up to infinity).
        sign | (((e as u32) << 10) + round(man, 13)) as u16
    }

    /// Checked both ways `half` is called (one value, and whole tensors
    /// through [`convert_elements`], which use F16C where the CPU has it):
    /// f16 and bf16 -> f32 for all 65,536 patterns; f32 -> f16 on the edges
    /// (zeros, subnormals, the overflow boundary, infinities, NaNs), on every
    /// tie between two neighbouring f16 values and one ulp either side of it,
    /// and on a sweep across the f32 bit patterns. (A full run over all 2^32
    /// f32 patterns, in release, found no difference beyond the NaNs either.)
    /// Every finite value and infinity keeps its bits. Only NaN payloads may
    /// differ: the old code wrote the one quiet NaN 0x7E00 and kept NaN bits
    /// when widening; `half` keeps the payload's top bits and sets the quiet
    /// bit (as F16C does). NaNs stay quiet NaNs of the same sign.
    #[test]
    fn half_gives_the_bits_of_the_hand_written_conversions() {
        const SIGN: u32 = 0x8000_0000;
        const QUIET: u32 = 0x7fc0_0000;
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let (f16s, bf16s) = (to_f32(Ct2Dtype::F16, &all), to_f32(Ct2Dtype::Bf16, &all));
        for h in all {
            let i = usize::from(h);
            let pairs = [
                (old_f16_to_f32(h).to_bits(), f16_to_f32(h).to_bits()),
                (old_f16_to_f32(h).to_bits(), f16s[i].to_bits()),
                (u32::from(h) << 16, bf16s[i].to_bits()),
            ];
            for (old, new) in pairs {
                if f32::from_bits(old).is_nan() {
                    assert_eq!(new & (SIGN | QUIET), old & SIGN | QUIET, "{h:#06x}");
                } else {
                    assert_eq!(old, new, "{h:#06x}");
                }
            }
        }

        let mut inputs = vec![
            0.0,
            f32::INFINITY,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            65504.0,
            65519.996,
            65520.0,
            65536.0,
            2f32.powi(-14),
            2f32.powi(-24),
            2f32.powi(-25),
            2f32.powi(-25) * 1.000_001,
            2f32.powi(-26),
            f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0x7fa0_2000),
            f32::from_bits(0x7fff_ffff),
        ];
        for h in 0..0x7bffu16 {
            let (lo, hi) = (f64::from(f16_to_f32(h)), f64::from(f16_to_f32(h + 1)));
            // Exact in f32: the midpoint needs 12 significant bits.
            let tie = ((lo + hi) / 2.0) as f32;
            inputs.extend([f16_to_f32(h), tie, tie.next_up(), tie.next_down()]);
        }
        inputs.extend((0..=u32::MAX).step_by(65_521).map(f32::from_bits));
        let inputs: Vec<f32> = inputs.iter().flat_map(|&x| [x, -x]).collect();
        for (&x, sliced) in inputs.iter().zip(to_f16(&inputs)) {
            let (old, new) = (old_f32_to_f16(x), f32_to_f16(x));
            if x.is_nan() {
                assert_eq!(old, (x.to_bits() >> 16) as u16 & 0x8000 | 0x7e00);
                assert_eq!(new & 0xfe00, old, "{:#010x}", x.to_bits());
                assert_eq!(sliced & 0xfe00, old, "{:#010x}", x.to_bits());
            } else {
                assert_eq!(old, new, "{x:e} ({:#010x})", x.to_bits());
                assert_eq!(old, sliced, "{x:e} ({:#010x})", x.to_bits());
            }
        }
        // The NaN that arithmetic produces converts exactly as before.
        assert_eq!(f32_to_f16(f32::NAN), old_f32_to_f16(f32::NAN));
    }
}
