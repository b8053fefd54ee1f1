//! `lab-sandbox`: the private station of `lab_tests::sandbox` for shell
//! scripts (`demo/run-demo`, `scripts/bench-record`), plus the few small
//! helpers those scripts need so that they need no Python.
//!
//! ```sh
//! coproc SANDBOX { exec target/debug/lab-sandbox station --screen 1280x720; }
//! while IFS= read -r line <&"${SANDBOX[0]}" && [ -n "$line" ]; do eval "export $line"; done
//! pactl info; xdpyinfo | head -3     # the private servers
//! exec {SANDBOX[1]}>&-; wait "$SANDBOX_PID"   # stdin closed: everything stops
//! ```

use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lab_tests::sandbox::{Station, can_bind, free_ports};
use tokio::signal::unix::{SignalKind, signal};

/// A private Xvfb screen and PulseAudio server for a demo or bench run, and
/// shell helpers (free ports, a JSON value) so the scripts need no Python.
#[derive(Parser)]
#[command(name = "lab-sandbox")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a private Xvfb and a PulseAudio server with a null sink; once
    /// both are ready, print `KEY=value` lines (values shell-quoted, for
    /// `eval`): DISPLAY, PULSE_SERVER, PULSE_SINK (the null sink, `lab_sink`),
    /// PULSE_SOURCE (its monitor, `lab_sink.monitor`) and, with --ports,
    /// LAB_PORTS (space-separated), then one empty line. Runs until stdin
    /// closes or SIGTERM, SIGINT or SIGHUP arrives, then stops both servers
    /// and removes their folders.
    Station {
        /// Screen size, WIDTHxHEIGHT (24-bit colour).
        #[arg(long, default_value = "1280x720", value_parser = parse_screen)]
        screen: (u32, u32),
        /// How many free loopback TCP ports to list in LAB_PORTS.
        #[arg(long, default_value_t = 0)]
        ports: usize,
    },
    /// Print COUNT distinct free TCP ports on 127.0.0.1, one per line.
    FreePort {
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Exit 0 if ADDR (HOST:PORT) can be bound now, 1 if not.
    CanBind { addr: String },
    /// Print the value at POINTER (RFC 6901, e.g. /recorder/pid) in the JSON
    /// file FILE: a string as it is, null as an empty line, anything else as
    /// JSON. Exit 1 if FILE has no such value.
    Json { file: PathBuf, pointer: String },
}

fn parse_screen(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT")?;
    let parse = |v: &str| v.parse::<u32>().ok().filter(|n| *n > 0);
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err("expected WIDTHxHEIGHT, two positive numbers".into()),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lab-sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Station { screen, ports } => station(screen, ports)?,
        Cmd::FreePort { count } => {
            for port in free_ports(count).context("failed to find free ports")? {
                println!("{port}");
            }
        }
        Cmd::CanBind { addr } => {
            let addrs = addr
                .to_socket_addrs()
                .with_context(|| format!("failed to resolve {addr}"))?;
            if !addrs.into_iter().any(can_bind) {
                eprintln!("lab-sandbox: {addr} is taken");
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Json { file, pointer } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("failed to read {}", file.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("failed to parse {}", file.display()))?;
            match value.pointer(&pointer) {
                Some(serde_json::Value::String(s)) => println!("{s}"),
                Some(serde_json::Value::Null) => println!(),
                Some(v) => println!("{v}"),
                None => {
                    eprintln!("lab-sandbox: {} has no {pointer}", file.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the station on this (the main) thread, which also stops it: its
/// servers die with the thread that started them.
fn station((width, height): (u32, u32), ports: usize) -> anyhow::Result<()> {
    let station = Station::start(width, height)?;
    let mut env = station.env();
    if ports > 0 {
        let ports = free_ports(ports).context("failed to find free ports")?;
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        env.push(("LAB_PORTS", list.join(" ")));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Handlers first, so a signal right after the ready line is caught.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
        // A plain thread (not the runtime's blocking pool, whose shutdown
        // would wait for the read): returning from main ends it.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = eof_tx.send(());
        });
        let mut out = std::io::stdout().lock();
        for (key, value) in &env {
            writeln!(out, "{key}={}", shell_quote(value))?;
        }
        writeln!(out)?;
        out.flush()?;
        drop(out);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
            _ = eof_rx => {}
        }
        anyhow::Ok(())
    })?;
    drop(station);
    Ok(())
}

/// `value` as one shell word.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:,=+@%".contains(&b));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_quote_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote(":3"), ":3");
        assert_eq!(shell_quote("unix:/tmp/a-b/native"), "unix:/tmp/a-b/native");
        assert_eq!(shell_quote("1 2"), "'1 2'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
