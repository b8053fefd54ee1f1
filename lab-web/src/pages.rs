//! HTML shells of the pages and the embedded front-end assets. The page
//! scripts render from the JSON API; there is no front-end build step.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

const SHELL: &str = include_str!("../assets/shell.html");

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|h: HeaderMap| async move { shell(&h, "sessions", "") }),
        )
        .route(
            "/login",
            get(|h: HeaderMap| async move { shell(&h, "login", "") }),
        )
        .route(
            "/findings",
            get(|h: HeaderMap| async move { shell(&h, "findings", "") }),
        )
        .route(
            "/admin",
            get(|h: HeaderMap| async move { shell(&h, "admin", "") }),
        )
        .route(
            "/search",
            get(|h: HeaderMap| async move { shell(&h, "search", "") }),
        )
        .route(
            "/setups",
            get(|h: HeaderMap| async move { shell(&h, "setups", "") }),
        )
        .route(
            "/sessions/{id}",
            get(|h: HeaderMap, Path(id): Path<String>| async move { shell(&h, "session", &id) }),
        )
        .route(
            "/live",
            get(|h: HeaderMap| async move { shell(&h, "live", "") }),
        )
        .route(
            "/live/{id}",
            get(|h: HeaderMap, Path(id): Path<String>| async move { shell(&h, "live", &id) }),
        )
        .route(
            "/journeys/{id}",
            get(|h: HeaderMap, Path(id): Path<String>| async move { shell(&h, "journey", &id) }),
        )
        .route("/overlay.js", get(|| async { asset("overlay.js") }))
        .route(
            "/assets/{name}",
            get(|Path(name): Path<String>| async move { asset(&name) }),
        )
        .route(
            "/healthz",
            get(|State(s): State<AppState>| async move {
                match crate::store::ping(&s.db.pool).await {
                    Ok(_) => (StatusCode::OK, "ok").into_response(),
                    Err(e) => {
                        // The cause goes to the log; anonymous callers learn only that it failed.
                        tracing::error!("health check: database: {e}");
                        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
                    }
                }
            }),
        )
        .route("/sessions", get(|| async { Redirect::to("/") }))
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn title(page: &str, lang: &str) -> &'static str {
    let ru = lang != "en";
    match page {
        "login" => {
            if ru {
                "Вход — Лаборатория юзабилити"
            } else {
                "Log in — Usability lab"
            }
        }
        "session" => {
            if ru {
                "Сессия — Лаборатория юзабилити"
            } else {
                "Session — Usability lab"
            }
        }
        "journey" => {
            if ru {
                "Карта пути — Лаборатория юзабилити"
            } else {
                "Journey map — Usability lab"
            }
        }
        "live" => {
            if ru {
                "Наблюдение — Лаборатория юзабилити"
            } else {
                "Observation room — Usability lab"
            }
        }
        "findings" => {
            if ru {
                "Находки — Лаборатория юзабилити"
            } else {
                "Findings — Usability lab"
            }
        }
        "admin" => {
            if ru {
                "Администрирование — Лаборатория юзабилити"
            } else {
                "Administration — Usability lab"
            }
        }
        "search" => {
            if ru {
                "Поиск по расшифровкам — Лаборатория юзабилити"
            } else {
                "Transcript search — Usability lab"
            }
        }
        "setups" => {
            if ru {
                "Настройка исследований — Лаборатория юзабилити"
            } else {
                "Study set-ups — Usability lab"
            }
        }
        _ => {
            if ru {
                "Сессии — Лаборатория юзабилити"
            } else {
                "Sessions — Usability lab"
            }
        }
    }
}

fn shell(headers: &HeaderMap, page: &str, id: &str) -> Response {
    let lang = crate::lang::lang(headers);
    let html = SHELL
        .replace("{{lang}}", lang)
        .replace("{{page}}", page)
        .replace("{{title}}", &escape_html(title(page, lang)))
        .replace("{{id}}", &escape_html(id));
    let mut r = Html(html).into_response();
    security_headers(r.headers_mut());
    r
}

/// Pages load only their own scripts and media.
fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; \
             script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn asset(name: &str) -> Response {
    match crate::assets::find(name) {
        Some((_, ct, body)) => {
            let mut r = (*body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            r.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if name == "overlay.js" {
                r.headers_mut().insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            r
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::{ASSETS, JS};

    /// The pages the router serves a shell for.
    const PAGES: &[&str] = &[
        "sessions", "login", "findings", "admin", "search", "setups", "session", "journey",
    ];

    fn embedded(name: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
        crate::assets::find(name)
    }

    #[test]
    fn every_page_shell_loads_its_embedded_module() {
        assert!(
            SHELL.contains(r#"<script type="module" src="/assets/{{page}}.js"></script>"#),
            "the shell loads the page script as a module"
        );
        for page in PAGES {
            let name = format!("{page}.js");
            assert!(embedded(&name).is_some(), "{name} is not embedded");
        }
    }

    #[test]
    fn every_script_in_the_assets_folder_is_embedded_and_served_as_javascript() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("assets folder") {
            let file = entry.expect("assets entry").file_name();
            let file = file.to_string_lossy();
            if !file.ends_with(".js") {
                continue;
            }
            n += 1;
            let r = asset(&file);
            assert_eq!(r.status(), StatusCode::OK, "{file} is not embedded");
            assert_eq!(r.headers()[header::CONTENT_TYPE], JS, "{file}");
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        assert_eq!(n, ASSETS.iter().filter(|a| a.0.ends_with(".js")).count());
        assert_eq!(asset("nope.js").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_csp_lets_same_origin_modules_run() {
        let r = shell(&HeaderMap::new(), "session", "1");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii CSP");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
    }
}
