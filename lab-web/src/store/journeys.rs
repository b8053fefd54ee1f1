//! Journey definitions as the lab knows them.

use sqlx::Row;

use crate::types::{JourneyInfo, JourneySummary};
use sqlx::AnyConnection as Conn;
use sqlx::AnyPool as Pool;

/// A journey's definition (stored as JSON).
pub async fn get(pool: &Pool, id: &str) -> Result<Option<JourneyInfo>, sqlx::Error> {
    sqlx::query("SELECT definition FROM journeys WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| {
            serde_json::from_str(&r.try_get::<String, _>("definition")?)
                .map_err(|e| sqlx::Error::Decode(e.into()))
        })
        .transpose()
}

pub async fn list(pool: &Pool) -> Result<Vec<JourneySummary>, sqlx::Error> {
    sqlx::query(
        "SELECT j.id, j.title, j.version, (SELECT COUNT(*) FROM sessions s WHERE s.journey_id = j.id) AS sessions \
         FROM journeys j ORDER BY j.title",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(JourneySummary {
            id: r.try_get("id")?,
            title: r.try_get("title")?,
            version: r.try_get("version")?,
            sessions: r.try_get("sessions")?,
        })
    })
    .collect()
}

/// Writes a journey: `replace` = the lab's own definition (authoritative),
/// otherwise only if the lab has none yet.
pub async fn upsert(conn: &mut Conn, info: &JourneyInfo, replace: bool) -> anyhow::Result<()> {
    let conflict = if replace {
        "ON CONFLICT (id) DO UPDATE SET title = excluded.title, version = excluded.version, definition = excluded.definition"
    } else {
        "ON CONFLICT (id) DO NOTHING"
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO journeys (id, title, version, definition) VALUES ($1, $2, $3, $4) {conflict}"
    )))
    .bind(&info.id)
    .bind(&info.title)
    .bind(&info.version)
    .bind(serde_json::to_string(info)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes the lab's own journey definitions (its journeys folders) in one
/// transaction, replacing what an older definition or a bundle's copy left.
pub async fn upsert_lab(pool: &super::Pool, infos: &[JourneyInfo]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for info in infos {
        upsert(&mut tx, info, true).await?;
    }
    tx.commit().await?;
    Ok(())
}
