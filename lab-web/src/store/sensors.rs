//! Sensor lanes and their min/max pyramids ([`crate::sensors`]).

use sqlx::Row;

use crate::sensors::{Lane, LaneInfo};
use sqlx::AnyConnection as Conn;
use sqlx::AnyPool as Pool;

/// Replaces a session's lanes (inside the import's transaction).
pub async fn replace(conn: &mut Conn, session: &str, lanes: &[Lane]) -> Result<(), sqlx::Error> {
    delete(conn, session).await?;
    for l in lanes {
        let i = &l.info;
        sqlx::query(
            "INSERT INTO sensor_lanes (session_id, lane, stream, stream_type, channel, unit, nominal_srate, \
             samples, first_ms, last_ms, vmin, vmax, origin) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
        )
        .bind(session)
        .bind(i.lane)
        .bind(&i.stream)
        .bind(&i.stream_type)
        .bind(&i.channel)
        .bind(&i.unit)
        .bind(i.nominal_srate)
        .bind(i.samples)
        .bind(i.first_ms)
        .bind(i.last_ms)
        .bind(i.min)
        .bind(i.max)
        .bind(&i.origin)
        .execute(&mut *conn)
        .await?;
        for lv in &l.levels {
            sqlx::query(
                "INSERT INTO sensor_levels (session_id, lane, level, bucket_ns, buckets, data) VALUES ($1,$2,$3,$4,$5,$6)",
            )
            .bind(session)
            .bind(i.lane)
            .bind(lv.level)
            .bind(lv.bucket_ns)
            .bind(lv.buckets)
            .bind(&lv.data)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Removes a session's lanes (re-import, withdrawal: physiological data is
/// the participant's).
pub async fn delete(conn: &mut Conn, session: &str) -> Result<(), sqlx::Error> {
    for table in ["sensor_levels", "sensor_lanes"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE session_id = $1"
        )))
        .bind(session)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn lanes(pool: &Pool, session: &str) -> Result<Vec<LaneInfo>, sqlx::Error> {
    sqlx::query(
        "SELECT lane, stream, stream_type, channel, unit, nominal_srate, samples, first_ms, last_ms, vmin, vmax, origin \
         FROM sensor_lanes WHERE session_id = $1 ORDER BY lane",
    )
    .bind(session)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(LaneInfo {
            lane: r.try_get("lane")?,
            stream: r.try_get("stream")?,
            stream_type: r.try_get("stream_type")?,
            channel: r.try_get("channel")?,
            unit: r.try_get("unit")?,
            nominal_srate: r.try_get("nominal_srate")?,
            samples: r.try_get("samples")?,
            first_ms: r.try_get("first_ms")?,
            last_ms: r.try_get("last_ms")?,
            min: r.try_get("vmin")?,
            max: r.try_get("vmax")?,
            origin: r.try_get("origin")?,
        })
    })
    .collect()
}

/// A lane's levels: (level, bucket_ns, buckets).
pub async fn levels(
    pool: &Pool,
    session: &str,
    lane: i64,
) -> Result<Vec<(i64, i64, i64)>, sqlx::Error> {
    sqlx::query(
        "SELECT level, bucket_ns, buckets FROM sensor_levels WHERE session_id = $1 AND lane = $2 ORDER BY level",
    )
    .bind(session)
    .bind(lane)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("level")?, r.try_get("bucket_ns")?, r.try_get("buckets")?)))
    .collect()
}

/// Buckets `first..first + count` of one level: only those bytes leave the
/// database (`substr` of the blob, on SQLite and PostgreSQL alike).
pub async fn window(
    pool: &Pool,
    session: &str,
    lane: i64,
    level: i64,
    first: i64,
    count: i64,
) -> Result<Vec<u8>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT substr(data, CAST($1 AS INTEGER), CAST($2 AS INTEGER)) AS part FROM sensor_levels \
         WHERE session_id = $3 AND lane = $4 AND level = $5",
    )
    .bind(first * 8 + 1)
    .bind(count * 8)
    .bind(session)
    .bind(lane)
    .bind(level)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(r) => r.try_get("part"),
        None => Ok(Vec::new()),
    }
}
