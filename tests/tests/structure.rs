//! The shape of the code base, checked on every test run (ARCHITECTURE.md,
//! "Where code goes"):
//!
//! - no import circle between the modules (files) of any crate;
//! - no non-test source file over 800 lines (Rust and the embedded JS);
//! - lab-web's SQL lives in `store/` only (and `db.rs`, which migrates);
//! - every `analysis/` file name is spelled once, in lab-model;
//! - every embedded script parses (`node --check`).
//!
//! The module graph is read from the source text: a file's edges are the
//! `crate::…`, `super::…`, `self::…` paths and paths through its own child
//! modules, resolved to the deepest module file they name. Test code
//! (`#[cfg(test)]` items, `tests.rs` files) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every crate's source folder.
fn crate_dirs() -> Vec<PathBuf> {
    let root = workspace();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    let dirs: Vec<PathBuf> = line
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|m| root.join(m).join("src"))
        .collect();
    assert!(dirs.len() >= 6, "read the workspace members: {dirs:?}");
    dirs
}

fn files_with_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "target" || name == "node_modules" || name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            files_with_ext(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

fn is_test_file(p: &Path) -> bool {
    p.file_stem()
        .is_some_and(|s| s == "tests" || s.to_string_lossy().ends_with("_tests"))
        || p.components().any(|c| c.as_os_str() == "tests")
}

/// The text with comments, string and char literals blanked (same lines).
fn strip_literals(src: &str) -> (String, Vec<String>) {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut strings = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0
                || !is_ident(b[i - 1])
                || (matches!(b[i - 1], b'b' | b'c') && (i < 2 || !is_ident(b[i - 2]))))
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            let start = j;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"'
                    && b[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == b'#')
                        .count()
                        == hashes
                {
                    break;
                }
                j += 1;
            }
            let body = &src[start..j.min(b.len())];
            strings.push(body.to_string());
            out.push_str("\"\"");
            out.extend(body.chars().filter(|&ch| ch == '\n'));
            i = (j + 1 + hashes).min(b.len());
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            let body = &src[i + 1..j.min(b.len())];
            strings.push(body.to_string());
            out.push_str("\"\"");
            out.extend(body.chars().filter(|&ch| ch == '\n'));
            i = j + 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else {
                let ch_len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                if b.get(i + 1 + ch_len) == Some(&b'\'') {
                    out.push_str("' '");
                    i += 2 + ch_len;
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    (out, strings)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Removes `#[cfg(test)]` items (a `mod tests { … }`, a test-only `use` or
/// fn), keeping line breaks so line numbers stay.
fn strip_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let b = item.as_bytes();
        let mut depth = 0i32;
        let mut end = item.len();
        for (k, &c) in b.iter().enumerate().skip("#[cfg(test)]".len()) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        out.extend(item[..end].chars().filter(|&c| c == '\n'));
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every path the code names (`a::b::{c, d::e}` gives `a::b::c`, `a::b::d::e`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_ident(b[i]) && (i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b':')) {
            let (segs, next) = read_path(code, i);
            if segs.len() > 1 || code[next..].trim_start().starts_with("::") {
                expand(code, segs, next, &mut out);
            }
            i = next.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads `ident(::ident)*` from `at`; returns the segments and where it stopped.
fn read_path(code: &str, mut at: usize) -> (Vec<String>, usize) {
    let b = code.as_bytes();
    let mut segs = Vec::new();
    loop {
        let start = at;
        while at < b.len() && is_ident(b[at]) {
            at += 1;
        }
        if start == at {
            break;
        }
        segs.push(code[start..at].to_string());
        let after = skip_ws(code, at);
        if code[after..].starts_with("::") {
            let next = skip_ws(code, after + 2);
            if next < b.len() && is_ident(b[next]) {
                at = next;
                continue;
            }
            return (segs, after);
        }
        break;
    }
    (segs, at)
}

fn skip_ws(code: &str, mut at: usize) -> usize {
    let b = code.as_bytes();
    while at < b.len() && b[at].is_ascii_whitespace() {
        at += 1;
    }
    at
}

/// Pushes `prefix` and, if a `::{ … }` group follows, every path inside it.
fn expand(code: &str, prefix: Vec<String>, at: usize, out: &mut Vec<Vec<String>>) {
    let after = skip_ws(code, at);
    if code[after..].starts_with("::") {
        let brace = skip_ws(code, after + 2);
        if code[brace..].starts_with('{') {
            let mut depth = 0;
            let mut end = brace;
            for (k, c) in code[brace..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = brace + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let inner = &code[brace + 1..end];
            let mut depth = 0;
            let mut start = 0;
            let mut items = Vec::new();
            for (k, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&inner[start..k]);
                        start = k + 1;
                    }
                    _ => {}
                }
            }
            items.push(&inner[start..]);
            for item in items {
                let item = item.trim();
                if item.is_empty() || item == "self" || item == "*" {
                    out.push(prefix.clone());
                    continue;
                }
                let (segs, next) = read_path(item, 0);
                let mut full = prefix.clone();
                full.extend(segs);
                let mut sub = Vec::new();
                expand(item, full.clone(), next, &mut sub);
                out.extend(sub);
            }
            return;
        }
    }
    out.push(prefix);
}

struct Crate {
    /// module path ("" for the root, "api::sessions") → file
    modules: BTreeMap<String, PathBuf>,
}

fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

fn load_crate(src: &Path) -> Crate {
    let mut files = Vec::new();
    files_with_ext(src, "rs", &mut files);
    let has_lib = src.join("lib.rs").exists();
    let mut modules = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        if is_test_file(rel) || rel.starts_with("bin") || (has_lib && rel == Path::new("main.rs")) {
            continue;
        }
        modules.insert(module_path(src, &f), f);
    }
    Crate { modules }
}

fn join(a: &str, b: &[String]) -> Vec<String> {
    let mut v: Vec<String> = if a.is_empty() {
        Vec::new()
    } else {
        a.split("::").map(str::to_string).collect()
    };
    v.extend(b.iter().cloned());
    v
}

/// The module file a path names: its deepest prefix that is a module.
fn resolve(krate: &Crate, from: &str, path: &[String]) -> Option<String> {
    let (base, rest): (Vec<String>, &[String]) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (join(from, &[]), &path[1..]),
        "super" => {
            let mut base = join(from, &[]);
            let mut k = 0;
            while path.get(k).is_some_and(|s| s == "super") {
                base.pop();
                k += 1;
            }
            (base, &path[k..])
        }
        first => {
            // A child module of this one, named without `self::`.
            let child = join(from, &[first.to_string()]).join("::");
            if !krate.modules.contains_key(&child) {
                return None;
            }
            (join(from, &[]), path)
        }
    };
    let mut full = base;
    full.extend(rest.iter().cloned());
    (0..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| krate.modules.contains_key(m))
}

