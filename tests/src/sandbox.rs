//! The private station: an Xvfb screen and a PulseAudio server with one null
//! sink, started for one test, one demo run or one bench run, so nothing ever
//! touches the user's own display or sound, and parallel runs never share one.
//!
//! The end-to-end tests use [`Xvfb`] and [`Pulse`] directly; the shell scripts
//! (`demo/run-demo`, `scripts/bench-record`) use them through the
//! `lab-sandbox` binary. Both are ready when `start` returns: Xvfb reports its
//! display number through `-displayfd` only once it accepts clients (so no
//! display number is guessed, and two sandboxes cannot race for one), and
//! PulseAudio is polled until its sink's monitor is listed.
//!
//! Each server runs in its own process group with a private folder (log,
//! PulseAudio's socket and runtime files). Drop stops the whole group
//! (SIGTERM, then SIGKILL after 5 s), reaps it and removes the folder. The
//! servers also get SIGTERM if the thread that started them dies
//! (`PR_SET_PDEATHSIG`), so a killed test or `lab-sandbox` leaves nothing
//! behind: start and drop a sandbox on the same thread.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A private X server.
pub struct Xvfb {
    /// Value for `DISPLAY`, e.g. `:3`.
    pub display: String,
    _server: Server,
}

impl Xvfb {
    /// Starts Xvfb with one `width`x`height`x24 screen, no TCP listener, on a
    /// display number Xvfb picks itself.
    pub fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        let dir = private_dir("xvfb")?;
        let log = dir.join("xvfb.log");
        let mut cmd = Command::new("Xvfb");
        // -displayfd 1: Xvfb finds a free display (its lock file is the
        // arbiter) and writes the number to stdout once it accepts clients.
        cmd.args(["-displayfd", "1", "-screen", "0"])
            .arg(format!("{width}x{height}x24"))
            .args(["-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).context("failed to create the Xvfb log")?);
        let mut server = Server::spawn(cmd, dir, "Xvfb")?;
        let stdout = server.child.stdout.take().context("Xvfb's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        match line.trim().parse::<u32>() {
            Ok(n) => Ok(Self {
                display: format!(":{n}"),
                _server: server,
            }),
            Err(_) => bail!(
                "Xvfb did not report a display within {START_TIMEOUT:?}: {}",
                tail(&log)
            ),
        }
    }
}

/// A private PulseAudio server with one null sink, `lab_sink`, whose monitor
/// `lab_sink.monitor` is what the recorder records.
pub struct Pulse {
    /// Value for `PULSE_SERVER`.
    pub server: String,
    /// The server's private folder (socket, runtime files, log).
    pub dir: PathBuf,
    _server: Server,
}

impl Pulse {
    pub const SINK: &'static str = "lab_sink";
    pub const MONITOR: &'static str = "lab_sink.monitor";

    /// Starts the server and waits until the sink's monitor is listed.
    pub fn start() -> anyhow::Result<Self> {
        let dir = private_dir("pulse")?;
        let log = dir.join("pulse.log");
        let socket = dir.join("native");
        let mut cmd = Command::new("pulseaudio");
        cmd.args([
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=false",
            "--log-target=stderr",
        ])
        .arg(format!(
            "--load=module-native-protocol-unix socket={} auth-anonymous=1",
            socket.display()
        ))
        .arg(format!(
            "--load=module-null-sink sink_name={} rate=48000 channels=1",
            Self::SINK
        ))
        .env("HOME", &dir)
        .env("XDG_RUNTIME_DIR", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).context("failed to create the PulseAudio log")?);
        let mut server = Server::spawn(cmd, dir.clone(), "pulseaudio")?;
        let pulse_server = format!("unix:{}", socket.display());
        let t = Instant::now();
        while t.elapsed() < START_TIMEOUT {
            let listed = pactl(&pulse_server, &["list", "short", "sources"])
                .map(|out| out.contains(Self::MONITOR))
                .unwrap_or(false);
            if listed {
                return Ok(Self {
                    server: pulse_server,
                    dir,
                    _server: server,
                });
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("pulseaudio exited at start with {status}: {}", tail(&log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "pulseaudio did not list {} within {START_TIMEOUT:?}: {}",
            Self::MONITOR,
            tail(&log)
        )
    }

    /// Runs `pactl` against this server; returns its stdout.
    pub fn pactl(&self, args: &[&str]) -> anyhow::Result<String> {
        pactl(&self.server, args)
    }
}

fn pactl(server: &str, args: &[&str]) -> anyhow::Result<String> {
    let o = Command::new("pactl")
        .args(args)
        .env("PULSE_SERVER", server)
        .output()
        .map_err(|e| not_installed("pactl", e))?;
    if !o.status.success() {
        bail!("pactl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A whole private station: screen and sound.
pub struct Station {
    pub xvfb: Xvfb,
    pub pulse: Pulse,
}

impl Station {
    pub fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        Ok(Self {
            xvfb: Xvfb::start(width, height)?,
            pulse: Pulse::start()?,
        })
    }

    /// The environment a program needs to use this station: `DISPLAY`,
    /// `PULSE_SERVER`, and the sink and its monitor as the default sink and
    /// source (`PULSE_SINK`, `PULSE_SOURCE`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DISPLAY", self.xvfb.display.clone()),
            ("PULSE_SERVER", self.pulse.server.clone()),
            ("PULSE_SINK", Pulse::SINK.to_string()),
            ("PULSE_SOURCE", Pulse::MONITOR.to_string()),
        ]
    }
}

/// `count` distinct TCP ports on 127.0.0.1 that were free a moment ago (all
/// bound at once, then released; a caller that can bind port 0 itself should).
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Whether `addr` can be bound now.
pub fn can_bind(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

/// A server process in its own process group, with its private folder.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    fn spawn(mut cmd: Command, dir: PathBuf, name: &str) -> anyhow::Result<Self> {
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe calls (prctl, getppid, kill).
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                }
                Ok(())
            });
        }
        match cmd.process_group(0).spawn() {
            Ok(child) => Ok(Self { child, dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(not_installed(name, e))
            }
        }
    }

    /// Whether the leader has exited, without reaping it: while it is a
    /// zombie its pid (= the group id) cannot be reused, so the group kill
    /// that follows cannot hit a stranger.
    fn exited(&self) -> bool {
        // SAFETY: waitid on our own child with a zeroed siginfo it fills in.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r != 0 || info.si_pid() != 0
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: kill(2) of the process group this server leads.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let t = Instant::now();
        while !self.exited() && t.elapsed() < STOP_GRACE {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (a hung leader, a helper it started).
        // SAFETY: as above; the leader is not reaped yet.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn not_installed(tool: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("{tool} is not installed: run hardware-setup/install.sh")
    } else {
        anyhow::Error::new(e).context(format!("failed to start {tool}"))
    }
}

/// A fresh private folder `$TMPDIR/lab-sandbox-<what>-XXXXXX` (mkdtemp: mode
/// 0700, never an existing one).
fn private_dir(what: &str) -> anyhow::Result<PathBuf> {
    let template = std::env::temp_dir().join(format!("lab-sandbox-{what}-XXXXXX"));
    let mut bytes = template.into_os_string().into_vec();
    bytes.push(0);
    // SAFETY: a NUL-terminated, writable template, as mkdtemp(3) requires.
    let p = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(std::io::Error::last_os_error()).context("failed to create a private folder");
    }
    bytes.pop();
    Ok(PathBuf::from(OsString::from_vec(bytes)))
}

/// The last lines of a server's log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    if tail.is_empty() {
        "(its log is empty)".into()
    } else {
        tail
    }
}
