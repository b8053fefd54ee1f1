//! The UI language of a request, shared by pages and API exports.

use axum::http::HeaderMap;

/// The UI language from the `lab_lang` cookie (Russian unless `en`).
pub fn lang(headers: &HeaderMap) -> &'static str {
    if crate::cookies::cookie(headers, "lab_lang") == Some("en") {
        "en"
    } else {
        "ru"
    }
}
