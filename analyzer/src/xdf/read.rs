//! Reading XDF 1.0/1.1 files (LabRecorder's format), written from the
//! specification (<https://github.com/sccn/xdf/wiki/Specifications>):
//!
//! ```text
//! "XDF:"  then chunks:  [NumLengthBytes u8 = 1|4|8][Length][Tag u16][Content]
//!   1 FileHeader    XML
//!   2 StreamHeader  [StreamId u32] XML (<info>: name, type, channel_count,
//!                   nominal_srate, channel_format, desc/channels/channel)
//!   3 Samples       [StreamId u32][NumSampleBytes u8][NumSamples]
//!                   per sample: [TimeStampBytes u8 = 0|8][TimeStamp f64]
//!                   then the values, little-endian (a string is
//!                   [NumLengthBytes][Length][bytes])
//!   4 ClockOffset   [StreamId u32][CollectionTime f64][OffsetValue f64]
//!   5 Boundary      16-byte signature (a reader resynchronises on it)
//!   6 StreamFooter  [StreamId u32] XML (sample_count, clock_offsets)
//! ```
//!
//! A sample without a stamp is the previous one plus 1/nominal_srate (the
//! stream's first previous stamp is 0). A chunk that cannot be parsed (a
//! cut-off file) is skipped up to the next boundary chunk, as pyxdf does;
//! how many were skipped is reported. `.xdfz` and `.xdf.gz` are read
//! through gzip.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use lab_model::bundle::sensors::SensorChannel;

/// A chunk larger than this is refused (LabRecorder writes a chunk every
/// few seconds; a corrupt length must not allocate gigabytes).
pub const MAX_CHUNK_BYTES: u64 = 256 << 20;
/// Values of all streams together a file may hold (8 bytes each in memory).
pub const MAX_VALUES: usize = 200_000_000;
/// Streams one file may hold.
pub const MAX_STREAMS: usize = 256;
/// Channels one stream may declare.
pub const MAX_CHANNELS: usize = 4096;

const BOUNDARY: [u8; 16] = [
    0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4,
];

#[derive(Debug, thiserror::Error)]
pub enum XdfError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{0} is not an XDF file (it does not start with \"XDF:\")")]
    NotXdf(String),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Sample values: numbers (row-major, `channels` a row) or strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Numbers(Vec<f64>),
    Strings(Vec<Vec<String>>),
}

/// One stream as the file holds it: stamps as written (before clock
/// synchronisation), clock offsets as measured by the recording machine.
#[derive(Debug, Clone)]
pub struct XdfStream {
    pub id: u32,
    pub name: String,
    pub kind: String,
    pub channel_count: usize,
    pub nominal_srate: f64,
    /// `int8`, `int16`, `int32`, `int64`, `float32`, `double64` or `string`.
    pub channel_format: String,
    pub source_id: String,
    pub hostname: String,
    pub channels: Vec<SensorChannel>,
    /// `<desc><synchronization><can_drop_samples>true`: not dejittered.
    pub can_drop_samples: bool,
    /// The footer's `sample_count`, when there is a footer.
    pub footer_sample_count: Option<usize>,
    pub stamps: Vec<f64>,
    pub values: Values,
    pub clock_times: Vec<f64>,
    pub clock_values: Vec<f64>,
}

impl XdfStream {
    pub fn samples(&self) -> usize {
        self.stamps.len()
    }

    /// The values of sample `i`.
    pub fn numbers(&self, i: usize) -> Option<&[f64]> {
        match &self.values {
            Values::Numbers(v) => v.get(i * self.channel_count..(i + 1) * self.channel_count),
            Values::Strings(_) => None,
        }
    }
}

/// A read file: its streams in order of appearance and how many damaged
/// chunks were skipped.
#[derive(Debug, Clone)]
pub struct XdfFile {
    pub streams: Vec<XdfStream>,
    pub skipped_chunks: usize,
}

struct Reader<R> {
    r: R,
    pos: u64,
}

