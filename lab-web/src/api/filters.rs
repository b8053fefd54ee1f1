//! Query-string filters shared by the session list, the journey map and
//! the findings exports.

use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::types::SessionFilter;

/// `YYYY-MM-DD` (start of day, or end of day for `to`) or Unix ms; 0 = no bound.
pub fn date_bound(s: &str, end_of_day: bool) -> ApiResult<i64> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(&format!("{s} 00:00:00"))
        .map_err(|_| ApiError::bad(format!("bad date {s:?}: use YYYY-MM-DD")))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Ok(if end_of_day { ms + 86_400_000 - 1 } else { ms })
}

/// `?study=&life_situation=&journey=&segment=&from=&to=`.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    pub study: String,
    #[serde(default)]
    pub life_situation: String,
    #[serde(default)]
    pub journey: String,
    #[serde(default)]
    pub segment: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
}

impl ListQuery {
    pub fn filter(&self) -> ApiResult<SessionFilter> {
        Ok(SessionFilter {
            study: self.study.clone(),
            life_situation: self.life_situation.clone(),
            journey: self.journey.clone(),
            segment: self.segment.clone(),
            from: date_bound(&self.from, false)?,
            to: date_bound(&self.to, true)?,
        })
    }
}

/// The journey map's and the findings exports' query.
#[derive(Deserialize, Default)]
pub struct MapQuery {
    #[serde(default)]
    pub study: String,
    #[serde(default)]
    pub segment: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub journey: String,
    #[serde(default)]
    pub format: String,
}

impl MapQuery {
    pub fn filter(&self) -> ApiResult<SessionFilter> {
        Ok(SessionFilter {
            study: self.study.clone(),
            life_situation: String::new(),
            journey: self.journey.clone(),
            segment: self.segment.clone(),
            from: date_bound(&self.from, false)?,
            to: date_bound(&self.to, true)?,
        })
    }
}
