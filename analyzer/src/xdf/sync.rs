//! Clock synchronisation and jitter removal of XDF streams, the rules of
//! pyxdf's `load_xdf` with its defaults (so that a file gives the same
//! stamps here as in the field's reference reader, checked by
//! `tests/tests/xdf.rs` against pyxdf itself):
//!
//! 1. **Corrupted last offset** (liblsl#246): when a stream holds more
//!    samples than its footer's `sample_count` *and* its last clock offset
//!    is an outlier (its interval over 10× the median, or its value over 10
//!    MAD-standard-deviations off), both the extra samples and that offset
//!    are dropped.
//! 2. **Clock resets**: the offsets are cut where their times go backwards,
//!    or where both the time step and the value step jump (more than 5
//!    MADs and 5 s, resp. 10 MADs and 1 s from their medians).
//! 3. **Clock sync**: per range, `offset = a + b·t` is fitted to the
//!    measured offsets by a Huber-loss regression (ADMM, 1000 iterations,
//!    values scaled by the 0.1 ms winsorising threshold), and every stamp
//!    `t` becomes `t + a + b·t`; with several ranges a stamp belongs to the
//!    range whose end it is nearer than the next range's start.
//! 4. **Dejitter** (regular streams that cannot drop samples): segments
//!    break where stamps step more than max(1 s, 500 sample periods); in
//!    each, stamps are replaced by the least-squares line over the sample
//!    index.

use super::read::{Values, XdfStream};

const WINSOR: f64 = 0.0001;

/// What synchronisation did to one stream, for the import's report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Clock ranges (more than one: the sender's clock was reset).
    pub clock_ranges: usize,
    /// Dejitter segments (more than one: the stream broke off).
    pub segments: Vec<(usize, usize)>,
    /// Samples and offsets dropped as liblsl#246's corruption.
    pub truncated: bool,
    /// Median absolute residual of the offset fit, seconds.
    pub fit_residual_s: Option<f64>,
}

/// Applies steps 1-4 to every stream.
pub fn synchronize(streams: &mut [XdfStream]) -> Vec<SyncReport> {
    streams
        .iter_mut()
        .map(|s| {
            let mut report = SyncReport {
                truncated: truncate_corrupted_offset(s),
                ..SyncReport::default()
            };
            clock_sync(s, &mut report);
            report.segments = dejitter(s);
            report
        })
        .collect()
}

/// numpy's median (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn diff(v: &[f64]) -> Vec<f64> {
    v.windows(2).map(|w| w[1] - w[0]).collect()
}

fn truncate_corrupted_offset(s: &mut XdfStream) -> bool {
    let Some(footer) = s.footer_sample_count else {
        return false;
    };
    if s.stamps.len() <= footer || s.clock_times.len() < 3 {
        return false;
    }
    let intervals = diff(&s.clock_times);
    let median_interval = median(&intervals[..intervals.len() - 1]);
    let last_interval = intervals[intervals.len() - 1].abs();
    let time_ratio = if median_interval > 0.0 {
        last_interval / median_interval
    } else if last_interval > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    let n = s.clock_values.len();
    let head = &s.clock_values[..n - 1];
    let median_val = median(head);
    let mad = median(
        &head
            .iter()
            .map(|v| (v - median_val).abs())
            .collect::<Vec<_>>(),
    );
    let z = if mad > f64::EPSILON {
        (s.clock_values[n - 1] - median_val).abs() / (1.4826 * mad)
    } else {
        0.0
    };
    if !(time_ratio > 10.0 || z > 10.0) {
        return false;
    }
    s.clock_times.pop();
    s.clock_values.pop();
    s.stamps.truncate(footer);
    match &mut s.values {
        Values::Numbers(v) => v.truncate(footer * s.channel_count),
        Values::Strings(v) => v.truncate(footer),
    }
    true
}

