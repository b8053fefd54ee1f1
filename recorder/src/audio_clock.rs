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
//! system's by up to ~100 ppm, 0.2 ms in 2 s). [`RESYNC_RUN`] buffers in a
//! row more than [`RESYNC_NS`] off are a gap in the source (a suspended
//! PulseAudio monitor, a stalled device): taken at once, the buffer marked
//! DISCONT.

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

    /// A buffer of `samples` frames the source stamped `pts_ns`: its
    /// (timestamp, duration, discont).
    pub fn stamp(&mut self, pts_ns: i64, samples: u64) -> (i64, i64, bool) {
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
            discont = true;
        } else {
            self.offsets.push(offset);
            if self.offsets.len() as u64 * samples.max(1) >= WINDOW_SAMPLES {
                self.offsets.sort_unstable();
                let median = self.offsets[self.offsets.len() / 2];
                self.offsets.clear();
                let step = if self.windows == 0 {
                    median
                } else {
                    median.clamp(-MAX_SLEW_NS, MAX_SLEW_NS)
                };
                self.base = Some(base + step);
                self.windows += 1;
            }
        }
        let start = self.at(self.samples);
        self.samples += samples;
        let end = self.at(self.samples);
        (start, end - start, discont)
    }
}

/// Restamps the buffers leaving element `name` (a capsfilter fixing
/// 48 kHz and `bytes_per_frame`) by [`SampleClock`].
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
            let (t, d, discont) = clock
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .stamp(pts.nseconds() as i64, samples);
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(t.max(0) as u64));
            b.set_duration(gst::ClockTime::from_nseconds(d.max(0) as u64));
            if discont {
                b.set_flags(gst::BufferFlags::DISCONT);
            } else {
                b.unset_flags(gst::BufferFlags::DISCONT);
            }
        }
        gst::PadProbeReturn::Ok
    });
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

    #[test]
    fn bursts_of_stamps_become_an_even_timeline() {
        let mut c = SampleClock::new(48_000);
        let stamps = bursty(1000, 2_000_000_000, 0.0);
        let out: Vec<_> = stamps.iter().map(|&p| c.stamp(p, 480)).collect();
        // Contiguous, but at the end of the first window, where the start's
        // offset (the bursts' median) is taken once.
        let steps: Vec<(usize, i64)> = out
            .windows(2)
            .enumerate()
            .map(|(i, w)| (i + 1, w[1].0 - w[0].0))
            .filter(|(_, d)| *d != 10_000_000)
            .collect();
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0].0 as u64, WINDOW_SAMPLES / 480 - 1);
        assert!((steps[0].1 - 10_000_000).abs() <= 30_000_000, "{steps:?}");
        // The bursts' median (15 ms late) is taken at the first window, so
        // sample 0 lands within 20 ms of its true time.
        assert!(
            (out[300].0 - (2_000_000_000 + 3_000_000_000)).abs() <= 20_000_000,
            "{:?}",
            out[300]
        );
        assert!(out.iter().all(|o| !o.2), "no discontinuity");
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
        let err = out[19_999].0 - stamps[19_999];
        assert!(
            err.abs() <= 2_000_000,
            "drift followed within 2 ms, got {err}"
        );
        assert!(
            out.iter().filter(|o| o.2).count() == 1,
            "one discontinuity at the gap"
        );
        let after = out[20_500].0 - stamps[20_500];
        assert!(after.abs() <= 2_000_000, "after the gap: {after}");
    }
}
