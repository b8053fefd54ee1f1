//! Authorisation against a session: shared by every handler that touches one.

use crate::auth::{Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;

/// A 404 unless the session exists; a 403 for raw data unless the role may
/// see it; a 409 for any change (tags, decisions, analysis) to a session
/// whose participant withdrew.
pub async fn require_session(
    state: &AppState,
    auth: &Auth,
    id: &str,
    right: Right,
) -> ApiResult<()> {
    auth.require(right)?;
    let withdrawn = store::sessions::withdrawn(&state.db.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {id} not found")))?;
    if withdrawn && matches!(right, Right::Review | Right::Operate) {
        return Err(ApiError::withdrawn());
    }
    Ok(())
}

/// [`require_session`] for the session a tag belongs to; returns that session.
pub async fn require_tag_session(
    state: &AppState,
    auth: &Auth,
    tag: i64,
    right: Right,
) -> ApiResult<String> {
    auth.require(right)?;
    let session = store::tags::session_of(&state.db.pool, tag)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tag {tag} not found")))?;
    require_session(state, auth, &session, right).await?;
    Ok(session)
}
