//! Web renditions for the review app: each segment group's Matroska
//! segments remuxed (no re-encode) into one fragmented MP4 (H.264 + Opus,
//! which Chromium plays and Media Source Extensions accept), keeping session
//! timestamps; and waveform peaks of the audio.
//!
//! A truncated last segment is copied up to its last readable packet; what
//! could not be read is listed in `renditions.json` and the QA report.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use lab_model::analysis::{
    ANALYSIS_FORMAT_VERSION, AnalysisDoc, Peaks, RenditionVideo, Renditions, SegmentMedia,
    THUMBS_DIR, Thumbnail, WEB_DIR, thumbnail_file, thumbnail_name, video_file,
};
use lab_model::{Bundle, Manifest};

use crate::audio;

/// Peaks per second in `peaks.json`: enough for a zoomable waveform lane.
pub const PEAKS_PER_SECOND: usize = 50;
/// One screen thumbnail per this many seconds, for the timeline's film strip.
pub const THUMB_EVERY_NS: i64 = 10_000_000_000;
pub const THUMB_SIZE: (u32, u32) = (160, 90);

pub fn build(bundle: &Bundle, manifest: &Manifest) -> anyhow::Result<String> {
    ffmpeg::init()?;
    let web = bundle.dir.join(WEB_DIR);
    std::fs::create_dir_all(&web)?;
    let mut out = Renditions {
        format_version: ANALYSIS_FORMAT_VERSION,
        videos: vec![],
        thumbnails: vec![],
        peaks: None,
        errors: vec![],
        segments: vec![],
    };
    for track in manifest.tracks.iter().filter(|t| t.framerate.is_some()) {
        let Some(group) = track.groups.first() else {
            continue;
        };
        let segments: Vec<_> = manifest
            .segments
            .iter()
            .filter(|s| &s.group == group)
            .collect();
        if segments.is_empty() {
            continue;
        }
        let files: Vec<_> = segments
            .iter()
            .map(|s| (s.file.clone(), bundle.dir.join(&s.file)))
            .collect();
        if track.id == "screen" {
            let dir = bundle.dir.join(THUMBS_DIR);
            std::fs::create_dir_all(&dir)?;
            out.thumbnails = thumbnails(&files, &dir, &mut out.errors)
                .into_iter()
                .map(|(t_ns, name)| Thumbnail {
                    t_ns,
                    file: thumbnail_file(&name),
                })
                .collect();
        }
        let fps = track.framerate.unwrap_or(30);
        // What the manifest promises, not what happened to decode: a truncated
        // segment must show up as missing frames.
        let expected_frames = segments
            .iter()
            .filter_map(|s| Some(expected_frames(s.end_ns? - s.start_ns, fps)))
            .sum();
        let file = video_file(&track.id);
        let tmp = bundle.dir.join(format!("{file}.tmp"));
        // The muxer opens its output by name: a link planted there is removed
        // first, so the output is a new file in the bundle.
        let _ = std::fs::remove_file(&tmp);
        match remux(&files, &tmp, fps, &mut out.errors) {
            Ok(r) => {
                std::fs::rename(&tmp, bundle.dir.join(&file))?;
                out.videos.push(RenditionVideo {
                    track: track.id.clone(),
                    file,
                    frames: r.frames,
                    expected_frames,
                    start_ns: r.start_ns,
                    end_ns: r.end_ns,
                });
                out.segments.extend(r.segments.into_iter().map(|mut m| {
                    m.track = track.id.clone();
                    m
                }));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                out.errors.push(format!("{}: {e:#}", track.id));
            }
        }
    }
    // Audio decode problems go into renditions.json, where the QA stage reads them.
    let (pieces, audio_errors) = audio::session_audio(bundle, manifest);
    out.errors.extend(audio_errors);
    if !pieces.is_empty() {
        let channels = pieces.iter().map(|p| p.channels.len()).max().unwrap_or(1);
        let timeline = audio::place(&pieces, channels);
        let peaks = Peaks {
            per_second: PEAKS_PER_SECOND as u32,
            channels: timeline.iter().map(|c| peaks(c)).collect(),
        };
        peaks.write(&bundle.dir)?;
        out.peaks = Some(<Peaks as AnalysisDoc>::FILE.relative_path().to_string());
    }
    let summary = format!(
        "ok: {} videos, {} thumbnails, {} errors",
        out.videos.len(),
        out.thumbnails.len(),
        out.errors.len()
    );
    out.write(&bundle.dir)?;
    Ok(summary)
}

