//! Serving files (bundle renditions, clips) with range requests, and
//! generated downloads (exports, study files).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use crate::error::{ApiError, ApiResult};

/// Whether a media request starts playback (no range, or a range from byte
/// 0), so views are audited once and not for every range a player fetches.
pub fn starts_playback(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::RANGE)
        .is_none_or(|r| r.as_bytes().starts_with(b"bytes=0-"))
}

/// A file of `root` (see [`crate::bundle_files`]: no symlinks, no hard
/// links, no `..`) with range requests and conditional requests, served as
/// `mime` whatever its name says.
pub async fn serve_file(
    root: &std::path::Path,
    rel: &str,
    mime: &'static str,
    req: Request,
) -> ApiResult<Response> {
    let (root, rel_owned) = (root.to_path_buf(), rel.to_string());
    let file = tokio::task::spawn_blocking(move || crate::bundle_files::open(&root, &rel_owned))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| {
            tracing::warn!("refused to serve a bundle file: {e}");
            match e {
                crate::bundle_files::BundleFileError::NotFound(_) => {
                    ApiError::not_found("file not found")
                }
                _ => ApiError::not_found("file not available"),
            }
        })?
        .0;
    // tower-http reopens the already checked inode through the descriptor.
    let pinned = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let mime: mime::Mime = mime
        .parse()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("content type {mime}: {e}")))?;
    let resp = tower_http::services::ServeFile::new_with_mime(pinned, &mime)
        .oneshot(req)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    drop(file);
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// A generated file as an attachment named `name` (characters other than
/// `[A-Za-z0-9._-]` become `_`).
pub fn download(
    content_type: &'static str,
    name: &str,
    body: impl Into<axum::body::Body>,
) -> Response {
    let mut r = (StatusCode::OK, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
