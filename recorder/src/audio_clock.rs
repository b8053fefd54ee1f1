//! Audio timestamps from the sample count. pulsesrc (`slave-method=
//! re-timestamp`) stamps each buffer with the pipeline clock when it was
//! read; under CPU load the sound server hands over bursts of buffers, read
//! together and stamped tens of ms apart from when they were captured, which
//! moves a beep off its time and makes Opus packets overlap (the decoder
//! drops them). Here each microphone's buffers are restamped, after
//! resampling (48 kHz, a known sample format), as the first buffer's time
//! plus the samples counted since. The source's own stamps only steer it:
//! every [`WINDOW_SAMPLES`] their median offset from the count is taken,
//! in full for the first window (the start), otherwise by at most
//! [`MAX_SLEW_NS`] a window (a sound card's clock drifts against the
//! system's by up to ~100 ppm, 0.2 ms in 2 s). A correction is made in
//! samples, not in timestamps: forward, that much silence goes in before the
//! next buffer; back, that many samples are cut from the next buffers (a few
//! ms at the first window, at most 24 samples later). So the stream stays
//! contiguous: no Opus packet overlaps the one before it (a decoder drops
//! such a packet), and the encoder, which smooths small timestamp jumps by
//! its own rules, never sees one. [`RESYNC_RUN`] buffers in a row more than
//! [`RESYNC_NS`] off are a gap in the source (a suspended PulseAudio
//! monitor, a stalled device): taken at once, the buffer marked DISCONT.

use gstreamer as gst;
use gstreamer::prelude::*;

/// Samples between corrections: 2 s at 48 kHz.
pub const WINDOW_SAMPLES: u64 = 96_000;
/// Buffers this far off the count, [`RESYNC_RUN`] in a row, are a gap in
/// the source, taken at once. Bursts move single stamps by up to ~60 ms.
pub const RESYNC_NS: i64 = 150_000_000;
pub const RESYNC_RUN: u32 = 3;
/// The most a window's correction moves the timeline otherwise (0.5 ms in
/// 2 s: 250 ppm).
pub const MAX_SLEW_NS: i64 = 500_000;
/// A window's median this far off the count is a step, not drift (drift
/// makes 0.2 ms in a window): samples the source lost, or an offset its
/// stamps took on. Two such windows in a row, the same way, and the second
/// is taken in full. Measured: a playback stream starting on the sound
/// server moved the stamps +18 ms at once, which slewing took a minute to
/// follow (beeps 12-22 ms early meanwhile).
pub const STEP_NS: i64 = 5_000_000;

/// The timeline of one audio stream.
#[derive(Debug, Default)]
pub struct SampleClock {
    rate: u64,
    /// Session time of sample 0 of the count, once known.
    base: Option<i64>,
    samples: u64,
    /// The source's stamps minus the count's, this window.
    offsets: Vec<i64>,
    windows: u32,
    /// Buffers in a row more than [`RESYNC_NS`] off.
    off_run: u32,
    /// A correction not yet made, in samples: silence to put in (> 0) or
    /// samples to cut (< 0).
    pending: i64,
    /// The last window's median, when it was a step ([`STEP_NS`]).
    last_step: Option<i64>,
}

/// What becomes of one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Session time of its first kept sample.
    pub pts: i64,
    /// Of the kept samples.
    pub duration: i64,
    pub discont: bool,
    /// Samples cut from its head; all of them: the buffer is dropped.
    pub skip: u64,
    /// Samples of silence put in before it (then `skip` is 0).
    pub pad: u64,
}

impl SampleClock {
    pub fn new(rate: u32) -> Self {
        Self {
            rate: u64::from(rate.max(1)),
            ..Self::default()
        }
    }

    fn at(&self, samples: u64) -> i64 {
        self.base.unwrap_or(0)
            + (u128::from(samples) * 1_000_000_000 / u128::from(self.rate)) as i64
    }

