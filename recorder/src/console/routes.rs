//! The console's pages and JSON API (`docs/station-console.md`). Every
//! request passes [`guard`]: the `Host` must be this console (an IP literal
//! or `localhost` with its port: no DNS rebinding), changes must come from
//! its own pages (no other `Origin`), and requests from other machines need
//! the console token (`--listen` on the LAN, a tablet).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::live::{self, LiveRecord, NewSession, Pending};
use super::state::Console;

type S = State<Arc<Console>>;

const CONSOLE_HTML: &str = include_str!("console.html");
const CONSOLE_JS: &str = include_str!("console.js");
const PARTICIPANT_HTML: &str = include_str!("participant.html");
const PARTICIPANT_JS: &str = include_str!("participant.js");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const TOKEN_COOKIE: &str = "lab_console";

pub fn router(c: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(CONSOLE_HTML) }))
        .route("/console.js", get(|| async { js(CONSOLE_JS) }))
        .route("/participant", get(|| async { Html(PARTICIPANT_HTML) }))
        .route("/participant.js", get(|| async { js(PARTICIPANT_JS) }))
        .route("/api/state", get(state))
        .route("/api/session", post(start))
        .route("/api/stop", post(stop))
        .route("/api/tasks/{id}/{edge}", post(task))
        .route("/api/markers", post(marker))
        .route("/api/sus", post(ask_sus))
        .route("/api/participant", get(participant))
        .route("/api/participant/answer", post(answer))
        .route("/api/participant/show", post(show_participant))
        .route("/api/uploads/{bundle}/retry", post(retry_upload))
        .merge(super::checks::routes())
        .layer(axum::middleware::from_fn_with_state(c.clone(), guard))
        .with_state(c)
}

fn js(text: &'static str) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        text,
    )
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": msg.into() }))).into_response()
}

async fn guard(State(c): S, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The recorder endpoint's rule: an IP literal or localhost, our port.
    let mut resp = if !crate::server::host_is_ours(host, c.port) {
        err(
            StatusCode::FORBIDDEN,
            format!("Host {host:?} is not this console; open it by its IP address or localhost"),
        )
    } else if req.method() != Method::GET
        && let Some(origin) = headers.get(header::ORIGIN)
        && origin.to_str().ok() != Some(format!("http://{host}").as_str())
    {
        err(
            StatusCode::FORBIDDEN,
            "only the console's own pages may change anything",
        )
    } else if let Some(r) = token_check(&c, &req) {
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `None` when the request may go on; otherwise the answer. Requests from
/// this machine need no token; others carry it as a bearer token or in the
/// cookie `GET /?token=T` sets.
fn token_check(c: &Console, req: &Request) -> Option<Response> {
    let want = c.opts.console_token.as_deref()?;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip());
    if peer.is_some_and(|ip| ip.is_loopback()) {
        return None;
    }
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = h
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == TOKEN_COOKIE)
                .map(|(_, v)| v)
        });
    if bearer == Some(want) || cookie == Some(want) {
        return None;
    }
    let given = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v)
    });
    if req.uri().path() == "/" && given == Some(want) {
        let mut r = Redirect::to("/").into_response();
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{TOKEN_COOKIE}={want}; HttpOnly; SameSite=Strict; Path=/"
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return Some(r);
    }
    Some(err(
        StatusCode::UNAUTHORIZED,
        "нужен токен консоли / the console token is required (open /?token=…)",
    ))
}

fn steps_of(c: &Console, task: &str) -> Vec<Value> {
    let Some(t) = c.study.tasks.iter().find(|t| t.id == task) else {
        return vec![];
    };
    t.steps
        .iter()
        .map(|id| {
            let title = c
                .journey
                .as_ref()
                .and_then(|j| j.steps.iter().find(|s| &s.id == id))
                .map(|s| s.title.clone())
                .unwrap_or_else(|| id.clone());
            json!({ "id": id, "title": title })
        })
        .collect()
}

async fn state(State(c): S) -> Response {
    let live = c.live.lock().await.clone();
    let session = match &live {
        Some(l) => {
            let status = live::status(l).await.ok();
            let disk = disk_state(&c);
            Some(
                json!({ "record": l, "status": status, "disk": disk, "alive": live::recorder_alive(l.pid) }),
            )
        }
        None => None,
    };
    axum::Json(json!({
        "study": c.study,
        "study_source": c.study_source,
        "journey_title": c.journey.as_ref().map(|j| j.title.clone()),
        "session": session,
        "uploads": c.uploads.snapshot(),
        "online": c.opts.server.is_some(),
        "server": c.opts.server.as_ref().map(|(u, _)| u.clone()),
        "disk": disk_state(&c),
    }))
    .into_response()
}