/// Where consecutive differences jump: more than `stds` MADs and `secs`
/// seconds from their median.
fn clock_glitches(d: &[f64], stds: f64, secs: f64) -> Vec<bool> {
    let m = median(d);
    let mad = median(&d.iter().map(|x| (x - m).abs()).collect::<Vec<_>>()) + f64::EPSILON;
    d.iter()
        .map(|x| ((x - m) / mad).abs() > stds && (x - m).abs() > secs)
        .collect()
}

/// Inclusive index ranges between breaks (`breaks[i]`: between i and i+1).
fn segments(breaks: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in breaks.iter().enumerate() {
        if b {
            out.push((start, i));
            start = i + 1;
        }
    }
    out.push((start, breaks.len()));
    out
}

fn clock_ranges(s: &XdfStream) -> Vec<(usize, usize)> {
    if s.clock_times.len() <= 1 {
        return vec![(0, s.clock_times.len().saturating_sub(1))];
    }
    let td = diff(&s.clock_times);
    let vd = diff(&s.clock_values);
    let time_glitch = clock_glitches(&td, 5.0, 5.0);
    let value_glitch = clock_glitches(&vd, 10.0, 1.0);
    let resets: Vec<bool> = td
        .iter()
        .zip(time_glitch.iter().zip(&value_glitch))
        .map(|(t, (a, b))| *t < 0.0 || (*a && *b))
        .collect();
    segments(&resets)
}

fn clock_sync(s: &mut XdfStream, report: &mut SyncReport) {
    if s.stamps.is_empty() || s.clock_times.is_empty() {
        return;
    }
    let ranges = clock_ranges(s);
    report.clock_ranges = ranges.len();
    let mut residuals = Vec::new();
    let coefs: Vec<(f64, f64)> = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                return (s.clock_values[a], 0.0);
            }
            let t = &s.clock_times[a..=b];
            let v = &s.clock_values[a..=b];
            let c = robust_fit(t, v).unwrap_or((0.0, 0.0));
            residuals.extend(t.iter().zip(v).map(|(t, v)| (c.0 + c.1 * t - v).abs()));
            c
        })
        .collect();
    if !residuals.is_empty() {
        report.fit_residual_s = Some(median(&residuals));
    }
    if ranges.len() == 1 {
        let (a, b) = coefs[0];
        for t in &mut s.stamps {
            *t += a + b * *t;
        }
        return;
    }
    let mut start = 0;
    for (&(a, b), &(_, end)) in coefs.iter().zip(&ranges) {
        let stop = if end + 1 < s.clock_times.len() {
            let current_end = s.clock_times[end];
            let next_start = s.clock_times[end + 1];
            // The first stamp nearer the next range's start than this one's end.
            s.stamps[start..]
                .iter()
                .position(|t| (t - current_end).abs() >= (t - next_start).abs())
                .map_or(s.stamps.len(), |p| start + p)
        } else {
            s.stamps.len()
        };
        for t in &mut s.stamps[start..stop] {
            *t += a + b * *t;
        }
        start = stop;
    }
}