    /// A buffer of `samples` frames the source stamped `pts_ns`.
    pub fn stamp(&mut self, pts_ns: i64, samples: u64) -> Stamp {
        let base = *self.base.get_or_insert(pts_ns);
        let mut discont = false;
        let offset = pts_ns - self.at(self.samples);
        self.off_run = if offset.abs() > RESYNC_NS {
            self.off_run + 1
        } else {
            0
        };
        if self.off_run >= RESYNC_RUN {
            self.base = Some(base + offset);
            self.offsets.clear();
            self.off_run = 0;
            self.pending = 0;
            discont = true;
        } else {
            self.offsets.push(offset);
            if self.offsets.len() as u64 * samples.max(1) >= WINDOW_SAMPLES {
                self.offsets.sort_unstable();
                let median = self.offsets[self.offsets.len() / 2];
                self.offsets.clear();
                let is_step = median.abs() > STEP_NS;
                let confirmed = is_step
                    && self
                        .last_step
                        .is_some_and(|last| last.signum() == median.signum());
                let step = if self.windows == 0 || confirmed {
                    median
                } else {
                    median.clamp(-MAX_SLEW_NS, MAX_SLEW_NS)
                };
                self.last_step = (is_step && !confirmed).then_some(median);
                self.pending += (i128::from(step) * i128::from(self.rate) / 1_000_000_000) as i64;
                self.windows += 1;
                tracing::debug!(
                    "audio clock: window {}: the source's stamps {:+.2} ms from the count, corrected by {:+.2} ms",
                    self.windows,
                    median as f64 / 1e6,
                    step as f64 / 1e6
                );
            }
        }
        let (pad, skip) = if self.pending >= 0 {
            (self.pending.unsigned_abs(), 0)
        } else {
            (0, self.pending.unsigned_abs().min(samples))
        };
        self.pending += skip as i64 - pad as i64;
        let start = self.at(self.samples);
        self.samples += pad + samples - skip;
        let end = self.at(self.samples);
        Stamp {
            pts: start,
            duration: end - start,
            discont,
            skip,
            pad,
        }
    }
}

