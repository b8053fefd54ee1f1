//! A throttling TCP relay between an uploader and lab-web, for the upload
//! end-to-end test. It makes kill points byte counts instead of timings
//! ([`Relay::up_bytes`]), keeps the uploader's URL stable while lab-web
//! restarts behind it, and can drop every connection at once
//! ([`Relay::cut_all`]) to stand in for a network that went away, without
//! killing either side. std only: a thread accepts, and each connection
//! gets a thread per direction.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes the client→server direction forwards at a time (and paces by).
const STEP: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct Shared {
    backend: SocketAddr,
    bytes_per_sec: u64,
    up: AtomicU64,
    stop: AtomicBool,
    /// Both sockets of every open connection, to cut them.
    open: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    next_id: AtomicU64,
}

/// Listens on 127.0.0.1 (a free port) and forwards each connection to the
/// backend. Stops, cutting every connection, when dropped.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    /// Client→server bytes are paced to `bytes_per_sec` per connection
    /// (0: as fast as they come); server→client is not paced.
    pub fn start(backend: SocketAddr, bytes_per_sec: u64) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay listens");
        let addr = listener.local_addr().expect("relay address");
        let shared = Arc::new(Shared {
            backend,
            bytes_per_sec,
            up: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(client) = client {
                    let s = s.clone();
                    std::thread::spawn(move || connect(&s, client));
                }
            }
        });
        Relay {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Where the uploader connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Client→server bytes forwarded so far, over every connection.
    pub fn up_bytes(&self) -> u64 {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// Closes every open connection, both ends; new ones are still taken.
    pub fn cut_all(&self) {
        let open: Vec<_> = self
            .shared
            .open
            .lock()
            .unwrap()
            .drain()
            .map(|(_, v)| v)
            .collect();
        for (client, server) in open {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        self.cut_all();
    }
}

/// Connects one client to the backend and relays until either side ends.
/// A backend that cannot be reached closes the client at once.
fn connect(s: &Arc<Shared>, client: TcpStream) {
    let Ok(server) = TcpStream::connect_timeout(&s.backend, CONNECT_TIMEOUT) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = s.next_id.fetch_add(1, Ordering::SeqCst);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    s.open.lock().unwrap().insert(id, (c3, s3));
    let up = {
        let s = s.clone();
        std::thread::spawn(move || pump(client, server, Some(&s)))
    };
    pump(s2, c2, None);
    let _ = up.join();
    s.open.lock().unwrap().remove(&id);
}

/// Copies `from` → `to` until either ends, then closes both (so the other
/// direction ends too). With `up`, counts and paces the bytes.
fn pump(mut from: TcpStream, mut to: TcpStream, up: Option<&Shared>) {
    let mut buf = vec![0u8; STEP];
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        let Some(s) = up else { continue };
        s.up.fetch_add(n as u64, Ordering::SeqCst);
        sent += n as u64;
        if s.bytes_per_sec > 0 {
            let due = start + Duration::from_secs_f64(sent as f64 / s.bytes_per_sec as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that answers each connection with the number of bytes it read.
    fn counting_backend() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut len = [0u8; 8];
                    if c.read_exact(&mut len).is_err() {
                        return;
                    }
                    let want = u64::from_le_bytes(len) as usize;
                    let mut got = vec![0u8; want];
                    if c.read_exact(&mut got).is_ok() {
                        let sum: u64 = got.iter().map(|&b| u64::from(b)).sum();
                        let _ = c.write_all(&sum.to_le_bytes());
                    }
                    // Then hold the connection until the other side goes.
                    let _ = c.read(&mut [0u8; 1]);
                });
            }
        });
        addr
    }

    fn send(relay: &Relay, bytes: &[u8]) -> (TcpStream, u64) {
        let mut c = TcpStream::connect(relay.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&(bytes.len() as u64).to_le_bytes()).unwrap();
        c.write_all(bytes).unwrap();
        let mut sum = [0u8; 8];
        c.read_exact(&mut sum).unwrap();
        (c, u64::from_le_bytes(sum))
    }

    #[test]
    fn the_relay_forwards_counts_paces_and_cuts() {
        let backend = counting_backend();
        let relay = Relay::start(backend, 1 << 20);
        let data: Vec<u8> = (0..(256u32 << 10)).map(|i| (i % 251) as u8).collect();
        let expect: u64 = data.iter().map(|&b| u64::from(b)).sum();
        let t = Instant::now();
        let (mut c, sum) = send(&relay, &data);
        assert_eq!(sum, expect);
        assert_eq!(relay.up_bytes(), data.len() as u64 + 8);
        // 256 KiB at 1 MiB/s, the first 64 KiB step free.
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );

        // Cut: the open connection ends on the client's side too.
        relay.cut_all();
        let mut b = [0u8; 1];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        // New connections are still relayed.
        let (_c, sum) = send(&relay, &data[..1000]);
        assert_eq!(sum, data[..1000].iter().map(|&b| u64::from(b)).sum::<u64>());
        drop(relay);

        // A backend that is down: the client is closed at once.
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let relay = Relay::start(dead_addr, 0);
        let mut c = TcpStream::connect(relay.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        assert!(t.elapsed() < Duration::from_secs(4));
        assert_eq!(relay.up_bytes(), 0);
        // Dropped, it takes no more connections.
        let addr = relay.addr();
        drop(relay);
        let refused = TcpStream::connect(addr)
            .map(|mut c| {
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                matches!(c.read(&mut b), Ok(0) | Err(_))
            })
            .unwrap_or(true);
        assert!(refused);
    }
}
