//! Cuts mp4mux's fragmented output (`fragment-duration`, `streamable`) into
//! what a browser's Media Source Extensions take: the initialisation segment
//! (`ftyp` + `moov`) once, then media segments (`moof` + `mdat`), each marked
//! when it starts a video track at a sync sample, where a new viewer can
//! begin. The MSE type (`video/mp4; codecs="avc1.64001f,opus"`) is read from
//! the sample descriptions.

/// A box larger than this is refused: a fragment of 100 ms is kilobytes.
const MAX_BOX: usize = 64 << 20;

/// What the splitter hands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Init {
        bytes: Vec<u8>,
        mime: String,
    },
    /// `key`: a video track's first sample in it is a sync sample.
    Fragment {
        bytes: Vec<u8>,
        key: bool,
    },
}

#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
    ftyp: Option<Vec<u8>>,
    moof: Option<Vec<u8>>,
    /// Track ids of the video tracks, and the `trex` default sample flags.
    video: Vec<u32>,
    trex_flags: Vec<(u32, u32)>,
}

/// The boxes inside `data`: (type, whole box, body).
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let (size, kind, header) = box_header(data.get(at..)?)?;
        let body = data.get(at + header..at + size)?;
        at += size;
        Some((kind, body))
    })
}

/// (size, type, header length) of the box at the start of `data`.
fn box_header(data: &[u8]) -> Option<(usize, [u8; 4], usize)> {
    let size = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as u64;
    let kind: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    let (size, header) = match size {
        1 => (u64::from_be_bytes(data.get(8..16)?.try_into().ok()?), 16),
        s => (s, 8),
    };
    let size = usize::try_from(size).ok()?;
    (size >= header).then_some((size, kind, header))
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// The sample flags' `sample_is_non_sync_sample` bit.
const NON_SYNC: u32 = 0x0001_0000;

impl Splitter {
    /// Takes the muxer's next bytes; returns the pieces they complete.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Piece>, String> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 8 {
                break;
            }
            let Some((size, kind, _)) = box_header(&self.buf) else {
                if self.buf.len() >= 16 {
                    return Err("the muxer wrote a box of size 0 or smaller than its header".into());
                }
                break;
            };
            if size > MAX_BOX {
                return Err(format!(
                    "a {} box of {size} bytes",
                    String::from_utf8_lossy(&kind)
                ));
            }
            if self.buf.len() < size {
                break;
            }
            let whole: Vec<u8> = self.buf.drain(..size).collect();
            match &kind {
                b"ftyp" => self.ftyp = Some(whole),
                b"moov" => {
                    let mime = self.read_moov(&whole[8..]);
                    let mut bytes = self.ftyp.take().unwrap_or_default();
                    bytes.extend_from_slice(&whole);
                    out.push(Piece::Init { bytes, mime });
                }
                b"moof" => self.moof = Some(whole),
                b"mdat" => {
                    if let Some(mut bytes) = self.moof.take() {
                        let key = self.starts_at_sync(&bytes[8..]);
                        bytes.extend_from_slice(&whole);
                        out.push(Piece::Fragment { bytes, key });
                    }
                }
                // `styp`, `sidx`, `mfra`, `free`: nothing a live viewer needs.
                _ => {}
            }
        }
        Ok(out)
    }

    /// Notes the video tracks and default flags; returns the MSE type.
    fn read_moov(&mut self, moov: &[u8]) -> String {
        let mut codecs = Vec::new();
        self.video.clear();
        self.trex_flags.clear();
        for (kind, trak) in boxes(moov) {
            if &kind == b"mvex" {
                for (k, trex) in boxes(trak) {
                    if &k == b"trex"
                        && let (Some(id), Some(flags)) = (be32(trex, 4), be32(trex, 20))
                    {
                        self.trex_flags.push((id, flags));
                    }
                }
                continue;
            }
            if &kind != b"trak" {
                continue;
            }
            let id = child(trak, b"tkhd").and_then(|tkhd| {
                // Version 1 has 64-bit times before the id.
                let at = if tkhd.first() == Some(&1) { 20 } else { 12 };
                be32(tkhd, at)
            });
            let Some(mdia) = child(trak, b"mdia") else {
                continue;
            };
            let handler = child(mdia, b"hdlr").and_then(|h| h.get(8..12));
            let stsd = child(mdia, b"minf")
                .and_then(|m| child(m, b"stbl"))
                .and_then(|s| child(s, b"stsd"))
                .and_then(|s| s.get(8..));
            if handler == Some(b"vide".as_slice())
                && let Some(id) = id
            {
                self.video.push(id);
            }
            for (entry, body) in stsd.into_iter().flat_map(boxes) {
                match &entry {
                    // A visual sample entry's fields take 78 bytes.
                    b"avc1" | b"avc3" => {
                        let profile = body
                            .get(78..)
                            .and_then(|c| child(c, b"avcC"))
                            .and_then(|c| c.get(1..4));
                        codecs.push(match profile {
                            Some(p) => format!("avc1.{:02x}{:02x}{:02x}", p[0], p[1], p[2]),
                            None => "avc1.42e01f".into(),
                        });
                    }
                    b"Opus" => codecs.push("opus".into()),
                    b"mp4a" => codecs.push("mp4a.40.2".into()),
                    _ => {}
                }
            }
        }
        let kind = if self.video.is_empty() {
            "audio"
        } else {
            "video"
        };
        format!("{kind}/mp4; codecs=\"{}\"", codecs.join(","))
    }

    /// Whether a video track's first sample in this `moof` is a sync sample.
    fn starts_at_sync(&self, moof: &[u8]) -> bool {
        for (kind, traf) in boxes(moof) {
            if &kind != b"traf" {
                continue;
            }
            let Some(tfhd) = child(traf, b"tfhd") else {
                continue;
            };
            let Some(id) = be32(tfhd, 4) else { continue };
            if !self.video.contains(&id) {
                continue;
            }
            let tf = be32(tfhd, 0).unwrap_or(0) & 0x00ff_ffff;
            // track_ID, then optional base offset (8), description index,
            // duration, size, flags (4 each).
            let mut at = 8;
            for (bit, len) in [(0x1, 8), (0x2, 4), (0x8, 4), (0x10, 4)] {
                if tf & bit != 0 {
                    at += len;
                }
            }
            let mut flags = if tf & 0x20 != 0 {
                be32(tfhd, at)
            } else {
                self.trex_flags
                    .iter()
                    .find(|(t, _)| *t == id)
                    .map(|(_, f)| *f)
            };
            if let Some(trun) = child(traf, b"trun") {
                let rf = be32(trun, 0).unwrap_or(0) & 0x00ff_ffff;
                let mut at = 8 + if rf & 0x1 != 0 { 4 } else { 0 };
                if rf & 0x4 != 0 {
                    flags = be32(trun, at);
                } else if rf & 0x400 != 0 {
                    // The first sample's own flags follow its duration and size.
                    at += if rf & 0x100 != 0 { 4 } else { 0 };
                    at += if rf & 0x200 != 0 { 4 } else { 0 };
                    flags = be32(trun, at);
                }
            }
            return flags.is_some_and(|f| f & NON_SYNC == 0);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer as gst;
    use gstreamer::prelude::*;
    use gstreamer_app::AppSink;

    /// Real mp4mux output: 3 s of H.264 (a key frame every 30 frames) and
    /// Opus, in 100 ms fragments.
    fn muxed() -> Vec<Vec<u8>> {
        gst::init().unwrap();
        let p = gst::parse::launch(
            "videotestsrc num-buffers=90 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse \
             ! mp4mux name=m fragment-duration=100 streamable=true ! appsink name=out sync=false \
             audiotestsrc num-buffers=150 ! audio/x-raw,rate=48000,channels=1 ! opusenc ! m.audio_0",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = p.by_name("out").unwrap().downcast::<AppSink>().unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let mut chunks = Vec::new();
        while let Ok(s) = sink.pull_sample() {
            chunks.push(s.buffer().unwrap().map_readable().unwrap().to_vec());
        }
        p.set_state(gst::State::Null).unwrap();
        chunks
    }

    #[test]
    fn real_mp4mux_output_splits_into_init_and_fragments_with_key_frames_marked() {
        let mut s = Splitter::default();
        let mut pieces = Vec::new();
        // Fed in odd slices, as a network or a muxer may hand them.
        let all: Vec<u8> = muxed().concat();
        for part in all.chunks(1000) {
            pieces.extend(s.push(part).unwrap());
        }
        let Piece::Init { mime, .. } = &pieces[0] else {
            panic!("first piece is not the init segment: {:?}", pieces[0]);
        };
        assert!(
            mime.starts_with("video/mp4; codecs=\"avc1.") && mime.ends_with(",opus\""),
            "{mime}"
        );
        assert!(
            pieces[1..]
                .iter()
                .all(|p| matches!(p, Piece::Fragment { .. }))
        );
        let keys = pieces
            .iter()
            .filter(|p| matches!(p, Piece::Fragment { key: true, .. }))
            .count();
        // 90 frames, a key frame every 30: three fragments start at one.
        assert_eq!(keys, 3, "{} pieces", pieces.len());
    }

    #[test]
    fn a_zero_sized_box_is_an_error_not_a_hang() {
        let mut s = Splitter::default();
        let mut bad = vec![0, 0, 0, 0];
        bad.extend_from_slice(b"moof");
        bad.extend_from_slice(&[0; 16]);
        assert!(s.push(&bad).is_err());
    }
}
