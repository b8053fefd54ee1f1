//! Several lab-web processes on one database: the watched folder is scanned
//! by one of them at a time (`store::leader`), and the lead passes on when
//! its holder goes away.

use std::time::Duration;

use lab_web::AppState;
use lab_web::db::{Backend, Db};
use lab_web::import::WATCH_LOCK;
use lab_web::store::leader::try_lead;

mod common;
use common::backends;

#[tokio::test]
async fn one_process_leads_the_watched_folder_and_hands_over_when_it_goes() {
    for (backend, url, _dir) in backends("cluster").await {
        // Two "processes": two pools on one database.
        let a = Db::connect(&url).await.unwrap();
        let b = Db::connect(&url).await.unwrap();
        let first = try_lead(&a.pool, a.backend, WATCH_LOCK).await.unwrap();
        assert!(first.is_some(), "{backend}: the first asks and leads");
        let second = try_lead(&b.pool, b.backend, WATCH_LOCK).await.unwrap();
        match a.backend {
            // SQLite is the one-process default: each process leads itself.
            Backend::Sqlite => assert!(second.is_some()),
            Backend::Postgres => {
                assert!(second.is_none(), "{backend}: only one leads");
                let mut first = first.unwrap();
                assert!(first.alive().await);
                drop(first);
                // The lock went with the leader's connection.
                let mut taken = None;
                for _ in 0..50 {
                    taken = try_lead(&b.pool, b.backend, WATCH_LOCK).await.unwrap();
                    if taken.is_some() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                assert!(taken.is_some(), "{backend}: the lead passes on");
                // Another duty has its own lock.
                assert!(
                    try_lead(&a.pool, a.backend, WATCH_LOCK + 1)
                        .await
                        .unwrap()
                        .is_some()
                );
            }
        }
    }
}

/// A job queued through one process shows on the event stream of another
/// (PostgreSQL `LISTEN/NOTIFY`); on SQLite, on the process's own stream.
#[tokio::test]
async fn job_changes_reach_the_event_streams_of_every_process() {
    for (backend, url, dir) in backends("cluster_jobs").await {
        let a = AppState::new(Db::connect(&url).await.unwrap(), common::config(&dir));
        let b = AppState::new(Db::connect(&url).await.unwrap(), common::config(&dir));
        for s in [&a, &b] {
            lab_web::jobs::start_forwarding(s).await.unwrap();
        }
        let listening = match a.db.backend {
            Backend::Sqlite => &a,
            Backend::Postgres => &b,
        };
        let mut rx = listening.job_events.subscribe();
        let id = lab_web::jobs::enqueue(
            &a,
            lab_web::types::JobKind::Analyze,
            None,
            None,
            lab_web::types::JobArgs::default(),
            None,
        )
        .await
        .unwrap();
        let text = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{backend}: no job event within 5 s"))
            .unwrap();
        let job: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(job["id"], id, "{backend}");
        assert_eq!(job["status"], "queued", "{backend}");
    }
}
