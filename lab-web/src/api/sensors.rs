//! Sensor lanes of a session ([`crate::sensors`]): the list, and one lane's
//! min/max over a range in pixel columns.

use axum::extract::{Json, Path, Query, State};
use serde::{Deserialize, Serialize};

use super::access::require_session;
use crate::auth::{Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::sensors::{LaneInfo, MAX_COLUMNS, Series, columns, pick_level};
use crate::state::AppState;
use crate::store;

#[derive(Serialize)]
pub struct Lanes {
    pub lanes: Vec<LaneInfo>,
}

pub async fn lanes(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Lanes>> {
    require_session(&state, &auth, &id, Right::Raw).await?;
    Ok(Json(Lanes {
        lanes: store::sensors::lanes(&state.db.pool, &id).await?,
    }))
}

#[derive(Deserialize)]
pub struct SeriesQuery {
    from_ms: i64,
    to_ms: i64,
    columns: usize,
}

pub async fn series(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, lane)): Path<(String, i64)>,
    Query(q): Query<SeriesQuery>,
) -> ApiResult<Json<Series>> {
    require_session(&state, &auth, &id, Right::Raw).await?;
    if q.columns == 0 || q.columns > MAX_COLUMNS {
        return Err(ApiError::bad(format!("columns must be 1-{MAX_COLUMNS}")));
    }
    // Twelve hours either side of the session is more than any recording.
    const LIMIT_MS: i64 = 1_000 * 3600 * 24;
    if q.to_ms <= q.from_ms || q.from_ms < -LIMIT_MS || q.to_ms > LIMIT_MS {
        return Err(ApiError::bad(
            "from_ms must be before to_ms, both within ±24 h of the session's start",
        ));
    }
    let pool = &state.db.pool;
    let table = store::sensors::levels(pool, &id, lane).await?;
    if table.is_empty() {
        return Err(ApiError::not_found("no such sensor lane"));
    }
    let (from_ns, to_ns) = (q.from_ms * 1_000_000, q.to_ms * 1_000_000);
    let pairs: Vec<(i64, i64)> = table.iter().map(|(l, b, _)| (*l, *b)).collect();
    let level = pick_level(&pairs, to_ns - from_ns, q.columns);
    let (_, bucket_ns, buckets) = table
        .iter()
        .copied()
        .find(|(l, _, _)| *l == level)
        .unwrap_or(table[0]);
    let first = from_ns.div_euclid(bucket_ns).clamp(0, buckets);
    let last = (to_ns.div_euclid(bucket_ns) + 1).clamp(0, buckets);
    let data = if last > first {
        store::sensors::window(pool, &id, lane, level, first, last - first).await?
    } else {
        Vec::new()
    };
    let (min, max) = columns(&data, first, bucket_ns, from_ns, to_ns, q.columns);
    Ok(Json(Series {
        lane,
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        bucket_ms: bucket_ns as f64 / 1e6,
        min,
        max,
    }))
}
