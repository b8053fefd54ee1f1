//! Shared by the in-process API test files: scratch folders and the
//! databases to run against.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab_web::Config;

/// The server configuration the in-process tests use: folders under `dir`,
/// no watcher, no worker, an analyzer that does not exist unless a test
/// writes one at `dir/fake-lab-analyze`.
pub fn config(dir: &Path) -> Config {
    Config {
        sessions_dir: dir.join("sessions"),
        journeys_dirs: vec![dir.join("journeys")],
        data_dir: dir.to_path_buf(),
        analyzer: dir.join("fake-lab-analyze"),
        ffmpeg: PathBuf::from("ffmpeg"),
        secure_cookies: false,
        watch_every: Duration::ZERO,
        workers: 0,
        clip_worker: false,
        analyze_new: false,
        lease_seconds: lab_model::worker::LEASE_SECONDS,
        public_url: "http://lab.test".into(),
        trusted_proxy: None,
        max_upload_bytes: lab_web::limits::DEFAULT_MAX_UPLOAD_BYTES,
    }
}

pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "lab-web-api-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The database URLs to run against.
pub async fn backends(tag: &str) -> Vec<(&'static str, String, PathBuf)> {
    let dir = tmpdir(tag);
    let mut out = vec![(
        "sqlite",
        format!("sqlite://{}", dir.join("lab.db").display()),
        dir,
    )];
    match std::env::var("LAB_TEST_PG_URL") {
        Ok(admin) => {
            sqlx::any::install_default_drivers();
            let name = format!("lab_test_{}_{}", tag, rand_suffix() % 1_000_000_000);
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("LAB_TEST_PG_URL connects");
            sqlx::Executor::execute(
                &mut conn,
                sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
            )
            .await
            .expect("create test database");
            let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
            out.push((
                "postgres",
                format!("{base}/{name}"),
                tmpdir(&format!("{tag}-pg")),
            ));
        }
        Err(_) => {
            assert!(
                std::env::var("LAB_REQUIRE_PG").is_err(),
                "LAB_REQUIRE_PG is set but LAB_TEST_PG_URL is not"
            );
            eprintln!("(LAB_TEST_PG_URL not set: PostgreSQL part skipped)");
        }
    }
    out
}