/// pyxdf's Huber fit of `v ≈ a + b·t` (ADMM, ρ = 1, 1000 iterations) on
/// values scaled by the winsorising threshold; `None` when the times are
/// all equal (the normal equations are singular).
pub fn robust_fit(t: &[f64], v: &[f64]) -> Option<(f64, f64)> {
    let x1: Vec<f64> = t.iter().map(|t| t / WINSOR).collect();
    let y: Vec<f64> = v.iter().map(|v| v / WINSOR).collect();
    let offset = x1.iter().copied().fold(f64::INFINITY, f64::min);
    let x1: Vec<f64> = x1.iter().map(|x| x - offset).collect();
    let n = y.len() as f64;
    // AᵀA = [[n, Σx], [Σx, Σx²]] and its Cholesky factor L (lower).
    let sx: f64 = x1.iter().sum();
    let sxx: f64 = x1.iter().map(|x| x * x).sum();
    let l11 = n.sqrt();
    let l21 = sx / l11;
    let d = sxx - l21 * l21;
    if d.is_nan() || d <= 0.0 {
        return None;
    }
    let l22 = d.sqrt();
    let solve = |r0: f64, r1: f64| {
        // L w = r, then Lᵀ x = w.
        let w0 = r0 / l11;
        let w1 = (r1 - l21 * w0) / l22;
        let x1 = w1 / l22;
        let x0 = (w0 - l21 * x1) / l11;
        (x0, x1)
    };
    let aty0: f64 = y.iter().sum();
    let aty1: f64 = x1.iter().zip(&y).map(|(x, y)| x * y).sum();
    let rho = 1.0;
    let mut z = vec![0.0; y.len()];
    let mut u = vec![0.0; y.len()];
    let mut x = (0.0, 0.0);
    for _ in 0..1000 {
        let (mut r0, mut r1) = (aty0, aty1);
        for i in 0..y.len() {
            r0 += z[i] - u[i];
            r1 += x1[i] * (z[i] - u[i]);
        }
        x = solve(r0, r1);
        for i in 0..y.len() {
            let d = x.0 + x.1 * x1[i] - y[i] + u[i];
            let d_inv = if d != 0.0 { 1.0 / d } else { 0.0 };
            let tmp = (1.0 - (1.0 + 1.0 / rho) * d_inv.abs()).max(0.0);
            z[i] = rho / (1.0 + rho) * d + 1.0 / (1.0 + rho) * tmp * d;
            u[i] = d - z[i];
        }
    }
    let a = (x.0 - x.1 * offset) * WINSOR;
    Some((a, x.1))
}

/// Step 4; returns the segments (inclusive sample ranges).
fn dejitter(s: &mut XdfStream) -> Vec<(usize, usize)> {
    let n = s.stamps.len();
    if n == 0 {
        return Vec::new();
    }
    if s.nominal_srate <= 0.0 || s.can_drop_samples {
        return vec![(0, n - 1)];
    }
    let limit = 1.0f64.max(500.0 / s.nominal_srate);
    let breaks: Vec<bool> = diff(&s.stamps).iter().map(|d| d.abs() > limit).collect();
    let segs = segments(&breaks);
    for &(a, b) in &segs {
        // Least squares t ≈ c0 + c1·i over the global index i, centred for accuracy.
        let m = (b - a + 1) as f64;
        let mean_i = (a + b) as f64 / 2.0;
        let mean_t = s.stamps[a..=b].iter().sum::<f64>() / m;
        let (mut sit, mut sii) = (0.0, 0.0);
        for (k, t) in s.stamps[a..=b].iter().enumerate() {
            let di = (a + k) as f64 - mean_i;
            sit += di * (t - mean_t);
            sii += di * di;
        }
        let slope = if sii > 0.0 { sit / sii } else { 0.0 };
        for (k, t) in s.stamps[a..=b].iter_mut().enumerate() {
            *t = mean_t + slope * ((a + k) as f64 - mean_i);
        }
    }
    segs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_segments_follow_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(segments(&[false, true, false]), vec![(0, 1), (2, 3)]);
        assert_eq!(segments(&[]), vec![(0, 0)]);
    }

    #[test]
    fn the_huber_fit_ignores_one_outlier() {
        // offset = 0.5 + 1e-5·t, one probe 40 ms off.
        let t: Vec<f64> = (0..40).map(|i| 100.0 + 5.0 * i as f64).collect();
        let mut v: Vec<f64> = t.iter().map(|t| 0.5 + 1e-5 * t).collect();
        v[17] += 0.04;
        let (a, b) = robust_fit(&t, &v).unwrap();
        assert!((a - 0.5).abs() < 1e-4, "{a}");
        assert!((b - 1e-5).abs() < 1e-6, "{b}");
        assert!(robust_fit(&[1.0, 1.0], &[0.1, 0.2]).is_none());
    }
}
