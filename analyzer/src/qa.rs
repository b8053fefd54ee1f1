//! The QA report (`analysis/qa.json`): what the manifest promises against
//! what the renditions stage could read. Pure: manifest and renditions in,
//! report out; every path in it is relative to the bundle.

use lab_model::Manifest;
use lab_model::analysis::{ANALYSIS_FORMAT_VERSION, QaReport, Renditions, ShortSegment};

/// How far a segment's video may end before the manifest's `end_ns` without
/// being reported: a keyframe-split segment's last frame ends within a frame
/// or two of it, and a recovered one ends where its packets end.
pub const QA_SHORT_TOLERANCE_NS: i64 = 250_000_000;

/// The QA report: what the manifest promises against what the renditions
/// stage could read. Expected media comes from the manifest (segment bounds
/// and the track's framerate), never from what happened to decode.
pub fn qa_report(
    manifest: &Manifest,
    renditions: &Renditions,
    transcript_status: String,
    events_torn: u64,
) -> QaReport {
    use lab_model::time::format_session_time as t;
    let mut issues: Vec<String> = renditions.errors.clone();
    for g in &manifest.gaps {
        issues.push(format!(
            "{} had no media from {} to {}: {}",
            g.track,
            t(g.start_ns),
            g.end_ns.map_or("the end".into(), t),
            g.reason
        ));
    }
    let mut short_segments = Vec::new();
    for track in manifest.tracks.iter().filter(|t| t.framerate.is_some()) {
        let Some(group) = track.groups.first() else {
            continue;
        };
        for s in manifest.segments.iter().filter(|s| &s.group == group) {
            // An open segment of a bundle nobody recovered has no end to compare with;
            // it is listed under recovered_segments.
            let Some(expected_end) = s.end_ns else {
                continue;
            };
            let media = renditions
                .segments
                .iter()
                .find(|m| m.track == track.id && m.file == s.file);
            let media_end = media.and_then(|m| m.end_ns);
            let missing = expected_end - media_end.unwrap_or(s.start_ns).max(s.start_ns);
            if missing > QA_SHORT_TOLERANCE_NS {
                issues.push(format!(
                    "{} ({}): media ends at {}, the manifest says {}: {:.2} s missing",
                    s.file,
                    track.id,
                    media_end.map_or("its start (nothing readable)".into(), t),
                    t(expected_end),
                    missing as f64 / 1e9
                ));
                short_segments.push(ShortSegment {
                    track: track.id.clone(),
                    file: s.file.clone(),
                    expected_end_ns: expected_end,
                    media_end_ns: media_end,
                    missing_ns: missing,
                });
            }
        }
    }
    QaReport {
        format_version: ANALYSIS_FORMAT_VERSION,
        status: match manifest.status {
            lab_model::SessionStatus::Recording => {
                "interrupted (recorder died; run `lab-recorder recover`)".into()
            }
            other => format!("{other:?}").to_lowercase(),
        },
        clock_uncertainty_ms: manifest
            .clock
            .clients
            .iter()
            .map(|c| (c.client.clone(), c.uncertainty_ns as f64 / 1e6))
            .collect(),
        gaps: manifest.gaps.clone(),
        recovered_segments: manifest
            .segments
            .iter()
            // Open segments of a bundle nobody recovered were cut off just the same.
            .filter(|s| s.state != lab_model::SegmentState::Closed)
            .map(|s| s.file.clone())
            .collect(),
        // The renditions stage read every segment already and kept what failed.
        decode_errors: renditions.errors.clone(),
        frames: renditions
            .videos
            .iter()
            .map(|v| (v.track.clone(), v.frames, v.expected_frames))
            .collect(),
        short_segments,
        issues,
        events_rejected: manifest.events.rejected,
        events_torn,
        transcript_status,
    }
}
