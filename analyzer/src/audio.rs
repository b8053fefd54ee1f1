//! Decoding any FFmpeg-readable file's audio to 16 kHz f32, one vector per
//! channel, placed on the file's own timeline (so a bundle's segments land
//! at their session times and gaps stay silent).
//!
//! Corrupt packets are skipped and counted, not fatal: a segment truncated
//! by a crash decodes up to the break and the report says where it ended.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::Sample;
use ffmpeg_next::format::sample::Type as SampleType;
use lab_model::{Bundle, Manifest};

/// Whisper and Silero VAD both want 16 kHz.
pub const RATE: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("failed to open {path}: {message}")]
    Open { path: String, message: String },
    #[error("{path} has no audio stream")]
    NoAudio { path: String },
    #[error("failed to set up decoding of {path}: {message}")]
    Decoder { path: String, message: String },
}

/// Decoded audio: `channels[c][i]` is sample `i` of channel `c`; sample 0 is at `start_ns`.
#[derive(Debug, Clone, Default)]
pub struct Pcm {
    pub start_ns: i64,
    pub channels: Vec<Vec<f32>>,
    /// Packets or frames that failed to decode, with why.
    pub errors: Vec<String>,
}

impl Pcm {
    pub fn len(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn duration_ns(&self) -> i64 {
        self.len() as i64 * 1_000_000_000 / i64::from(RATE)
    }

    /// Average of all channels (for files whose channels have no roles).
    pub fn mono(&self) -> Vec<f32> {
        let n = self.channels.len().max(1) as f32;
        (0..self.len())
            .map(|i| self.channels.iter().map(|c| c[i]).sum::<f32>() / n)
            .collect()
    }

    /// Peak absolute sample, to tell a silent track from a quiet one.
    pub fn peak(&self) -> f32 {
        self.channels
            .iter()
            .flatten()
            .fold(0.0f32, |m, s| m.max(s.abs()))
    }
}

/// Decodes the best audio stream of `path` to 16 kHz planar f32, keeping channels apart.
pub fn decode(path: &Path) -> Result<Pcm, AudioError> {
    decode_as(path, &path.display().to_string())
}

/// [`decode`], with errors naming the file `name` (a bundle's segment by its
/// path relative to the bundle, since errors end up inside the bundle).
pub fn decode_as(path: &Path, name: &str) -> Result<Pcm, AudioError> {
    let err_open = |e: ffmpeg::Error| AudioError::Open {
        path: name.to_string(),
        message: e.to_string(),
    };
    ffmpeg::init().map_err(err_open)?;
    // FFmpeg's own log would print per-packet notices (Opus pre-skip on a
    // segment boundary); real problems come back as errors and are reported.
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    let mut input = ffmpeg::format::input(path).map_err(err_open)?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Audio)
        .ok_or_else(|| AudioError::NoAudio {
            path: name.to_string(),
        })?;
    let index = stream.index();
    let time_base = stream.time_base();
    let dec_err = |e: ffmpeg::Error| AudioError::Decoder {
        path: name.to_string(),
        message: e.to_string(),
    };
    let context =
        ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(dec_err)?;
    let mut decoder = context.decoder().audio().map_err(dec_err)?;
    let channels = usize::from(decoder.channels().max(1));
    let mut layout = decoder.channel_layout();
    if layout.is_empty() {
        layout = ffmpeg::ChannelLayout::default(channels as i32);
    }
    let mut resampler = ffmpeg::software::resampling::Context::get(
        decoder.format(),
        layout,
        decoder.rate(),
        Sample::F32(SampleType::Planar),
        layout,
        RATE,
    )
    .map_err(dec_err)?;

