//! `lab-web bench`: API latency on a long session and transcript search over
//! many session-hours, on SQLite (default) or PostgreSQL (`--database-url`).
//!
//! 1. A 2-hour session with 50,000 events and 20,000 transcript words is
//!    written as a bundle and imported. The timeline (whole session and a
//!    10-minute window) and transcript endpoints are called through the real
//!    router, and the page load is timed as the requests the session page
//!    makes (shell, assets, detail, timeline, transcript).
//! 2. `--hours` session-hours of transcript (10,000 words an hour, Russian
//!    think-aloud vocabulary in many word forms) are inserted, and word-form
//!    queries are timed through `/api/v1/search`.
//!
//! The long session also carries 2 hours of skin conductance at 128 Hz,
//! whose sensor lane is drawn whole and in 10-minute and 5-second windows.
//!
//! Prints p50/p95/p99 and the ratio to the goals (timeline and sensor lane
//! p99 ≤ 50 ms, search p95 ≤ 100 ms).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use clap::Args;
use serde_json::json;
use tower::ServiceExt;

use crate::db::Db;
use crate::state::{AppState, Config};
use crate::store;
use crate::store::import::SegmentRecord;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Session-hours of transcript for the search benchmark.
    #[arg(long, default_value_t = 1000)]
    pub hours: u32,
    /// Requests per measured endpoint.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// PostgreSQL database to fill (it should be empty); default: a SQLite file in a temporary folder.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Work folder (default: a new temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Tiny deterministic generator, so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// Frequent function words and rarer content words in several forms.
const FUNCTION_WORDS: &[&str] = &[
    "так",
    "а",
    "вот",
    "это",
    "не",
    "где",
    "здесь",
    "ну",
    "и",
    "что",
    "я",
    "мне",
    "надо",
    "сейчас",
    "да",
];
const CONTENT_WORDS: &[&str] = &[
    "кнопка",
    "кнопку",
    "кнопки",
    "кнопкой",
    "понимаю",
    "понимаете",
    "понятно",
    "непонятно",
    "документы",
    "документов",
    "документ",
    "загрузить",
    "загружаю",
    "загрузка",
    "заявление",
    "заявления",
    "заявлении",
    "пособие",
    "пособия",
    "ребёнка",
    "ребёнок",
    "дата",
    "дату",
    "даты",
    "рождения",
    "карта",
    "карту",
    "выплаты",
    "выплату",
    "статус",
    "статуса",
    "паспорт",
    "паспорта",
    "нажимать",
    "нажимаю",
    "нажала",
    "нажал",
    "поле",
    "поля",
    "полем",
    "ошибка",
    "ошибку",
    "ошибки",
    "страница",
    "страницу",
    "страницы",
    "форма",
    "форму",
    "формы",
    "подтвердить",
    "отправить",
    "отправила",
    "вернуться",
    "назад",
    "далее",
    "продолжить",
    "снилс",
    "адрес",
    "адреса",
    "банк",
    "банка",
    "реквизиты",
    "счёт",
    "счета",
    "госуслуги",
    "госуслугах",
    "войти",
    "вход",
    "пароль",
    "пароля",
    "телефон",
    "телефона",
    "код",
    "кода",
    "искать",
    "ищу",
    "нашла",
    "нашёл",
    "меню",
    "раздел",
    "раздела",
    "разделе",
    "услуга",
    "услугу",
    "услуги",
    "выбрать",
    "выбираю",
    "выбор",
];

