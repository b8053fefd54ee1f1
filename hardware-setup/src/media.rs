//! Independent readers of recorded media: decoded video frames (mean colour
//! per frame) and decoded audio samples, each with session timestamps. Used
//! by `lab-setup check` and by the end-to-end tests to verify what the
//! recorder wrote through a different GStreamer path than the one that
//! wrote it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Decoded video frames of a segment: (pts in session ns, mean RGB).
pub fn video_frames(file: &Path) -> anyhow::Result<Vec<(i64, [f32; 3])>> {
    gst::init()?;
    let desc = format!(
        "filesrc location=\"{}\" ! matroskademux name=d d.video_0 ! h264parse ! avdec_h264 ! videoconvert ! videoscale ! video/x-raw,format=RGB,width=32,height=18 ! appsink name=out sync=false",
        file.display()
    );
    let frames = Arc::new(Mutex::new(Vec::new()));
    run_appsink(&desc, {
        let frames = frames.clone();
        move |sample| {
            let buf = sample.buffer().context("no buffer")?;
            let pts = buf.pts().context("frame without pts")?.nseconds() as i64;
            let map = buf.map_readable()?;
            let mut sum = [0f64; 3];
            for px in map.chunks_exact(3) {
                for c in 0..3 {
                    sum[c] += px[c] as f64;
                }
            }
            let n = (map.len() / 3) as f64;
            frames.lock().unwrap().push((
                pts,
                [
                    (sum[0] / n) as f32,
                    (sum[1] / n) as f32,
                    (sum[2] / n) as f32,
                ],
            ));
            Ok(())
        }
    })?;
    let v = frames.lock().unwrap().clone();
    Ok(v)
}

/// Decoded first audio track of a segment as mono f32 at 48 kHz, with the
/// session time of its first sample; `None` if the segment holds no audio.
pub fn audio_samples(file: &Path) -> anyhow::Result<Option<(i64, Vec<f32>)>> {
    gst::init()?;
    let desc = format!(
        "filesrc location=\"{}\" ! matroskademux name=d d.audio_0 ! opusparse ! opusdec ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,channels=1,rate=48000,layout=interleaved ! appsink name=out sync=false",
        file.display()
    );
    let out = Arc::new(Mutex::new((None::<i64>, Vec::<f32>::new())));
    run_appsink(&desc, {
        let out = out.clone();
        move |sample| {
            let buf = sample.buffer().context("no buffer")?;
            let map = buf.map_readable()?;
            let mut o = out.lock().unwrap();
            if o.0.is_none() {
                o.0 = buf.pts().map(|p| p.nseconds() as i64);
            }
            o.1.extend(
                map.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            Ok(())
        }
    })?;
    let (start, samples) = std::mem::take(&mut *out.lock().unwrap());
    Ok(start.map(|s| (s, samples)))
}

fn run_appsink(
    desc: &str,
    mut on_sample: impl FnMut(&gst::Sample) -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<()> {
    let pipeline = gst::parse::launch(desc)?
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    let sink = pipeline
        .by_name("out")
        .context("no appsink")?
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                on_sample(&sample).map_err(|_| gst::FlowError::Error)?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().expect("bus");
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                result = Err(anyhow::anyhow!(
                    "decoding failed: {} ({:?})",
                    e.error(),
                    e.debug()
                ));
                break;
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null)?;
    result
}

/// Whether two mean colours are the same flash colour (after H.264 and
/// colour conversion, a solid colour comes back within a few levels).
pub fn same_colour(a: [f32; 3], b: [f32; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 60.0)
}

/// `#rrggbb` to RGB.
pub fn hex_colour(c: &str) -> Option<[f32; 3]> {
    let v = u32::from_str_radix(c.strip_prefix('#')?, 16).ok()?;
    Some([(v >> 16) as f32, (v >> 8 & 0xff) as f32, (v & 0xff) as f32])
}

/// For each flash (session time, colour), how many ms after it the first
/// frame showing that colour was captured (NaN if none within 1 s).
/// `frames` must be sorted by time.
pub fn flash_offsets_ms(frames: &[(i64, [f32; 3])], flashes: &[(i64, [f32; 3])]) -> Vec<f64> {
    flashes
        .iter()
        .map(|&(t, colour)| {
            frames
                .iter()
                .find(|(pts, rgb)| {
                    *pts >= t - 300_000_000
                        && *pts <= t + 1_000_000_000
                        && same_colour(*rgb, colour)
                })
                .map_or(f64::NAN, |f| (f.0 - t) as f64 / 1e6)
        })
        .collect()
}

/// Session time of the first sample louder than `threshold` in
/// [from_ns, to_ns), searching every decoded audio chunk.
pub fn onset_ns(
    audio: &[(i64, Vec<f32>)],
    from_ns: i64,
    to_ns: i64,
    threshold: f32,
) -> Option<i64> {
    let mut best: Option<i64> = None;
    for (start, samples) in audio {
        let first = ((from_ns - start).max(0) as f64 * 48e3 / 1e9) as usize;
        if let Some(i) = (first..samples.len()).find(|&i| samples[i].abs() > threshold) {
            let t = start + (i as f64 * 1e9 / 48e3) as i64;
            if t < to_ns {
                best = Some(best.map_or(t, |b: i64| b.min(t)));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_offsets_find_the_first_matching_frame() {
        let black = [0.0; 3];
        let red = hex_colour("#ff0000").unwrap();
        let frames: Vec<_> = (0..10)
            .map(|i| {
                (
                    i * 33_000_000,
                    if (4..7).contains(&i) { red } else { black },
                )
            })
            .collect();
        let offs = flash_offsets_ms(&frames, &[(120_000_000, red), (800_000_000, red)]);
        assert_eq!(offs[0], 12.0);
        assert!(offs[1].is_nan());
    }

    #[test]
    fn onset_is_found_across_chunks() {
        let mut loud = vec![0.0f32; 4800];
        loud[480] = 0.5;
        let audio = vec![(0, vec![0.0f32; 4800]), (100_000_000, loud)];
        assert_eq!(
            onset_ns(&audio, 50_000_000, 1_000_000_000, 0.2),
            Some(110_000_000)
        );
        assert_eq!(onset_ns(&audio, 0, 105_000_000, 0.2), None);
    }
}
