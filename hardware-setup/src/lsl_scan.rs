//! `lab-setup probe`'s Lab Streaming Layer section: the sensor streams on
//! the network (EDA, heart rate, EEG, eye trackers, marker streams), found
//! through liblsl as `lab-setup models` installed it.

use std::path::Path;
use std::time::Duration;

/// One stream as the probe lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LslStream {
    pub name: String,
    pub kind: String,
    pub channels: usize,
    pub srate: f64,
    pub format: &'static str,
    pub hostname: String,
    pub source_id: String,
}

/// What the probe found, or why it could not look.
#[derive(Debug, Clone, PartialEq)]
pub enum LslScan {
    Streams(Vec<LslStream>),
    Unavailable(String),
}

/// Lists the streams that answer within `wait`, with liblsl from `models`.
pub fn scan(models: &Path, wait: Duration) -> LslScan {
    let library = models.join(lab_lsl::LIBRARY);
    if !library.exists() {
        return LslScan::Unavailable(format!(
            "{} is missing (`lab-setup models` installs it)",
            library.display()
        ));
    }
    let found = lab_lsl::Lsl::open(&library, None).and_then(|lsl| lsl.resolve_all(wait));
    match found {
        Ok(found) => {
            let mut streams: Vec<LslStream> = found
                .into_iter()
                .map(|r| LslStream {
                    name: r.info.name,
                    kind: r.info.kind,
                    channels: r.info.channel_count,
                    srate: r.info.nominal_srate,
                    format: r.info.format.name(),
                    hostname: r.info.hostname,
                    source_id: r.info.source_id,
                })
                .collect();
            streams.sort_by(|a, b| (&a.name, &a.hostname).cmp(&(&b.name, &b.hostname)));
            LslScan::Streams(streams)
        }
        Err(e) => LslScan::Unavailable(e.to_string()),
    }
}

/// The report's lines.
pub fn report(scan: &LslScan) -> String {
    let mut r =
        "Lab Streaming Layer streams (record with `--lsl NAME` or `recording.lsl_streams`):\n"
            .to_string();
    match scan {
        LslScan::Unavailable(why) => r += &format!("  not looked for: {why}\n"),
        LslScan::Streams(s) if s.is_empty() => r += "  none answered\n",
        LslScan::Streams(streams) => {
            for s in streams {
                let rate = if s.srate > 0.0 {
                    format!("{} Hz", s.srate)
                } else {
                    "irregular".to_string()
                };
                r += &format!(
                    "  {} [type {}, {} ch {}, {rate}] on {} (source {})\n",
                    s.name, s.kind, s.channels, s.format, s.hostname, s.source_id
                );
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines() {
        let s = LslStream {
            name: "Shimmer EDA".into(),
            kind: "EDA".into(),
            channels: 1,
            srate: 128.0,
            format: "float32",
            hostname: "lab-pc".into(),
            source_id: "shimmer-1".into(),
        };
        let markers = LslStream {
            srate: 0.0,
            kind: "Markers".into(),
            format: "string",
            name: "Events".into(),
            ..s.clone()
        };
        let text = report(&LslScan::Streams(vec![s, markers]));
        assert!(
            text.contains(
                "  Shimmer EDA [type EDA, 1 ch float32, 128 Hz] on lab-pc (source shimmer-1)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  Events [type Markers, 1 ch string, irregular]"),
            "{text}"
        );
        assert!(report(&LslScan::Streams(vec![])).contains("none answered"));
        let missing = scan(Path::new("/nonexistent"), Duration::ZERO);
        let want = format!("/nonexistent/{} is missing", lab_lsl::LIBRARY);
        assert!(report(&missing).contains(&want), "{missing:?}");
    }
}
