//! The mel filterbank Whisper was trained with, computed bit for bit: a
//! CTranslate2 checkpoint has none, and whisper.cpp takes it from the GGML file.

// Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz,
// logarithmic above.
const MEL_F_SP: f64 = 200.0 / 3.0;
const MEL_MIN_LOG_HZ: f64 = 1000.0;
const MEL_MIN_LOG_MEL: f64 = MEL_MIN_LOG_HZ / MEL_F_SP;

fn mel_logstep() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(f: f64) -> f64 {
    if f >= MEL_MIN_LOG_HZ {
        MEL_MIN_LOG_MEL + (f / MEL_MIN_LOG_HZ).ln() / mel_logstep()
    } else {
        f / MEL_F_SP
    }
}

fn mel_to_hz(m: f64) -> f64 {
    if m >= MEL_MIN_LOG_MEL {
        MEL_MIN_LOG_HZ * (mel_logstep() * (m - MEL_MIN_LOG_MEL)).exp()
    } else {
        MEL_F_SP * m
    }
}

/// Triangular mel filters with Slaney area normalisation, row-major
/// `n_mels x (n_fft/2 + 1)`, from 0 Hz to Nyquist: the filterbank Whisper was
/// trained with (`librosa.filters.mel(sr, n_fft, n_mels)`). whisper.cpp takes
/// it from the GGML file, and a CTranslate2 checkpoint has none, so we compute it.
pub fn mel_filterbank(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let fft_hz: Vec<f64> = (0..n_bins)
        .map(|k| k as f64 * sample_rate / n_fft as f64)
        .collect();
    // n_mels + 2 band edges equally spaced in mel.
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let n_edges = n_mels + 2;
    let edges: Vec<f64> = (0..n_edges)
        .map(|i| {
            // As numpy's linspace computes it (start + i * step, exact end).
            let m = if i + 1 == n_edges {
                hi
            } else {
                lo + i as f64 * ((hi - lo) / (n_edges - 1) as f64)
            };
            mel_to_hz(m)
        })
        .collect();
    let mut out = Vec::with_capacity(n_mels * n_bins);
    for i in 0..n_mels {
        let (left, centre, right) = (edges[i], edges[i + 1], edges[i + 2]);
        let norm = 2.0 / (right - left);
        for &f in &fft_hz {
            // Written as librosa computes it, down to the sign of zero at DC
            // and storing the triangle in f32 before scaling it, so that the
            // table is bit for bit Whisper's `mel_filters.npz`.
            let rising = -(left - f) / (centre - left);
            let falling = (right - f) / (right - centre);
            let lower = if rising < falling { rising } else { falling };
            let triangle = if lower < 0.0 { 0.0 } else { lower } as f32;
            out.push((f64::from(triangle) * norm) as f32);
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_mel_scale_by_hand() {
        // Linear below 1 kHz at 200/3 Hz per mel; 27 mels per factor 6.4 above.
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(6400.0) - 42.0).abs() < 1e-9);
        assert!((mel_to_hz(42.0) - 6400.0).abs() < 1e-6);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        for f in [0.0, 123.0, 999.0, 1000.0, 4321.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-6);
        }
    }

    #[test]
    fn mel_filterbank_matches_whisper_reference_values() {
        let m = mel_filterbank(16000.0, 400, 80);
        assert_eq!(m.len(), 80 * 201);
        let at = |row: usize, bin: usize| m[row * 201 + bin];
        // Filter 0 by hand: edges 0, e, 2e Hz with e = 8000 Hz in mel / 81 steps
        // (all below 1 kHz, so linear): e = 200/3 * hz_to_mel(8000) / 81. Bin 1
        // (40 Hz) is on the falling side: (2e - 40) / e, times 2 / (2e).
        let e = 200.0 / 3.0 * hz_to_mel(8000.0) / 81.0;
        let by_hand = ((2.0 * e - 40.0) / e) * (2.0 / (2.0 * e));
        assert!((at(0, 1) as f64 - by_hand).abs() < 1e-8);
        // Values from Whisper's own mel_filters.npz (librosa, slaney norm).
        for (row, bin, want) in [
            (0, 1, 0.024_862_595),
            (1, 1, 0.001_990_822),
            (1, 2, 0.022_871_772),
            (10, 10, 0.019_908_218),
            (10, 11, 0.004_954_375),
            (40, 42, 0.005_411_104_8),
            (40, 43, 0.014_735_566),
            (40, 44, 0.006_518_19),
            (79, 186, 0.000_366_741_67),
        ] {
            let got = at(row, bin);
            assert!(
                (got - want).abs() <= 1e-6 * want.max(1e-3),
                "row {row} bin {bin}: {got} vs {want}"
            );
        }
        // Row 40 peaks at bin 43; filter 0 only touches bin 1; DC is in no filter.
        let row40 = &m[40 * 201..41 * 201];
        let peak = (0..201)
            .max_by(|&a, &b| row40[a].total_cmp(&row40[b]))
            .unwrap();
        assert_eq!(peak, 43);
        assert_eq!(m[..201].iter().filter(|&&v| v > 0.0).count(), 1);
        assert!((0..80).all(|r| at(r, 0) == 0.0));
        // librosa's arithmetic leaves -0.0 at (0, 0); Whisper's table has it too.
        assert_eq!(at(0, 0).to_bits(), 0x8000_0000);
    }

    /// The whole table, bit for bit, for both sizes Whisper uses: 80 mels
    /// (tiny to large-v2) and 128 (large-v3, large-v3-turbo). The digests are
    /// SHA-256 of the raw little-endian f32 data of `mel_80.npy` and
    /// `mel_128.npy` in openai/whisper's `whisper/assets/mel_filters.npz`.
    #[test]
    fn mel_filterbanks_are_whispers_bit_for_bit() {
        use sha2::{Digest, Sha256};
        for (n_mels, want) in [
            (
                80,
                "4f2701b1d287d74a0dc9871026e9519d98cb76426615f2539b0d151a0ae4ec2e",
            ),
            (
                128,
                "2a5f9822897750e047c85dea37cc268d3be0ecfd23c28a5f10da129d99d05afe",
            ),
        ] {
            let m = mel_filterbank(16000.0, 400, n_mels);
            assert_eq!(m.len(), n_mels * 201);
            let bytes: Vec<u8> = m.iter().flat_map(|v| v.to_le_bytes()).collect();
            assert_eq!(
                format!("{:x}", Sha256::digest(&bytes)),
                want,
                "{n_mels} mels"
            );
        }
        // Two values of mel_128 by name: row 0 bin 1, and row 64 peaks at bin 43.
        let m = mel_filterbank(16000.0, 400, 128);
        assert_eq!(m[1], 0.012_373_987_f32);
        let row64 = &m[64 * 201..65 * 201];
        let peak = (0..201).max_by(|&a, &b| row64[a].total_cmp(&row64[b]));
        assert_eq!(peak, Some(43));
    }
}
