//! The `lab-analyze run` child of a job: its command line, its start (its
//! own process group, killed with the worker by `PR_SET_PDEATHSIG`), and
//! what its stderr says ([`Watch`]): the latest progress line becomes the
//! next heartbeat, the last few other lines the error text of a failure.
//! The kill switch ([`JobCtl`]) is here too: whoever ends a job early (a
//! cancel, a lost lease, the worker stopping) ends it through it, and it
//! kills the child if one runs.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;

use lab_model::analysis::{Progress, Stage};
use lab_model::worker::Heartbeat;

/// Lines of the child's stderr kept for a failure's message.
pub const TAIL_LINES: usize = 8;
/// A kept line is cut to this many bytes.
const MAX_KEPT_LINE: usize = 500;

/// How the child is started, the same for every job.
#[derive(Debug, Clone)]
pub struct ChildSettings {
    /// The program and the words before `run` (normally this executable
    /// alone; `--models DIR` when the worker was given one).
    pub program: Vec<OsString>,
    pub model: Option<PathBuf>,
    pub threads: Option<usize>,
}

/// `lab-analyze run BUNDLE [--journey FILE] [--force STAGE]… [--model FILE] [--threads N]`.
pub fn command(
    settings: &ChildSettings,
    bundle: &Path,
    journey: Option<&Path>,
    force: &[Stage],
) -> Command {
    let mut cmd = Command::new(&settings.program[0]);
    cmd.args(&settings.program[1..]);
    cmd.arg("run").arg(bundle);
    if let Some(j) = journey {
        cmd.arg("--journey").arg(j);
    }
    for st in force {
        cmd.arg("--force").arg(st.as_str());
    }
    if let Some(m) = &settings.model {
        cmd.arg("--model").arg(m);
    }
    if let Some(t) = settings.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    cmd
}

/// Why a job ended before its child finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Early {
    /// lab-web answered a heartbeat with `cancel: true`.
    Cancelled,
    /// lab-web answered 409 `lease_lost`.
    LeaseLost,
    /// The worker is stopping (SIGTERM, SIGINT).
    Stopped,
    /// lab-web answered 410 `withdrawn`: the participant withdrew.
    Withdrawn,
    /// lab-web refused the worker token mid-job (401/403).
    Refused(u16),
}

/// A job's kill switch: the first reason given wins; the child running
/// then, or started later, is killed (its whole process group).
#[derive(Debug, Default)]
pub struct JobCtl {
    inner: Mutex<CtlState>,
}

#[derive(Debug, Default)]
struct CtlState {
    early: Option<Early>,
    /// The running child's pid (= its process group).
    pid: Option<i32>,
}