fn edges(krate: &Crate) -> BTreeMap<String, BTreeSet<String>> {
    let mut g = BTreeMap::new();
    for (m, file) in &krate.modules {
        let src = std::fs::read_to_string(file).unwrap();
        let (code, _) = strip_literals(&src);
        let code = strip_test_items(&code);
        let all = paths(&code);
        // A module brought in by name (`use crate::store;`, `use super::api;`)
        // and then used through it (`store::sessions::get`).
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &all {
            if let Some(to) = resolve(krate, m, p)
                && to.rsplit("::").next() == p.last().map(String::as_str)
                && p.len() > 1
            {
                aliases.insert(p.last().unwrap().clone(), p.clone());
            }
        }
        let mut out = BTreeSet::new();
        for p in all {
            let p = match aliases.get(&p[0]) {
                Some(full) if p.len() > 1 && resolve(krate, m, &p).is_none() => {
                    let mut q = full.clone();
                    q.extend(p[1..].iter().cloned());
                    q
                }
                _ => p,
            };
            if let Some(to) = resolve(krate, m, &p)
                && to != *m
            {
                out.insert(to);
            }
        }
        g.insert(m.clone(), out);
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_checker_sees_a_circle_and_the_paths_in_a_use_tree() {
    let p = paths("use crate::{api::{sessions, review::Tag}, store};\nlet x = super::y::z();");
    let shown: Vec<String> = p.iter().map(|s| s.join("::")).collect();
    for want in [
        "crate::api::sessions",
        "crate::api::review::Tag",
        "crate::store",
        "super::y::z",
    ] {
        assert!(shown.contains(&want.to_string()), "{want} not in {shown:?}");
    }
    let (code, strings) = strip_literals("let s = \"crate::a::b\"; // crate::c::d\nlet c = '\"';");
    assert!(!code.contains("crate::"), "{code}");
    assert_eq!(strings, ["crate::a::b"]);
    let code =
        strip_test_items("fn a() {}\n#[cfg(test)]\nmod tests {\n use crate::x::y;\n}\nfn b() {}");
    assert!(
        !code.contains("crate::x") && code.contains("fn b"),
        "{code}"
    );

    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(
        circles(&g),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
}

#[test]
fn the_checker_follows_modules_used_by_name() {
    // a uses b through `use crate::b;`, b uses a's child through `super::a`.
    let dir = std::env::temp_dir().join(format!("structure-check-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "pub mod inner;\nuse crate::b;\npub fn f() { b::g(); }\n",
    )
    .unwrap();
    std::fs::write(src.join("a/inner.rs"), "pub fn h() {}\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "use super::a::inner;\npub fn g() { inner::h(); }\n#[cfg(test)]\nmod tests { use crate::a; }\n",
    )
    .unwrap();
    let krate = load_crate(&src);
    let g = edges(&krate);
    assert!(g["a"].contains("b"), "{g:?}");
    assert!(
        g["b"].contains("a::inner") && !g["b"].contains("a"),
        "{g:?}"
    );
    assert!(circles(&g).is_empty(), "{g:?}");
    // Now b uses a itself: a circle.
    std::fs::write(src.join("b.rs"), "pub fn g() { crate::a::f(); }\n").unwrap();
    let g = edges(&load_crate(&src));
    assert_eq!(circles(&g), vec![vec!["a".to_string(), "b".into()]]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_import_circles_in_any_crate() {
    let mut found = Vec::new();
    for src in crate_dirs() {
        let krate = load_crate(&src);
        assert!(
            !krate.modules.is_empty(),
            "no modules under {}",
            src.display()
        );
        for c in circles(&edges(&krate)) {
            found.push(format!("{}: {}", src.display(), c.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_over_800_lines() {
    let root = workspace();
    // (file, the folder its test-ness is judged from)
    let mut files = Vec::new();
    for src in crate_dirs() {
        let mut mine = Vec::new();
        files_with_ext(&src, "rs", &mut mine);
        files_with_ext(&src, "js", &mut mine);
        files.extend(mine.into_iter().map(|f| (f, src.clone())));
    }
    for dir in ["lab-web/assets", "demo"] {
        let mut mine = Vec::new();
        files_with_ext(&root.join(dir), "js", &mut mine);
        files.extend(mine.into_iter().map(|f| (f, root.join(dir))));
    }
    let mut over = Vec::new();
    for (f, base) in files {
        if is_test_file(f.strip_prefix(&base).unwrap()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code = if f.extension().is_some_and(|x| x == "rs") {
            strip_test_items(&text)
        } else {
            text
        };
        let n = code.lines().count();
        if n > MAX_LINES {
            over.push(format!(
                "{} ({n} lines)",
                f.strip_prefix(&root).unwrap().display()
            ));
        }
    }
    assert!(
        over.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        over.join("\n")
    );
}

#[test]
fn lab_web_sql_lives_in_the_store() {
    let src = workspace().join("lab-web/src");
    let mut files = Vec::new();
    files_with_ext(&src, "rs", &mut files);
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        if rel.starts_with("store") || rel == Path::new("db.rs") || is_test_file(rel) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let (code, _) = strip_literals(&text);
        let code = strip_test_items(&code);
        // The literals of the non-test code only.
        let (_, strings) = strip_literals(&strip_test_items(&text));
        // sqlx's ways of running a statement, however imported.
        for call in [
            "query(",
            "query_as",
            "query_scalar",
            "query_with",
            "raw_sql",
            ".execute(",
            ".fetch_one(",
            ".fetch_all(",
            ".fetch_optional(",
            ".fetch(",
        ] {
            if code.contains(call) {
                found.push(format!("{}: runs SQL ({call})", rel.display()));
            }
        }
        for s in strings {
            let head = s.trim_start().to_ascii_uppercase();
            if [
                "SELECT ", "INSERT ", "UPDATE ", "DELETE ", "WITH ", "CREATE ", "ALTER ", "DROP ",
                "PRAGMA ", "BEGIN", "REPLACE ", "VACUUM",
            ]
            .iter()
            .any(|k| head.starts_with(k))
            {
                found.push(format!(
                    "{}: SQL text {:?}",
                    rel.display(),
                    head.lines().next().unwrap_or("")
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL outside lab-web/src/store:\n{}",
        found.join("\n")
    );
}

/// A test file of lab-model, which may spell what lab-model defines.
fn pins_lab_model(root: &Path, f: &Path) -> bool {
    f.strip_prefix(root.join("lab-model/src"))
        .is_ok_and(is_test_file)
}

/// Scripts that read or write bundles, besides the Rust code.
fn script_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (dir, exts) in [
        ("scripts", &["py", "sh"][..]),
        ("demo", &["py", "js", "sh"][..]),
        ("tests/e2e", &["mjs", "js"][..]),
        ("analyzer/bench", &["py", "sh"][..]),
        ("lab-web/assets", &["js"][..]),
    ] {
        for ext in exts {
            files_with_ext(&root.join(dir), ext, &mut files);
        }
    }
    files
}

/// Where the Rust code outside `owner` (lab-model's own tests excepted)
/// has a string literal holding one of `names`.
fn spelled_outside(root: &Path, owner: &Path, names: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    for dir in [
        "analyzer",
        "lab-web",
        "recorder",
        "hardware-setup",
        "tests",
        "fuzz",
        "lab-model",
    ] {
        files_with_ext(&root.join(dir), "rs", &mut files);
    }
    let me = Path::new(file!()).file_name().unwrap();
    let mut found = Vec::new();
    for f in files {
        // lab-model's own tests pin the names the contract gives.
        if f.file_name() == Some(me) || f == owner || pins_lab_model(root, &f) {
            continue;
        }
        let (_, strings) = strip_literals(&std::fs::read_to_string(&f).unwrap());
        for s in strings {
            if let Some(n) = names.iter().find(|n| s.contains(*n)) {
                found.push(format!("{}: {n}", f.strip_prefix(root).unwrap().display()));
            }
        }
    }
    found
}

#[test]
fn analysis_file_names_are_spelled_once() {
    let root = workspace();
    let names = [
        "transcript.json",
        "speech.json",
        "steps.json",
        "candidates.json",
        "qa.json",
        "state.json",
        "renditions.json",
        "peaks.json",
        "journey.toml",
    ];
    let mut found = spelled_outside(&root, &root.join("lab-model/src/analysis/files.rs"), &names);
    // Scripts are checked as plain text (their comments included, since a
    // comment naming a file is how such a copy starts).
    for f in script_files(&root) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for n in names.iter().filter(|n| text.contains(*n)) {
            found.push(format!("{}: {n}", f.strip_prefix(&root).unwrap().display()));
        }
    }
    assert!(
        found.is_empty(),
        "analysis/ file names outside lab_model::analysis::files:\n{}",
        found.join("\n")
    );
}

#[test]
fn model_file_names_are_spelled_once() {
    let root = workspace();
    let names = [
        "ggml-base.bin",
        "ggml-tiny.en.bin",
        "whisper-base-ct2",
        "whisper-tiny.en-ct2",
        "silero_vad.onnx",
        "libonnxruntime.so",
        "libonnxruntime.so.1.32.0",
        "whisper-default.json",
    ];
    let found = spelled_outside(&root, &root.join("lab-model/src/models.rs"), &names);
    assert!(
        found.is_empty(),
        "model file names outside lab_model::models:\n{}",
        found.join("\n")
    );
}

/// Every front-end file lab-web and the recorder embed parses: a syntax
/// error in one ES module (an apostrophe in an English string) leaves every
/// page blank, which only the browser tests would otherwise show, minutes
/// later. `node --check` on a copy named `.mjs` (ES modules) or `.cjs`
/// (classic scripts: `overlay.js`, the recorder's injected scripts).
#[test]
fn every_embedded_script_parses() {
    lab_tests::require("node");
    let root = workspace();
    let tmp = lab_tests::temp_dir("script-syntax");
    let mut checked = 0;
    let mut bad = Vec::new();
    for dir in ["lab-web/assets", "recorder/src"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|x| x != "js") {
                continue;
            }
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let module = dir == "lab-web/assets" && name != "overlay";
            let copy = tmp.join(format!("{name}.{}", if module { "mjs" } else { "cjs" }));
            std::fs::copy(&path, &copy).unwrap();
            let out = std::process::Command::new("node")
                .arg("--check")
                .arg(&copy)
                .output()
                .unwrap();
            if !out.status.success() {
                bad.push(format!(
                    "{}: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} scripts found");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