    let mut pcm = Pcm {
        start_ns: 0,
        channels: vec![Vec::new(); channels],
        errors: Vec::new(),
    };
    let mut first_pts: Option<i64> = None;
    let to_ns = |pts: i64| {
        (i128::from(pts) * i128::from(time_base.numerator()) * 1_000_000_000
            / i128::from(time_base.denominator().max(1))) as i64
    };
    let mut frame = ffmpeg::frame::Audio::empty();
    let push = |frame: &mut ffmpeg::frame::Audio,
                pcm: &mut Pcm,
                resampler: &mut ffmpeg::software::resampling::Context| {
        // Decoders of layout-less formats (WAV, mono Opus) leave the frame's
        // layout unset; the resampler insists it matches what it was set up with.
        if frame.channel_layout().is_empty() {
            frame.set_channel_layout(layout);
        }
        let mut out = ffmpeg::frame::Audio::empty();
        match resampler.run(frame, &mut out) {
            Ok(_) => {
                for (c, ch) in pcm.channels.iter_mut().enumerate() {
                    if c < out.planes() {
                        ch.extend_from_slice(&out.plane::<f32>(c)[..out.samples()]);
                    }
                }
            }
            Err(e) => pcm.errors.push(format!("resampling: {e}")),
        }
    };
    for (s, packet) in input.packets() {
        if s.index() != index {
            continue;
        }
        if first_pts.is_none() {
            first_pts = packet.pts();
        }
        if let Err(e) = decoder.send_packet(&packet) {
            pcm.errors
                .push(format!("packet at {:?}: {e}", packet.pts().map(to_ns)));
            continue;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            push(&mut frame, &mut pcm, &mut resampler);
        }
    }
    let _ = decoder.send_eof();
    while decoder.receive_frame(&mut frame).is_ok() {
        push(&mut frame, &mut pcm, &mut resampler);
    }
    pcm.start_ns = first_pts.map(to_ns).unwrap_or(0);
    Ok(pcm)
}

/// Decodes the audio track of every `main` segment of a bundle; the errors
/// name segments by their path relative to the bundle.
pub fn session_audio(bundle: &Bundle, manifest: &Manifest) -> (Vec<Pcm>, Vec<String>) {
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    for s in manifest.segments.iter().filter(|s| s.group == "main") {
        match decode_as(&bundle.dir.join(&s.file), &s.file) {
            Ok(p) => {
                errors.extend(p.errors.iter().map(|e| format!("{}: {e}", s.file)));
                pieces.push(p);
            }
            Err(AudioError::NoAudio { .. }) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    (pieces, errors)
}

/// Places decoded pieces on one timeline starting at session time 0, at 16 kHz.
/// Later pieces overwrite earlier ones where they overlap (segments abut).
pub fn place(pieces: &[Pcm], channels: usize) -> Vec<Vec<f32>> {
    let end = pieces
        .iter()
        .map(|p| ns_to_sample(p.start_ns.max(0)) + p.len())
        .max()
        .unwrap_or(0);
    let mut out = vec![vec![0.0f32; end]; channels];
    for p in pieces {
        let at = ns_to_sample(p.start_ns.max(0));
        for (c, ch) in out.iter_mut().enumerate() {
            if let Some(src) = p.channels.get(c).or(p.channels.first()) {
                ch[at..at + src.len()].copy_from_slice(src);
            }
        }
    }
    out
}

pub fn ns_to_sample(ns: i64) -> usize {
    (ns.max(0) as i128 * i128::from(RATE) / 1_000_000_000) as usize
}

pub fn sample_to_ns(i: usize) -> i64 {
    (i as i128 * 1_000_000_000 / i128::from(RATE)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_land_at_their_times_and_gaps_stay_silent() {
        let a = Pcm {
            start_ns: 0,
            channels: vec![vec![1.0; 16]],
            errors: vec![],
        };
        let b = Pcm {
            start_ns: 2_000_000,
            channels: vec![vec![2.0; 8]],
            errors: vec![],
        }; // sample 32
        let t = place(&[a, b], 1);
        assert_eq!(t[0].len(), 40);
        assert_eq!(t[0][15], 1.0);
        assert_eq!(t[0][16..32], [0.0; 16]);
        assert_eq!(t[0][32], 2.0);
    }

    #[test]
    fn sample_conversions_round_trip() {
        assert_eq!(ns_to_sample(1_000_000_000), 16_000);
        assert_eq!(sample_to_ns(16_000), 1_000_000_000);
        assert_eq!(ns_to_sample(-5), 0);
    }
}
