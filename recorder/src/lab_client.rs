//! The station's client of the lab server (lab-web's `/api/v1`): plain
//! HTTP/1.1 on one kept-alive connection, built on hyper's connection API
//! rather than a client library, so the station needs no TLS stack, pool or
//! proxy logic (docs/upload-protocol.md, "The station"). The connection is
//! reopened after any error; every request has a deadline; every answer
//! other than 2xx becomes a typed [`ClientError::Status`] carrying lab-web's
//! `{"error", "message"}` body, which `upload::retry` sorts into "try again"
//! and "refused".

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The largest answer read: an `UploadStatus` of the largest upload lab-web
/// takes (250,000 files) is about 30 MB.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// What an error message quotes of a body that is not lab-web's JSON.
const QUOTED_BODY_BYTES: usize = 200;

/// How long each kind of request may take, from sending to the last byte of
/// the answer.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// `GET` and `POST` with a JSON answer.
    pub json: Duration,
    /// One `PUT` of a chunk (8 MiB at 1.1 Mbit/s).
    pub chunk: Duration,
    /// `POST .../complete`: the server may hash files and import the bundle.
    pub complete: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            json: Duration::from_secs(30),
            chunk: Duration::from_secs(60),
            complete: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection, or it broke: refused, reset, closed mid-answer.
    #[error("the lab server could not be reached")]
    Transport(#[source] io::Error),
    #[error("the lab server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with a status other than 2xx.
    #[error("the lab server answered {code} {error}: {message}")]
    Status {
        code: u16,
        /// lab-web's error code (`offset_mismatch`, `no_space`, ...); empty
        /// when the body was not lab-web's JSON (a proxy's page).
        error: String,
        message: String,
        /// From a `Retry-After: SECONDS` header.
        retry_after: Option<Duration>,
    },
    /// A 2xx answer that is not what the protocol says (another program at
    /// that address, or an incompatible lab-web).
    #[error("the lab server's answer to {what} is not understood: {detail}")]
    BadAnswer { what: String, detail: String },
}

/// A server address or token `LabClient::new` cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadServer(String);

/// A client of one lab server, with one connection reused for every request.
pub struct LabClient {
    /// `host:port`, for connecting and for the `Host` header.
    authority: String,
    /// Path prefix of the server (`""` or `/lab`), without a trailing slash.
    prefix: String,
    /// `Bearer <token>`, checked to be a valid header value; none for the
    /// recorder's own endpoint.
    auth: Option<HeaderValue>,
    /// `/api/v1/` (lab-web) or `/api/` (the recorder's endpoint).
    api_root: &'static str,
    timeouts: Timeouts,
    conn: Option<Connection>,
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// Drives the connection; aborted when it is dropped.
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LabClient {
    /// A client of the server at `url` (`http://host:port[/prefix]`), sending
    /// `token` as a bearer token. Nothing is connected yet.
    pub fn new(url: &str, token: &str) -> Result<Self, BadServer> {
        let (authority, prefix) = parse_url(url)?;
        let token = token.trim();
        if token.is_empty() {
            return Err(BadServer("the station token is empty".into()));
        }
        let auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .ok()
            .filter(|_| token.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                BadServer("the station token holds characters a token never has".into())
            })?;
        Ok(Self {
            authority,
            prefix,
            auth: Some(auth),
            api_root: "/api/v1/",
            timeouts: Timeouts::default(),
            conn: None,
        })
    }

    /// A client of a recording's own endpoint (`http://127.0.0.1:PORT`,
    /// paths under `/api/`, no token: it takes local tools), for the
    /// station console.
    pub fn local(url: &str) -> Result<Self, BadServer> {
        let (authority, prefix) = parse_url(url)?;
        Ok(Self {
            authority,
            prefix,
            auth: None,
            api_root: "/api/",
            timeouts: Timeouts::default(),
            conn: None,
        })
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The server as it is written in the station's records: `http://host:port/prefix`.
    pub fn server(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }

    /// `GET /api/v1/{path}`.
    pub async fn get_json<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, ClientError> {
        let t = self.timeouts.json;
        let body = self.request(Method::GET, path, None, t).await?;
        decode(path, &body)
    }

    /// `POST /api/v1/{path}` with a JSON body.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).expect("request bodies serialise");
        let t = self.timeouts.json;
        let answer = self
            .request(
                Method::POST,
                path,
                Some(("application/json", bytes.into())),
                t,
            )
            .await?;
        decode(path, &answer)
    }