/// Free space where bundles go, the hours of recording it holds, and a
/// warning when they run short (`preflight::disk`).
fn disk_state(c: &Console) -> Value {
    crate::preflight::disk(&c.opts.out, &c.station)
        .map(|d| json!(d))
        .unwrap_or(Value::Null)
}

async fn start(State(c): S, axum::Json(s): axum::Json<NewSession>) -> Response {
    if let Err(m) = live::check_new(&c.study, &s) {
        return err(StatusCode::UNPROCESSABLE_ENTITY, m);
    }
    let mut guard = c.live.lock().await;
    if let Some(l) = guard.as_ref()
        && live::recorder_alive(l.pid)
    {
        return err(
            StatusCode::CONFLICT,
            "запись уже идёт / a recording is already running",
        );
    }
    // The preview holds the devices the recording needs.
    super::checks::stop_preview(&c).await;
    match live::start(&c.opts.recorder, &c.study, &s).await {
        Ok(l) => {
            let body = json!({ "record": l });
            *guard = Some(l);
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn stop(State(c): S) -> Response {
    let Some(l) = c.live.lock().await.clone() else {
        return err(StatusCode::CONFLICT, "запись не идёт / no recording");
    };
    match live::stop(&l).await {
        Ok(status) => {
            let mut g = c.live.lock().await;
            // Only the recording this request stopped.
            if g.as_ref().is_some_and(|cur| cur.pid == l.pid) {
                LiveRecord::clear(&c.opts.out);
                *g = None;
            }
            drop(g);
            c.uploads.push(&l.bundle);
            axum::Json(json!({ "status": status, "bundle": l.bundle })).into_response()
        }
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// Runs `f` on the live record and saves it.
async fn with_live<T>(
    c: &Console,
    f: impl AsyncFnOnce(&mut LiveRecord) -> Result<T, Response>,
) -> Result<T, Response> {
    let mut g = c.live.lock().await;
    let l = g
        .as_mut()
        .ok_or_else(|| err(StatusCode::CONFLICT, "запись не идёт / no recording"))?;
    let r = f(l).await?;
    l.save(&c.opts.out)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    Ok(r)
}

async fn task(State(c): S, Path((id, edge)): Path<(String, String)>) -> Response {
    let Some(t) = c.study.tasks.iter().find(|t| t.id == id).cloned() else {
        return err(StatusCode::NOT_FOUND, format!("no task {id:?}"));
    };
    let q = c.study.questionnaires.clone();
    let rated = (q.step_ratings && !t.steps.is_empty()) || q.seq;
    let r = with_live(&c, async |l| {
        let kind = match edge.as_str() {
            "start" => "task_start",
            "end" => "task_end",
            _ => return Err(err(StatusCode::NOT_FOUND, "start or end")),
        };
        let t_ns = live::marker(l, kind, &t.id, &t.title)
            .await
            .map_err(|e| err(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
        if let Some(run) = l.tasks.iter_mut().find(|r| r.id == t.id) {
            if kind == "task_start" {
                run.start_ns = Some(t_ns);
                run.end_ns = None;
            } else {
                run.end_ns = Some(t_ns);
            }
        }
        if kind == "task_end" && rated {
            l.pending
                .retain(|p| *p != Pending::Task { task: t.id.clone() });
            l.pending.push(Pending::Task { task: t.id.clone() });
        }
        Ok(t_ns)
    })
    .await;
    match r {
        Ok(t_ns) => axum::Json(json!({ "t_ns": t_ns })).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkerBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

async fn marker(State(c): S, axum::Json(m): axum::Json<MarkerBody>) -> Response {
    if !matches!(m.kind.as_str(), "step" | "note" | "help") {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "type: step, note or help");
    }
    let text: String = m.text.chars().take(2000).collect();
    let r = with_live(&c, async |l| {
        live::marker(l, &m.kind, "", &text)
            .await
            .map_err(|e| err(StatusCode::BAD_GATEWAY, format!("{e:#}")))
    })
    .await;
    match r {
        Ok(t_ns) => axum::Json(json!({ "t_ns": t_ns })).into_response(),
        Err(r) => r,
    }
}

async fn ask_sus(State(c): S) -> Response {
    let r = with_live(&c, async |l| {
        if !l.pending.contains(&Pending::Sus) {
            l.pending.push(Pending::Sus);
        }
        Ok(())
    })
    .await;
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

/// Shows the participant page in the station browser.
async fn show_participant(State(c): S) -> Response {
    let Some(l) = c.live.lock().await.clone() else {
        return err(StatusCode::CONFLICT, "запись не идёт / no recording");
    };
    let url = format!("http://127.0.0.1:{}/participant?return=1", c.port);
    match live::show(&l, &url).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => err(StatusCode::CONFLICT, format!("{e:#}")),
    }
}

/// What the participant page shows: the first pending questionnaire, or
/// the running task's instruction.
async fn participant(State(c): S) -> Response {
    let live = c.live.lock().await.clone();
    let Some(l) = live else {
        return axum::Json(json!({ "recording": false })).into_response();
    };
    let pending = l.pending.first().map(|p| match p {
        Pending::Task { task } => {
            let t = c.study.tasks.iter().find(|t| &t.id == task);
            json!({
                "kind": "task",
                "task": { "id": task, "title": t.map(|t| t.title.clone()) },
                "steps": if c.study.questionnaires.step_ratings { steps_of(&c, task) } else { vec![] },
                "seq": c.study.questionnaires.seq,
            })
        }
        Pending::Sus => json!({
            "kind": "sus",
            "items_ru": lab_model::self_report::SUS_ITEMS_RU,
            "items_en": lab_model::self_report::SUS_ITEMS_EN,
        }),
    });
    let running = l
        .tasks
        .iter()
        .find(|r| r.start_ns.is_some() && r.end_ns.is_none())
        .and_then(|r| c.study.tasks.iter().find(|t| t.id == r.id))
        .map(|t| json!({ "id": t.id, "title": t.title, "instruction": t.instruction }));
    axum::Json(json!({
        "recording": true,
        "pending": pending,
        "task": running,
        "seq_question_ru": lab_model::self_report::SEQ_QUESTION_RU,
        "seq_question_en": lab_model::self_report::SEQ_QUESTION_EN,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    steps: Vec<Value>,
    #[serde(default)]
    seq: Option<u8>,
    #[serde(default)]
    sus: Option<Vec<u8>>,
}

/// The participant's answers, each an event of source `participant`
/// (checked by lab-model before it is sent: the recorder refuses the same).
async fn answer(State(c): S, axum::Json(a): axum::Json<Answer>) -> Response {
    use lab_model::self_report::{SEQ_KIND, STEP_KIND, SUS_KIND, SelfReport};
    let mut events: Vec<(&str, Value)> = vec![];
    let key;
    if let Some(sus) = &a.sus {
        events.push((SUS_KIND, json!({ "answers": sus })));
        key = Pending::Sus;
    } else {
        let Some(task) = a.task.clone() else {
            return err(StatusCode::UNPROCESSABLE_ENTITY, "task or sus");
        };
        for s in &a.steps {
            let mut d = s.clone();
            if let Some(o) = d.as_object_mut() {
                o.insert("task".into(), json!(task));
            }
            events.push((STEP_KIND, d));
        }
        if let Some(score) = a.seq {
            events.push((SEQ_KIND, json!({ "task": task, "score": score })));
        }
        key = Pending::Task { task };
    }
    for (kind, data) in &events {
        if let Err(m) = SelfReport::parse(kind, data) {
            return err(StatusCode::UNPROCESSABLE_ENTITY, m);
        }
    }
    let r = with_live(&c, async |l| {
        if !l.pending.contains(&key) {
            return Err(err(
                StatusCode::CONFLICT,
                "на это уже ответили / this was answered already",
            ));
        }
        let answer_no = l.answered.len();
        for (i, (kind, data)) in events.into_iter().enumerate() {
            // The same ids when this answer is sent again after a failure.
            let id = format!("{}-{answer_no}-{i}", l.session_id);
            live::participant_event(l, &id, kind, data)
                .await
                .map_err(|e| err(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
        }
        l.pending.retain(|p| *p != key);
        l.answered.push(match &key {
            Pending::Task { task } => format!("task:{task}"),
            Pending::Sus => "sus".into(),
        });
        Ok(l.pending.len())
    })
    .await;
    match r {
        Ok(left) => axum::Json(json!({ "left": left })).into_response(),
        Err(r) => r,
    }
}

async fn retry_upload(State(c): S, Path(bundle): Path<String>) -> Response {
    if c.uploads.retry(&c.opts.out, &bundle) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        err(StatusCode::NOT_FOUND, "no refused upload of that bundle")
    }
}