fn sentence(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| {
            if rng.next().is_multiple_of(3) {
                rng.pick(CONTENT_WORDS)
            } else {
                rng.pick(FUNCTION_WORDS)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

struct Timer(Vec<f64>);
impl Timer {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return 0.0;
        }
        v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
    }
}

/// One measured endpoint's line: its percentiles and answer size.
fn print_row(name: &str, t: &Timer, size: usize) {
    println!(
        "{name:<30} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  ({} KiB)",
        t.pct(50.0),
        t.pct(95.0),
        t.pct(99.0),
        size / 1024
    );
}

async fn get(app: &axum::Router, cookie: &str, path: &str) -> anyhow::Result<(f64, usize)> {
    let req = Request::builder()
        .uri(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())?;
    let t0 = Instant::now();
    let resp = app.clone().oneshot(req).await?;
    anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
    let body = axum::body::to_bytes(resp.into_body(), 256 << 20).await?;
    Ok((t0.elapsed().as_secs_f64() * 1000.0, body.len()))
}

async fn measure(
    app: &axum::Router,
    cookie: &str,
    path: &str,
    n: usize,
) -> anyhow::Result<(Timer, usize)> {
    let mut t = Timer(vec![]);
    let mut size = 0;
    get(app, cookie, path).await?; // warm-up
    for _ in 0..n {
        let (ms, len) = get(app, cookie, path).await?;
        t.0.push(ms);
        size = len;
    }
    Ok((t, size))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("lab-web-bench-{}", std::process::id())),
    };
    tokio::fs::create_dir_all(dir.join("sessions")).await?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display()));
    let db = Db::connect(&url).await?;
    let backend = format!("{:?}", db.backend);
    let state = AppState::new(
        db,
        Config {
            sessions_dir: dir.join("sessions"),
            journeys_dirs: vec![],
            data_dir: dir.clone(),
            analyzer: PathBuf::from("lab-analyze"),
            ffmpeg: PathBuf::from("ffmpeg"),
            secure_cookies: false,
            watch_every: Duration::ZERO,
            workers: 0,
            clip_worker: false,
            analyze_new: false,
            lease_seconds: lab_model::worker::LEASE_SECONDS,
            public_url: "http://127.0.0.1:8080".into(),
            trusted_proxy: None,
            max_upload_bytes: crate::limits::DEFAULT_MAX_UPLOAD_BYTES,
        },
    );
    let _ = crate::auth::create_user(&state, "bench", "", "bench-password", "researcher").await;
    let app = crate::app(state.clone());
    let login = Request::builder()
        .method("POST")
        .uri("/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"login": "bench", "password": "bench-password"}).to_string(),
        ))?;
    let resp = app.clone().oneshot(login).await?;
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(String::from)
        .ok_or_else(|| anyhow::anyhow!("bench login failed"))?;

    println!("lab-web bench on {backend} ({})", crate::db::redact(&url));
    // 1. The long session.
    let spec = crate::synth::Spec {
        session_id: format!("BENCH-{}", std::process::id()),
        participant: "P-BENCH".into(),
        study: "bench".into(),
        duration_ms: 2 * 3600 * 1000,
        events: 50_000,
        words: 20_000,
        started_at: 1_795_400_000_000,
        eda_hz: 128.0,
    };
    // 50,000 events written with std::fs: off the async threads.
    let sessions = dir.join("sessions");
    let bundle =
        tokio::task::spawn_blocking(move || crate::synth::write_bundle(&sessions, &spec)).await??;
    let t0 = Instant::now();
    let (id, _) = crate::import::import(&state, &bundle).await?;
    println!(
        "import of a 2 h session (50,000 events, 20,000 words): {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let n = args.requests;
    let mut rows = vec![];
    for (name, path) in [
        (
            "timeline, whole session",
            format!("/api/v1/sessions/{id}/timeline"),
        ),
        (
            "timeline, 10-minute window",
            format!("/api/v1/sessions/{id}/timeline?from_ms=3600000&to_ms=4200000"),
        ),
        (
            "transcript (20,000 words)",
            format!("/api/v1/sessions/{id}/transcript"),
        ),
        ("session detail", format!("/api/v1/sessions/{id}")),
    ] {
        let (t, size) = measure(&app, &cookie, &path, n).await?;
        print_row(name, &t, size);
        rows.push((name, t));
    }
    // Sensor lanes: 2 h of skin conductance at 128 Hz, drawn 1,200 columns wide.
    let mut lane_worst = 0.0f64;
    for (name, range) in [
        ("sensor lane, whole session", "from_ms=0&to_ms=7200000"),
        (
            "sensor lane, 10-minute window",
            "from_ms=3600000&to_ms=4200000",
        ),
        (
            "sensor lane, 5-second window",
            "from_ms=3600000&to_ms=3605000",
        ),
    ] {
        let path = format!("/api/v1/sessions/{id}/sensors/0?{range}&columns=1200");
        let (t, size) = measure(&app, &cookie, &path, n).await?;
        print_row(name, &t, size);
        lane_worst = lane_worst.max(t.pct(99.0));
    }
    // Page load: what the session page fetches, one after another.
    let mut page = vec![format!("/sessions/{id}"), "/assets/app.css".to_string()];
    page.extend(
        crate::assets::page_modules("session.js")
            .into_iter()
            .map(|m| format!("/assets/{m}")),
    );
    page.extend([
        "/api/v1/me".into(),
        format!("/api/v1/sessions/{id}"),
        "/api/v1/categories".into(),
        format!("/api/v1/sessions/{id}/timeline"),
        format!("/api/v1/sessions/{id}/transcript"),
    ]);
    let mut load = Timer(vec![]);
    for _ in 0..n.min(50) {
        let t0 = Instant::now();
        for p in &page {
            get(&app, &cookie, p).await?;
        }
        load.0.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{:<30} p50 {:>7.2} ms  p95 {:>7.2} ms  (server side, sequential; the browser's render is in tests/e2e screenshots)",
        "session page load",
        load.pct(50.0),
        load.pct(95.0)
    );

    // 2. Search corpus.
    let t0 = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sessions = args.hours.div_ceil(2).max(1);
    let per_hour_segments = 10_000 / 8;
    for s in 0..sessions {
        let sid = format!("SEARCH-{s:05}");
        store::import::insert_bench_session(
            &state.db.pool,
            &sid,
            &format!("P{s:05}"),
            1_700_000_000_000i64 + i64::from(s) * 86_400_000,
            7_200_000i64,
            &dir.join("none").join(&sid).to_string_lossy(),
        )
        .await?;
        let segs = per_hour_segments * 2;
        let rows: Vec<(String, SegmentRecord)> = (0..segs)
            .map(|i| {
                let text = sentence(&mut rng, 8);
                let start = i as i64 * 5_760;
                let record = SegmentRecord {
                    idx: i as i64,
                    start_ms: start,
                    end_ms: start + 5_000,
                    speaker: "participant".into(),
                    stems: crate::search::stems(&text),
                    text,
                    words: "[]".into(),
                };
                (sid.clone(), record)
            })
            .collect();
        store::import::insert_bench_segments(&state.db.pool, &rows).await?;
        if s % 50 == 49 {
            eprintln!(
                "  search corpus: {} of {} session-hours",
                (s + 1) * 2,
                sessions * 2
            );
        }
    }
    store::search::analyze_tables(&state.db).await?;
    println!(
        "search corpus: {} session-hours, {} segments, {} words, built in {:.0} s",
        sessions * 2,
        u64::from(sessions) * per_hour_segments as u64 * 2,
        u64::from(sessions) * per_hour_segments as u64 * 2 * 8,
        t0.elapsed().as_secs_f64()
    );
    let queries = [
        "понимать",
        "кнопкой",
        "загружать документы",
        "ошибкой поля",
        "статус заявления",
        "нажимала",
        "паспортом",
        "реквизитов банка",
    ];
    let mut st = Timer(vec![]);
    let mut hits_total = 0usize;
    for i in 0..n {
        let q = queries[i % queries.len()];
        let path = format!("/api/v1/search?q={}", percent(q));
        let (ms, len) = get(&app, &cookie, &path).await?;
        st.0.push(ms);
        hits_total += len;
    }
    println!(
        "{:<30} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  ({} queries of word forms, {} KiB answered)",
        "transcript search",
        st.pct(50.0),
        st.pct(95.0),
        st.pct(99.0),
        n,
        hits_total / 1024
    );
    let (tf, _) = measure(&app, &cookie, "/api/v1/search?q=%D0%BD%D0%B5", n.min(20)).await?;
    println!(
        "{:<30} p50 {:>7.2} ms  p95 {:>7.2} ms  (the frequent word «не»: worst case)",
        "search, frequent word",
        tf.pct(50.0),
        tf.pct(95.0)
    );
    let tl = &rows[0].1;
    println!();
    println!(
        "goals: timeline p99 {:.2} ms / 50 ms = {:.2}; sensor lane p99 {:.2} ms / 50 ms = {:.2}; search p95 {:.2} ms / 100 ms = {:.2}",
        tl.pct(99.0),
        tl.pct(99.0) / 50.0,
        lane_worst,
        lane_worst / 50.0,
        st.pct(95.0),
        st.pct(95.0) / 100.0
    );
    if args.dir.is_none() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    Ok(())
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
