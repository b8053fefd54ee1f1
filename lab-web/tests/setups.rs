//! Study set-ups (`/api/v1/setups`, `docs/study-format.md`) through the real
//! router on both databases: create, edit, read, delete; who may read and
//! who may edit (station tokens read, viewers do not, cookies need CSRF);
//! set-ups refused with their reason; the TOML download a station reads
//! offline round-trips through `Study::from_toml`.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use lab_model::study::Study;
use lab_web::AppState;
use lab_web::db::Db;
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;
use common::backends;

struct Env {
    app: Router,
    backend: &'static str,
    admin: Who,
    researcher: Who,
    operator: Who,
    viewer: Who,
    station: Who,
}

/// Who sends a request.
#[derive(Clone, Default)]
struct Who {
    cookie: Option<String>,
    csrf: Option<String>,
    token: Option<String>,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The refusal's message.
    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
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
    let (_, station) = lab_web::auth::create_station(&state, "lab-a", 1)
        .await
        .unwrap();
    // Importing a synthetic bundle gives the lab its journey `test-benefit`
    // (steps catalog, form, done).
    let bundle = lab_web::synth::write_bundle(
        &state.config.sessions_dir,
        &lab_web::synth::Spec::small("S1", "P01"),
    )
    .unwrap();
    lab_web::import::import(&state, &bundle).await.unwrap();
    let mut e = Env {
        app: lab_web::app(state),
        backend,
        admin: Who::default(),
        researcher: Who::default(),
        operator: Who::default(),
        viewer: Who::default(),
        station: Who {
            token: Some(station),
            ..Who::default()
        },
    };
    e.admin = e.login("admin").await;
    e.researcher = e.login("res").await;
    e.operator = e.login("op").await;
    e.viewer = e.login("view").await;
    e
}

