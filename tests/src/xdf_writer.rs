//! A small XDF 1.0 writer for tests, from the format's specification
//! (LabRecorder's layout: file header, stream headers, sample chunks with
//! every stamp written, clock offsets, boundary chunks, stream footers).
//! What it writes is read back both by `lab-analyze` and by pyxdf.

use std::io::Write;

const BOUNDARY: [u8; 16] = [
    0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4,
];

pub struct XdfWriter {
    pub bytes: Vec<u8>,
}

/// Escapes text for XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Default for XdfWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl XdfWriter {
    pub fn new() -> XdfWriter {
        let mut w = XdfWriter {
            bytes: b"XDF:".to_vec(),
        };
        w.chunk(
            1,
            None,
            br#"<?xml version="1.0"?><info><version>1.0</version></info>"#,
        );
        w
    }

    fn chunk(&mut self, tag: u16, stream: Option<u32>, content: &[u8]) {
        let len = 2 + stream.map_or(0, |_| 4) + content.len();
        // Lengths always as 8 bytes (the spec allows 1, 4 or 8).
        self.bytes.push(8);
        self.bytes.extend_from_slice(&(len as u64).to_le_bytes());
        self.bytes.extend_from_slice(&tag.to_le_bytes());
        if let Some(id) = stream {
            self.bytes.extend_from_slice(&id.to_le_bytes());
        }
        self.bytes.extend_from_slice(content);
    }

    /// A stream header; `channels` are (label, unit).
    #[allow(clippy::too_many_arguments)]
    pub fn header(
        &mut self,
        id: u32,
        name: &str,
        kind: &str,
        format: &str,
        srate: f64,
        channels: &[(&str, &str)],
    ) {
        let mut xml = format!(
            "<?xml version=\"1.0\"?><info><name>{}</name><type>{}</type><channel_count>{}</channel_count><nominal_srate>{srate}</nominal_srate><channel_format>{format}</channel_format><source_id>{}</source_id><hostname>test</hostname><desc><channels>",
            esc(name),
            esc(kind),
            channels.len(),
            esc(name)
        );
        for (label, unit) in channels {
            xml += &format!(
                "<channel><label>{}</label><unit>{}</unit><type>{}</type></channel>",
                esc(label),
                esc(unit),
                esc(kind)
            );
        }
        xml += "</channels></desc></info>";
        self.chunk(2, Some(id), xml.as_bytes());
    }

    /// Numeric samples as double64, each with its stamp.
    pub fn samples(&mut self, id: u32, stamps: &[f64], rows: &[Vec<f64>]) {
        let mut c = vec![4u8];
        c.extend_from_slice(&(stamps.len() as u32).to_le_bytes());
        for (t, row) in stamps.iter().zip(rows) {
            c.push(8);
            c.extend_from_slice(&t.to_le_bytes());
            for v in row {
                c.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.chunk(3, Some(id), &c);
    }

    /// String samples (one channel), each with its stamp.
    pub fn strings(&mut self, id: u32, stamps: &[f64], values: &[&str]) {
        let mut c = vec![4u8];
        c.extend_from_slice(&(stamps.len() as u32).to_le_bytes());
        for (t, v) in stamps.iter().zip(values) {
            c.push(8);
            c.extend_from_slice(&t.to_le_bytes());
            c.push(4);
            c.extend_from_slice(&(v.len() as u32).to_le_bytes());
            c.extend_from_slice(v.as_bytes());
        }
        self.chunk(3, Some(id), &c);
    }

    /// A clock offset measured at `time` (the recording machine's clock).
    pub fn clock_offset(&mut self, id: u32, time: f64, value: f64) {
        let mut c = time.to_le_bytes().to_vec();
        c.extend_from_slice(&value.to_le_bytes());
        self.chunk(4, Some(id), &c);
    }

    pub fn boundary(&mut self) {
        self.chunk(5, None, &BOUNDARY);
    }

    pub fn footer(&mut self, id: u32, samples: usize) {
        let xml =
            format!("<?xml version=\"1.0\"?><info><sample_count>{samples}</sample_count></info>");
        self.chunk(6, Some(id), xml.as_bytes());
    }

    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::File::create(path)?.write_all(&self.bytes)
    }
}
