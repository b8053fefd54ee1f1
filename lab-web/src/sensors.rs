//! Sensor lanes: a bundle's numeric sensor channels (skin conductance,
//! heart rate, ...) as min/max pyramids, built once at import and served
//! pre-aggregated, so a lane of a two-hour 128 Hz stream is drawn from a
//! few kilobytes whatever the zoom.
//!
//! Level 0 cuts session time into buckets of [`BASE_NS`] (1/32 s) from
//! session time 0 and keeps each bucket's minimum and maximum (f32; NaN
//! where no sample fell); each next level merges [`FACTOR`] buckets. A
//! request for `columns` pixel columns over a range reads the coarsest level
//! whose buckets are at most a column wide, only the buckets in the range
//! ([`crate::store::sensors::window`]), and merges them into the columns
//! ([`columns`]).

use std::io::{BufRead, BufReader};
use std::path::Path;

use lab_model::bundle::Manifest;
use lab_model::bundle::sensors::{SampleValues, SensorLine};
use serde::Serialize;

use crate::bundle_files;

/// Level 0's bucket: 1/32 s.
pub const BASE_NS: i64 = 31_250_000;
/// Buckets merged from one level to the next.
pub const FACTOR: i64 = 4;
/// Lanes one session gets (the first channels of its first streams).
pub const MAX_LANES: usize = 32;
/// Channels of one stream that become lanes (an EEG cap is not drawn
/// channel by channel on a review timeline).
pub const MAX_CHANNELS_PER_STREAM: usize = 8;
/// Level 0 covers at most 12 hours; later samples are not drawn.
pub const MAX_BUCKETS: usize = 32 * 3600 * 12;
/// A sensor file larger than this is not read (a 2-hour 128 Hz stream is
/// about 40 MB).
pub const MAX_SENSOR_FILE_BYTES: u64 = 2 << 30;
/// Columns one request may ask for.
pub const MAX_COLUMNS: usize = 4000;

/// What the lane list says of a lane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaneInfo {
    pub lane: i64,
    /// The stream's name (`Shimmer EDA`).
    pub stream: String,
    /// The stream's LSL type (`EDA`, `HR`, ...).
    pub stream_type: String,
    /// The channel's label, or `ch N` where the stream gave none.
    pub channel: String,
    /// Its unit as the sensor said it (`microsiemens`, `bpm`), or empty.
    pub unit: String,
    pub nominal_srate: f64,
    pub samples: i64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// The smallest and largest value (for a lane's scale).
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// `xdf …` for a stream imported from a LabRecorder file, else empty.
    pub origin: String,
}

/// One level of a lane's pyramid: `buckets` pairs of little-endian f32
/// (min, max).
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub level: i64,
    pub bucket_ns: i64,
    pub buckets: i64,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub info: LaneInfo,
    pub levels: Vec<Level>,
}

/// A range drawn in columns: each column's min and max (`None`: no sample).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub lane: i64,
    pub from_ms: i64,
    pub to_ms: i64,
    /// The level's bucket, ms: what one value covers at best.
    pub bucket_ms: f64,
    pub min: Vec<Option<f32>>,
    pub max: Vec<Option<f32>>,
}

struct Building {
    info: LaneInfo,
    mins: Vec<f32>,
    maxs: Vec<f32>,
}

impl Building {
    fn add(&mut self, t_ns: i64, v: f64) {
        if t_ns < 0 || !v.is_finite() {
            return;
        }
        let b = (t_ns / BASE_NS) as usize;
        if b >= MAX_BUCKETS {
            return;
        }
        if b >= self.mins.len() {
            self.mins.resize(b + 1, f32::NAN);
            self.maxs.resize(b + 1, f32::NAN);
        }
        let x = v as f32;
        // f32::min and max take the number over NaN (an empty bucket).
        self.mins[b] = self.mins[b].min(x);
        self.maxs[b] = self.maxs[b].max(x);
        let i = &mut self.info;
        i.samples += 1;
        let ms = t_ns / 1_000_000;
        i.first_ms = Some(i.first_ms.map_or(ms, |f| f.min(ms)));
        i.last_ms = Some(i.last_ms.map_or(ms, |l| l.max(ms)));
        i.min = Some(i.min.map_or(v, |m| m.min(v)));
        i.max = Some(i.max.map_or(v, |m| m.max(v)));
    }
}

fn encode(mins: &[f32], maxs: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mins.len() * 8);
    for (a, b) in mins.iter().zip(maxs) {
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
    out
}

