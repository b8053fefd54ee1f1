//! Who the endpoint is: its bound address and the per-recording probe token,
//! from which it tells its own clients from other pages.

use std::net::SocketAddr;

/// What the endpoint needs to know about itself to tell its own clients from others.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The bound address; requests must name its port.
    pub listen: SocketAddr,
    /// Random per recording; the injected probe presents it as `/ws?token=`.
    pub probe_token: String,
    /// Origins (`scheme://host[:port]`) of lab-controlled pages that include
    /// `/probe.js` themselves; their WebSockets may send events without the token.
    pub probe_origins: Vec<String>,
}

impl EndpointConfig {
    /// A config with a fresh random probe token.
    pub fn new(listen: SocketAddr, probe_origins: Vec<String>) -> std::io::Result<Self> {
        Ok(Self {
            listen,
            probe_token: random_token()?,
            probe_origins,
        })
    }

    /// The probe's WebSocket URL, token included: for the injected probe only.
    pub fn probe_ws_url(&self) -> String {
        format!("ws://{}/ws?token={}", self.listen, self.probe_token)
    }
}

/// 128 random bits from the kernel, as hex.
fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
