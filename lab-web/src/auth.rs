//! Accounts, log-in sessions, API tokens, CSRF and role rights.
//!
//! Passwords are stored as argon2id PHC strings. A log-in creates a random
//! 256-bit token kept by the browser in an HttpOnly, SameSite=Strict cookie;
//! the database keeps only its SHA-256, so a leaked database does not leak
//! sessions. Each log-in session has its own CSRF token, which every
//! state-changing request authenticated by cookie must echo in `X-CSRF-Token`.
//! API tokens (`Authorization: Bearer`) carry viewer rights and need no CSRF
//! token because browsers never send them on their own.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use axum::extract::FromRequestParts;
use axum::http::{Method, request::Parts};
use sha2::{Digest, Sha256};

use crate::db::now_ms;
use crate::error::ApiError;
use crate::limits;
use crate::state::AppState;
use crate::store;
use crate::types::User;

pub const SESSION_COOKIE: &str = "lab_session";
pub const SESSION_DAYS: i64 = 14;

/// What a role may do; see the table in `docs/lab-web-api.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Session list, journey map, findings, clips, findings exports.
    Findings,
    /// Raw recordings: media, transcript, events, timeline, EAF/VTT/SRT.
    Raw,
    /// Tags, candidate decisions, clips.
    Review,
    /// Import bundles, run and cancel analysis.
    Operate,
    /// Participant withdrawal.
    Withdraw,
    /// Users, tokens, audit log.
    Admin,
    /// The findings overlay's feed (`/overlay/findings`), nothing else.
    Overlay,
    /// Upload session bundles (`/uploads`): station tokens only.
    Upload,
    /// Read study set-ups (`GET /setups`, their TOML): what a station pulls
    /// before a session, and what operators run sessions by.
    Setups,
    /// Create, change and delete study set-ups (researchers and admins).
    EditSetups,
    /// Lease analysis jobs, read their bundles, send their results
    /// (`/api/v1/worker`): worker tokens only.
    Work,
    /// Watch sessions live and send observers' notes (`/api/v1/live`).
    Live,
}

/// The role of an API token of scope `overlay` (the default): the overlay feed only.
pub const OVERLAY_ROLE: &str = "overlay";
/// The role of an API token of scope `station`: uploads its own bundles and
/// reads study set-ups, nothing else. No person can hold it (`types::ROLES`
/// does not list it).
pub const STATION_ROLE: &str = "station";
/// The role of an API token of scope `worker`: leases analysis jobs, reads
/// the bundles of the jobs it holds and writes their results, nothing else.
pub const WORKER_ROLE: &str = "worker";