/// Restamps the buffers leaving element `name` (a capsfilter fixing
/// S16LE at 48 kHz, `bytes_per_frame`) by [`SampleClock`].
pub fn attach(pipeline: &gst::Pipeline, name: &str, rate: u32, bytes_per_frame: u32) {
    let Some(pad) = pipeline.by_name(name).and_then(|e| e.static_pad("src")) else {
        tracing::warn!("audio clock: no element {name}");
        return;
    };
    let clock = std::sync::Mutex::new(SampleClock::new(rate));
    let bpf = usize::try_from(bytes_per_frame.max(1)).unwrap_or(1);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data
            && let Some(pts) = buffer.pts()
        {
            let samples = (buffer.size() / bpf) as u64;
            let st = clock
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .stamp(pts.nseconds() as i64, samples);
            if !apply(buffer, st, samples, bpf) {
                return gst::PadProbeReturn::Drop;
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Makes `buffer` (of `samples` frames of `bpf` bytes) what `st` says;
/// false: drop it (all its samples cut, or it could not be read).
fn apply(buffer: &mut gst::Buffer, st: Stamp, samples: u64, bpf: usize) -> bool {
    if st.skip >= samples {
        return false;
    }
    let bytes = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).saturating_mul(bpf);
    if st.pad > 0 {
        // Silence (S16LE: zero bytes) before the samples.
        let Ok(map) = buffer.map_readable() else {
            return false;
        };
        let mut data = vec![0u8; bytes(st.pad)];
        data.extend_from_slice(&map);
        drop(map);
        *buffer = gst::Buffer::from_mut_slice(data);
    }
    let b = buffer.make_mut();
    if st.skip > 0 && b.resize(bytes(st.skip)..).is_err() {
        return false;
    }
    b.set_pts(gst::ClockTime::from_nseconds(st.pts.max(0) as u64));
    b.set_duration(gst::ClockTime::from_nseconds(st.duration.max(0) as u64));
    if st.discont {
        b.set_flags(gst::BufferFlags::DISCONT);
    } else {
        b.unset_flags(gst::BufferFlags::DISCONT);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 ms buffers (480 samples) whose stamps come in bursts: four read
    /// together, stamped 30 ms late to on time.
    fn bursty(n: usize, start: i64, drift_ppm: f64) -> Vec<i64> {
        (0..n)
            .map(|i| {
                let truth = start + (i as f64 * 10_000_000.0 * (1.0 + drift_ppm / 1e6)) as i64;
                let burst_end = (i / 4) * 4 + 3;
                truth + (burst_end - i) as i64 * 10_000_000
            })
            .collect()
    }

    /// The kept buffers, each starting where the one before it ended.
    fn assert_contiguous(out: &[Stamp]) {
        let kept: Vec<&Stamp> = out.iter().filter(|o| o.duration > 0).collect();
        for (i, w) in kept.windows(2).enumerate() {
            assert_eq!(
                w[1].pts,
                w[0].pts + w[0].duration,
                "buffer {}: {w:?}",
                i + 1
            );
        }
    }

    #[test]
    fn bursts_of_stamps_become_an_even_timeline() {
        let mut c = SampleClock::new(48_000);
        let stamps = bursty(1000, 2_000_000_000, 0.0);
        let out: Vec<_> = stamps.iter().map(|&p| c.stamp(p, 480)).collect();
        // The first buffer came 30 ms late, the bursts' median 20 ms: at the
        // end of the first window the timeline goes 10 ms back, by cutting
        // that much audio (one buffer), not by stamping over what was sent.
        assert_contiguous(&out);
        let cut: Vec<(usize, u64)> = out
            .iter()
            .enumerate()
            .filter(|(_, o)| o.skip > 0)
            .map(|(i, o)| (i, o.skip))
            .collect();
        assert_eq!(cut, [(WINDOW_SAMPLES as usize / 480 - 1, 480)]);
        // So sample 0 lands within 20 ms of its true time.
        let truth = |i: usize| 2_000_000_000 + i as i64 * 10_000_000;
        assert!(
            (out[300].pts - truth(300)).abs() <= 20_000_000,
            "{:?}",
            out[300]
        );
        assert!(out.iter().all(|o| !o.discont), "no discontinuity");
    }

    #[test]
    fn a_correction_back_within_a_buffer_cuts_its_head() {
        let mut c = SampleClock::new(48_000);
        // 20 ms buffers, the first stamped 7 ms late, the rest on time.
        let stamps: Vec<i64> = (0..200)
            .map(|i| i * 20_000_000 + if i == 0 { 7_000_000 } else { 0 })
            .collect();
        let out: Vec<_> = stamps.iter().map(|&p| c.stamp(p, 960)).collect();
        assert_contiguous(&out);
        let cut: Vec<u64> = out.iter().map(|o| o.skip).filter(|&k| k > 0).collect();
        assert_eq!(cut, [336], "7 ms at 48 kHz");
        // Afterwards each buffer is stamped at its true time.
        assert_eq!(out[150].pts, stamps[150]);
    }

    #[test]
    fn a_drifting_card_is_followed_and_a_gap_is_taken_at_once() {
        let mut c = SampleClock::new(48_000);
        // 100 ppm fast for 200 s: 20 ms.
        let mut stamps: Vec<i64> = (0..20_000)
            .map(|i| (i as f64 * 10_000_000.0 * 1.0001) as i64)
            .collect();
        // Then the source stops for 1.5 s and goes on.
        let last = *stamps.last().unwrap();
        stamps.extend((1..1000).map(|i| last + 1_500_000_000 + i * 10_000_000));
        let out: Vec<_> = stamps.iter().map(|&p| c.stamp(p, 480)).collect();
        let err = out[19_999].pts - stamps[19_999];
        assert!(
            err.abs() <= 2_000_000,
            "drift followed within 2 ms, got {err}"
        );
        assert!(
            out.iter().filter(|o| o.discont).count() == 1,
            "one discontinuity at the gap"
        );
        let after = out[20_500].pts - stamps[20_500];
        assert!(after.abs() <= 2_000_000, "after the gap: {after}");
        // Before the gap, contiguous: 20 ms of silence put in, at most 0.5
        // ms at a time.
        assert_contiguous(&out[..20_000]);
        let pad: u64 = out[..20_000].iter().map(|o| o.pad).sum();
        assert!((800..=1100).contains(&pad), "{pad} samples of silence");
        assert!(out.iter().all(|o| o.pad <= 24 && o.skip == 0));
    }

    #[test]
    fn a_step_confirmed_by_two_windows_is_taken_in_full() {
        let mut c = SampleClock::new(48_000);
        // 10 s on time, then the source loses 18 ms of samples and goes on
        // on time: its stamps are 18 ms ahead of the count from there.
        let stamps: Vec<i64> = (0..6000)
            .map(|i| i * 10_000_000 + if i >= 1000 { 18_000_000 } else { 0 })
            .collect();
        let out: Vec<_> = stamps.iter().map(|&p| c.stamp(p, 480)).collect();
        // Two windows (4 s) after the step, the timeline is back within 1 ms.
        for i in [1500, 3000, 5999] {
            let err = out[i].pts - stamps[i];
            assert!(err.abs() <= 1_000_000, "buffer {i}: {err} ns off");
        }
        // As silence, at once, never a timestamp jump.
        assert_contiguous(&out);
        assert!(out.iter().all(|o| !o.discont && o.skip == 0));
        let pad: u64 = out.iter().map(|o| o.pad).sum();
        assert!((800..=900).contains(&pad), "{pad} samples of silence");

        // One window a step and the next not: slewed, not taken.
        let mut c = SampleClock::new(48_000);
        let stamps: Vec<i64> = (0..1200)
            .map(|i| {
                i * 10_000_000
                    + if (200..400).contains(&i) {
                        8_000_000
                    } else {
                        0
                    }
            })
            .collect();
        let out: Vec<_> = stamps.iter().map(|&p| c.stamp(p, 480)).collect();
        assert!(
            out.iter().all(|o| o.pad <= 24),
            "a lone off window moved the timeline at once"
        );
    }

    #[test]
    fn silence_goes_in_and_samples_come_out_of_real_buffers() {
        gst::init().unwrap();
        let samples: Vec<u8> = (1..=8u8).flat_map(|v| [v, 0]).collect(); // 8 S16LE frames
        let st = |pts, pad, skip| Stamp {
            pts,
            duration: 1000,
            discont: false,
            skip,
            pad,
        };
        let mut b = gst::Buffer::from_slice(samples.clone());
        assert!(apply(&mut b, st(5, 3, 0), 8, 2));
        assert_eq!(
            b.map_readable().unwrap().as_slice()[..8],
            [0, 0, 0, 0, 0, 0, 1, 0]
        );
        assert_eq!(b.size(), 22);
        assert_eq!(b.pts(), Some(gst::ClockTime::from_nseconds(5)));
        let mut b = gst::Buffer::from_slice(samples.clone());
        assert!(apply(&mut b, st(7, 0, 5), 8, 2));
        assert_eq!(b.map_readable().unwrap().as_slice(), [6, 0, 7, 0, 8, 0]);
        let mut b = gst::Buffer::from_slice(samples);
        assert!(!apply(&mut b, st(7, 0, 8), 8, 2), "all cut: dropped");
    }

    #[test]
    fn a_slow_card_is_followed_by_cutting_never_overlapping() {
        let mut c = SampleClock::new(48_000);
        // 100 ppm slow for 200 s: the count runs ahead of the stamps.
        let stamps: Vec<i64> = (0..20_000)
            .map(|i| (i as f64 * 10_000_000.0 * 0.9999) as i64)
            .collect();
        let out: Vec<_> = stamps.iter().map(|&p| c.stamp(p, 480)).collect();
        assert_contiguous(&out);
        let err = out[19_999].pts - stamps[19_999];
        assert!(
            err.abs() <= 2_000_000,
            "drift followed within 2 ms, got {err}"
        );
        // 20 ms of samples cut in all, at most 0.5 ms at a time.
        let cut: u64 = out.iter().map(|o| o.skip).sum();
        assert!((800..=1100).contains(&cut), "{cut} samples cut");
        assert!(out.iter().all(|o| o.skip <= 24), "no cut over 0.5 ms");
    }
}