/// Level 0 and the merged levels above it, up to one bucket.
pub fn pyramid(mut mins: Vec<f32>, mut maxs: Vec<f32>) -> Vec<Level> {
    let mut levels = Vec::new();
    let mut bucket_ns = BASE_NS;
    let mut level = 0;
    loop {
        levels.push(Level {
            level,
            bucket_ns,
            buckets: mins.len() as i64,
            data: encode(&mins, &maxs),
        });
        if mins.len() <= 1 {
            return levels;
        }
        let merge = |v: &[f32], pick: fn(f32, f32) -> f32| -> Vec<f32> {
            v.chunks(FACTOR as usize)
                .map(|c| c.iter().copied().fold(f32::NAN, pick))
                .collect()
        };
        mins = merge(&mins, f32::min);
        maxs = merge(&maxs, f32::max);
        bucket_ns *= FACTOR;
        level += 1;
    }
}

/// The lanes of a bundle's numeric sensor streams, read through
/// [`bundle_files`]. A stream whose file is missing or unreadable is left
/// out with a warning: the rest of the session still imports.
pub fn read_lanes(dir: &Path, manifest: &Manifest) -> Vec<Lane> {
    let mut lanes: Vec<Lane> = Vec::new();
    for track in &manifest.sensors {
        let s = &track.stream;
        if s.channel_format == "string" || lanes.len() >= MAX_LANES {
            continue;
        }
        let n = s
            .channels
            .len()
            .min(MAX_CHANNELS_PER_STREAM)
            .min(MAX_LANES - lanes.len());
        let mut building: Vec<Building> = (0..n)
            .map(|c| {
                let ch = &s.channels[c];
                Building {
                    info: LaneInfo {
                        lane: (lanes.len() + c) as i64,
                        stream: s.name.clone(),
                        stream_type: s.kind.clone(),
                        channel: if ch.label.is_empty() {
                            format!("ch {}", c + 1)
                        } else {
                            ch.label.clone()
                        },
                        unit: ch.unit.clone(),
                        nominal_srate: s.nominal_srate,
                        samples: 0,
                        first_ms: None,
                        last_ms: None,
                        min: None,
                        max: None,
                        origin: s.origin.clone(),
                    },
                    mins: Vec::new(),
                    maxs: Vec::new(),
                }
            })
            .collect();
        if let Err(e) = read_file(dir, &s.file, &mut building) {
            tracing::warn!("{}/{}: {e}; its lanes are left out", dir.display(), s.file);
            continue;
        }
        for b in building {
            let levels = pyramid(b.mins, b.maxs);
            lanes.push(Lane {
                info: b.info,
                levels,
            });
        }
    }
    lanes
}

fn read_file(dir: &Path, rel: &str, lanes: &mut [Building]) -> anyhow::Result<()> {
    let (file, size) = bundle_files::open(dir, rel)?;
    anyhow::ensure!(
        size <= MAX_SENSOR_FILE_BYTES,
        "{size} bytes, more than {MAX_SENSOR_FILE_BYTES}"
    );
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        // A torn last line (a killed recorder) or a line of another kind
        // is passed over.
        let Ok(SensorLine::Samples {
            t_ns,
            v: SampleValues::Numbers(rows),
            ..
        }) = serde_json::from_str::<SensorLine>(line.trim_end())
        else {
            continue;
        };
        for (t, row) in t_ns.iter().zip(&rows) {
            for (b, v) in lanes.iter_mut().zip(row) {
                if let Some(v) = v {
                    b.add(*t, *v);
                }
            }
        }
    }
}

/// The level to read for `columns` columns over `span_ns`: the coarsest
/// whose buckets are at most a column wide (level 0 when even it is wider).
pub fn pick_level(levels: &[(i64, i64)], span_ns: i64, columns: usize) -> i64 {
    let per_column = span_ns / columns.max(1) as i64;
    levels
        .iter()
        .filter(|(_, bucket_ns)| *bucket_ns <= per_column)
        .map(|(level, _)| *level)
        .max()
        .unwrap_or(0)
}