pub fn role_has(role: &str, right: Right) -> bool {
    match role {
        "admin" => true,
        "researcher" => matches!(
            right,
            Right::Findings
                | Right::Raw
                | Right::Review
                | Right::Overlay
                | Right::Setups
                | Right::EditSetups
                | Right::Live
        ),
        "operator" => matches!(
            right,
            Right::Findings
                | Right::Raw
                | Right::Operate
                | Right::Overlay
                | Right::Setups
                | Right::Live
        ),
        // Behind the glass: live view and notes, no recordings, no findings.
        "observer" => right == Right::Live,
        "viewer" => matches!(right, Right::Findings | Right::Overlay),
        OVERLAY_ROLE => right == Right::Overlay,
        STATION_ROLE => matches!(right, Right::Upload | Right::Setups),
        WORKER_ROLE => right == Right::Work,
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub user: User,
    /// The log-in session's CSRF token (cookie auth only).
    pub csrf: Option<String>,
}

impl Auth {
    pub fn require(&self, right: Right) -> Result<(), ApiError> {
        if role_has(&self.user.role, right) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
    pub fn can(&self, right: Right) -> bool {
        role_has(&self.user.role, right)
    }
    /// The station behind a station token: (token id, station name). Uploads
    /// require it, so not even an admin's cookie can pose as a station.
    pub fn station(&self) -> Result<(i64, &str), ApiError> {
        if self.user.role == STATION_ROLE && self.user.id < 0 {
            Ok((-self.user.id, self.user.name.as_str()))
        } else {
            Err(ApiError::refused(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "выгрузка только по токену станции / uploads come from station tokens",
            ))
        }
    }
}

impl Auth {
    /// The worker behind a worker token: its name. The worker routes
    /// require it, so no cookie, not even an admin's, can pose as a worker.
    pub fn worker(&self) -> Result<&str, ApiError> {
        if self.user.role == WORKER_ROLE && self.user.id < 0 {
            Ok(self.user.name.as_str())
        } else {
            Err(ApiError::refused(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "только по токену обработчика / worker routes take worker tokens",
            ))
        }
    }
}

/// A station's name: what `lab-web station add` takes, and what a second
/// station's copy of a session id is suffixed with.
pub fn valid_station_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Creates a station token (printed once; only its hash is kept). A name
/// with a live station token is refused: uploads are keyed by station name.
pub async fn create_station(
    state: &AppState,
    name: &str,
    created_by: i64,
) -> Result<(i64, String), ApiError> {
    create_machine_token(state, "station", name, created_by).await
}

/// Creates a worker token (printed once). The name is the worker's in the
/// job list; a name with a live worker token is refused.
pub async fn create_worker(
    state: &AppState,
    name: &str,
    created_by: i64,
) -> Result<(i64, String), ApiError> {
    create_machine_token(state, "worker", name, created_by).await
}

/// A token of a machine (`station`, `worker`) named by a station name.
async fn create_machine_token(
    state: &AppState,
    scope: &str,
    name: &str,
    created_by: i64,
) -> Result<(i64, String), ApiError> {
    if !valid_station_name(name) {
        return Err(ApiError::bad(format!(
            "имя — строчные латинские буквы, цифры, _ и -, до 32 / a {scope} name is 1–32 of a-z, 0-9, _ and -, not {name:?}"
        )));
    }
    let taken = store::tokens::list(&state.db.pool)
        .await?
        .iter()
        .any(|t| t.scope == scope && t.name == name);
    if taken {
        return Err(ApiError::Conflict(format!(
            "у {name:?} уже есть токен; отзовите его сначала / {scope} {name:?} already has a token; revoke it first"
        )));
    }
    let token = new_token();
    let id = store::tokens::insert(
        &state.db.pool,
        name,
        &token_hash(&token),
        created_by,
        now_ms(),
        scope,
    )
    .await?;
    Ok((id, token))
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Runs an argon2 computation under the server's bound on concurrent hashes
/// ([`limits::max_concurrent_hashes`]): each takes ~19 MiB, so an unbounded
/// burst of log-ins could exhaust memory. Waits at most
/// [`limits::HASH_WAIT`], then answers 503.
pub async fn with_hash_permit<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let permit = tokio::time::timeout(limits::HASH_WAIT, state.hashes.acquire())
        .await
        .map_err(|_| ApiError::Busy)?
        .map_err(|e| ApiError::Internal(e.into()))?;
    let r = tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.into()));
    drop(permit);
    r
}

/// Throttling keys for a log-in attempt, in the order they are checked:
/// (key, limit).
fn login_keys(login: &str, addr: &str) -> [(String, i64); 3] {
    [
        (
            format!("acct-addr:{login}|{addr}"),
            limits::LOGIN_PER_ACCOUNT_AND_ADDRESS,
        ),
        (format!("addr:{addr}"), limits::LOGIN_PER_ADDRESS),
        (format!("acct:{login}"), limits::LOGIN_PER_ACCOUNT),
    ]
}

/// The key remembering that `addr` logged in to `login` successfully.
fn known_key(login: &str, addr: &str) -> String {
    format!("ok:{login}|{addr}")
}