impl Env {
    async fn call(&self, who: &Who, method: &str, path: &str, body: Option<Vec<u8>>) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "lab.test");
        if let Some(c) = &who.cookie {
            b = b.header(header::COOKIE, c);
        }
        if let Some(c) = &who.csrf {
            b = b.header("x-csrf-token", c);
        }
        if let Some(t) = &who.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let mut req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                "10.0.0.1".parse().unwrap(),
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

    async fn login(&self, login: &str) -> Who {
        let body = json!({"login": login, "password": "password-123"});
        let r = self
            .call(
                &Who::default(),
                "POST",
                "/api/v1/login",
                Some(body.to_string().into_bytes()),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {login}: {}", r.text());
        let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
        Who {
            cookie: Some(cookie.split(';').next().unwrap().to_string()),
            csrf: r.json()["csrf"].as_str().map(String::from),
            token: None,
        }
    }

    async fn put(&self, who: &Who, id: &str, study: &Value) -> Resp {
        self.call(
            who,
            "PUT",
            &format!("/api/v1/setups/{id}"),
            Some(study.to_string().into_bytes()),
        )
        .await
    }

    async fn get(&self, who: &Who, path: &str) -> Resp {
        self.call(who, "GET", path, None).await
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

/// A set-up of the synthetic journey, in Russian as labs write them.
fn setup(id: &str) -> Value {
    json!({
        "format_version": 1,
        "id": id,
        "title": "Тестовое пособие, весна",
        "life_situation": "test-benefit",
        "consent_text": "Я согласен(на) на запись экрана, лица и голоса.",
        "participant_pattern": "P##",
        "questionnaires": {"step_ratings": true, "seq": true, "sus": false},
        "tasks": [
            {"id": "t1", "title": "Найти услугу", "instruction": "Найдите, как оформить пособие.",
             "expected_s": 180, "steps": ["catalog"]},
            {"id": "t2", "title": "Заполнить заявление", "instruction": "Заполните заявление.",
             "expected_s": 600, "steps": ["form", "done"]}
        ]
    })
}

#[tokio::test]
async fn researchers_create_edit_and_delete_set_ups_and_stations_read_them() {
    each_backend("setups_crud", |e| async move {
        let b = e.backend;
        assert_eq!(
            e.get(&e.researcher, "/api/v1/setups").await.json(),
            json!({"setups": []}),
            "{b}"
        );

        // Create.
        let mut s = setup("benefit-spring");
        let r = e.put(&e.researcher, "benefit-spring", &s).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text());
        assert_eq!(r.json(), s, "{b}");
        let list = e.get(&e.researcher, "/api/v1/setups").await.json();
        assert_eq!(list["setups"], json!([s]), "{b}");

        // Edit: a new title, a task dropped; defaults fill what is left out.
        s["title"] = json!("Тестовое пособие, лето");
        s["tasks"].as_array_mut().unwrap().pop();
        let mut sent = s.clone();
        let obj = sent.as_object_mut().unwrap();
        obj.remove("questionnaires");
        obj.remove("participant_pattern");
        let r = e.put(&e.admin, "benefit-spring", &sent).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text());
        s["questionnaires"] = json!({"step_ratings": true, "seq": true, "sus": true});
        let got = e.get(&e.researcher, "/api/v1/setups/benefit-spring").await;
        assert_eq!(got.status, StatusCode::OK, "{b}");
        assert_eq!(got.json(), s, "{b}");

        // A second one; the list is by id.
        let r = e.put(&e.researcher, "a-first", &setup("a-first")).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text());
        let ids: Vec<String> = e.get(&e.operator, "/api/v1/setups").await.json()["setups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["a-first", "benefit-spring"], "{b}");

        // The station reads them with its token, as the typed Study.
        let r = e.get(&e.station, "/api/v1/setups").await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text());
        let studies: Vec<Study> =
            serde_json::from_value(r.json()["setups"].clone()).expect("stations parse Study");
        assert_eq!(studies.len(), 2, "{b}");
        let r = e.get(&e.station, "/api/v1/setups/benefit-spring").await;
        assert_eq!(r.status, StatusCode::OK, "{b}");
        let one: Study = serde_json::from_slice(&r.body).unwrap();

        // The study file for offline stations.
        let r = e
            .get(&e.station, "/api/v1/setups/benefit-spring/study.toml")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text());
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/toml"),
            "{b}"
        );
        assert_eq!(
            r.headers[header::CONTENT_DISPOSITION],
            "attachment; filename=\"benefit-spring.toml\"",
            "{b}"
        );
        let from_file = Study::from_toml(&r.text()).expect("the download is a valid study file");
        assert_eq!(from_file, one, "{b}");
        assert!(r.text().contains("Тестовое пособие, лето"), "{b}");

        // Delete; then it is gone, and a second delete is a 404.
        let r = e
            .call(
                &e.researcher,
                "DELETE",
                "/api/v1/setups/benefit-spring",
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{b}: {}", r.text());
        for path in [
            "/api/v1/setups/benefit-spring",
            "/api/v1/setups/benefit-spring/study.toml",
        ] {
            assert_eq!(
                e.get(&e.researcher, path).await.status,
                StatusCode::NOT_FOUND,
                "{b} {path}"
            );
        }
        let r = e
            .call(
                &e.researcher,
                "DELETE",
                "/api/v1/setups/benefit-spring",
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(
            e.get(&e.station, "/api/v1/setups").await.json()["setups"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "{b}"
        );

        // Every change is audited with who made it.
        let audit = e.get(&e.admin, "/api/v1/audit?limit=100").await.json();
        let seen: Vec<(String, String, String)> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["action"].as_str().unwrap().ends_with("_setup"))
            .map(|a| {
                (
                    a["action"].as_str().unwrap().to_string(),
                    a["object"].as_str().unwrap().to_string(),
                    a["user"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want = [
            ("delete_setup", "setup:benefit-spring", "res"),
            ("save_setup", "setup:a-first", "res"),
            ("save_setup", "setup:benefit-spring", "admin"),
            ("save_setup", "setup:benefit-spring", "res"),
        ]
        .map(|(a, o, u)| (a.to_string(), o.to_string(), u.to_string()));
        assert_eq!(seen, want, "{b}");
    })
    .await;
}

#[tokio::test]
async fn set_ups_are_read_by_those_who_run_sessions_and_edited_by_researchers() {
    each_backend("setups_rights", |e| async move {
        let b = e.backend;
        let s = setup("rights");
        assert_eq!(
            e.put(&e.researcher, "rights", &s).await.status,
            StatusCode::OK
        );
        let anonymous = Who::default();
        let reads = [
            "/api/v1/setups",
            "/api/v1/setups/rights",
            "/api/v1/setups/rights/study.toml",
        ];
        for path in reads {
            for (who, name) in [
                (&e.admin, "admin"),
                (&e.researcher, "researcher"),
                (&e.operator, "operator"),
                (&e.station, "station"),
            ] {
                let r = e.get(who, path).await;
                assert_eq!(r.status, StatusCode::OK, "{b} {name} {path}: {}", r.text());
            }
            assert_eq!(
                e.get(&e.viewer, path).await.status,
                StatusCode::FORBIDDEN,
                "{b} viewer {path}"
            );
            assert_eq!(
                e.get(&anonymous, path).await.status,
                StatusCode::UNAUTHORIZED,
                "{b} anonymous {path}"
            );
        }

        // Changes: the station, operators and viewers may not; nobody
        // anonymous; a cookie without its CSRF token is refused.
        let mut changed = s.clone();
        changed["title"] = json!("Изменено");
        for (who, name, want) in [
            (&e.station, "station", StatusCode::FORBIDDEN),
            (&e.operator, "operator", StatusCode::FORBIDDEN),
            (&e.viewer, "viewer", StatusCode::FORBIDDEN),
            (&anonymous, "anonymous", StatusCode::UNAUTHORIZED),
        ] {
            let r = e.put(who, "rights", &changed).await;
            assert_eq!(r.status, want, "{b} {name} PUT: {}", r.text());
            let r = e.call(who, "DELETE", "/api/v1/setups/rights", None).await;
            assert_eq!(r.status, want, "{b} {name} DELETE: {}", r.text());
        }
        let no_csrf = Who {
            csrf: None,
            ..e.researcher.clone()
        };
        let r = e.put(&no_csrf, "rights", &changed).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(r.json()["error"], "csrf", "{b}");
        let r = e
            .call(&no_csrf, "DELETE", "/api/v1/setups/rights", None)
            .await;
        assert_eq!(r.json()["error"], "csrf", "{b}");
        assert_eq!(
            e.get(&e.station, "/api/v1/setups/rights").await.json(),
            s,
            "{b}: unchanged"
        );

        // The editor's step choices: a journey's definition.
        let j = e.get(&e.researcher, "/api/v1/journeys/test-benefit").await;
        assert_eq!(j.status, StatusCode::OK, "{b}: {}", j.text());
        let steps: Vec<String> = j.json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(steps, ["catalog", "form", "done"], "{b}");
        assert_eq!(
            e.get(&e.researcher, "/api/v1/journeys/nope").await.status,
            StatusCode::NOT_FOUND,
            "{b}"
        );
        assert_eq!(
            e.get(&e.station, "/api/v1/journeys/test-benefit")
                .await
                .status,
            StatusCode::FORBIDDEN,
            "{b}: a station reads set-ups, not journeys"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_set_ups_are_refused_with_their_reason() {
    each_backend("setups_bad", |e| async move {
        let b = e.backend;
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut s = setup("bad");
            f(&mut s);
            s
        };
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "unknown journey",
                edit(&|s| s["life_situation"] = json!("no-such-journey")),
                "life_situation \"no-such-journey\" is not a journey lab-web knows",
            ),
            (
                "unknown step",
                edit(&|s| s["tasks"][1]["steps"] = json!(["form", "pay"])),
                "task t2: step \"pay\" is not a step of journey test-benefit",
            ),
            (
                "bad pattern",
                edit(&|s| s["participant_pattern"] = json!("Ivanov")),
                "participant_pattern \"Ivanov\"",
            ),
            (
                "pattern without a digit",
                edit(&|s| s["participant_pattern"] = json!("AAA")),
                "at least one #",
            ),
            (
                "no consent text",
                edit(&|s| s["consent_text"] = json!("  ")),
                "consent_text is required",
            ),
            (
                "duplicate task",
                edit(&|s| s["tasks"][1]["id"] = json!("t1")),
                "task id \"t1\" is not a plain, unique id",
            ),
            (
                "another id than the path",
                edit(&|s| s["id"] = json!("other")),
                "differs from the path",
            ),
            (
                "a later format",
                edit(&|s| s["format_version"] = json!(2)),
                "format_version 2",
            ),
            (
                "an unknown field",
                edit(&|s| s["tasks"][0]["minutes"] = json!(3)),
                "unknown field `minutes`",
            ),
            (
                "a journey path",
                edit(&|s| s["life_situation"] = json!("../../etc")),
                "is not a journey id",
            ),
        ];
        for (what, body, want) in cases {
            let r = e.put(&e.researcher, "bad", &body).await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{b} {what}: {}",
                r.text()
            );
            assert_eq!(r.json()["error"], "bad_request", "{b} {what}");
            assert!(
                r.message().contains(want),
                "{b} {what}: {:?} lacks {want:?}",
                r.message()
            );
        }
        // Not JSON at all, and a body over the set-up limit.
        let r = e
            .call(
                &e.researcher,
                "PUT",
                "/api/v1/setups/bad",
                Some(b"format_version = 1".to_vec()),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{b}: {}", r.text());
        let huge = edit(&|s| {
            s["consent_text"] = json!("я".repeat(lab_web::limits::MAX_SETUP_BYTES / 2 + 1))
        });
        let r = e.put(&e.researcher, "bad", &huge).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{b}: {}", r.text());
        // A set-up at the study format's own bounds is larger than the
        // general body limit, and taken.
        let big = edit(&|s| {
            s["consent_text"] = json!("я".repeat(10_000));
            let tasks: Vec<Value> = (0..100)
                .map(|i| {
                    json!({"id": format!("t{i}"), "title": "з".repeat(200),
                           "instruction": "ш".repeat(5_000), "steps": ["catalog", "form", "done"]})
                })
                .collect();
            s["tasks"] = json!(tasks);
        });
        assert!(big.to_string().len() > lab_web::limits::MAX_BODY_BYTES);
        let r = e.put(&e.researcher, "bad", &big).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text());
        let r = e
            .call(&e.researcher, "DELETE", "/api/v1/setups/bad", None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{b}");

        // Nothing refused was stored.
        assert_eq!(
            e.get(&e.researcher, "/api/v1/setups").await.json(),
            json!({"setups": []}),
            "{b}"
        );
    })
    .await;
}

/// The example in `docs/study-format.md` is a valid study file whose tasks
/// cover steps of the journey it names (`journeys/child-benefit.toml`), and
/// its TOML round-trips.
#[test]
fn the_documented_example_is_a_valid_study_of_its_journey() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/study-format.md")).unwrap();
    let example = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("a TOML example");
    let study = Study::from_toml(example).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(Study::from_toml(&study.to_toml()).unwrap(), study);
    let journey =
        std::fs::read_to_string(root.join(format!("journeys/{}.toml", study.life_situation)))
            .unwrap();
    let journey = lab_model::Journey::from_toml(&journey).unwrap();
    for task in &study.tasks {
        for step in &task.steps {
            assert!(
                journey.steps.iter().any(|s| &s.id == step),
                "task {}: {step} is not a step of {}",
                task.id,
                journey.id
            );
        }
    }
    assert!(study.participant_ok("P07") && !study.participant_ok("Ivanov"));
}
