//! A `lab-web serve` process for the end-to-end tests, and a logged-in
//! client of its JSON API.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{bin, http_with};

/// `lab-web serve` on a free port; stopped on drop.
pub struct LabWeb {
    child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    log: PathBuf,
    data: PathBuf,
    /// Its logs are `NAME.log`, `NAME.2.log`, … in the data folder.
    name: String,
    admin_password: String,
    args: Vec<OsString>,
    envs: Vec<(String, OsString)>,
    starts: u32,
}

impl Drop for LabWeb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LabWeb {
    /// `lab-web serve --data DATA --listen 127.0.0.1:0 ARGS…` with the first
    /// admin's password `admin_password`; waits for its `serving` line.
    /// `DATABASE_URL` is taken only from `envs`.
    pub fn serve(
        data: &Path,
        admin_password: &str,
        args: &[&OsStr],
        envs: &[(&str, &OsStr)],
    ) -> LabWeb {
        Self::serve_as("lab-web", data, admin_password, args, envs)
    }

    /// Like [`LabWeb::serve`], logging to `NAME.log`: several processes
    /// may serve one data folder (and one PostgreSQL database).
    pub fn serve_as(
        name: &str,
        data: &Path,
        admin_password: &str,
        args: &[&OsStr],
        envs: &[(&str, &OsStr)],
    ) -> LabWeb {
        std::fs::create_dir_all(data).unwrap();
        let log = data.join(format!("{name}.log"));
        let args: Vec<OsString> = args.iter().map(|a| a.to_os_string()).collect();
        let envs: Vec<(String, OsString)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_os_string()))
            .collect();
        let child = Self::spawn(data, admin_password, "127.0.0.1:0", &args, &envs, &log);
        // Owned at once, so a failed start still stops the process.
        let mut web = LabWeb {
            child,
            url: String::new(),
            log,
            data: data.to_path_buf(),
            name: name.to_string(),
            admin_password: admin_password.to_string(),
            args,
            envs,
            starts: 1,
        };
        web.wait_serving();
        web
    }

    fn spawn(
        data: &Path,
        admin_password: &str,
        listen: &str,
        args: &[OsString],
        envs: &[(String, OsString)],
        log: &Path,
    ) -> Child {
        Command::new(bin("lab-web"))
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", listen])
            .args(args)
            .env("LAB_ADMIN_PASSWORD", admin_password)
            .env_remove("DATABASE_URL")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }

    fn wait_serving(&mut self) {
        let t0 = Instant::now();
        loop {
            let text = self.log();
            if let Some(rest) = text.split("serving ").nth(1) {
                self.url = rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches('/')
                    .to_string();
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "lab-web did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server with SIGKILL (no chance to finish anything) and
    /// starts it again on the same port and data, logging to
    /// `lab-web.N.log` so the earlier logs stay.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.starts += 1;
        self.log = self.data.join(format!("{}.{}.log", self.name, self.starts));
        let listen = self.url.trim_start_matches("http://").to_string();
        self.child = Self::spawn(
            &self.data,
            &self.admin_password,
            &listen,
            &self.args,
            &self.envs,
            &self.log,
        );
        self.wait_serving();
    }

    /// Kills the server with SIGKILL and leaves it dead.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server politely (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the server wrote to stderr (since its last start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `lab-web station add NAME --data DATA` (SQLite in DATA): the station's
/// account. Writes its token to `token_file` and returns it.
pub fn add_station(data: &Path, name: &str, token_file: &Path) -> String {
    let out = Command::new(bin("lab-web"))
        .args(["station", "add", name, "--data"])
        .arg(data)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lab-web station add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::fs::write(token_file, &token).unwrap();
    token
}

/// Runs a one-shot `lab-web` command (`worker add`, `import`) that must
/// succeed; returns its standard output, trimmed.
pub fn lab_web_command(args: &[&OsStr]) -> String {
    let o = Command::new(bin("lab-web")).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "lab-web {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A logged-in API client (cookie and CSRF token).
pub struct Api {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

impl Api {
    pub fn login(base: &str, login: &str, password: &str) -> Api {
        let body = json!({"login": login, "password": password}).to_string();
        let (status, headers, text) = http_with(
            "POST",
            &format!("{base}/api/v1/login"),
            &[],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 200, "login {login}: {text}");
        let cookie = headers
            .iter()
            .find(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap().to_string())
            .unwrap();
        let csrf = serde_json::from_str::<Value>(&text).unwrap()["csrf"]
            .as_str()
            .unwrap()
            .to_string();
        Api {
            base: base.to_string(),
            cookie,
            csrf,
        }
    }

    /// `(status, JSON body)`; a body that is not JSON comes back as a string.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let b = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, _, text) = http_with(
            method,
            &format!("{}{path}", self.base),
            &[("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)],
            b.as_bytes(),
        )
        .unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A GET that must succeed.
    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self.call("GET", path, None);
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Api) -> Option<Value>,
    ) -> Value {
        let t0 = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