impl JobCtl {
    pub fn end(&self, why: Early) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if s.early.is_none() {
            s.early = Some(why);
        }
        if let Some(pid) = s.pid {
            kill_group(pid);
        }
    }

    pub fn early(&self) -> Option<Early> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).early
    }

    /// Starts `cmd` unless the job already ended; the child is then
    /// killable through [`JobCtl::end`] until [`JobCtl::wait`] reaps it.
    pub fn spawn(&self, mut cmd: Command) -> std::io::Result<Option<Child>> {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if s.early.is_some() {
            return Ok(None);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so a kill reaches what it starts, and a
            // terminal's Ctrl-C reaches only the worker, which decides.
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec only async-signal-safe calls
        // (prctl, getppid), no allocation.
        unsafe {
            cmd.pre_exec(move || {
                // Dies with the thread that started it (this job's slot,
                // which waits for it), so with the worker.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The worker died before the prctl took: go now.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        s.pid = Some(child.id() as i32);
        Ok(Some(child))
    }

    /// Waits for the child and forgets its pid (before the pid can be reused).
    pub fn wait(&self, child: &mut Child) -> std::io::Result<ExitStatus> {
        let status = child.wait();
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).pid = None;
        status
    }
}

fn kill_group(pid: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// What the child's stderr has said so far.
#[derive(Debug, Default)]
pub struct Watch {
    latest: Option<Progress>,
    tail: VecDeque<String>,
}

impl Watch {
    /// One line of stderr (without its newline).
    pub fn line(&mut self, line: &str) {
        if let Some(p) = Progress::parse_line(line) {
            self.latest = Some(p);
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        let mut cut = line.len().min(MAX_KEPT_LINE);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        self.tail.push_back(line[..cut].to_string());
    }

    /// The heartbeat for the progress so far (0 and "" before the first line).
    pub fn heartbeat(&self, lease: &str) -> Heartbeat {
        Heartbeat {
            lease: lease.to_string(),
            progress: self
                .latest
                .map(|p| p.overall().clamp(0.0, 1.0))
                .unwrap_or(0.0),
            stage: self
                .latest
                .map(|p| p.stage.as_str().to_string())
                .unwrap_or_default(),
        }
    }

    /// The last lines that were not progress, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// Reads the child's stderr to its end into `watch`, passing each line that
/// is not progress to `echo`.
pub fn read_stderr(stderr: impl std::io::Read, watch: &Mutex<Watch>, echo: &dyn Fn(&str)) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                let progress = Progress::parse_line(line).is_some();
                watch.lock().unwrap_or_else(|e| e.into_inner()).line(line);
                if !progress && !line.trim().is_empty() {
                    echo(line);
                }
            }
        }
    }
}

/// The text of a failed run: how it ended and its last lines.
pub fn failure_text(status: ExitStatus, tail: &[String]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("lab-analyze run exited with status {code}"),
        (None, Some(sig)) => format!("lab-analyze run was killed by signal {sig}"),
        _ => "lab-analyze run ended abnormally".to_string(),
    };
    if tail.is_empty() {
        how
    } else {
        format!("{how}:\n{}", tail.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_become_the_heartbeat_and_prose_the_tail() {
        let mut w = Watch::default();
        let hb = w.heartbeat("L");
        assert_eq!((hb.progress, hb.stage.as_str()), (0.0, ""));
        w.line("lab-analyze: speech: running");
        let p = Progress {
            stage: Stage::Speech,
            done: 1,
            total: 4,
        };
        w.line(&p.to_line());
        let hb = w.heartbeat("L");
        assert_eq!(hb.lease, "L");
        assert_eq!(hb.stage, "speech");
        assert!((hb.progress - p.overall()).abs() < 1e-12);
        assert!(hb.progress > 0.0 && hb.progress < 1.0);
        // A later stage moves it on; an unknown version is prose.
        w.line(&Progress::finished(Stage::Qa).to_line());
        w.line(r#"{"lab_progress":99,"stage":"speech","done":1,"total":1}"#);
        let hb = w.heartbeat("L");
        assert_eq!(hb.stage, "qa");
        assert!((hb.progress - 1.0).abs() < 1e-9);
        assert_eq!(
            w.tail(),
            [
                "lab-analyze: speech: running",
                r#"{"lab_progress":99,"stage":"speech","done":1,"total":1}"#
            ]
        );
    }

    #[test]
    fn only_the_last_eight_lines_are_kept() {
        let mut w = Watch::default();
        for i in 0..20 {
            w.line(&format!("line {i}"));
            w.line("");
        }
        let tail = w.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 12");
        assert_eq!(tail[7], "line 19");
        w.line(&"я".repeat(1000));
        assert!(w.tail()[7].len() <= MAX_KEPT_LINE);
    }

    #[test]
    fn stderr_is_read_line_by_line_and_prose_echoed() {
        let watch = Mutex::new(Watch::default());
        let echoed = Mutex::new(Vec::new());
        let text = format!(
            "first\n{}\r\nsecond\nno newline at the end",
            Progress::started(Stage::Steps).to_line()
        );
        read_stderr(text.as_bytes(), &watch, &|l| {
            echoed.lock().unwrap().push(l.to_string())
        });
        assert_eq!(
            *echoed.lock().unwrap(),
            ["first", "second", "no newline at the end"]
        );
        assert_eq!(watch.lock().unwrap().heartbeat("L").stage, "steps");
    }

    #[test]
    fn the_command_line_is_run_with_its_options() {
        let settings = ChildSettings {
            program: vec!["lab-analyze".into(), "--models".into(), "/m".into()],
            model: Some("/m/ggml-x.bin".into()),
            threads: Some(3),
        };
        let cmd = command(
            &settings,
            Path::new("/w/bundles/S"),
            Some(Path::new("/w/journeys/7.toml")),
            &[Stage::Speech, Stage::Qa],
        );
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(cmd.get_program(), "lab-analyze");
        assert_eq!(
            args,
            [
                "--models",
                "/m",
                "run",
                "/w/bundles/S",
                "--journey",
                "/w/journeys/7.toml",
                "--force",
                "speech",
                "--force",
                "qa",
                "--model",
                "/m/ggml-x.bin",
                "--threads",
                "3"
            ]
        );
    }

    #[test]
    fn a_failure_names_the_exit_and_the_last_lines() {
        use std::os::unix::process::ExitStatusExt;
        let s = failure_text(ExitStatus::from_raw(3 << 8), &["a".into(), "b".into()]);
        assert_eq!(s, "lab-analyze run exited with status 3:\na\nb");
        let s = failure_text(ExitStatus::from_raw(9), &[]);
        assert_eq!(s, "lab-analyze run was killed by signal 9");
    }

    #[test]
    fn the_child_dies_with_the_thread_that_started_it() {
        use std::os::unix::process::ExitStatusExt;
        let ctl = JobCtl::default();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        // PR_SET_PDEATHSIG fires when the starting thread ends, which is
        // why a job's slot thread both starts and waits for its child.
        let mut child = std::thread::scope(|s| {
            s.spawn(|| ctl.spawn(cmd).unwrap().expect("started"))
                .join()
                .unwrap()
        });
        let t = std::time::Instant::now();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn an_ended_job_starts_no_child_and_a_running_one_is_killed() {
        let ctl = JobCtl::default();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut child = ctl.spawn(cmd).unwrap().expect("started");
        let t = std::time::Instant::now();
        ctl.end(Early::Cancelled);
        let status = ctl.wait(&mut child).unwrap();
        assert!(!status.success());
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        ctl.end(Early::LeaseLost);
        assert_eq!(ctl.early(), Some(Early::Cancelled), "the first reason wins");
        assert!(ctl.spawn(Command::new("true")).unwrap().is_none());
    }
}
