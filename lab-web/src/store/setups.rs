//! Study set-ups (`study_setups`): each row one [`Study`] kept as its JSON,
//! validated by the service (`crate::setups`) before it is written.

use lab_model::study::Study;
use sqlx::Row;
use sqlx::any::AnyRow;

use sqlx::AnyPool as Pool;

fn study(r: &AnyRow) -> Result<Study, sqlx::Error> {
    serde_json::from_str(&r.try_get::<String, _>("definition")?)
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

/// Every set-up, by id.
pub async fn list(pool: &Pool) -> Result<Vec<Study>, sqlx::Error> {
    sqlx::query("SELECT definition FROM study_setups ORDER BY id")
        .fetch_all(pool)
        .await?
        .iter()
        .map(study)
        .collect()
}

pub async fn get(pool: &Pool, id: &str) -> Result<Option<Study>, sqlx::Error> {
    sqlx::query("SELECT definition FROM study_setups WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(study)
        .transpose()
}

/// Creates or replaces the set-up `study.id`.
pub async fn save(pool: &Pool, study: &Study, now: i64, user: i64) -> Result<(), sqlx::Error> {
    let definition = serde_json::to_string(study).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(
        "INSERT INTO study_setups (id, definition, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(&study.id)
    .bind(definition)
    .bind(now)
    .bind(user)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether there was such a set-up.
pub async fn delete(pool: &Pool, id: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM study_setups WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
        > 0)
}
