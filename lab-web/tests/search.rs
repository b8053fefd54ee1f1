//! Transcript search against a plain scan of the same segments, on both
//! databases: every stem present, newest segment first, the limit, the
//! journey filter, and the index kept in step when segments are deleted
//! (withdrawal) and written again (re-import).

use lab_web::db::Db;
use lab_web::store;
use lab_web::store::import::SegmentRecord;
use lab_web::types::SearchHit;

mod common;

const WORDS: &[&str] = &[
    "не",
    "где",
    "кнопка",
    "кнопку",
    "кнопкой",
    "понимаю",
    "понимаете",
    "статус",
    "заявления",
    "заявление",
    "банка",
    "банк",
    "реквизиты",
    "паспорт",
    "ошибка",
    "поле",
    "поля",
    "снилс",
];

/// Deterministic sentences, so a failure reproduces.
fn sentences(seed: u64, n: usize) -> Vec<String> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let len = 1 + (next() % 6) as usize;
            (0..len)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// One session's segments as `bench` writes them.
fn segments(session: &str, texts: &[String]) -> Vec<(String, SegmentRecord)> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let record = SegmentRecord {
                idx: i as i64,
                start_ms: i as i64 * 1000,
                end_ms: i as i64 * 1000 + 900,
                speaker: "participant".into(),
                stems: lab_web::search::stems(text),
                text: text.clone(),
                words: "[]".into(),
            };
            (session.to_string(), record)
        })
        .collect()
}

/// What search must answer: a scan of `corpus` (in insertion order).
fn scan(
    corpus: &[(String, SegmentRecord)],
    journeys: &[(&str, &str)],
    query: &str,
    journey: Option<&str>,
    limit: usize,
) -> Vec<(String, i64)> {
    let terms: Vec<String> = lab_web::search::words(query)
        .map(|w| lab_web::search::stem(&w))
        .collect();
    if terms.is_empty() {
        return vec![];
    }
    corpus
        .iter()
        .rev()
        .filter(|(sid, s)| {
            let stems: Vec<&str> = s.stems.split(' ').collect();
            terms.iter().all(|t| stems.contains(&t.as_str()))
                && journey.is_none_or(|j| journeys.contains(&(sid.as_str(), j)))
        })
        .take(limit)
        .map(|(sid, s)| (sid.clone(), s.idx))
        .collect()
}

fn keys(hits: &[SearchHit]) -> Vec<(String, i64)> {
    hits.iter()
        .map(|h| (h.session_id.clone(), h.segment_id))
        .collect()
}

async fn check(
    db: &Db,
    corpus: &[(String, SegmentRecord)],
    journeys: &[(&str, &str)],
    backend: &str,
) {
    let queries = [
        "не",
        "кнопкой",
        "понимать",
        "статус заявления",
        "реквизитов банка",
        "кнопка кнопку",
        "ошибка поля снилс паспорт",
        "жираф",
        "кнопка жираф",
        "",
        "?!",
    ];
    for q in queries {
        for journey in [None, Some("j-small"), Some("j-big"), Some("j-none")] {
            for limit in [1usize, 7, 200] {
                let got = lab_web::search::search(db, q, journey, limit as i64)
                    .await
                    .unwrap();
                let want = scan(corpus, journeys, q, journey, limit);
                assert_eq!(
                    keys(&got),
                    want,
                    "{backend}: {q:?} journey {journey:?} limit {limit}"
                );
            }
        }
    }
}

#[tokio::test]
async fn search_answers_as_a_scan_would() {
    for (backend, url, _dir) in common::backends("search").await {
        let db = Db::connect(&url).await.unwrap();
        let sessions = ["S0", "S1", "S2", "S3", "S4", "S5"];
        let journeys = [("S1", "j-small"), ("S2", "j-big"), ("S4", "j-big")];
        for (n, id) in sessions.iter().enumerate() {
            store::import::insert_bench_session(
                &db.pool,
                id,
                &format!("P{n}"),
                n as i64,
                1000,
                &format!("/x/{id}"),
            )
            .await
            .unwrap();
        }
        for (id, journey) in journeys {
            sqlx::query("UPDATE sessions SET journey_id = $1 WHERE id = $2")
                .bind(journey)
                .bind(id)
                .execute(&db.pool)
                .await
                .unwrap();
        }
        // Sessions of different sizes, so the newest 200 cross sessions.
        let mut corpus = vec![];
        for (n, id) in sessions.iter().enumerate() {
            let rows = segments(id, &sentences(n as u64 + 7, 40 + 60 * n));
            store::import::insert_bench_segments(&db.pool, &rows)
                .await
                .unwrap();
            corpus.extend(rows);
        }
        check(&db, &corpus, &journeys, backend).await;

        // Withdrawal deletes a session's segments: its hits go.
        let mut conn = db.pool.acquire().await.unwrap();
        store::withdrawal::scrub_rows(&mut conn, "S4", 1)
            .await
            .unwrap();
        drop(conn);
        corpus.retain(|(sid, _)| sid != "S4");
        check(&db, &corpus, &journeys, backend).await;

        // A re-import writes a session's segments again, as the newest.
        let again: Vec<_> = corpus
            .iter()
            .filter(|(sid, _)| sid == "S2")
            .cloned()
            .collect();
        sqlx::query("DELETE FROM transcript_segments WHERE session_id = 'S2'")
            .execute(&db.pool)
            .await
            .unwrap();
        store::import::insert_bench_segments(&db.pool, &again)
            .await
            .unwrap();
        corpus.retain(|(sid, _)| sid != "S2");
        corpus.extend(again);
        check(&db, &corpus, &journeys, backend).await;
    }
}