/// Frames in `duration_ns` of video at `fps`, rounded to the nearest frame
/// (a negative duration has none).
pub fn expected_frames(duration_ns: i64, fps: u32) -> u64 {
    let frames = (i128::from(duration_ns.max(0)) * i128::from(fps) + 500_000_000) / 1_000_000_000;
    u64::try_from(frames).unwrap_or(u64::MAX)
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
    inputs: &[(String, std::path::PathBuf)],
    dir: &Path,
    errors: &mut Vec<String>,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut next = 0i64;
    for (file, path) in inputs {
        if let Err(e) = thumbnails_of(path, dir, &mut next, &mut out) {
            errors.push(format!("thumbnails of {file}: {e}"));
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
            let name = thumbnail_name(ns);
            lab_model::bundle::write_fresh(&dir.join(&name), packet.data().unwrap_or_default())
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

/// What [`remux`] copied.
struct Remuxed {
    frames: u64,
    start_ns: i64,
    end_ns: i64,
    /// One per input, `track` left empty for the caller.
    segments: Vec<SegmentMedia>,
}

/// A packet or stream time in session nanoseconds.
fn ts_ns(ts: i64, tb: ffmpeg::Rational) -> i64 {
    let ns = i128::from(ts) * i128::from(tb.numerator()) * 1_000_000_000
        / i128::from(tb.denominator().max(1));
    ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Consecutive read errors after which a file is given up on.
const MAX_READ_ERRORS: u32 = 32;

/// Copies every packet of `inputs` ((file relative to the bundle, path); same
/// stream layout) into one fragmented MP4, and notes per input how far its
/// video packets reach (`fps` gives a packet without a duration one frame).
fn remux(
    inputs: &[(String, std::path::PathBuf)],
    out_path: &Path,
    fps: u32,
    errors: &mut Vec<String>,
) -> anyhow::Result<Remuxed> {
    let first =
        ffmpeg::format::input(&inputs[0].1).map_err(|e| anyhow::anyhow!("{}: {e}", inputs[0].0))?;
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
    let frame_ns = 1_000_000_000 / i64::from(fps.max(1));
    let mut out = Remuxed {
        frames: 0,
        start_ns: i64::MAX,
        end_ns: 0,
        segments: Vec::new(),
    };
    for (file, path) in inputs {
        let mut seg = SegmentMedia {
            track: String::new(),
            file: file.clone(),
            frames: 0,
            first_ns: None,
            end_ns: None,
            error: None,
        };
        let mut ictx = match ffmpeg::format::input(path) {
            Ok(i) => i,
            Err(e) => {
                errors.push(format!("{file}: {e}"));
                seg.error = Some(e.to_string());
                out.segments.push(seg);
                continue;
            }
        };
        let tbs: Vec<_> = ictx.streams().map(|s| s.time_base()).collect();
        let mut failures = 0;
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut ictx) {
                Ok(()) => failures = 0,
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => {
                    // A damaged cluster may be skipped; many in a row is the end.
                    failures += 1;
                    if failures >= MAX_READ_ERRORS {
                        let at = seg.end_ns.map_or("its start".into(), |t| {
                            lab_model::time::format_session_time(t)
                        });
                        errors.push(format!("{file}: reading stopped after {at}: {e}"));
                        seg.error = Some(format!("reading stopped after {at}: {e}"));
                        break;
                    }
                    continue;
                }
            }
            let i = packet.stream();
            // A later segment with more streams than the first: its extras have no output.
            let (Some(Some(otb)), Some(&tb)) = (out_tb.get(i), tbs.get(i)) else {
                continue;
            };
            if Some(i) == video_index {
                out.frames += 1;
                seg.frames += 1;
                if let Some(pts) = packet.pts() {
                    let ns = ts_ns(pts, tb);
                    let dur = match ts_ns(packet.duration(), tb) {
                        d if d > 0 => d,
                        _ => frame_ns,
                    };
                    out.start_ns = out.start_ns.min(ns);
                    out.end_ns = out.end_ns.max(ns);
                    seg.first_ns = Some(seg.first_ns.map_or(ns, |f| f.min(ns)));
                    let end = ns.saturating_add(dur);
                    seg.end_ns = Some(seg.end_ns.map_or(end, |e| e.max(end)));
                }
            }
            packet.rescale_ts(tb, *otb);
            packet.set_position(-1);
            packet.set_stream(i);
            if let Err(e) = packet.write_interleaved(&mut octx) {
                errors.push(format!("{file}: packet dropped: {e}"));
            }
        }
        out.segments.push(seg);
    }
    octx.write_trailer()?;
    if out.start_ns == i64::MAX {
        out.start_ns = 0;
    }
    Ok(out)
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

    #[test]
    fn expected_frames_come_from_duration_and_rate() {
        assert_eq!(expected_frames(2_000_000_000, 30), 60);
        assert_eq!(expected_frames(1_990_000_000, 30), 60);
        assert_eq!(expected_frames(-5, 30), 0);
        assert_eq!(expected_frames(i64::MAX, 1000), 9_223_372_036_855);
    }
}
