//! The database: SQLite by default, PostgreSQL by URL, both through sqlx's
//! `Any` driver so every query is written once. Queries use `$1`-style
//! placeholders, which both drivers accept; integers are 64-bit and floats
//! are doubles in both schemas so `Any` decodes them the same way. Full-text
//! search is the one place the SQL differs (`fts5` vs the `search_postings`
//! B-tree),
//! see `search`.

use std::str::FromStr;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// The URL it was opened with (PostgreSQL's `LISTEN` needs a connection
    /// of its own; see `jobs::forward_notifications`).
    pub url: String,
}

impl Db {
    /// Connects (creating a SQLite file if needed) and runs the migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL {url:?}: use sqlite://FILE or postgres://…");
        };
        let given = url.to_string();
        let mut url = url.to_string();
        if backend == Backend::Sqlite && !url.contains('?') {
            // Create the file on first start; WAL lets readers run while the
            // importer writes. secure_delete overwrites deleted content, so
            // a withdrawn participant's words do not linger in free pages.
            url.push_str("?mode=rwc");
        }
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("database URL {url:?}"))?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        use sqlx::Executor;
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                             PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; \
                             PRAGMA secure_delete=ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the database {}", redact(&url)))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .context("database migrations failed")?;
        Ok(Self {
            pool,
            backend,
            url: given,
        })
    }
}

/// The SQLite database file in the data folder.
pub const DB_FILE: &str = "lab.db";
/// The first admin's generated password, in the data folder.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password.txt";

/// Creates the data folder and makes it and the SQLite files in it
/// owner-only (0700 / 0600): they hold accounts, consent references and
/// the first admin's password. An existing folder is tightened too.
pub fn prepare_data_dir(data: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .with_context(|| format!("cannot create the data folder {}", data.display()))?;
    let private = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot make {} private", p.display()))
    };
    private(data, 0o700)?;
    for name in [
        DB_FILE.to_string(),
        format!("{DB_FILE}-wal"),
        format!("{DB_FILE}-shm"),
        INITIAL_PASSWORD_FILE.to_string(),
    ] {
        let p = data.join(name);
        if p.is_file() {
            private(&p, 0o600)?;
        }
    }
    Ok(())
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_folder_and_database_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("lab-data-perms-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.join("lab.db"), b"").unwrap();
        std::fs::set_permissions(d.join("lab.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare_data_dir(&d).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("lab.db")), 0o600);
        let fresh = d.join("sub");
        prepare_data_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            super::redact("postgres://lab:secret@localhost/lab"),
            "postgres://lab:***@localhost/lab"
        );
        assert_eq!(super::redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