/// Reserves one log-in attempt before the password is checked. Each key's
/// counter is incremented atomically in the database (an upsert that also
/// restarts an expired window and never counts past `limit + 1`), so
/// concurrent attempts cannot all pass a check made before any of them
/// failed, and every process on the database shares the counts. The keys are
/// checked in order and a refusal stops there: attempts refused for one
/// address never count against the account as a whole, so one address
/// cannot lock an account out for everyone. An address that logged in to
/// the account successfully within [`limits::LOGIN_KNOWN_FOR`] is not held
/// to the account-wide limit, so a distributed guesser cannot lock the
/// account's owner out of their usual machine.
pub async fn reserve_login_attempt(
    state: &AppState,
    login: &str,
    addr: &str,
) -> Result<bool, ApiError> {
    let now = now_ms();
    let window_start_before = now - limits::LOGIN_WINDOW.as_millis() as i64;
    if rand::random::<u8>() < 4 {
        // Now and then, forget what has expired (a flood of made-up names
        // must not grow the table without bound).
        store::login_attempts::forget_expired(
            &state.db.pool,
            window_start_before,
            now - limits::LOGIN_KNOWN_FOR.as_millis() as i64,
        )
        .await?;
    }
    let known = store::login_attempts::marked_since(
        &state.db.pool,
        &known_key(login, addr),
        now - limits::LOGIN_KNOWN_FOR.as_millis() as i64,
    )
    .await?;
    let keys = login_keys(login, addr);
    let checked = if known { &keys[..2] } else { &keys[..] };
    for (key, limit) in checked {
        let count =
            store::login_attempts::bump(&state.db.pool, key, now, window_start_before, *limit)
                .await?;
        if count > *limit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// After a successful log-in its reservation is returned: this address's
/// attempts at this account start over, and the address-wide and
/// account-wide counts go back down by one, so only failures accumulate (a
/// lab where everyone logs in from one address is not throttled by success).
/// The address is remembered as known for the account.
pub async fn clear_login_attempts(
    state: &AppState,
    login: &str,
    addr: &str,
) -> Result<(), ApiError> {
    let [(pair, _), (by_addr, _), (by_account, _)] = login_keys(login, addr);
    store::login_attempts::succeeded(
        &state.db.pool,
        &pair,
        &by_addr,
        &by_account,
        &known_key(login, addr),
        now_ms(),
    )
    .await?;
    Ok(())
}

/// The client's address, for log-in throttling: the TCP peer, or, when the
/// peer is the configured `--trusted-proxy`, the last `X-Forwarded-For` hop
/// (the one that proxy added). IPv6 addresses count per /64, the block one
/// host usually holds.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = || {
            parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .rfind(|v| !v.is_empty())
                .and_then(|v| v.parse::<std::net::IpAddr>().ok())
        };
        let ip = match (peer, state.config.trusted_proxy) {
            (Some(p), Some(proxy)) if p == proxy => forwarded().or(peer),
            _ => peer,
        };
        Ok(ClientAddr(
            ip.map_or_else(|| "unknown".into(), throttle_key),
        ))
    }
}

/// An address as a throttling key: IPv4 as is, IPv6 by its /64.
pub fn throttle_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        v4 => v4.to_string(),
    }
}

pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn password_ok(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 {
        return Err(ApiError::bad(
            "пароль должен быть не короче 8 символов / password must have at least 8 characters",
        ));
    }
    Ok(())
}

