//! Web renditions for the review app: each segment group's Matroska
//! segments remuxed (no re-encode) into one fragmented MP4 (H.264 + Opus,
//! which Chromium plays and Media Source Extensions accept), keeping session
//! timestamps; and waveform peaks of the audio.
//!
//! A truncated last segment is copied up to its last readable packet; what
//! could not be read is listed in `renditions.json` and the QA report.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use lab_model::analysis::ANALYSIS_DIR;
use lab_model::bundle::write_atomic;
use lab_model::{Bundle, Manifest};
use serde::{Deserialize, Serialize};

use crate::audio;

/// Peaks per second in `peaks.json`: enough for a zoomable waveform lane.
pub const PEAKS_PER_SECOND: usize = 50;
/// One screen thumbnail per this many seconds, for the timeline's film strip.
pub const THUMB_EVERY_NS: i64 = 10_000_000_000;
pub const THUMB_SIZE: (u32, u32) = (160, 90);

#[derive(Debug, Serialize, Deserialize)]
pub struct Video {
    pub track: String,
    /// Path relative to the bundle.
    pub file: String,
    pub frames: u64,
    pub expected_frames: u64,
    pub start_ns: i64,
    pub end_ns: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Thumbnail {
    pub t_ns: i64,
    /// JPEG, path relative to the bundle.
    pub file: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Renditions {
    pub format_version: u32,
    pub videos: Vec<Video>,
    #[serde(default)]
    pub thumbnails: Vec<Thumbnail>,
    /// `peaks.json`: max |sample| per 1/PEAKS_PER_SECOND s, 0-255, from session time 0.
    pub peaks: Option<String>,
    pub errors: Vec<String>,
}

pub fn build(bundle: &Bundle, manifest: &Manifest) -> anyhow::Result<String> {
    ffmpeg::init()?;
    let web = bundle.dir.join(ANALYSIS_DIR).join("web");
    std::fs::create_dir_all(&web)?;
    let mut out = Renditions {
        format_version: 1,
        videos: vec![],
        thumbnails: vec![],
        peaks: None,
        errors: vec![],
    };
    for track in manifest.tracks.iter().filter(|t| t.framerate.is_some()) {
        let group = &track.groups[0];
        let files: Vec<_> = manifest
            .segments
            .iter()
            .filter(|s| &s.group == group)
            .map(|s| bundle.dir.join(&s.file))
            .collect();
        if files.is_empty() {
            continue;
        }
        if track.id == "screen" {
            let dir = web.join("thumbs");
            std::fs::create_dir_all(&dir)?;
            out.thumbnails = thumbnails(&files, &dir, &mut out.errors)
                .into_iter()
                .map(|(t_ns, name)| Thumbnail {
                    t_ns,
                    file: format!("{ANALYSIS_DIR}/web/thumbs/{name}"),
                })
                .collect();
        }
        let name = format!("{}.mp4", track.id);
        let tmp = web.join(format!("{name}.tmp"));
        match remux(&files, &tmp, &mut out.errors) {
            Ok((frames, start, end)) => {
                std::fs::rename(&tmp, web.join(&name))?;
                let fps = u64::from(track.framerate.unwrap_or(30));
                out.videos.push(Video {
                    track: track.id.clone(),
                    file: format!("{ANALYSIS_DIR}/web/{name}"),
                    frames,
                    expected_frames: ((end - start).max(0) as u64 * fps).div_ceil(1_000_000_000),
                    start_ns: start,
                    end_ns: end,
                });
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                out.errors.push(format!("{}: {e:#}", track.id));
            }
        }
    }
    // Audio decode problems go into renditions.json, where the QA stage reads them.
    let (pieces, audio_errors) = crate::bundle_run::session_audio(bundle, manifest);
    out.errors.extend(audio_errors);
    if !pieces.is_empty() {
        let channels = pieces.iter().map(|p| p.channels.len()).max().unwrap_or(1);
        let timeline = audio::place(&pieces, channels);
        let bytes = serde_json::to_vec(&serde_json::json!({
            "per_second": PEAKS_PER_SECOND,
            "channels": timeline.iter().map(|c| peaks(c)).collect::<Vec<_>>(),
        }))?;
        write_atomic(&web.join("peaks.json"), &bytes)?;
        out.peaks = Some(format!("{ANALYSIS_DIR}/web/peaks.json"));
    }
    let summary = format!(
        "ok: {} videos, {} thumbnails, {} errors",
        out.videos.len(),
        out.thumbnails.len(),
        out.errors.len()
    );
    write_atomic(
        &web.join("renditions.json"),
        &serde_json::to_vec_pretty(&out)?,
    )?;
    Ok(summary)
}

/// Max absolute amplitude per peak bucket, scaled to 0-255.
pub fn peaks(samples: &[f32]) -> Vec<u8> {
    let bucket = audio::RATE as usize / PEAKS_PER_SECOND;
    samples
        .chunks(bucket)
        .map(|c| (c.iter().fold(0.0f32, |m, s| m.max(s.abs())).min(1.0) * 255.0).round() as u8)
        .collect()
}

/// A JPEG thumbnail of the first frame at or after every `THUMB_EVERY_NS`;
/// returns (session time, file name). Undecodable stretches are skipped and noted.
fn thumbnails(
    inputs: &[std::path::PathBuf],
    dir: &Path,
    errors: &mut Vec<String>,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut next = 0i64;
    for path in inputs {
        if let Err(e) = thumbnails_of(path, dir, &mut next, &mut out) {
            errors.push(format!("thumbnails of {}: {e}", path.display()));
        }
    }
    out
}

fn thumbnails_of(
    path: &Path,
    dir: &Path,
    next: &mut i64,
    out: &mut Vec<(i64, String)>,
) -> Result<(), ffmpeg::Error> {
    use ffmpeg::format::Pixel;
    let mut ictx = ffmpeg::format::input(path)?;
    let stream = ictx
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or(ffmpeg::Error::StreamNotFound)?;
    let (index, tb) = (stream.index(), stream.time_base());
    let mut decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())?
        .decoder()
        .video()?;
    let mut scaler = None;
    let mut frame = ffmpeg::frame::Video::empty();
    let mut take =
        |frame: &ffmpeg::frame::Video, out: &mut Vec<(i64, String)>| -> Result<(), ffmpeg::Error> {
            let Some(pts) = frame.pts() else {
                return Ok(());
            };
            let ns = (i128::from(pts) * i128::from(tb.numerator()) * 1_000_000_000
                / i128::from(tb.denominator().max(1))) as i64;
            if ns < *next {
                return Ok(());
            }
            let scaler = match &mut scaler {
                Some(s) => s,
                None => scaler.insert(ffmpeg::software::scaling::Context::get(
                    frame.format(),
                    frame.width(),
                    frame.height(),
                    Pixel::YUVJ420P,
                    THUMB_SIZE.0,
                    THUMB_SIZE.1,
                    ffmpeg::software::scaling::Flags::BILINEAR,
                )?),
            };
            let mut small = ffmpeg::frame::Video::empty();
            scaler.run(frame, &mut small)?;
            let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG)
                .ok_or(ffmpeg::Error::EncoderNotFound)?;
            let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
                .encoder()
                .video()?;
            enc.set_width(THUMB_SIZE.0);
            enc.set_height(THUMB_SIZE.1);
            enc.set_format(Pixel::YUVJ420P);
            enc.set_time_base((1, 30));
            let mut enc = enc.open_as(codec)?;
            small.set_pts(Some(0));
            enc.send_frame(&small)?;
            enc.send_eof()?;
            let mut packet = ffmpeg::Packet::empty();
            enc.receive_packet(&mut packet)?;
            let name = format!("{:06}.jpg", ns / 1_000_000_000);
            std::fs::write(dir.join(&name), packet.data().unwrap_or_default())
                .map_err(|_| ffmpeg::Error::Exit)?;
            out.push((ns, name));
            *next = (ns / THUMB_EVERY_NS + 1) * THUMB_EVERY_NS;
            Ok(())
        };
    for (s, packet) in ictx.packets() {
        if s.index() != index || decoder.send_packet(&packet).is_err() {
            continue;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            take(&frame, out)?;
        }
    }
    let _ = decoder.send_eof();
    while decoder.receive_frame(&mut frame).is_ok() {
        take(&frame, out)?;
    }
    Ok(())
}