/// Merges the buckets `data` holds (the first is bucket `first` of a level
/// of `bucket_ns`) into `columns` columns over `from_ns..to_ns`.
pub fn columns(
    data: &[u8],
    first: i64,
    bucket_ns: i64,
    from_ns: i64,
    to_ns: i64,
    columns: usize,
) -> (Vec<Option<f32>>, Vec<Option<f32>>) {
    let n = columns.max(1);
    let mut mins = vec![f32::NAN; n];
    let mut maxs = vec![f32::NAN; n];
    let span = (to_ns - from_ns).max(1) as f64;
    for (k, pair) in data.chunks_exact(8).enumerate() {
        let lo = f32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]);
        let hi = f32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]);
        if lo.is_nan() {
            continue;
        }
        // The bucket's middle decides its column.
        let mid = (first + k as i64) as f64 * bucket_ns as f64 + bucket_ns as f64 / 2.0;
        let c = ((mid - from_ns as f64) / span * n as f64).floor();
        if c < 0.0 || c >= n as f64 {
            continue;
        }
        let c = c as usize;
        mins[c] = mins[c].min(lo);
        maxs[c] = maxs[c].max(hi);
    }
    let opt = |v: Vec<f32>| v.into_iter().map(|x| (!x.is_nan()).then_some(x)).collect();
    (opt(mins), opt(maxs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(l: &Level) -> Vec<(f32, f32)> {
        l.data
            .chunks_exact(8)
            .map(|p| {
                (
                    f32::from_le_bytes(p[..4].try_into().unwrap()),
                    f32::from_le_bytes(p[4..].try_into().unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn the_pyramid_keeps_every_extreme() {
        let mut b = Building {
            info: LaneInfo {
                lane: 0,
                stream: "EDA".into(),
                stream_type: "EDA".into(),
                channel: "EDA".into(),
                unit: "microsiemens".into(),
                nominal_srate: 128.0,
                samples: 0,
                first_ms: None,
                last_ms: None,
                min: None,
                max: None,
                origin: String::new(),
            },
            mins: Vec::new(),
            maxs: Vec::new(),
        };
        // 100 s at 128 Hz: a slow sine, one spike, a 10 s hole.
        let mut spike = 0;
        for i in 0..12_800i64 {
            let t = i * 1_000_000_000 / 128;
            if (40_000_000_000..50_000_000_000).contains(&t) {
                continue;
            }
            let v = if i == 7_000 {
                spike = t;
                9.0
            } else {
                2.0 + (i as f64 / 500.0).sin()
            };
            b.add(t, v);
        }
        b.add(-5, 100.0); // before the session: not drawn
        assert_eq!(b.info.samples, 12_800 - 1_280);
        assert_eq!(b.info.max, Some(9.0));
        let levels = pyramid(b.mins, b.maxs);
        assert_eq!(levels[0].buckets, 3200);
        assert_eq!(levels.last().unwrap().buckets, 1);
        for l in &levels {
            let d = decode(l);
            let top = d.iter().map(|p| p.1).fold(f32::NAN, f32::max);
            assert_eq!(top, 9.0, "level {}", l.level);
            let at = (spike / l.bucket_ns) as usize;
            assert_eq!(d[at].1, 9.0, "the spike's bucket at level {}", l.level);
        }
        // The hole stays empty at level 0.
        let d = decode(&levels[0]);
        assert!(d[(45_000_000_000 / BASE_NS) as usize].0.is_nan());

        // 100 s in 200 columns of 500 ms: level 2 (500 ms buckets).
        let table: Vec<(i64, i64)> = levels.iter().map(|l| (l.level, l.bucket_ns)).collect();
        let lvl = pick_level(&table, 100_000_000_000, 200);
        assert_eq!(lvl, 2, "{table:?}");
        let l = &levels[lvl as usize];
        let (mins, maxs) = columns(&l.data, 0, l.bucket_ns, 0, 100_000_000_000, 200);
        assert_eq!(maxs.iter().flatten().copied().fold(f32::NAN, f32::max), 9.0);
        // Columns 80-99 cover the hole.
        assert!(mins[81..99].iter().all(Option::is_none));
        assert!(mins[10].is_some());
        // A window inside: only its buckets.
        let (from, to) = (spike - 1_000_000_000, spike + 1_000_000_000);
        let first = from / BASE_NS;
        let last = to / BASE_NS;
        let (_, maxs) = columns(
            &levels[0].data[first as usize * 8..(last as usize + 1) * 8],
            first,
            BASE_NS,
            from,
            to,
            64,
        );
        assert_eq!(maxs.iter().flatten().copied().fold(f32::NAN, f32::max), 9.0);
        assert_eq!(maxs.iter().filter(|m| m.is_some()).count(), 64);
    }
}
