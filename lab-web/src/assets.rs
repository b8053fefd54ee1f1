//! The embedded front-end assets (every file under `assets/` the server
//! serves) and their ES-module graph, used by the pages' routes and by the
//! bench. Ground layer: no routes, no state.

/// The OpenAPI description served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../assets/openapi.json");

/// The JavaScript MIME type: page scripts are ES modules, which browsers
/// load only with a JavaScript content type.
pub const JS: &str = "text/javascript; charset=utf-8";

/// `(name, assets/<name>)` of one page-script module.
macro_rules! js {
    ($name:literal) => {
        ($name, JS, include_str!(concat!("../assets/", $name)))
    };
}

/// `(name, content type, bytes)` of every asset. The pages' ES modules import
/// each other by relative path (`./dom.js`), so every module is served flat
/// under `/assets/`; `overlay.js` is the classic script prototypes embed.
pub const ASSETS: &[(&str, &str, &str)] = &[
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
    js!("setups.js"),
    js!("session.js"),
    js!("live.js"),
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

/// The embedded asset `name`: `(name, content type, bytes)`.
pub fn find(name: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    ASSETS.iter().find(|a| a.0 == name)
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
        let Some((name, _, body)) = find(&name) else {
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

    fn embedded(name: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
        find(name)
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
}
