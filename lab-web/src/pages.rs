//! HTML shells of the pages and the embedded front-end assets. The page
//! scripts render from the JSON API; there is no front-end build step.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

pub const OPENAPI: &str = include_str!("../assets/openapi.json");
const SHELL: &str = include_str!("../assets/shell.html");

/// The JavaScript MIME type: page scripts are ES modules, which browsers
/// load only with a JavaScript content type.
const JS: &str = "text/javascript; charset=utf-8";

/// `(name, assets/<name>)` of one page-script module.
macro_rules! js {
    ($name:literal) => {
        ($name, JS, include_str!(concat!("../assets/", $name)))
    };
}

/// `(name, content type, bytes)` of every asset. The pages' ES modules import
/// each other by relative path (`./dom.js`), so every module is served flat
/// under `/assets/`; `overlay.js` is the classic script prototypes embed.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    // Shared modules.
    js!("app.js"),
    js!("api.js"),
    js!("dom.js"),
    js!("format.js"),
    js!("i18n.js"),
    js!("i18n-ru.js"),
    js!("i18n-en.js"),
    js!("jobs.js"),
    js!("labels.js"),
    js!("roles.js"),
    js!("widgets.js"),
    // Pages.
    js!("login.js"),
    js!("search.js"),
    js!("sessions.js"),
    js!("journey.js"),
    js!("findings.js"),
    js!("admin.js"),
    js!("session.js"),
    // The session page's parts.
    js!("session-model.js"),
    js!("session-head.js"),
    js!("session-player.js"),
    js!("session-transcript.js"),
    js!("session-timeline.js"),
    js!("session-timeline-lanes.js"),
    js!("session-candidates.js"),
    js!("session-tags.js"),
    js!("session-tag-form.js"),
    js!("session-keys.js"),
    js!("overlay.js"),
];

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
            "/sessions/{id}",
            get(|h: HeaderMap, Path(id): Path<String>| async move { shell(&h, "session", &id) }),
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
    match ASSETS.iter().find(|a| a.0 == name) {
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

/// Module specifiers of a script's static import statements
/// (`import {a} from './x.js';`, possibly over several lines, or
/// `import './x.js';`), in order.
pub fn module_imports(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        if !(line.starts_with("import ") || line.starts_with("import{")) {
            continue;
        }
        let mut statement = line.to_string();
        while !statement.contains(';') {
            match lines.next() {
                Some(more) => statement.push_str(more),
                None => break,
            }
        }
        let statement = statement.split(';').next().unwrap_or_default();
        let spec = match statement.rfind(" from ") {
            Some(i) => &statement[i + " from ".len()..],
            None => &statement["import".len()..],
        };
        out.push(spec.trim().trim_matches(['\'', '"']).to_string());
    }
    out
}

/// The scripts a page loads: its entry module and everything it imports,
/// transitively, each once, in the order a browser discovers them.
pub fn page_modules(entry: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let mut queue = vec![entry.to_string()];
    while let Some(name) = queue.pop() {
        let Some((name, _, body)) = ASSETS.iter().find(|a| a.0 == name) else {
            continue;
        };
        if out.contains(name) {
            continue;
        }
        out.push(name);
        let mut next: Vec<String> = module_imports(body)
            .into_iter()
            .map(|spec| spec.trim_start_matches("./").to_string())
            .collect();
        next.reverse();
        queue.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages the router serves a shell for.
    const PAGES: &[&str] = &[
        "sessions", "login", "findings", "admin", "search", "session", "journey",
    ];

    fn embedded(name: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
        ASSETS.iter().find(|a| a.0 == name)
    }

    #[test]
    fn a_page_loads_its_whole_module_graph_once() {
        let mods = page_modules("session.js");
        assert_eq!(mods[0], "session.js");
        for m in [
            "session-timeline.js",
            "session-timeline-lanes.js",
            "i18n-ru.js",
            "api.js",
        ] {
            assert!(mods.contains(&m), "{m} missing from {mods:?}");
        }
        let mut unique = mods.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), mods.len(), "{mods:?}");
        assert!(!mods.contains(&"overlay.js"));
    }

    #[test]
    fn import_parser_reads_single_and_multi_line_statements() {
        let src = "// import nothing from a comment\nimport {a, b} from './a.js';\nimport {\n  c,\n  d,\n} from \"./b.js\";\nimport './c.js';\nconst x = 1; // not an import\n";
        assert_eq!(module_imports(src), ["./a.js", "./b.js", "./c.js"]);
    }

    #[test]
    fn every_module_import_names_an_embedded_javascript_asset() {
        let mut checked = 0;
        for (name, _, body) in ASSETS.iter().filter(|a| a.0.ends_with(".js")) {
            for spec in module_imports(body) {
                // No build step and no import maps: a flat, relative path the browser resolves under /assets/.
                let target = spec.strip_prefix("./").unwrap_or_else(|| {
                    panic!("{name} imports {spec:?}: only ./<file>.js is served")
                });
                assert!(
                    !target.contains('/') && target.ends_with(".js"),
                    "{name} imports {spec:?}: only ./<file>.js is served"
                );
                let (_, ct, _) = embedded(target)
                    .unwrap_or_else(|| panic!("{name} imports {spec:?}, which is not embedded"));
                assert_eq!(*ct, JS, "{target} must be served as JavaScript");
                checked += 1;
            }
        }
        assert!(
            checked > 50,
            "only {checked} imports found: is the parser broken?"
        );
    }

    #[test]
    fn module_imports_form_no_circle() {
        // Depth-first over the import graph; a module met again while still on the path closes a circle.
        fn visit<'a>(name: &'a str, path: &mut Vec<&'a str>, done: &mut Vec<&'a str>) {
            if done.contains(&name) {
                return;
            }
            assert!(
                !path.contains(&name),
                "import circle: {} -> {name}",
                path.join(" -> ")
            );
            path.push(name);
            let (_, _, body) = embedded(name).expect("embedded");
            for spec in module_imports(body) {
                let target = embedded(spec.trim_start_matches("./")).expect("embedded").0;
                visit(target, path, done);
            }
            path.pop();
            done.push(name);
        }
        let mut done = Vec::new();
        for (name, _, _) in ASSETS.iter().filter(|a| a.0.ends_with(".js")) {
            visit(name, &mut Vec::new(), &mut done);
        }
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
