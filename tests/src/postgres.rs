//! A PostgreSQL server of a test's own (Debian's binaries, a fresh cluster
//! in a temporary folder, a free port), so the test can restart it without
//! disturbing the suite's shared server. As root, the cluster runs as the
//! `postgres` user, which `initdb` requires.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    dir: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// `initdb` and start a server under `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let version = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .ok_or_else(|| anyhow::anyhow!("no PostgreSQL under /usr/lib/postgresql"))?;
        let bin = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        std::fs::create_dir_all(dir)?;
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()?
                .success();
            anyhow::ensure!(ok, "chown {} failed", dir.display());
        }
        let port = crate::sandbox::free_ports(1)?[0];
        let pg = Self {
            bin,
            data: dir.join("data"),
            dir: dir.to_path_buf(),
            port,
            as_postgres,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "lab",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        pg.ctl("start")?;
        Ok(pg)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://lab@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast: open connections are cut) and starts it again.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.ctl("restart")
    }

    fn ctl(&self, what: &str) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                what,
            ],
        )
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()?
        } else {
            Command::new(&exe).args(args).output()?
        };
        anyhow::ensure!(
            out.status.success(),
            "{tool} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}
