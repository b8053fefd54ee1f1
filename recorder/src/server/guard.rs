//! The check every request passes (`Host`, `Origin`, `Sec-Fetch-Site`,
//! `Content-Type`; see the endpoint's module docs) and the security headers
//! every response gets.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::EndpointState;

/// Served with every response: no framing (clickjacking of the stop button),
/// no sniffing, nothing but our own script, no referrer, no caching.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The `Host` check: an IP literal or `localhost`, with our port. A page that
/// reached us through DNS rebinding names its own domain here.
pub fn host_is_ours(host: &str, port: u16) -> bool {
    let (name, p) = match host.rsplit_once(':') {
        Some((n, p)) if !p.contains(']') => (n, p.parse::<u16>().ok()),
        _ => (host, Some(80)),
    };
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    p == Some(port)
        && (name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok())
}

/// The origin a page served by this endpoint has, given the request's `Host`.
pub(super) fn own_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(format!("http://{host}"))
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header that is present, with its value; a value that is not visible
/// ASCII reads as `"(unreadable)"`, never as absent, so a header a check
/// relies on cannot be hidden by garbling it.
pub(super) fn present_header<'a>(
    headers: &'a HeaderMap,
    name: &header::HeaderName,
) -> Option<&'a str> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("(unreadable)"))
}

/// Refuses requests that do not come from the endpoint's own clients (see the
/// module docs), and adds the security headers to every response.
pub(super) async fn guard(
    State(s): State<Arc<EndpointState>>,
    req: Request,
    next: Next,
) -> Response {
    let verdict = check_request(&s, &req);
    let is_probe = req.uri().path() == "/probe.js";
    let mut resp = match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => s.reject(e).into_response(),
    };
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Only the probe script may be loaded by other origins' pages.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static(if is_probe {
            "cross-origin"
        } else {
            "same-origin"
        }),
    );
    resp
}

fn check_request(s: &EndpointState, req: &Request) -> Result<(), ApiError> {
    let headers = req.headers();
    let port = s.config.listen.port();
    let host = header_str(headers, &header::HOST).unwrap_or("");
    if !host_is_ours(host, port) {
        return Err(ApiError::Forbidden(format!(
            "Host {host:?} is not this endpoint; use 127.0.0.1:{port} or localhost:{port}"
        )));
    }
    let path = req.uri().path();
    // The WebSocket decides about its origin itself (token or allow-list), and
    // the probe script is public.
    if path != "/ws"
        && path != "/probe.js"
        && let Some(origin) = headers.get(header::ORIGIN)
        && Some(origin.to_str().unwrap_or("")) != own_origin(headers).as_deref()
    {
        return Err(ApiError::Forbidden(format!(
            "requests from origin {origin:?} are not accepted; only local tools and this endpoint's own pages may call it"
        )));
    }
    if req.method() == Method::POST {
        if let Some(site) = present_header(headers, &HeaderName::from_static("sec-fetch-site"))
            && !matches!(site, "same-origin" | "none")
        {
            return Err(ApiError::Forbidden(format!(
                "a {site} page may not post to the recorder"
            )));
        }
        match present_header(headers, &header::CONTENT_TYPE) {
            Some(ct) => {
                let essence = ct.split(';').next().unwrap_or("").trim();
                if !essence.eq_ignore_ascii_case("application/json") {
                    return Err(ApiError::UnsupportedType(format!(
                        "POST bodies must be Content-Type: application/json, not {ct:?}"
                    )));
                }
            }
            None => {
                let empty = headers.get(header::TRANSFER_ENCODING).is_none()
                    && header_str(headers, &header::CONTENT_LENGTH).is_none_or(|l| l.trim() == "0");
                if !empty {
                    return Err(ApiError::UnsupportedType(
                        "POST bodies must be Content-Type: application/json".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_must_name_this_endpoint() {
        for ok in [
            "127.0.0.1:7700",
            "localhost:7700",
            "[::1]:7700",
            "LOCALHOST:7700",
        ] {
            assert!(host_is_ours(ok, 7700), "{ok}");
        }
        for bad in [
            "evil.example:7700",
            "127.0.0.1:7701",
            "127.0.0.1",
            "",
            "[::1]",
            "127.0.0.1:x",
        ] {
            assert!(!host_is_ours(bad, 7700), "{bad}");
        }
        assert!(host_is_ours("127.0.0.1", 80));
    }
}
