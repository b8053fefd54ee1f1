//! Station uploads (`uploads`, `upload_files`); see `crate::upload`.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Pool;
use super::batch::{V, insert_rows};
use lab_model::upload::UploadFile;

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub id: i64,
    pub station: String,
    pub session_id: String,
    pub digest: String,
    pub total_bytes: i64,
    pub status: String,
    pub target_path: Option<String>,
    pub assigned_id: Option<String>,
    pub withdrawn: bool,
    pub bytes_written: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub imported_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct FileRow {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub verified: bool,
}

const COLUMNS: &str = "id, station, session_id, digest, total_bytes, status, target_path, \
     assigned_id, withdrawn, bytes_written, created_at, updated_at, imported_at";

fn upload(r: &AnyRow) -> Result<UploadRow, sqlx::Error> {
    Ok(UploadRow {
        id: r.try_get("id")?,
        station: r.try_get("station")?,
        session_id: r.try_get("session_id")?,
        digest: r.try_get("digest")?,
        total_bytes: r.try_get("total_bytes")?,
        status: r.try_get("status")?,
        target_path: r.try_get("target_path")?,
        assigned_id: r.try_get("assigned_id")?,
        withdrawn: r.try_get::<i64, _>("withdrawn")? != 0,
        bytes_written: r.try_get("bytes_written")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        imported_at: r.try_get("imported_at")?,
    })
}

fn file(r: &AnyRow) -> Result<FileRow, sqlx::Error> {
    Ok(FileRow {
        path: r.try_get("path")?,
        size: r.try_get::<i64, _>("size")?.max(0) as u64,
        sha256: r.try_get("sha256")?,
        verified: r.try_get::<i64, _>("verified")? != 0,
    })
}

pub async fn find(
    pool: &Pool,
    station: &str,
    session_id: &str,
) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM uploads WHERE station = $1 AND session_id = $2"
    )))
    .bind(station)
    .bind(session_id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(upload)
    .transpose()
}

pub async fn get(pool: &Pool, id: i64) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM uploads WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(upload)
    .transpose()
}

/// The newest uploads, for the admin page.
pub async fn recent(pool: &Pool, limit: i64) -> Result<Vec<UploadRow>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM uploads ORDER BY id DESC LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(upload)
    .collect()
}

/// Uploads a station is still sending (its bound on uploads in flight).
pub async fn receiving_count(pool: &Pool, station: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM uploads WHERE station = $1 AND status = 'receiving'")
        .bind(station)
        .fetch_one(pool)
        .await?
        .try_get("n")
}

fn file_rows(id: i64, files: &[UploadFile], verified: impl Fn(&UploadFile) -> bool) -> Vec<Vec<V>> {
    files
        .iter()
        .map(|f| {
            vec![
                V::I(id),
                V::S(f.path.clone()),
                V::I(f.size as i64),
                V::S(f.sha256.clone()),
                V::I(i64::from(verified(f))),
            ]
        })
        .collect()
}

const FILES_HEAD: &str = "INSERT INTO upload_files (upload_id, path, size, sha256, verified)";

/// A new upload and its file list, in one transaction.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    pool: &Pool,
    station: &str,
    token_id: i64,
    session_id: &str,
    digest: &str,
    total_bytes: u64,
    files: &[UploadFile],
    now: i64,
) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query(
        "INSERT INTO uploads (station, token_id, session_id, digest, total_bytes, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'receiving', $6, $6) RETURNING id",
    )
    .bind(station)
    .bind(token_id)
    .bind(session_id)
    .bind(digest)
    .bind(total_bytes as i64)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    insert_rows(&mut tx, FILES_HEAD, 5, &file_rows(id, files, |_| false)).await?;
    tx.commit().await?;
    Ok(id)
}

/// Replaces the file list of an upload still receiving; a file listed again
/// with the same size and SHA-256 keeps its verified flag.
pub async fn replace_files(
    pool: &Pool,
    id: i64,
    digest: &str,
    total_bytes: u64,
    files: &[UploadFile],
    keep_verified: impl Fn(&UploadFile) -> bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM upload_files WHERE upload_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    insert_rows(&mut tx, FILES_HEAD, 5, &file_rows(id, files, keep_verified)).await?;
    sqlx::query("UPDATE uploads SET digest = $2, total_bytes = $3, updated_at = $4 WHERE id = $1")
        .bind(id)
        .bind(digest)
        .bind(total_bytes as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub async fn files(pool: &Pool, id: i64) -> Result<Vec<FileRow>, sqlx::Error> {
    sqlx::query(
        "SELECT path, size, sha256, verified FROM upload_files WHERE upload_id = $1 ORDER BY path",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(file)
    .collect()
}

pub async fn file_of(pool: &Pool, id: i64, path: &str) -> Result<Option<FileRow>, sqlx::Error> {
    sqlx::query(
        "SELECT path, size, sha256, verified FROM upload_files WHERE upload_id = $1 AND path = $2",
    )
    .bind(id)
    .bind(path)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(file)
    .transpose()
}

pub async fn set_verified(
    pool: &Pool,
    id: i64,
    path: &str,
    verified: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE upload_files SET verified = $3 WHERE upload_id = $1 AND path = $2")
        .bind(id)
        .bind(path)
        .bind(i64::from(verified))
        .execute(pool)
        .await?;
    Ok(())
}

/// Counts accepted chunk bytes.
pub async fn add_bytes(pool: &Pool, id: i64, bytes: u64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE uploads SET bytes_written = bytes_written + $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(bytes as i64)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Claims `assigned` (and its folder) for this upload and moves it to
/// `placing`. False if another upload holds that id or folder: the UNIQUE
/// columns decide between processes.
pub async fn reserve_target(
    pool: &Pool,
    id: i64,
    assigned: &str,
    target_path: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE uploads SET status = 'placing', assigned_id = $2, target_path = $3, updated_at = $4 \
         WHERE id = $1 AND status = 'receiving'",
    )
    .bind(id)
    .bind(assigned)
    .bind(target_path)
    .bind(now)
    .execute(pool)
    .await;
    match r {
        Ok(r) => Ok(r.rows_affected() > 0),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether another upload has claimed this id.
pub async fn id_claimed(pool: &Pool, assigned: &str) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("SELECT 1 AS one FROM uploads WHERE assigned_id = $1")
            .bind(assigned)
            .fetch_optional(pool)
            .await?
            .is_some(),
    )
}

/// Marks an upload imported; `assigned` is the id it was imported as, or
/// `None` when it turned out to be a copy of a session already here.
pub async fn set_imported(
    pool: &Pool,
    id: i64,
    assigned: Option<&str>,
    withdrawn: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE uploads SET status = 'imported', assigned_id = COALESCE(assigned_id, $2), \
         withdrawn = $3, imported_at = $4, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(assigned)
    .bind(i64::from(withdrawn))
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// The id lab-web gave the uploaded bundle in this folder, if an upload
/// placed it there.
pub async fn assigned_id_for_path(pool: &Pool, path: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT assigned_id FROM uploads WHERE target_path = $1")
        .bind(path)
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get("assigned_id"))
        .transpose()
        .map(Option::flatten)
}

/// Uploads a restart may have left between the rename and the import.
pub async fn placing(pool: &Pool) -> Result<Vec<UploadRow>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM uploads WHERE status = 'placing' ORDER BY id"
    )))
    .fetch_all(pool)
    .await?
    .iter()
    .map(upload)
    .collect()
}
