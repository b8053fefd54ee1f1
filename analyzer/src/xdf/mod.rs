//! XDF files (Lab Streaming Layer's recording format, written by
//! LabRecorder): [`read`] parses them, [`sync`] applies pyxdf's clock
//! synchronisation and dejittering, [`import`] puts their streams into a
//! session bundle on the session clock (`lab-analyze import-xdf`).

pub mod import;
pub mod read;
pub mod sync;

use serde_json::{Value, json};

/// What `lab-analyze xdf-info --json` prints: each stream with its
/// synchronised stamps (what `tests/tests/xdf.rs` compares with pyxdf).
pub fn describe(file: &read::XdfFile, reports: &[sync::SyncReport], stamps: bool) -> Value {
    let streams: Vec<Value> = file
        .streams
        .iter()
        .zip(reports)
        .map(|(s, r)| {
            let mut v = json!({
                "id": s.id,
                "name": s.name,
                "type": s.kind,
                "channel_count": s.channel_count,
                "channel_format": s.channel_format,
                "nominal_srate": s.nominal_srate,
                "samples": s.samples(),
                "clock_offsets": s.clock_times.len(),
                "clock_ranges": r.clock_ranges,
                "segments": r.segments,
                "truncated": r.truncated,
                "first": s.stamps.first(),
                "last": s.stamps.last(),
            });
            if stamps {
                v["time_stamps"] = json!(s.stamps);
            }
            v
        })
        .collect();
    json!({ "streams": streams, "skipped_chunks": file.skipped_chunks })
}

/// `lab-analyze xdf-info`.
pub fn info_command(path: &std::path::Path, as_json: bool) -> anyhow::Result<()> {
    let mut file = read::read_xdf(path)?;
    let reports = sync::synchronize(&mut file.streams);
    if as_json {
        println!("{}", describe(&file, &reports, true));
        return Ok(());
    }
    for (s, r) in file.streams.iter().zip(&reports) {
        println!(
            "stream {} «{}» type {:?}: {} × {} at {} Hz, {} samples ({:.3}–{:.3} s), {} clock offsets in {} range(s), {} segment(s){}",
            s.id,
            s.name,
            s.kind,
            s.channel_count,
            s.channel_format,
            s.nominal_srate,
            s.samples(),
            s.stamps.first().copied().unwrap_or(f64::NAN),
            s.stamps.last().copied().unwrap_or(f64::NAN),
            s.clock_times.len(),
            r.clock_ranges,
            r.segments.len(),
            if r.truncated {
                ", corrupt last offset dropped"
            } else {
                ""
            }
        );
    }
    if file.skipped_chunks > 0 {
        println!("{} damaged chunk(s) skipped", file.skipped_chunks);
    }
    Ok(())
}

/// `lab-analyze import-xdf`.
pub fn import_command(
    path: &std::path::Path,
    bundle: &std::path::Path,
    align: import::Align,
) -> anyhow::Result<()> {
    let r = import::import_xdf(path, bundle, align)?;
    println!(
        "{}: session time 0 is {:.6} s on the file's clock ({:?} alignment)",
        path.display(),
        r.zero_s,
        align
    );
    if let Some(s) = r.stop_marker_s {
        println!(
            "the stop marker is at session time {s:.3} s (the recording ended at {:.3} s)",
            r.duration_s.unwrap_or(f64::NAN)
        );
    }
    for s in &r.streams {
        println!(
            "{} → {}: {} samples in the session ({} before it, {} after it left out), {} clock range(s), {} segment(s){}",
            s.name,
            s.file,
            s.samples,
            s.before_session,
            s.after_session,
            s.sync.clock_ranges,
            s.sync.segments.len(),
            s.sync
                .fit_residual_s
                .map(|x| format!(", offsets fit to {:.3} ms", x * 1e3))
                .unwrap_or_default()
        );
    }
    println!("{} marker event(s) added", r.marker_events);
    if r.skipped_chunks > 0 {
        println!("{} damaged chunk(s) skipped", r.skipped_chunks);
    }
    Ok(())
}