    /// `POST /api/v1/{path}` with an empty body and the long `complete` deadline.
    pub async fn post_empty_slow<T: DeserializeOwned>(
        &mut self,
        path: &str,
    ) -> Result<T, ClientError> {
        let t = self.timeouts.complete;
        let answer = self.request(Method::POST, path, None, t).await?;
        decode(path, &answer)
    }

    /// `PUT /api/v1/{path_and_query}` with raw bytes.
    pub async fn put_bytes<T: DeserializeOwned>(
        &mut self,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<T, ClientError> {
        let t = self.timeouts.chunk;
        let answer = self
            .request(
                Method::PUT,
                path_and_query,
                Some(("application/octet-stream", body)),
                t,
            )
            .await?;
        decode(path_and_query, &answer)
    }

    /// Drops the connection (the next request opens a new one).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
        deadline: Duration,
    ) -> Result<Bytes, ClientError> {
        let uri = format!(
            "{}{}{}",
            self.prefix,
            self.api_root,
            path.trim_start_matches('/')
        );
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, &self.authority);
        if let Some(auth) = &self.auth {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        let mut req = req.header(header::ACCEPT, "application/json").header(
            header::USER_AGENT,
            concat!("lab-recorder/", env!("CARGO_PKG_VERSION")),
        );
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let req = req
            .header(header::CONTENT_LENGTH, body.len())
            .body(Full::new(body))
            .map_err(|e| ClientError::Transport(io::Error::other(e)))?;
        // Any failure leaves the connection in an unknown state: drop it.
        let result = match tokio::time::timeout(deadline, self.exchange(req)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(deadline)),
        };
        if matches!(
            result,
            Err(ClientError::Transport(_) | ClientError::Timeout(_))
        ) {
            self.conn = None;
        }
        result
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<Bytes, ClientError> {
        let conn = self.connection().await?;
        let answer = conn
            .sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Transport(io::Error::other(e)))?;
        let status = answer.status();
        let retry_after = answer
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Transport(io::Error::other(e)))?
            .to_bytes();
        if status.is_success() {
            Ok(body)
        } else {
            Err(status_error(status, &body, retry_after))
        }
    }

    /// The open connection, or a new one when there is none or the server
    /// closed it while it was idle.
    async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        if let Some(c) = &mut self.conn
            && c.sender.ready().await.is_ok()
        {
            return Ok(self.conn.as_mut().expect("checked above"));
        }
        self.conn = None;
        let connect = TcpStream::connect(self.authority.as_str());
        let stream = tokio::time::timeout(self.timeouts.connect, connect)
            .await
            .map_err(|_| ClientError::Timeout(self.timeouts.connect))?
            .map_err(|e| {
                ClientError::Transport(io::Error::new(e.kind(), format!("{}: {e}", self.authority)))
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Transport(io::Error::other(e)))?;
        let task = tokio::spawn(async move {
            // Its error is the request's error, reported there.
            let _ = connection.await;
        });
        Ok(self.conn.insert(Connection { sender, task }))
    }
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ClientError> {
    // An empty answer (204) reads as `null`.
    let body = if body.is_empty() { &b"null"[..] } else { body };
    serde_json::from_slice(body).map_err(|e| ClientError::BadAnswer {
        what: what.split('?').next().unwrap_or(what).to_string(),
        detail: e.to_string(),
    })
}

