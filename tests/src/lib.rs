//! Harness for the end-to-end tests: the private station of [`sandbox`] (an
//! Xvfb screen, a PulseAudio server with a null sink whose monitor is the
//! "microphone"), the workspace's binaries, and independent readers of recorded media
//! (GStreamer decoding, separate from the recorder's code path).
//!
//! Every resource is private to the test that starts it and is torn down on
//! drop, so tests can run in parallel without sharing a display or a sink.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod postgres;
pub mod relay;
pub mod sandbox;
pub mod scripted;
pub mod truth;
pub mod web;
pub mod xdf_writer;

pub use sandbox::{Pulse, Station, Xvfb};

/// A binary of this workspace (`lab-recorder`, `lab-setup`), built next to the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>; a binary of
    // this crate (lab-fleet-bench) sits in target/<profile> itself.
    let parent = exe.parent().expect("target dir");
    let dir = if parent.ends_with("deps") {
        parent.parent().expect("target dir")
    } else {
        parent
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` before the tests (scripts/test does)",
        path.display()
    );
    path
}

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "lab-e2e-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_u32() as u128
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u32::from_le_bytes(b)
}

/// Fails the test with a clear message if a system tool is missing.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run hardware-setup/install.sh"
    );
}

/// The DevTools WebSocket of the Chromium the recorder `pid` launched (its
/// profile directory is `$TMPDIR/lab-chromium-<pid>-*`).
pub fn station_devtools(pid: u32) -> String {
    let t = Instant::now();
    loop {
        let tmp = std::env::temp_dir();
        let prefix = format!("lab-chromium-{pid}-");
        for e in std::fs::read_dir(&tmp).unwrap().flatten() {
            if !e.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(e.path().join("DevToolsActivePort")) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    return format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
                }
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no DevTools port from the station's Chromium"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Serves `page` as the only HTML page on an ephemeral port of 127.0.0.1
/// (the station browser's page in the tests); returns the port.
pub fn serve_page(page: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

/// A running `lab-recorder record`.
pub struct RecorderProcess {
    pub child: Child,
    pub out_dir: PathBuf,
}

impl RecorderProcess {
    /// Starts the recorder; `--out` and `--listen 127.0.0.1:0` are added.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], out_dir: &Path) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin("lab-recorder"));
        cmd.arg("record")
            .args(args)
            .arg("--out")
            .arg(out_dir)
            .args(["--listen", "127.0.0.1:0"]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        // A test that fails (its thread panics and ends) must not leave a
        // recording running: it would load the machine and disturb the tests
        // after it (a leaked recorder once failed a word-error-rate bound).
        // The kernel sends SIGTERM, the recorder's polite stop, when the
        // thread that started it ends.
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        Ok(Self {
            child,
            out_dir: out_dir.to_path_buf(),
        })
    }

    /// Waits until the bundle's manifest exists and returns (bundle dir, events URL).
    pub fn wait_started(&mut self) -> anyhow::Result<(PathBuf, String)> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.child.try_wait()? {
                let mut err = String::new();
                use std::io::Read;
                if let Some(e) = self.child.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                bail!("recorder exited at start with {status}: {err}");
            }
            if let Ok(entries) = std::fs::read_dir(&self.out_dir) {
                for e in entries.flatten() {
                    let b = lab_model::Bundle::new(e.path());
                    if let Ok(m) = b.read_manifest()
                        && let Some(url) = m.recorder.events_url
                    {
                        return Ok((e.path(), url));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("recorder did not start within 30 s")
    }

    /// Sends a signal (SIGKILL for a crash, SIGTERM for a polite stop).
    pub fn signal(&mut self, signal: libc::c_int) {
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Waits for exit; returns (success, stdout, stderr).
    pub fn wait(self) -> anyhow::Result<(bool, String, String)> {
        let o = self.child.wait_with_output()?;
        Ok((
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ))
    }
}

/// Minimal HTTP/1.1 client for the recorder's local endpoint (no proxy, no TLS).
pub fn http(method: &str, url: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    http_with(method, url, &[], body).map(|(status, _, body)| (status, body))
}

/// Response headers as (lower-case name, value).
pub type Headers = Vec<(String, String)>;

/// [`http`] with extra request headers; also returns the response headers
/// (names lower-cased).
pub fn http_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, Headers, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").context("http:// URL")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("bad HTTP response")?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body.to_string()))
}

pub use hardware_setup::media::{audio_samples, video_frames};

/// `ffprobe` as an independent check: (has video, has audio, last packet end in seconds).
pub fn ffprobe(file: &Path) -> anyhow::Result<(bool, bool, f64)> {
    require("ffprobe");
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type:packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()?;
    if !o.status.success() {
        bail!(
            "ffprobe {}: {}",
            file.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let (mut video, mut audio, mut end) = (false, false, 0f64);
    for line in text.lines() {
        match line.trim_end_matches(',') {
            "video" => video = true,
            "audio" => audio = true,
            l => {
                let mut f = l.split(',').filter_map(|x| x.parse::<f64>().ok());
                if let Some(pts) = f.next() {
                    end = end.max(pts + f.next().unwrap_or(0.0));
                }
            }
        }
    }
    Ok((video, audio, end))
}

/// Median and maximum of absolute values, for reporting offsets.
pub fn summary(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    };
    let min = v.first().copied().unwrap_or(f64::NAN);
    let max = v.last().copied().unwrap_or(f64::NAN);
    (min, median, max)
}

/// Every file under `root` (relative path → size and SHA-256 in hex), for
/// checking that a bundle arrived byte-identical. Links are refused.
pub fn sha_tree(root: &Path) -> std::collections::BTreeMap<String, (u64, String)> {
    use sha2::{Digest, Sha256};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            assert!(!t.is_symlink(), "{}", e.path().display());
            if t.is_dir() {
                stack.push(e.path());
                continue;
            }
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let bytes = std::fs::read(e.path()).unwrap();
            let sha: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            out.insert(rel, (bytes.len() as u64, sha));
        }
    }
    out
}