/// Copies every packet of `inputs` (same stream layout) into one fragmented
/// MP4; returns (video packets, first and last video time in ns).
fn remux(
    inputs: &[std::path::PathBuf],
    out_path: &Path,
    errors: &mut Vec<String>,
) -> anyhow::Result<(u64, i64, i64)> {
    let first = ffmpeg::format::input(&inputs[0])?;
    let mut octx = ffmpeg::format::output_as(out_path, "mp4")?;
    let mut video_index = None;
    for (i, ist) in first.streams().enumerate() {
        let mut ost = octx.add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))?;
        ost.set_parameters(ist.parameters());
        // SAFETY: the parameters pointer is valid for the stream we just added;
        // a Matroska codec tag means nothing to MP4, so let the muxer choose.
        unsafe {
            (*ost.parameters().as_mut_ptr()).codec_tag = 0;
        }
        if ist.parameters().medium() == ffmpeg::media::Type::Video && video_index.is_none() {
            video_index = Some(i);
        }
    }
    let nstreams = first.streams().count();
    drop(first);
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
    octx.write_header_with(opts)?;
    let out_tb: Vec<_> = (0..nstreams)
        .map(|i| octx.stream(i).map(|s| s.time_base()))
        .collect();
    let (mut frames, mut start, mut end) = (0u64, i64::MAX, 0i64);
    for path in inputs {
        let mut ictx = match ffmpeg::format::input(path) {
            Ok(i) => i,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let tbs: Vec<_> = ictx.streams().map(|s| s.time_base()).collect();
        let mut iter = ictx.packets();
        loop {
            let (stream, mut packet) = match iter.next() {
                Some(p) => p,
                None => break,
            };
            let i = stream.index();
            let Some(Some(otb)) = out_tb.get(i) else {
                continue;
            };
            if Some(i) == video_index {
                frames += 1;
                if let Some(pts) = packet.pts() {
                    let tb = tbs[i];
                    let ns = (i128::from(pts) * i128::from(tb.numerator()) * 1_000_000_000
                        / i128::from(tb.denominator().max(1))) as i64;
                    start = start.min(ns);
                    end = end.max(ns);
                }
            }
            packet.rescale_ts(tbs[i], *otb);
            packet.set_position(-1);
            packet.set_stream(i);
            if let Err(e) = packet.write_interleaved(&mut octx) {
                errors.push(format!("{}: packet dropped: {e}", path.display()));
            }
        }
    }
    octx.write_trailer()?;
    Ok((frames, if start == i64::MAX { 0 } else { start }, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_bucket_maxima() {
        let mut s = vec![0.0f32; 960];
        s[10] = -0.5;
        s[700] = 2.0;
        assert_eq!(peaks(&s), vec![128, 0, 255]);
    }
}
