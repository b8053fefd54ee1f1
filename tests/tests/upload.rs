//! A real bundle travels from a station to a real lab-web with nothing lost
//! (`docs/upload-protocol.md`): `lab-recorder upload` sends it through a
//! throttling relay (so kill points are byte counts, not timings); lab-web
//! is killed with SIGKILL in the middle of a large file and restarted on the
//! same port; then the uploader is killed and started again. The bundle
//! arrives byte-identical (SHA-256 of every file), exactly once, and no byte
//! range is sent again beyond the chunk each kill cut.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab_model::upload::CHUNK_BYTES;
use lab_tests::relay::Relay;
use lab_tests::web::{Api, LabWeb, add_station};
use lab_tests::{RecorderProcess, bin, sha_tree, temp_dir};

const PADDING: &str = "media/padding-00000.bin";
const PADDING_BYTES: usize = 96 << 20;
/// Client→server pace through the relay.
const RATE: u64 = 24 << 20;

fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

struct Uploader {
    child: Child,
    err: PathBuf,
}

impl Uploader {
    fn start(bundle: &Path, server: &str, token_file: &Path, err: PathBuf) -> Uploader {
        let child = Command::new(bin("lab-recorder"))
            .arg("upload")
            .arg(bundle)
            .args([
                "--server",
                server,
                "--max-backoff",
                "1",
                "--give-up-after",
                "120",
            ])
            .arg("--station-token-file")
            .arg(token_file)
            .env_remove("LAB_STATION_TOKEN")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Uploader { child, err }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for the exit: (exit code, stdout).
    fn wait(mut self, limit: Duration) -> (i32, String) {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut out = String::new();
                self.child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                return (st.code().unwrap_or(-1), out);
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the uploader did not finish in {limit:?}:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Length of the padding file in lab-web's staging folder (0 if none yet).
fn staged(sessions: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(sessions.join(".incoming")) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path().join(PADDING)).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bundle_survives_a_server_kill_and_an_uploader_kill_and_arrives_once() {
    let root = temp_dir("upload");
    // A real recording from the test sources.
    let station_out = root.join("station");
    std::fs::create_dir_all(&station_out).unwrap();
    let rec = RecorderProcess::spawn(
        &[
            "--test-sources",
            "--duration",
            "3",
            "--participant",
            "P21",
            "--consent",
            "C21",
        ],
        &[],
        &station_out,
    )
    .unwrap();
    let (ok, _, err) = rec.wait().unwrap();
    assert!(ok, "recording failed: {err}");
    let bundle = std::fs::read_dir(&station_out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("manifest.json").is_file())
        .expect("a bundle");
    // A large file standing in for a long segment.
    std::fs::write(bundle.join(PADDING), noise(PADDING_BYTES)).unwrap();
    let before = sha_tree(&bundle);
    let total: u64 = before.values().map(|(n, _)| n).sum();

    // The lab server, a station account, and the relay in front of it.
    let data = root.join("lab");
    let token_file = root.join("station.token");
    let token = add_station(&data, "lab-1", &token_file);
    assert_eq!(token.len(), 64, "the token alone on stdout");
    let password = "upload-test-pw";
    let mut web = LabWeb::serve(
        &data,
        password,
        &[OsStr::new("--watch-seconds"), OsStr::new("1")],
        &[],
    );
    let backend = web.url.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(backend, RATE);
    let server = format!("http://{}", relay.addr());
    let sessions = data.join("sessions");

    // Kill lab-web in the middle of the large file.
    let first = Uploader::start(&bundle, &server, &token_file, root.join("up1.err"));
    wait_until("35 % sent", Duration::from_secs(60), || {
        relay.up_bytes() >= total * 35 / 100
    });
    web.kill_and_restart();
    let l1 = staged(&sessions);
    assert!(
        0 < l1 && l1 < PADDING_BYTES as u64,
        "the server held part of the large file when killed: {l1}"
    );
    // Kill the uploader later in the same file.
    wait_until("70 % sent", Duration::from_secs(60), || {
        relay.up_bytes() >= total * 70 / 100
    });
    let mut first = first;
    first.child.kill().unwrap();
    let _ = first.child.wait();
    std::thread::sleep(Duration::from_millis(300));
    let l2 = staged(&sessions);
    assert!(
        l2 > l1,
        "it went on after the server's restart ({l1} → {l2}), not from 0"
    );
    println!(
        "upload: lab-web killed holding {l1} bytes, uploader killed with {l2} held, of {PADDING_BYTES}"
    );

    let second = Uploader::start(&bundle, &server, &token_file, root.join("up2.err"));
    let err_path = second.err.clone();
    let (code, stdout) = second.wait(Duration::from_secs(180));
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert_eq!(code, 0, "{stdout}\n{err}");
    let last = stdout.lines().last().unwrap_or_default().to_string();
    let id = last
        .strip_prefix("acknowledged: ")
        .unwrap_or_else(|| panic!("last line {last:?}\n{err}"))
        .to_string();
    assert!(
        err.contains(&format!("resuming {PADDING} at")),
        "the restarted uploader resumed the large file:\n{err}"
    );

    // Byte-identical, once.
    let placed = sessions.join(&id);
    let after = sha_tree(&placed);
    let sent: BTreeMap<_, _> = before
        .iter()
        .filter(|(p, _)| p.as_str() != lab_model::bundle::RESERVE_FILE)
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect();
    assert_eq!(after, sent, "every file arrived with its SHA-256");
    let admin = Api::login(&web.url, "admin", password);
    let list = admin.get("/api/v1/sessions");
    let ids: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str()], "listed exactly once");
    let folders: Vec<String> = std::fs::read_dir(&sessions)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n != ".incoming")
        .collect();
    assert_eq!(folders, vec![id.clone()]);
    assert_eq!(
        std::fs::read_dir(sessions.join(".incoming"))
            .unwrap()
            .count(),
        0
    );
    let uploads = admin.get("/api/v1/uploads");
    assert_eq!(uploads["uploads"][0]["status"], "imported");
    // Never re-sent: at most the chunk each kill cut, plus requests.
    let up = relay.up_bytes();
    println!("upload: {up} bytes through the relay for {total} bytes of bundle");
    assert!(
        up <= total + 2 * CHUNK_BYTES + (2 << 20),
        "{up} bytes sent for {total}"
    );
    // The station keeps its copy (no --delete-after-ack), and a second run
    // is acknowledged without sending anything.
    assert_eq!(sha_tree(&bundle), before);
    let again = Uploader::start(&bundle, &server, &token_file, root.join("up3.err"));
    let (code, stdout) = again.wait(Duration::from_secs(30));
    assert_eq!(code, 0);
    assert!(
        stdout.ends_with(&format!("acknowledged: {id}\n")),
        "{stdout}"
    );
    assert_eq!(
        relay.up_bytes(),
        up,
        "nothing sent for an acknowledged bundle"
    );
    drop(web);
    let _ = std::fs::remove_dir_all(&root);
}