/// Creates a user; used by the CLI and the admin API.
pub async fn create_user(
    state: &AppState,
    login: &str,
    name: &str,
    password: &str,
    role: &str,
) -> Result<i64, ApiError> {
    let login = login.trim();
    if login.is_empty() || login.len() > 64 || login.chars().any(|c| c.is_whitespace()) {
        return Err(ApiError::bad("неверный логин / invalid login"));
    }
    if !crate::types::ROLES.contains(&role) {
        return Err(ApiError::bad(format!("unknown role {role:?}")));
    }
    password_ok(password)?;
    let hash = {
        let p = password.to_string();
        with_hash_permit(state, move || hash_password(&p)).await??
    };
    if store::users::login_taken(&state.db.pool, login).await? {
        return Err(ApiError::Conflict(format!("login {login:?} is taken")));
    }
    Ok(store::users::insert(
        &state.db.pool,
        login,
        if name.is_empty() { login } else { name },
        &hash,
        role,
        now_ms(),
    )
    .await?)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(bearer) = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            let (id, name, scope) =
                store::tokens::by_hash(&state.db.pool, &token_hash(bearer.trim()))
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
            return Ok(Auth {
                user: User {
                    id: -id,
                    login: format!("token:{name}"),
                    name,
                    role: match scope.as_str() {
                        "viewer" => "viewer",
                        "station" => STATION_ROLE,
                        "worker" => WORKER_ROLE,
                        _ => OVERLAY_ROLE,
                    }
                    .into(),
                },
                csrf: None,
            });
        }
        let token =
            crate::cookies::cookie(&parts.headers, SESSION_COOKIE).ok_or(ApiError::Unauthorized)?;
        let login = store::users::login_session(&state.db.pool, &token_hash(token))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if login.expires_at < now_ms() {
            return Err(ApiError::Unauthorized);
        }
        let csrf = login.csrf;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            if sent != Some(csrf.as_str()) {
                return Err(ApiError::Csrf);
            }
        }
        Ok(Auth {
            user: login.user,
            csrf: Some(csrf),
        })
    }
}

/// Appends to the audit log; failures are logged, never fatal to the request.
pub async fn audit(
    state: &AppState,
    user: Option<&User>,
    action: &str,
    object: &str,
    detail: &str,
) {
    let r = store::audit::append(&state.db.pool, now_ms(), user, action, object, detail).await;
    if let Err(e) = r {
        tracing::error!("audit log write failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn rights_follow_the_table() {
        assert!(role_has("viewer", Right::Findings));
        assert!(!role_has("viewer", Right::Raw));
        assert!(role_has("researcher", Right::Review));
        assert!(!role_has("researcher", Right::Operate));
        assert!(role_has("operator", Right::Operate));
        assert!(!role_has("operator", Right::Review));
        assert!(!role_has("operator", Right::Withdraw));
        assert!(role_has("admin", Right::Admin));
        assert!(!role_has("nobody", Right::Findings));
        // A station uploads and reads study set-ups, nothing else.
        assert!(role_has(STATION_ROLE, Right::Upload));
        assert!(role_has(STATION_ROLE, Right::Setups));
        for r in [
            Right::Findings,
            Right::Raw,
            Right::Review,
            Right::Operate,
            Right::Withdraw,
            Right::Admin,
            Right::Overlay,
            Right::EditSetups,
        ] {
            assert!(!role_has(STATION_ROLE, r), "{r:?}");
        }
        for role in ["researcher", "operator", "viewer", OVERLAY_ROLE] {
            assert!(!role_has(role, Right::Upload), "{role}");
        }
        // Set-ups: read by those who run sessions, edited by researchers.
        for role in ["admin", "researcher", "operator", STATION_ROLE] {
            assert!(role_has(role, Right::Setups), "{role}");
        }
        for role in ["viewer", OVERLAY_ROLE, "nobody"] {
            assert!(!role_has(role, Right::Setups), "{role}");
        }
        for role in ["admin", "researcher"] {
            assert!(role_has(role, Right::EditSetups), "{role}");
        }
        for role in ["operator", "viewer", OVERLAY_ROLE, STATION_ROLE] {
            assert!(!role_has(role, Right::EditSetups), "{role}");
        }
    }

    #[test]
    fn station_names_are_plain() {
        for ok in ["lab-1", "room_2", "a", "0"] {
            assert!(valid_station_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Lab",
            "-a",
            "_a",
            "a.b",
            "a/b",
            "станция",
            &"a".repeat(33),
        ] {
            assert!(!valid_station_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(throttle_key(a), throttle_key(b));
        assert_eq!(throttle_key("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(throttle_key("10.1.2.3".parse().unwrap()), "10.1.2.3");
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token());
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
