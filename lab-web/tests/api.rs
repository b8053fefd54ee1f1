//! API tests through the real router (`tower::oneshot`) on both databases:
//! a fresh SQLite file always, and a fresh PostgreSQL database when
//! `LAB_TEST_PG_URL` names a server (scripts/test starts one and sets
//! `LAB_REQUIRE_PG=1`, so CI cannot skip it silently).

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use lab_model::analysis::AnalysisFile;
use lab_web::AppState;
use lab_web::db::Db;
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;
use common::{backends, tmpdir};

struct Env {
    app: Router,
    state: AppState,
    dir: PathBuf,
    backend: &'static str,
}

async fn env(backend: &'static str, url: &str, dir: PathBuf) -> Env {
    let db = Db::connect(url).await.unwrap();
    let config = common::config(&dir);
    std::fs::create_dir_all(&config.sessions_dir).unwrap();
    let state = AppState::new(db, config);
    for (login, role) in [
        ("admin", "admin"),
        ("res", "researcher"),
        ("op", "operator"),
        ("view", "viewer"),
    ] {
        lab_web::auth::create_user(&state, login, "", "password-123", role)
            .await
            .unwrap();
    }
    Env {
        app: lab_web::app(state.clone()),
        state,
        dir,
        backend,
    }
}

#[derive(Clone, Default)]
struct Client {
    cookie: Option<String>,
    csrf: Option<String>,
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Env {
    async fn call(&self, c: &Client, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call_from(c, method, path, body, "10.0.0.1").await
    }

    /// A request from client address `addr` (what `ConnectInfo` gives a served app).
    async fn call_from(
        &self,
        c: &Client,
        method: &str,
        path: &str,
        body: Option<Value>,
        addr: &str,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "lab.test");
        if let Some(ck) = &c.cookie {
            b = b.header(header::COOKIE, ck);
        }
        if let Some(t) = &c.csrf {
            b = b.header("x-csrf-token", t);
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let mut req = req;
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                addr.parse().unwrap(),
                40000,
            )));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .unwrap()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn login(&self, login: &str) -> Client {
        let r = self
            .call(
                &Client::default(),
                "POST",
                "/api/v1/login",
                Some(json!({"login": login, "password": "password-123"})),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}: login {login}: {}",
            self.backend,
            r.text()
        );
        let cookie = r
            .headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        Client {
            cookie: Some(cookie.split(';').next().unwrap().to_string()),
            csrf: r.json()["csrf"].as_str().map(String::from),
        }
    }

    /// `POST /api/v1/imports {path}` as `c`.
    async fn import(&self, c: &Client, path: &str) -> Resp {
        self.call(c, "POST", "/api/v1/imports", Some(json!({ "path": path })))
            .await
    }

    fn bundle(&self, id: &str, participant: &str) -> PathBuf {
        lab_web::synth::write_bundle(
            &self.dir.join("sessions"),
            &lab_web::synth::Spec::small(id, participant),
        )
        .unwrap()
    }
}

async fn each_backend<F, Fut>(tag: &str, f: F)
where
    F: Fn(Env) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for (backend, url, dir) in backends(tag).await {
        eprintln!("--- {tag} on {backend}");
        f(env(backend, &url, dir).await).await;
    }
}