/// lab-web's `{"error": code, "message": text}`, or a quote of whatever else came.
fn status_error(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> ClientError {
    #[derive(serde::Deserialize)]
    struct ApiError {
        error: String,
        #[serde(default)]
        message: String,
    }
    let (error, message) = match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => (e.error, e.message),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut quote: String = text.trim().chars().take(QUOTED_BODY_BYTES).collect();
            if quote.is_empty() {
                quote = status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .into();
            }
            (String::new(), quote)
        }
    };
    ClientError::Status {
        code: status.as_u16(),
        error,
        message,
        retry_after,
    }
}

/// `http://host[:port][/prefix]` → (`host:port`, `/prefix` or `""`).
fn parse_url(url: &str) -> Result<(String, String), BadServer> {
    let url = url.trim();
    let bad = |why: &str| BadServer(format!("the lab server address {url:?} {why}"));
    if url.len() >= 8 && url[..8].eq_ignore_ascii_case("https://") {
        return Err(BadServer(
            "https is not built into lab-recorder; use the lab server's LAN address (http://…)"
                .into(),
        ));
    }
    let rest = match url.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &url[7..],
        _ => return Err(bad("is not http://host:port")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("needs a host (and no user name)"));
    }
    if path.contains(['?', '#']) {
        return Err(bad("may not hold a query or fragment"));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
    {
        return Err(bad(
            "has a path with characters other than letters, digits and -._~",
        ));
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let authority = if has_port {
        let port = &authority[authority.rfind(':').expect("has a colon") + 1..];
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad("has no valid port"));
        }
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    if !authority
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return Err(bad("has a host with characters a host name never has"));
    }
    Ok((authority, path.trim_end_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_plain_http_with_a_host() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(ok("http://lab:8080"), ("lab:8080".into(), "".into()));
        assert_eq!(ok("http://lab:8080/"), ("lab:8080".into(), "".into()));
        assert_eq!(ok("HTTP://10.0.0.2"), ("10.0.0.2:80".into(), "".into()));
        assert_eq!(
            ok("http://lab:8080/lab/"),
            ("lab:8080".into(), "/lab".into())
        );
        assert_eq!(ok("http://[::1]:9000"), ("[::1]:9000".into(), "".into()));
        assert_eq!(ok("http://[::1]"), ("[::1]:80".into(), "".into()));
        let https = parse_url("https://lab:8443").unwrap_err().to_string();
        assert!(
            https.contains("https is not built into lab-recorder"),
            "{https}"
        );
        assert!(https.contains("http://"), "{https}");
        for bad in [
            "lab:8080",
            "ftp://lab",
            "http://",
            "http://u:p@lab:80",
            "http://lab:0",
            "http://lab:99999",
            "http://lab:80/x?y",
            "http://lab:80/a b",
            "http://la b:80",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_must_be_a_plain_word() {
        assert!(LabClient::new("http://lab:1", "abc123").is_ok());
        assert!(LabClient::new("http://lab:1", "  ").is_err());
        assert!(LabClient::new("http://lab:1", "a b").is_err());
        assert!(LabClient::new("http://lab:1", "a\nb").is_err());
        assert_eq!(
            LabClient::new("http://lab:1/p/", "t").unwrap().server(),
            "http://lab:1/p"
        );
    }

    #[test]
    fn refusals_carry_lab_webs_code_and_message() {
        let e = status_error(
            StatusCode::CONFLICT,
            br#"{"error":"offset_mismatch","message":"the server holds 10 bytes"}"#,
            None,
        );
        assert!(matches!(
            &e,
            ClientError::Status { code: 409, error, message, retry_after: None }
                if error == "offset_mismatch" && message == "the server holds 10 bytes"
        ));
        let e = status_error(
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
            Some(Duration::from_secs(3)),
        );
        assert!(matches!(
            &e,
            ClientError::Status { code: 502, error, message, retry_after: Some(d) }
                if error.is_empty() && message.contains("bad gateway") && d.as_secs() == 3
        ));
        let e = status_error(StatusCode::SERVICE_UNAVAILABLE, b"", None);
        assert!(e.to_string().contains("Service Unavailable"), "{e}");
    }
}