impl<R: Read> Reader<R> {
    fn bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0; n];
        self.r.read_exact(&mut b)?;
        self.pos += n as u64;
        Ok(b)
    }

    /// One byte, or `None` at the end of the file.
    fn byte_or_end(&mut self) -> io::Result<Option<u8>> {
        let mut b = [0u8; 1];
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.pos += 1;
                    return Ok(Some(b[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Skips past the next boundary signature; false at the end.
    fn scan_forward(&mut self) -> io::Result<bool> {
        let mut matched = 0;
        while let Some(b) = self.byte_or_end()? {
            if b == BOUNDARY[matched] {
                matched += 1;
                if matched == BOUNDARY.len() {
                    return Ok(true);
                }
            } else {
                matched = usize::from(b == BOUNDARY[0]);
            }
        }
        Ok(false)
    }
}

/// A variable-length integer inside a chunk's bytes.
fn varlen(c: &mut &[u8]) -> Result<u64, String> {
    let n = take(c, 1)?[0];
    let b = take(c, usize::from(n))?;
    match n {
        1 => Ok(u64::from(b[0])),
        4 => Ok(u64::from(u32::from_le_bytes(
            b.try_into().unwrap_or_default(),
        ))),
        8 => Ok(u64::from_le_bytes(b.try_into().unwrap_or_default())),
        _ => Err(format!("invalid variable-length integer ({n} bytes)")),
    }
}

fn take<'a>(c: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if c.len() < n {
        return Err("the chunk ends inside a sample".into());
    }
    let (a, b) = c.split_at(n);
    *c = b;
    Ok(a)
}

fn f64_at(c: &mut &[u8]) -> Result<f64, String> {
    Ok(f64::from_le_bytes(
        take(c, 8)?.try_into().unwrap_or_default(),
    ))
}

fn value_size(format: &str) -> Option<usize> {
    match format {
        "int8" => Some(1),
        "int16" => Some(2),
        "int32" | "float32" => Some(4),
        "int64" | "double64" => Some(8),
        _ => None,
    }
}

fn decode(format: &str, b: &[u8]) -> f64 {
    match format {
        "int8" => f64::from(b[0] as i8),
        "int16" => f64::from(i16::from_le_bytes([b[0], b[1]])),
        "int32" => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "float32" => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "int64" => i64::from_le_bytes(b.try_into().unwrap_or_default()) as f64,
        _ => f64::from_le_bytes(b.try_into().unwrap_or_default()),
    }
}

/// Per-stream state while reading.
struct Building {
    stream: XdfStream,
    last_stamp: f64,
    tdiff: f64,
}

/// Reads an XDF file (gzip-compressed when named `.xdfz` or `.xdf.gz`).
pub fn read_xdf(path: &Path) -> Result<XdfFile, XdfError> {
    let name = path.display().to_string();
    let io_err = |source| XdfError::Io {
        path: name.clone(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let gz = {
        let n = path.to_string_lossy().to_ascii_lowercase();
        n.ends_with(".xdfz") || n.ends_with(".xdf.gz")
    };
    let input: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    read_from(input, &name)
}

/// Reads XDF from any byte source (`name` is for messages).
pub fn read_from(input: impl Read, name: &str) -> Result<XdfFile, XdfError> {
    let mut r = Reader { r: input, pos: 0 };
    let io_err = |source| XdfError::Io {
        path: name.to_string(),
        source,
    };
    let invalid = |message: String| XdfError::Invalid {
        path: name.to_string(),
        message,
    };
    let magic = r.bytes(4).map_err(|_| XdfError::NotXdf(name.into()))?;
    if magic != b"XDF:" {
        return Err(XdfError::NotXdf(name.into()));
    }
    let mut streams: BTreeMap<u32, Building> = BTreeMap::new();
    let mut order: Vec<u32> = Vec::new();
    let mut skipped = 0;
    let mut values_total = 0usize;
    while let Some(n) = r.byte_or_end().map_err(io_err)? {
        let len = match n {
            1 | 4 | 8 => match r.bytes(usize::from(n)) {
                Ok(b) => {
                    let mut full = [0u8; 8];
                    full[..b.len()].copy_from_slice(&b);
                    u64::from_le_bytes(full)
                }
                Err(_) => break,
            },
            _ => {
                // Not a chunk start: find the next boundary chunk.
                skipped += 1;
                if r.scan_forward().map_err(io_err)? {
                    continue;
                }
                break;
            }
        };
        if !(2..=MAX_CHUNK_BYTES).contains(&len) {
            skipped += 1;
            if len > MAX_CHUNK_BYTES && r.scan_forward().map_err(io_err)? {
                continue;
            }
            if len > MAX_CHUNK_BYTES {
                break;
            }
            continue;
        }
        let Ok(body) = r.bytes(len as usize) else {
            // The file ends inside this chunk (a cut-off recording).
            skipped += 1;
            break;
        };
        let tag = u16::from_le_bytes([body[0], body[1]]);
        let content = &body[2..];
        if matches!(tag, 2..=4 | 6) && content.len() < 4 {
            skipped += 1;
            continue;
        }
        let (id, rest) = if matches!(tag, 2..=4 | 6) {
            (
                u32::from_le_bytes([content[0], content[1], content[2], content[3]]),
                &content[4..],
            )
        } else {
            (0, content)
        };
        match tag {
            2 => {
                if streams.len() >= MAX_STREAMS {
                    return Err(invalid(format!("more than {MAX_STREAMS} streams")));
                }
                let text = String::from_utf8_lossy(rest);
                match stream_header(id, &text) {
                    Ok(s) => {
                        let tdiff = if s.nominal_srate > 0.0 {
                            1.0 / s.nominal_srate
                        } else {
                            0.0
                        };
                        if !streams.contains_key(&id) {
                            order.push(id);
                        }
                        streams.insert(
                            id,
                            Building {
                                stream: s,
                                last_stamp: 0.0,
                                tdiff,
                            },
                        );
                    }
                    Err(m) => return Err(invalid(format!("stream {id}'s header: {m}"))),
                }
            }
            3 => {
                let Some(b) = streams.get_mut(&id) else {
                    skipped += 1;
                    continue;
                };
                if samples_chunk(b, rest, &mut values_total).is_err() {
                    skipped += 1;
                }
                if values_total > MAX_VALUES {
                    return Err(invalid(format!(
                        "more than {MAX_VALUES} sample values; import a shorter recording or fewer streams"
                    )));
                }
            }
            4 => {
                let Some(b) = streams.get_mut(&id) else {
                    skipped += 1;
                    continue;
                };
                let mut c = rest;
                match (f64_at(&mut c), f64_at(&mut c)) {
                    (Ok(t), Ok(v)) if t.is_finite() && v.is_finite() => {
                        b.stream.clock_times.push(t);
                        b.stream.clock_values.push(v);
                    }
                    _ => skipped += 1,
                }
            }
            6 => {
                if let Some(b) = streams.get_mut(&id) {
                    b.stream.footer_sample_count =
                        footer_sample_count(&String::from_utf8_lossy(rest));
                }
            }
            _ => {}
        }
    }
    let streams = order
        .into_iter()
        .filter_map(|id| streams.remove(&id).map(|b| b.stream))
        .collect();
    Ok(XdfFile {
        streams,
        skipped_chunks: skipped,
    })
}

/// Appends one Samples chunk; on a parse error nothing of it is kept.
fn samples_chunk(b: &mut Building, mut c: &[u8], total: &mut usize) -> Result<(), String> {
    let n = varlen(&mut c)?;
    let s = &mut b.stream;
    let nch = s.channel_count;
    // Each sample takes at least its stamp byte: a count beyond the chunk is corrupt.
    if n as usize > c.len() {
        return Err("sample count beyond the chunk".into());
    }
    let n = n as usize;
    let mut stamps = Vec::with_capacity(n);
    let mut last = b.last_stamp;
    match &mut s.values {
        Values::Strings(rows) => {
            let mut new = Vec::with_capacity(n);
            for _ in 0..n {
                last = stamp(&mut c, last, b.tdiff)?;
                stamps.push(last);
                let mut row = Vec::with_capacity(nch);
                for _ in 0..nch {
                    let l = varlen(&mut c)?;
                    let text = take(&mut c, usize::try_from(l).map_err(|_| "string length")?)?;
                    row.push(String::from_utf8_lossy(text).into_owned());
                }
                new.push(row);
            }
            rows.extend(new);
        }
        Values::Numbers(vals) => {
            let size = value_size(&s.channel_format).ok_or("unknown channel format")?;
            let mut new = Vec::with_capacity(n * nch);
            for _ in 0..n {
                last = stamp(&mut c, last, b.tdiff)?;
                stamps.push(last);
                let bytes = take(&mut c, size * nch)?;
                new.extend(
                    bytes
                        .chunks_exact(size)
                        .map(|v| decode(&s.channel_format, v)),
                );
            }
            vals.extend(new);
        }
    }
    *total += n * nch.max(1);
    b.last_stamp = last;
    s.stamps.extend(stamps);
    Ok(())
}

fn stamp(c: &mut &[u8], last: f64, tdiff: f64) -> Result<f64, String> {
    match take(c, 1)?[0] {
        0 => Ok(last + tdiff),
        8 => f64_at(c),
        n => Err(format!("time stamp of {n} bytes")),
    }
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .map(str::trim)
}

fn stream_header(id: u32, xml: &str) -> Result<XdfStream, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let info = doc.root_element();
    let text = |name: &str| child_text(info, name).unwrap_or("").to_string();
    let channel_count: usize = text("channel_count")
        .parse()
        .map_err(|_| "channel_count is not a number".to_string())?;
    if channel_count > MAX_CHANNELS {
        return Err(format!("{channel_count} channels (limit {MAX_CHANNELS})"));
    }
    let nominal_srate: f64 = text("nominal_srate").parse().unwrap_or(0.0);
    if !nominal_srate.is_finite() || nominal_srate < 0.0 {
        return Err(format!("nominal_srate {nominal_srate}"));
    }
    let channel_format = text("channel_format");
    let values = if channel_format == "string" {
        Values::Strings(Vec::new())
    } else if value_size(&channel_format).is_some() {
        Values::Numbers(Vec::new())
    } else {
        return Err(format!("unknown channel_format {channel_format:?}"));
    };
    let desc = info.children().find(|c| c.has_tag_name("desc"));
    let channels = desc
        .and_then(|d| d.children().find(|c| c.has_tag_name("channels")))
        .map(|chs| {
            chs.children()
                .filter(|c| c.has_tag_name("channel"))
                .take(channel_count)
                .map(|c| SensorChannel {
                    label: child_text(c, "label").unwrap_or("").into(),
                    unit: child_text(c, "unit").unwrap_or("").into(),
                    kind: child_text(c, "type").unwrap_or("").into(),
                })
                .collect()
        })
        .unwrap_or_default();
    let can_drop_samples = desc
        .and_then(|d| d.children().find(|c| c.has_tag_name("synchronization")))
        .and_then(|s| child_text(s, "can_drop_samples"))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(XdfStream {
        id,
        name: text("name"),
        kind: text("type"),
        channel_count,
        nominal_srate,
        channel_format,
        source_id: text("source_id"),
        hostname: text("hostname"),
        channels,
        can_drop_samples,
        footer_sample_count: None,
        stamps: Vec::new(),
        values,
        clock_times: Vec::new(),
        clock_values: Vec::new(),
    })
}

fn footer_sample_count(xml: &str) -> Option<usize> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    child_text(doc.root_element(), "sample_count")?.parse().ok()
}