#[tokio::test]
async fn anonymous_requests_are_refused_and_pages_are_russian() {
    each_backend("anon", |e| async move {
        let anon = Client::default();
        for path in [
            "/api/v1/sessions",
            "/api/v1/me",
            "/api/v1/journeys",
            "/api/v1/findings",
            "/api/v1/audit",
        ] {
            let r = e.call(&anon, "GET", path, None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{} {path}", e.backend);
        }
        let r = e.call(&anon, "GET", "/", None).await;
        assert_eq!(r.status, StatusCode::OK);
        let html = r.text();
        assert!(
            html.contains("lang=\"ru\"") && html.contains("Сессии"),
            "{html}"
        );
        assert!(r.headers.get(header::CONTENT_SECURITY_POLICY).is_some());
        let bad = e
            .call(
                &anon,
                "POST",
                "/api/v1/login",
                Some(json!({"login": "admin", "password": "wrong-password"})),
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        assert_eq!(bad.json()["error"], "bad_credentials");
        let unknown = e
            .call(
                &anon,
                "POST",
                "/api/v1/login",
                Some(json!({"login": "nobody", "password": "password-123"})),
            )
            .await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        // Repeated failures lock the login for a while, even with the right password.
        // (The lock is per process and login name, so this user is this test's own.)
        let locky = format!("locky-{}", e.backend);
        lab_web::auth::create_user(&e.state, &locky, "", "password-123", "viewer")
            .await
            .unwrap();
        for _ in 0..5 {
            let r = e
                .call(
                    &anon,
                    "POST",
                    "/api/v1/login",
                    Some(json!({"login": locky, "password": "guess-guess"})),
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        let r = e
            .call(
                &anon,
                "POST",
                "/api/v1/login",
                Some(json!({"login": locky, "password": "password-123"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
        let openapi = e.call(&anon, "GET", "/api/v1/openapi.json", None).await;
        assert_eq!(openapi.status, StatusCode::OK);
        assert!(
            openapi.json()["paths"]
                .as_object()
                .is_some_and(|p| p.contains_key("/sessions")),
            "openapi lists /sessions"
        );
    })
    .await;
}

#[tokio::test]
async fn csrf_roles_and_logout() {
    each_backend("csrf", |e| async move {
        let admin = e.login("admin").await;
        let no_csrf = Client {
            csrf: None,
            ..admin.clone()
        };
        let r = e
            .call(
                &no_csrf,
                "POST",
                "/api/v1/tokens",
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (StatusCode::FORBIDDEN, json!("csrf"))
        );
        let wrong = Client {
            csrf: Some("0".repeat(64)),
            ..admin.clone()
        };
        assert_eq!(
            e.call(&wrong, "POST", "/api/v1/tokens", Some(json!({"name": "x"})))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        let viewer = e.login("view").await;
        assert_eq!(
            e.call(&viewer, "GET", "/api/v1/users", None).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            e.call(&viewer, "GET", "/api/v1/audit", None).await.status,
            StatusCode::FORBIDDEN
        );
        let users = e.call(&admin, "GET", "/api/v1/users", None).await;
        assert_eq!(users.json()["users"].as_array().unwrap().len(), 4);
        // Logging out ends the session for that cookie.
        assert_eq!(
            e.call(&viewer, "POST", "/api/v1/logout", None).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            e.call(&viewer, "GET", "/api/v1/me", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        // A disabled user cannot use an old session.
        let op = e.login("op").await;
        let id = users.json()["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["login"] == "op")
            .unwrap()["id"]
            .clone();
        let r = e
            .call(
                &admin,
                "PATCH",
                &format!("/api/v1/users/{id}"),
                Some(json!({"disabled": true})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(
            e.call(&op, "GET", "/api/v1/me", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        let audit = e.call(&admin, "GET", "/api/v1/audit", None).await.json();
        let actions: Vec<&str> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["action"].as_str())
            .collect();
        assert!(
            actions.contains(&"login")
                && actions.contains(&"update_user")
                && actions.contains(&"logout"),
            "{actions:?}"
        );
    })
    .await;
}

async fn imported(e: &Env, id: &str, participant: &str) -> Client {
    let bundle = e.bundle(id, participant);
    let op = e.login("op").await;
    let r = e
        .call(
            &op,
            "POST",
            "/api/v1/imports",
            Some(json!({"path": bundle.to_string_lossy()})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"session_id": id, "imported": true}));
    let again = e
        .call(
            &op,
            "POST",
            "/api/v1/imports",
            Some(json!({"path": bundle.to_string_lossy()})),
        )
        .await;
    assert_eq!(
        again.json()["imported"],
        false,
        "second import of an unchanged bundle is a no-op"
    );
    op
}

#[tokio::test]
async fn import_is_idempotent_and_confined_to_the_sessions_folder() {
    each_backend("import", |e| async move {
        let op = imported(&e, "S1", "P01").await;
        let list = e.call(&op, "GET", "/api/v1/sessions", None).await.json();
        let s = &list["sessions"][0];
        assert_eq!(
            (
                s["participant"].as_str(),
                s["candidates_total"].as_i64(),
                s["journey_id"].as_str()
            ),
            (Some("P01"), Some(2), Some("test-benefit"))
        );
        assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
        let outside = tmpdir("outside");
        let b = lab_web::synth::write_bundle(&outside, &lab_web::synth::Spec::small("S9", "P09"))
            .unwrap();
        let r = e
            .call(
                &op,
                "POST",
                "/api/v1/imports",
                Some(json!({"path": b.to_string_lossy()})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        let r = e
            .call(
                &op,
                "POST",
                "/api/v1/imports",
                Some(json!({"path": "../../etc"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // A changed bundle is re-read: more events appear.
        let bundle = e.dir.join("sessions").join("S1");
        let mut spec = lab_web::synth::Spec::small("S1", "P01");
        spec.events = 90;
        std::thread::sleep(Duration::from_millis(20));
        lab_web::synth::write_bundle(&e.dir.join("sessions"), &spec).unwrap();
        let r = e
            .call(
                &op,
                "POST",
                "/api/v1/imports",
                Some(json!({"path": bundle.to_string_lossy()})),
            )
            .await;
        assert_eq!(r.json()["imported"], true);
        let ev = e
            .call(&op, "GET", "/api/v1/sessions/S1/events", None)
            .await
            .json();
        assert_eq!(ev["events"].as_array().unwrap().len(), 90);
        // A malformed manifest is a clear error, not a crash.
        let broken = e.dir.join("sessions").join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("manifest.json"), "{ not json").unwrap();
        let r = e
            .call(
                &op,
                "POST",
                "/api/v1/imports",
                Some(json!({"path": "broken"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.json()["message"].as_str().unwrap().contains("manifest"),
            "{}",
            r.text()
        );
    })
    .await;
}

#[tokio::test]
async fn review_flow_tags_map_and_exports() {
    each_backend("review", |e| async move {
        imported(&e, "S1", "P01").await;
        let res = e.login("res").await;
        let tl = e.call(&res, "GET", "/api/v1/sessions/S1/timeline", None).await.json();
        assert_eq!(tl["steps"].as_array().unwrap().len(), 3);
        assert_eq!(tl["steps"][1]["title"], "Заполнить заявление");
        assert_eq!(tl["events"].as_array().unwrap().len(), 60);
        assert_eq!(tl["candidates"].as_array().unwrap().len(), 2);
        // A window of the timeline holds exactly the events of that window.
        let win = e.call(&res, "GET", "/api/v1/sessions/S1/timeline?from_ms=30000&to_ms=61000", None).await.json();
        let ev = e.call(&res, "GET", "/api/v1/sessions/S1/events?from_ms=30000&to_ms=61000", None).await.json();
        let seqs = |v: &Value| v.as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!(seqs(&win["events"]), seqs(&ev["events"]));
        assert!(!seqs(&win["events"]).is_empty());
        assert!(win["events"].as_array().unwrap().iter().all(|e| (30000..=61000).contains(&e["t_ms"].as_i64().unwrap())));
        assert!(win["speech"].as_array().unwrap().iter().all(|s| s["end_ms"].as_i64().unwrap() >= 30000));
        let tr = e.call(&res, "GET", "/api/v1/sessions/S1/transcript", None).await.json();
        let words: usize = tr["segments"].as_array().unwrap().iter().map(|s| s["words"].as_array().unwrap().len()).sum();
        assert_eq!(words, 120);
        // Russian word forms: «понимаете» finds «понимаю».
        let hits = e.call(&res, "GET", "/api/v1/search?q=%D0%BF%D0%BE%D0%BD%D0%B8%D0%BC%D0%B0%D0%B5%D1%82%D0%B5", None).await.json();
        assert!(!hits["hits"].as_array().unwrap().is_empty(), "{hits}");
        assert!(hits["hits"][0]["text"].as_str().unwrap().contains("понимаю"));
        let none = e.call(&res, "GET", "/api/v1/search?q=%D0%B6%D0%B8%D1%80%D0%B0%D1%84", None).await.json();
        assert!(none["hits"].as_array().unwrap().is_empty());

        // Accept one candidate, reject the other (a reason is required).
        let acc = e.call(&res, "POST", "/api/v1/sessions/S1/candidates/rage_click-1/accept", None).await;
        assert_eq!(acc.status, StatusCode::OK, "{}", acc.text());
        let tag = acc.json()["tag"].clone();
        assert_eq!((tag["step"].as_str(), tag["category"].as_str(), tag["candidate_id"].as_str()), (Some("form"), Some("error"), Some("rage_click-1")));
        assert!(tag["url"].as_str().unwrap().contains("form"), "{tag}");
        assert!(tag["selector"].as_str().unwrap().starts_with("#form-button"), "{tag}");
        assert!(!tag["quote"].as_str().unwrap().is_empty(), "quote prefilled from the transcript: {tag}");
        let twice = e.call(&res, "POST", "/api/v1/sessions/S1/candidates/rage_click-1/accept", None).await;
        assert_eq!(twice.status, StatusCode::CONFLICT);
        let r = e.call(&res, "POST", "/api/v1/sessions/S1/candidates/verbal_confusion-1/reject", Some(json!({"reason": ""}))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = e.call(&res, "POST", "/api/v1/sessions/S1/candidates/verbal_confusion-1/reject", Some(json!({"reason": "это модератор"}))).await;
        assert_eq!((r.json()["status"].as_str(), r.json()["reason"].as_str()), (Some("rejected"), Some("это модератор")));

        // A hand-made tag with hostile text; then edit it and look at its history.
        let hostile = "<script>alert(1)</script> & \"кавычки\"";
        let r = e
            .call(&res, "POST", "/api/v1/sessions/S1/tags", Some(json!({"start_ms": 30000, "end_ms": 34000, "step": "form",
                "category": "comprehension", "severity": 3, "emotion": "negative", "note": hostile})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let t2 = r.json();
        let bad = e.call(&res, "POST", "/api/v1/sessions/S1/tags", Some(json!({"start_ms": 5, "end_ms": 1, "category": "other", "severity": 9, "emotion": "x"}))).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let upd = e
            .call(&res, "PUT", &format!("/api/v1/tags/{}", t2["id"]), Some(json!({"start_ms": 30000, "end_ms": 35000, "step": "form",
                "category": "comprehension", "severity": 4, "emotion": "negative", "note": hostile})))
            .await;
        assert_eq!(upd.json()["severity"], 4);
        let hist = e.call(&res, "GET", &format!("/api/v1/tags/{}/history", t2["id"]), None).await.json();
        let actions: Vec<&str> = hist["history"].as_array().unwrap().iter().map(|h| h["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["create", "update"]);
        assert_eq!(hist["history"][1]["before"]["severity"], 3);

        // Journey map: the form step has both problems; times come from the steps.
        let map = e.call(&res, "GET", "/api/v1/journeys/test-benefit/map", None).await.json();
        assert_eq!(map["sessions"], 1);
        let form = map["steps"].as_array().unwrap().iter().find(|s| s["id"] == "form").unwrap();
        assert_eq!(form["time"]["median_ms"], 58_500);
        assert_eq!(form["completion"]["rate"], 1.0);
        assert_eq!(form["emotions"]["negative"], 2);
        let cats: Vec<&str> = form["problems"].as_array().unwrap().iter().map(|p| p["category"].as_str().unwrap()).collect();
        assert!(cats.contains(&"error") && cats.contains(&"comprehension"), "{cats:?}");
        // Proposed friction: the accepted rage clicks (also a dead click: it
        // counts under both), not the rejected candidate.
        let proposed: Vec<(&str, i64)> = form["proposed"].as_array().unwrap().iter().map(|p| (p["detector"].as_str().unwrap(), p["accepted"].as_i64().unwrap())).collect();
        assert_eq!(proposed, [("dead_click", 1), ("rage_click", 1)]);
        assert_eq!(form["proposed"][0]["sessions"][0]["participant"], "P01");

        // Exports.
        let fj = e.call(&res, "GET", "/api/v1/findings?journey=test-benefit&format=json", None).await;
        let doc = fj.json();
        assert_eq!(doc["schema_version"], 1);
        assert_eq!(doc["findings"].as_array().unwrap().len(), 2);
        assert_eq!(doc["findings"][0]["step_title"], "Заполнить заявление");
        assert!(doc["findings"][0]["session_url"].as_str().unwrap().starts_with("http://lab.test/sessions/S1"));
        let csv = e.call(&res, "GET", "/api/v1/findings?journey=test-benefit&format=csv", None).await;
        assert!(csv.body.starts_with(b"\xEF\xBB\xBF"), "CSV starts with a BOM");
        let text = String::from_utf8(csv.body[3..].to_vec()).unwrap();
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        assert!(rd.headers().unwrap().iter().any(|h| h == "Шаг"), "{:?}", rd.headers().unwrap());
        assert_eq!(rd.records().count(), 2);
        assert!(text.contains("Заполнить заявление"));
        let eaf = e.call(&res, "GET", "/api/v1/sessions/S1/export.eaf", None).await.text();
        let xml = roxmltree::Document::parse(&eaf).expect("EAF is XML");
        assert_eq!(xml.root_element().tag_name().name(), "ANNOTATION_DOCUMENT");
        let slots: std::collections::HashSet<&str> = xml.descendants().filter(|n| n.has_tag_name("TIME_SLOT")).filter_map(|n| n.attribute("TIME_SLOT_ID")).collect();
        for n in xml.descendants().filter(|n| n.has_tag_name("ALIGNABLE_ANNOTATION")) {
            assert!(slots.contains(n.attribute("TIME_SLOT_REF1").unwrap()) && slots.contains(n.attribute("TIME_SLOT_REF2").unwrap()));
        }
        assert!(xml.descendants().filter(|n| n.has_tag_name("TIER")).count() >= 4);
        assert!(eaf.contains("&lt;script&gt;") && !eaf.contains("<script>"));
        let vtt = e.call(&res, "GET", "/api/v1/sessions/S1/export.vtt", None).await.text();
        assert!(vtt.starts_with("WEBVTT") && vtt.contains("-->"));
        let report = e.call(&res, "GET", "/api/v1/journeys/test-benefit/report.html", None).await.text();
        assert!(report.contains("Заполнить заявление") && !report.contains("<script>alert"));

        // Deleting a tag keeps its history and reopens nothing else.
        assert_eq!(e.call(&res, "DELETE", &format!("/api/v1/tags/{}", t2["id"]), None).await.status, StatusCode::NO_CONTENT);
        let tags = e.call(&res, "GET", "/api/v1/sessions/S1/tags", None).await.json();
        assert_eq!(tags["tags"].as_array().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn viewers_see_findings_not_recordings_and_withdrawal_purges() {
    each_backend("privacy", |e| async move {
        imported(&e, "S1", "P01").await;
        imported(&e, "S2", "P02").await;
        let res = e.login("res").await;
        for s in ["S1", "S2"] {
            let r = e.call(&res, "POST", &format!("/api/v1/sessions/{s}/candidates/rage_click-1/accept"), None).await;
            assert_eq!(r.status, StatusCode::OK);
        }
        let viewer = e.login("view").await;
        for path in ["/api/v1/sessions/S1/transcript", "/api/v1/sessions/S1/timeline", "/api/v1/sessions/S1/media/screen.mp4", "/api/v1/sessions/S1/export.eaf", "/api/v1/search?q=кнопка"] {
            assert_eq!(e.call(&viewer, "GET", path, None).await.status, StatusCode::FORBIDDEN, "viewer {path}");
        }
        let detail = e.call(&viewer, "GET", "/api/v1/sessions/S1", None).await.json();
        assert_eq!(detail["media"]["screen"], Value::Null);
        assert_eq!(e.call(&viewer, "GET", "/api/v1/journeys/test-benefit/map", None).await.status, StatusCode::OK);
        assert_eq!(e.call(&viewer, "POST", "/api/v1/sessions/S1/tags", Some(json!({"start_ms": 0, "end_ms": 1, "category": "other", "severity": 1, "emotion": "neutral"}))).await.status, StatusCode::FORBIDDEN);

        // Withdrawal (admin only) purges S1's transcript and quotes, keeps aggregates.
        assert_eq!(e.call(&res, "POST", "/api/v1/sessions/S1/withdraw", Some(json!({"reason": "x"}))).await.status, StatusCode::FORBIDDEN);
        let admin = e.login("admin").await;
        let r = e.call(&admin, "POST", "/api/v1/sessions/S1/withdraw", Some(json!({"reason": "просьба участника"}))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        let tr = e.call(&admin, "GET", "/api/v1/sessions/S1/transcript", None).await.json();
        assert!(tr["segments"].as_array().unwrap().is_empty());
        assert!(!e.dir.join("sessions/S1/analysis").exists(), "analysis files deleted from the bundle");
        let map = e.call(&admin, "GET", "/api/v1/journeys/test-benefit/map", None).await.json();
        let form = map["steps"].as_array().unwrap().iter().find(|s| s["id"] == "form").unwrap();
        assert_eq!(form["time"]["n"], 2, "both sessions still count in step times");
        let quotes: Vec<&Value> = form["problems"].as_array().unwrap().iter().flat_map(|p| p["quotes"].as_array().unwrap()).collect();
        assert!(quotes.iter().all(|q| q["session_id"] != "S1"), "{quotes:?}");
        let list = e.call(&admin, "GET", "/api/v1/sessions", None).await.json();
        let s1 = list["sessions"].as_array().unwrap().iter().find(|s| s["id"] == "S1").unwrap();
        assert_eq!((s1["withdrawn"].as_bool(), s1["participant"].as_str()), (Some(true), Some("отозван")));
        // The whole bundle is gone: manifest (participant code, consent), events, media.
        assert!(!e.dir.join("sessions/S1").exists(), "bundle folder deleted");
        // A copy that turns up again (a station re-sending it) is not read, and is deleted.
        e.bundle("S1", "P01");
        let op = e.login("op").await;
        let r = e.import(&op, "S1").await;
        assert_eq!(r.json()["imported"], false, "{}", r.text());
        assert!(!e.dir.join("sessions/S1").exists(), "re-sent bundle deleted");
    })
    .await;
}

#[tokio::test]
async fn sensor_lanes_draw_the_bundles_signal_and_are_purged_on_withdrawal() {
    each_backend("sensors", |e| async move {
        imported(&e, "S1", "P01").await;
        let res = e.login("res").await;
        let lanes = e
            .call(&res, "GET", "/api/v1/sessions/S1/sensors", None)
            .await
            .json();
        let l = &lanes["lanes"][0];
        assert_eq!(
            (
                l["stream"].as_str(),
                l["channel"].as_str(),
                l["unit"].as_str(),
                l["samples"].as_i64()
            ),
            (
                Some("Shimmer EDA"),
                Some("EDA"),
                Some("microsiemens"),
                Some(90 * 16)
            ),
            "{lanes}"
        );
        // 90 s in 90 columns: each column's min and max are those of its
        // samples (the synthetic bundle's 16 Hz signal), to the f32.
        let s = e
            .call(
                &res,
                "GET",
                "/api/v1/sessions/S1/sensors/0?from_ms=0&to_ms=90000&columns=90",
                None,
            )
            .await
            .json();
        let mut want = vec![(f32::INFINITY, f32::NEG_INFINITY); 90];
        for i in 0..90 * 16 {
            let t_ns = (i as f64 / 16.0 * 1e9) as i64;
            let v = lab_web::synth::synth_eda(t_ns as f64 / 1e9) as f32;
            let c = (t_ns / 1_000_000_000) as usize;
            want[c] = (want[c].0.min(v), want[c].1.max(v));
        }
        for (c, (lo, hi)) in want.iter().enumerate() {
            assert_eq!(
                s["min"][c].as_f64().map(|x| x as f32),
                Some(*lo),
                "column {c}: {s}"
            );
            assert_eq!(
                s["max"][c].as_f64().map(|x| x as f32),
                Some(*hi),
                "column {c}"
            );
        }
        // The responses (every 20 s from 10 s) stand out.
        let peak = s["max"][11].as_f64().unwrap() - s["min"][9].as_f64().unwrap();
        assert!(peak > 0.25, "{peak}");
        // A 2-second window reads level 0 (1/32 s buckets).
        let w = e
            .call(
                &res,
                "GET",
                "/api/v1/sessions/S1/sensors/0?from_ms=10000&to_ms=12000&columns=64",
                None,
            )
            .await
            .json();
        assert_eq!(w["bucket_ms"], 31.25);
        // Bad requests are refused; a viewer sees no raw signal.
        for (path, status) in [
            (
                "/api/v1/sessions/S1/sensors/0?from_ms=0&to_ms=90000&columns=0",
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/sessions/S1/sensors/0?from_ms=9&to_ms=9&columns=10",
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/sessions/S1/sensors/0?from_ms=0&to_ms=99999999999&columns=10",
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/sessions/S1/sensors/7?from_ms=0&to_ms=90000&columns=10",
                StatusCode::NOT_FOUND,
            ),
        ] {
            assert_eq!(
                e.call(&res, "GET", path, None).await.status,
                status,
                "{path}"
            );
        }
        let viewer = e.login("view").await;
        assert_eq!(
            e.call(&viewer, "GET", "/api/v1/sessions/S1/sensors", None)
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        // The journey map's sensor view: responses per minute of each step
        // across both sessions (the analysis's per-step arousal).
        imported(&e, "S2", "P02").await;
        let map = e
            .call(&viewer, "GET", "/api/v1/journeys/test-benefit/map", None)
            .await
            .json();
        let step = |id: &str| {
            map["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id)
                .unwrap()
                .clone()
        };
        let form = step("form")["arousal"].clone();
        let want = lab_web::synth::synth_arousal(18_000, 76_500)
            .eda_per_min
            .unwrap();
        assert_eq!(form["eda_per_min"]["n"], 2, "{map}");
        assert!(
            (form["eda_per_min"]["mean"].as_f64().unwrap() - want).abs() < 1e-9,
            "{form}"
        );
        assert_eq!(form["eda_amplitude_us"]["mean"], 0.3);
        assert_eq!(form["hr_change_bpm"], Value::Null);
        assert!(
            (step("catalog")["arousal"]["eda_per_min"]["mean"]
                .as_f64()
                .unwrap()
                - 10.0 / 3.0)
                .abs()
                < 1e-9
        );
        // Withdrawal removes the lanes with everything else personal.
        let admin = e.login("admin").await;
        let r = e
            .call(
                &admin,
                "POST",
                "/api/v1/sessions/S1/withdraw",
                Some(json!({"reason": "x"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        for table in ["sensor_lanes", "sensor_levels"] {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {table} WHERE session_id = 'S1'"
            )))
            .fetch_one(&e.state.db.pool)
            .await
            .unwrap();
            assert_eq!(n, 0, "{table} after withdrawal");
        }
    })
    .await;
}

#[tokio::test]
async fn jobs_fail_clearly_and_can_be_retried_and_cancelled() {
    each_backend("jobs", |e| async move {
        imported(&e, "S1", "P01").await;
        let op = e.login("op").await;
        // On PostgreSQL job changes reach the streams through LISTEN/NOTIFY.
        lab_web::jobs::start_forwarding(&e.state).await.unwrap();
        let mut rx = e.state.job_events.subscribe();
        let r = e
            .call(&op, "POST", "/api/v1/sessions/S1/analyze", Some(json!({})))
            .await;
        let job = r.json()["job_id"].as_i64().unwrap();
        // Queued jobs can be cancelled before the worker takes them.
        let c = e
            .call(&op, "POST", &format!("/api/v1/jobs/{job}/cancel"), None)
            .await;
        assert_eq!(c.json()["status"], "cancelled");
        // The event of the job's queueing. On PostgreSQL a notification
        // carries only the job's id and the process that gets it reads the
        // row as it is then, so when the cancel came first the event
        // already says so (a stream never goes back to an older state).
        let queued: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(queued["id"].as_i64(), Some(job));
        let first = queued["status"].as_str();
        assert!(
            first == Some("queued") || (e.backend == "postgres" && first == Some("cancelled")),
            "{}: the first event of job {job} says {first:?}",
            e.backend
        );
        // Retrying runs it; the analyzer binary is missing, so it fails with a clear message.
        let again = e
            .call(&op, "POST", &format!("/api/v1/jobs/{job}/retry"), None)
            .await
            .json()["job_id"]
            .as_i64()
            .unwrap();
        tokio::spawn(lab_web::runner::worker(e.state.clone()));
        let mut status = String::new();
        for _ in 0..100 {
            let j = lab_web::jobs::get(&e.state, again).await.unwrap().unwrap();
            status = j.status.clone();
            if status == "failed" {
                assert!(j.message.contains("cannot start"), "{}", j.message);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, "failed");
        let list = e.call(&op, "GET", "/api/v1/sessions", None).await.json();
        assert_eq!(list["sessions"][0]["analysis"]["status"], "failed");
        let viewer = e.login("view").await;
        assert_eq!(
            e.call(
                &viewer,
                "POST",
                "/api/v1/sessions/S1/analyze",
                Some(json!({}))
            )
            .await
            .status,
            StatusCode::FORBIDDEN
        );
    })
    .await;
}

/// Regression: the analyzer's JSON progress lines must move the job's
/// progress but never make its failure message, which shows the analyzer's
/// own words; the journeys folders and the forced stage are passed on.
#[tokio::test]
async fn a_failed_analysis_shows_the_analyzers_words_not_its_progress_lines() {
    use lab_model::analysis::{Progress, Stage};
    each_backend("job_message", |e| async move {
        imported(&e, "S1", "P01").await;
        let progress = |done| Progress { stage: Stage::Speech, done, total: 6 }.to_line();
        let script = e.dir.join("fake-lab-analyze");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho '{}' >&2\necho \"lab-analyze: args: $*\" >&2\necho 'lab-analyze: no audio here' >&2\necho '{}' >&2\nexit 1\n",
                progress(3),
                progress(4)
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let op = e.login("op").await;
        let bad = e
            .call(&op, "POST", "/api/v1/sessions/S1/analyze", Some(json!({"force": "transcode"})))
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
        assert!(bad.json()["message"].as_str().unwrap().contains("unknown stage \"transcode\""), "{}", bad.text());
        let force = Stage::Steps.as_str();
        let r = e
            .call(&op, "POST", "/api/v1/sessions/S1/analyze", Some(json!({"force": force})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let job = r.json()["job_id"].as_i64().unwrap();
        let worker = tokio::spawn(lab_web::runner::worker(e.state.clone()));
        let mut j = None;
        for _ in 0..100 {
            j = lab_web::jobs::get(&e.state, job).await.unwrap();
            if j.as_ref().is_some_and(|j| j.status == "failed" || j.status == "done") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worker.abort();
        let j = j.unwrap();
        assert_eq!(j.status, "failed", "{}", j.message);
        assert!(j.message.contains("lab-analyze: no audio here"), "{}", j.message);
        assert!(!j.message.contains("lab_progress"), "{}", j.message);
        let journeys = format!("--journeys {}", e.dir.join("journeys").display());
        assert!(j.message.contains(&journeys), "{}", j.message);
        assert!(j.message.contains(&format!("--force {force}")), "{}", j.message);
        assert_eq!(j.stage, Stage::Speech.as_str());
        assert!((j.progress - 0.4).abs() < 1e-9, "{}", j.progress);
    })
    .await;
}

/// `…/media/<name>`: the peaks' route is named like the bundle's peaks file.
fn peaks_route() -> &'static str {
    let path = AnalysisFile::Peaks.relative_path();
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// Points the session's renditions at `files` (rendition key → bundle path).
fn set_renditions(bundle: &std::path::Path, screen: &str, thumb: &str, peaks: &str) {
    use lab_model::analysis::{
        ANALYSIS_FORMAT_VERSION, AnalysisDoc, RenditionVideo, Renditions, Thumbnail,
    };
    Renditions {
        format_version: ANALYSIS_FORMAT_VERSION,
        videos: vec![RenditionVideo {
            track: "screen".into(),
            file: screen.into(),
            frames: 0,
            expected_frames: 0,
            start_ns: 0,
            end_ns: 0,
        }],
        thumbnails: vec![Thumbnail {
            t_ns: 0,
            file: thumb.into(),
        }],
        peaks: Some(peaks.into()),
        errors: vec![],
        segments: vec![],
    }
    .write(bundle)
    .unwrap();
}

#[tokio::test]
async fn renditions_that_are_links_or_foreign_files_are_never_served() {
    each_backend("renditions", |e| async move {
        let bundle = e.bundle("S1", "P01");
        let web = bundle.join(lab_model::analysis::WEB_DIR);
        std::fs::create_dir_all(&web).unwrap();
        std::fs::write(web.join("screen.mp4"), b"not really a video").unwrap();
        // A rendition named like a page, with a script in it.
        std::fs::write(web.join("x.html"), b"<script>fetch('/api/v1/me')</script>").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", web.join("passwd.json")).unwrap();
        set_renditions(
            &bundle,
            "analysis/web/screen.mp4",
            "analysis/web/x.html",
            "analysis/web/passwd.json",
        );
        let op = e.login("op").await;
        let r = e
            .import(&op, "S1")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());

        let ok = e
            .call(&op, "GET", "/api/v1/sessions/S1/media/screen.mp4", None)
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.headers[header::CONTENT_TYPE], "video/mp4");
        assert_eq!(ok.body, b"not really a video");
        // The content type follows the route, never the bundle's file name,
        // and no response of the API may run script or be sniffed.
        let html = e
            .call(&op, "GET", "/api/v1/sessions/S1/media/thumbs/0.jpg", None)
            .await;
        assert_eq!(html.status, StatusCode::OK);
        assert_eq!(html.headers[header::CONTENT_TYPE], "image/jpeg");
        assert_eq!(html.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let csp = html.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("sandbox"),
            "{csp}"
        );
        // A symlink to a server file is refused, not followed.
        let passwd = e
            .call(&op, "GET", &format!("/api/v1/sessions/S1/media/{}", peaks_route()), None)
            .await;
        assert_eq!(passwd.status, StatusCode::NOT_FOUND, "{}", passwd.text());
        assert!(!passwd.text().contains("root:"));

        // A clip is cut from the same checked file, never from a path the
        // bundle chose: a linked rendition fails the job, and nothing is cut.
        set_renditions(&bundle, "analysis/web/passwd.json", "analysis/web/x.html", "analysis/web/passwd.json");
        let r = e.import(&op, "S1").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let res = e.login("res").await;
        let tag = e.call(&res, "POST", "/api/v1/sessions/S1/tags", Some(json!({"start_ms": 0, "end_ms": 1000, "category": "other", "severity": 1, "emotion": "neutral"}))).await;
        let tag_id = tag.json()["id"].as_i64().unwrap();
        let job = e.call(&res, "POST", &format!("/api/v1/tags/{tag_id}/clip"), None).await.json()["job_id"].as_i64().unwrap();
        let worker = tokio::spawn(lab_web::runner::worker(e.state.clone()));
        let mut j = None;
        for _ in 0..100 {
            j = lab_web::jobs::get(&e.state, job).await.unwrap();
            if j.as_ref().is_some_and(|j| j.status == "failed" || j.status == "done") { break; }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worker.abort();
        let j = j.unwrap();
        assert_eq!(j.status, "failed", "{}", j.message);
        assert!(j.message.contains("symbolic link") && !j.message.contains("root:"), "{}", j.message);
        assert!(!lab_web::clips::clip_path(&e.state, tag_id).exists());
        assert!(!e.state.clips_dir().join(format!("{tag_id}.srt")).exists(), "subtitles removed");

        // A hard link to the server's own database is refused without being
        // opened, and the database keeps working (its locks are not dropped).
        if e.backend == "sqlite" {
            std::fs::hard_link(e.dir.join("lab.db"), web.join("db.mp4")).unwrap();
            set_renditions(
                &bundle,
                "analysis/web/db.mp4",
                "analysis/web/x.html",
                "../../lab.db",
            );
            let r = e
                .import(&op, "S1")
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            for f in ["screen.mp4", peaks_route()] {
                let r = e
                    .call(&op, "GET", &format!("/api/v1/sessions/S1/media/{f}"), None)
                    .await;
                assert_eq!(r.status, StatusCode::NOT_FOUND, "{f}");
                assert!(!r.body.starts_with(b"SQLite"), "{f}");
            }
            let admin = e.login("admin").await;
            let created = e
                .call(
                    &admin,
                    "POST",
                    "/api/v1/users",
                    Some(json!({"login": "after", "password": "password-123", "role": "viewer"})),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
            std::fs::remove_file(web.join("db.mp4")).unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn bundles_linked_in_from_outside_are_not_imported() {
    each_backend("links", |e| async move {
        let outside = e.dir.join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        let real =
            lab_web::synth::write_bundle(&outside, &lab_web::synth::Spec::small("X1", "P09"))
                .unwrap();
        std::os::unix::fs::symlink(&real, e.dir.join("sessions/X1")).unwrap();
        let op = e.login("op").await;
        let r = e.import(&op, "X1").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.json()["error"], "bad_request");
        assert!(
            lab_web::import::import_from_sessions_folder(&e.state, &e.dir.join("sessions/X1"))
                .await
                .is_err()
        );
        assert!(lab_web::import::bundle_dirs(&e.dir.join("sessions")).is_empty());
        let list = e.call(&op, "GET", "/api/v1/sessions", None).await.json();
        assert!(list["sessions"].as_array().unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn hostile_life_situations_and_bundle_journeys_cannot_reach_or_retitle() {
    each_backend("journeys", |e| async move {
        // The lab's own definition of the journey the synthetic bundles use.
        let lab_journey =
            std::fs::read_to_string(AnalysisFile::Journey.path(&e.bundle("S0", "P00"))).unwrap();
        std::fs::remove_dir_all(e.dir.join("sessions/S0")).unwrap();
        std::fs::create_dir_all(e.dir.join("journeys")).unwrap();
        std::fs::write(e.dir.join("journeys/test-benefit.toml"), &lab_journey).unwrap();

        // A bundle whose own journey copy claims the lab's id with another title.
        let b = e.bundle("S1", "P01");
        let hijack = lab_journey.replacen("title = \"", "title = \"ВЗЛОМ ", 1);
        assert_ne!(hijack, lab_journey);
        std::fs::write(AnalysisFile::Journey.path(&b), hijack).unwrap();
        let op = e.login("op").await;
        let r = e.import(&op, "S1").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let list = e.call(&op, "GET", "/api/v1/journeys", None).await.json();
        let titles: Vec<&str> = list["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["title"].as_str().unwrap())
            .collect();
        assert!(titles.iter().all(|t| !t.contains("ВЗЛОМ")), "{titles:?}");

        // A manifest naming a journey outside the journeys folder is refused.
        let b = e.bundle("S2", "P02");
        std::fs::remove_file(AnalysisFile::Journey.path(&b)).unwrap();
        let m = b.join("manifest.json");
        let text = std::fs::read_to_string(&m)
            .unwrap()
            .replace("\"test-benefit\"", "\"../../../evil\"");
        std::fs::write(&m, text).unwrap();
        let r = e.import(&op, "S2").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("life_situation \"../../../evil\" is not a journey id"),
            "{}",
            r.text()
        );
    })
    .await;
}

#[tokio::test]
async fn withdrawn_sessions_are_read_only_and_late_job_output_is_deleted() {
    each_backend("withdraw_race", |e| async move {
        imported(&e, "S1", "P01").await;
        let res = e.login("res").await;
        let tag = json!({"start_ms": 1000, "end_ms": 2000, "category": "other", "severity": 2, "emotion": "neutral", "note": "n"});
        let created = e.call(&res, "POST", "/api/v1/sessions/S1/tags", Some(tag.clone())).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let tag_id = created.json()["id"].as_i64().unwrap();

        // A stand-in analyzer that writes results and is still running at withdrawal.
        let script = e.dir.join("fake-lab-analyze");
        std::fs::write(&script, "#!/bin/sh\nmkdir -p \"$2/analysis\" && echo late > \"$2/analysis/late.json\"\nsleep 3\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let op = e.login("op").await;
        let job = e.call(&op, "POST", "/api/v1/sessions/S1/analyze", Some(json!({}))).await.json()["job_id"].as_i64().unwrap();
        let clip_job = e.call(&res, "POST", &format!("/api/v1/tags/{tag_id}/clip"), None).await.json()["job_id"].as_i64().unwrap();
        tokio::spawn(lab_web::runner::worker(e.state.clone()));
        for _ in 0..100 {
            if e.dir.join("sessions/S1/analysis/late.json").exists() { break; }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(e.dir.join("sessions/S1/analysis/late.json").exists(), "stand-in analyzer ran");

        let admin = e.login("admin").await;
        let r = e.call(&admin, "POST", "/api/v1/sessions/S1/withdraw", Some(json!({"reason": "r"}))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        let mut statuses = (String::new(), String::new());
        for _ in 0..100 {
            let a = lab_web::jobs::get(&e.state, job).await.unwrap().unwrap();
            let c = lab_web::jobs::get(&e.state, clip_job).await.unwrap().unwrap();
            statuses = (a.status, c.status);
            if !["queued", "running"].contains(&statuses.0.as_str()) && !["queued", "running"].contains(&statuses.1.as_str()) { break; }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(statuses.0, "cancelled", "analysis job");
        assert_ne!(statuses.1, "done", "clip job");
        assert!(!e.dir.join("sessions/S1").exists(), "nothing of the bundle is left");

        // A clip a late job left behind is neither listed nor served, and the guard deletes it.
        std::fs::create_dir_all(e.state.clips_dir()).unwrap();
        std::fs::write(lab_web::clips::clip_path(&e.state, tag_id), b"clip").unwrap();
        sqlx::query("INSERT INTO clips (tag_id, status, file, job_id, created_at) VALUES ($1, 'done', 'x.mp4', $2, 0)")
            .bind(tag_id).bind(clip_job).execute(&e.state.db.pool).await.unwrap();
        let viewer = e.login("view").await;
        assert_eq!(e.call(&viewer, "GET", &format!("/api/v1/clips/{tag_id}.mp4"), None).await.status, StatusCode::NOT_FOUND);
        assert!(lab_web::withdrawal::after_job(&e.state, Some("S1")).await);
        assert!(!lab_web::clips::clip_path(&e.state, tag_id).exists());

        // Every change to the withdrawn session is refused with 409.
        for (method, path, body) in [
            ("POST", "/api/v1/sessions/S1/tags".to_string(), Some(tag.clone())),
            ("PUT", format!("/api/v1/tags/{tag_id}"), Some(tag.clone())),
            ("DELETE", format!("/api/v1/tags/{tag_id}"), None),
            ("POST", format!("/api/v1/tags/{tag_id}/clip"), None),
            ("POST", "/api/v1/sessions/S1/candidates/rage_click-1/accept".to_string(), None),
            ("POST", "/api/v1/sessions/S1/candidates/rage_click-1/reject".to_string(), Some(json!({"reason": "x"}))),
        ] {
            let r = e.call(&res, method, &path, body).await;
            assert_eq!(r.status, StatusCode::CONFLICT, "{method} {path}: {}", r.text());
        }
        let r = e.call(&op, "POST", "/api/v1/sessions/S1/analyze", Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    })
    .await;
}

#[tokio::test]
async fn login_attempts_are_reserved_atomically_and_do_not_lock_out_others() {
    each_backend("throttle", |e| async move {
        let bad = || Some(json!({"login": "admin", "password": "wrong-password"}));
        let anon = Client::default();
        let attempts =
            (0..40).map(|_| e.call_from(&anon, "POST", "/api/v1/login", bad(), "10.9.9.9"));
        let results = futures_util::future::join_all(attempts).await;
        let unauthorized = results
            .iter()
            .filter(|r| r.status == StatusCode::UNAUTHORIZED)
            .count();
        let throttled = results
            .iter()
            .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!(
            (unauthorized, throttled),
            (5, 35),
            "only five attempts reach the password check"
        );
        assert_eq!(
            results
                .iter()
                .find(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
                .unwrap()
                .json()["error"],
            "too_many_requests"
        );
        // The right password from the guessing address is refused too ...
        let right = Some(json!({"login": "admin", "password": "password-123"}));
        assert_eq!(
            e.call_from(&anon, "POST", "/api/v1/login", right.clone(), "10.9.9.9")
                .await
                .status,
            StatusCode::TOO_MANY_REQUESTS
        );
        // ... but the guesser has not locked the admin out for everyone else.
        assert_eq!(
            e.call_from(&anon, "POST", "/api/v1/login", right, "10.1.1.1")
                .await
                .status,
            StatusCode::OK
        );
        // Successful log-ins are not throttled: a lab logs in from one address.
        for _ in 0..(lab_web::limits::LOGIN_PER_ADDRESS + 5) {
            let ok = Some(json!({"login": "res", "password": "password-123"}));
            assert_eq!(
                e.call_from(&anon, "POST", "/api/v1/login", ok, "10.5.5.5")
                    .await
                    .status,
                StatusCode::OK
            );
        }
        // A hundred more guesses from the same address do not add to the
        // account's count: refused attempts stop at their own key.
        let more = (0..101).map(|_| e.call_from(&anon, "POST", "/api/v1/login", bad(), "10.9.9.9"));
        assert!(
            futures_util::future::join_all(more)
                .await
                .iter()
                .all(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        );
        let right = Some(json!({"login": "admin", "password": "password-123"}));
        assert_eq!(
            e.call_from(&anon, "POST", "/api/v1/login", right.clone(), "10.2.2.1")
                .await
                .status,
            StatusCode::OK
        );
        // A distributed guesser (many addresses, five guesses each) reaches
        // the account-wide limit: unknown addresses are refused, but an
        // address that logged in to the account before still gets in.
        let per = lab_web::limits::LOGIN_PER_ACCOUNT_AND_ADDRESS;
        let hosts = lab_web::limits::LOGIN_PER_ACCOUNT / per + 1;
        for h in 0..hosts {
            let addr = format!("10.8.{}.{}", h / 200, h % 200 + 1);
            let wave = (0..per).map(|_| e.call_from(&anon, "POST", "/api/v1/login", bad(), &addr));
            futures_util::future::join_all(wave).await;
        }
        assert_eq!(
            e.call_from(&anon, "POST", "/api/v1/login", right.clone(), "10.2.2.2")
                .await
                .status,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            e.call_from(&anon, "POST", "/api/v1/login", right.clone(), "10.1.1.1")
                .await
                .status,
            StatusCode::OK
        );
        // One address spraying many accounts is stopped as well.
        let mut last = StatusCode::OK;
        for i in 0..lab_web::limits::LOGIN_PER_ADDRESS + 1 {
            last = e
                .call_from(
                    &anon,
                    "POST",
                    "/api/v1/login",
                    Some(json!({"login": format!("u{i}"), "password": "x"})),
                    "10.7.7.7",
                )
                .await
                .status;
        }
        assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    })
    .await;
}

#[tokio::test]
async fn password_hashing_is_bounded_and_answers_busy() {
    each_backend("hashes", |e| async move {
        let n = lab_web::limits::max_concurrent_hashes() as u32;
        let held = e.state.hashes.acquire_many(n).await.unwrap();
        let r = e
            .call_from(
                &Client::default(),
                "POST",
                "/api/v1/login",
                Some(json!({"login": "res", "password": "password-123"})),
                "10.3.3.3",
            )
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert_eq!(r.json()["error"], "busy");
        drop(held);
        let r = e
            .call_from(
                &Client::default(),
                "POST",
                "/api/v1/login",
                Some(json!({"login": "res", "password": "password-123"})),
                "10.3.3.3",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    })
    .await;
}

#[tokio::test]
async fn tag_times_are_bounded_by_the_session() {
    each_backend("tag_bounds", |e| async move {
        imported(&e, "S1", "P01").await;
        let res = e.login("res").await;
        let duration = e.call(&res, "GET", "/api/v1/sessions/S1", None).await.json()["duration_ms"].as_i64().unwrap();
        assert!(duration > 0);
        let tag = |start: i64, end: i64| Some(json!({"start_ms": start, "end_ms": end, "category": "other", "severity": 2, "emotion": "neutral"}));
        for (start, end) in [(0, i64::MAX), (i64::MAX, i64::MAX), (-1, 10), (0, duration + lab_web::limits::TAG_SLACK_MS + 1)] {
            let r = e.call(&res, "POST", "/api/v1/sessions/S1/tags", tag(start, end)).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{start}..{end}: {}", r.text());
        }
        let ok = e.call(&res, "POST", "/api/v1/sessions/S1/tags", tag(0, duration)).await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text());
        let id = ok.json()["id"].as_i64().unwrap();
        let r = e.call(&res, "PUT", &format!("/api/v1/tags/{id}"), tag(0, i64::MAX)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let eaf = e.call(&res, "GET", "/api/v1/sessions/S1/export.eaf", None).await;
        assert_eq!(eaf.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn api_errors_are_json_headers_are_safe_and_links_ignore_the_host_header() {
    each_backend("errors", |e| async move {
        imported(&e, "S1", "P01").await;
        let res = e.login("res").await;
        for (method, path, body) in [
            ("PUT", "/api/v1/tags/not-a-number", Some(json!({}))),
            (
                "POST",
                "/api/v1/sessions/S1/tags",
                Some(json!({"start_ms": "soon"})),
            ),
            ("DELETE", "/api/v1/sessions", None),
            ("GET", "/api/v1/nowhere", None),
        ] {
            let r = e.call(&res, method, path, body).await;
            assert!(r.status.is_client_error(), "{method} {path}: {}", r.status);
            assert_eq!(
                r.headers[header::CONTENT_TYPE],
                "application/json",
                "{method} {path}"
            );
            assert!(
                r.json()["error"].is_string() && r.json()["message"].is_string(),
                "{method} {path}: {}",
                r.text()
            );
            assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        // A body that is not JSON at all, and one over the limit.
        let mut req = Request::builder()
            .method("POST")
            .uri("/api/v1/sessions/S1/tags")
            .header(header::COOKIE, res.cookie.clone().unwrap())
            .header("x-csrf-token", res.csrf.clone().unwrap())
            .header(header::CONTENT_TYPE, "application/json");
        req = req.header(header::HOST, "lab.test");
        for body in [
            b"{not json".to_vec(),
            vec![b' '; lab_web::limits::MAX_BODY_BYTES + 10],
        ] {
            let r = e.app.clone().oneshot(req_clone(&req, body)).await.unwrap();
            assert!(r.status().is_client_error());
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        }
        // Export links use the configured address, not the Host a client sent.
        let mut evil = Request::builder()
            .uri("/api/v1/findings?format=json")
            .header(header::COOKIE, res.cookie.clone().unwrap())
            .header(header::HOST, "evil.example")
            .body(Body::empty())
            .unwrap();
        evil.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [10, 0, 0, 1],
                1,
            ))));
        let r = e.app.clone().oneshot(evil).await.unwrap();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("evil.example"));
        let report = e
            .call(
                &res,
                "GET",
                "/api/v1/journeys/test-benefit/report.html",
                None,
            )
            .await;
        assert_eq!(report.status, StatusCode::OK);
        let csp = report.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("script-src"),
            "{csp}"
        );
    })
    .await;
}

fn req_clone(b: &axum::http::request::Builder, body: Vec<u8>) -> Request<Body> {
    let mut r = Request::builder()
        .method(b.method_ref().unwrap().clone())
        .uri(b.uri_ref().unwrap().clone());
    for (k, v) in b.headers_ref().unwrap() {
        r = r.header(k, v);
    }
    r.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn overlay_tokens_read_the_overlay_feed_and_nothing_else() {
    each_backend("token_scope", |e| async move {
        imported(&e, "S1", "P01").await;
        let admin = e.login("admin").await;
        let overlay = e
            .call(
                &admin,
                "POST",
                "/api/v1/tokens",
                Some(json!({"name": "прототип"})),
            )
            .await
            .json();
        assert_eq!(overlay["scope"], "overlay");
        let viewer = e
            .call(
                &admin,
                "POST",
                "/api/v1/tokens",
                Some(json!({"name": "скрипт", "scope": "viewer"})),
            )
            .await
            .json();
        assert_eq!(
            e.call(
                &admin,
                "POST",
                "/api/v1/tokens",
                Some(json!({"name": "x", "scope": "admin"}))
            )
            .await
            .status,
            StatusCode::BAD_REQUEST
        );
        let bearer = |t: &Value, path: &str| {
            let mut r = Request::builder()
                .uri(path)
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", t["token"].as_str().unwrap()),
                )
                .body(Body::empty())
                .unwrap();
            r.extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                    [10, 0, 0, 1],
                    1,
                ))));
            let app = e.app.clone();
            async move { app.oneshot(r).await.unwrap().status() }
        };
        assert_eq!(
            bearer(&overlay, "/api/v1/overlay/findings?url=/").await,
            StatusCode::OK
        );
        for path in [
            "/api/v1/findings",
            "/api/v1/sessions",
            "/api/v1/clips/1.mp4",
            "/api/v1/journeys",
        ] {
            assert_eq!(
                bearer(&overlay, path).await,
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
        assert_eq!(bearer(&viewer, "/api/v1/findings").await, StatusCode::OK);
    })
    .await;
}
