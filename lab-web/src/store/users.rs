//! Users and their log-in sessions (cookies, stored as SHA-256).

use sqlx::Row;

use crate::types::{User, UserAccount};
use sqlx::AnyPool as Pool;

/// An enabled user with the password hash to check.
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

pub async fn credentials(pool: &Pool, login: &str) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query(
        "SELECT id, login, name, role, password_hash FROM users WHERE login = $1 AND disabled = 0",
    )
    .bind(login)
    .fetch_optional(pool)
    .await?
    .map(|r| {
        Ok(Credentials {
            user: User {
                id: r.try_get("id")?,
                login: r.try_get("login")?,
                name: r.try_get("name")?,
                role: r.try_get("role")?,
            },
            password_hash: r.try_get("password_hash")?,
        })
    })
    .transpose()
}

pub async fn count(pool: &Pool) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(pool)
        .await?
        .try_get("n")
}

pub async fn exists(pool: &Pool, id: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .is_some())
}

pub async fn login_taken(pool: &Pool, login: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT id FROM users WHERE login = $1")
        .bind(login)
        .fetch_optional(pool)
        .await?
        .is_some())
}

pub async fn insert(
    pool: &Pool,
    login: &str,
    name: &str,
    password_hash: &str,
    role: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (login, name, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(login)
    .bind(name)
    .bind(password_hash)
    .bind(role)
    .bind(now)
    .fetch_one(pool)
    .await?
    .try_get("id")
}

pub async fn list(pool: &Pool) -> Result<Vec<UserAccount>, sqlx::Error> {
    sqlx::query("SELECT id, login, name, role, disabled, created_at FROM users ORDER BY login")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(UserAccount {
                id: r.try_get("id")?,
                login: r.try_get("login")?,
                name: r.try_get("name")?,
                role: r.try_get("role")?,
                disabled: r.try_get::<i64, _>("disabled")? != 0,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

pub async fn set_role(pool: &Pool, id: i64, role: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
        .bind(id)
        .bind(role)
        .execute(pool)
        .await?;
    Ok(())
}

/// Sets a new password and ends the user's log-in sessions.
pub async fn set_password(pool: &Pool, id: i64, password_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(id)
        .bind(password_hash)
        .execute(pool)
        .await?;
    end_logins(pool, id).await
}

/// Disables or enables a user; disabling ends their log-in sessions.
pub async fn set_disabled(pool: &Pool, id: i64, disabled: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
        .bind(id)
        .bind(i64::from(disabled))
        .execute(pool)
        .await?;
    if disabled {
        end_logins(pool, id).await?;
    }
    Ok(())
}

async fn end_logins(pool: &Pool, user: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1")
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records a log-in session (cookie token stored hashed).
pub async fn open_login(
    pool: &Pool,
    token_hash: &str,
    user: i64,
    csrf: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO auth_sessions (token_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(token_hash)
        .bind(user)
        .bind(csrf)
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn close_login(pool: &Pool, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auth_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// The enabled user behind a log-in session, with its CSRF token and expiry.
pub struct LoginSession {
    pub user: User,
    pub csrf: String,
    pub expires_at: i64,
}

pub async fn login_session(
    pool: &Pool,
    token_hash: &str,
) -> Result<Option<LoginSession>, sqlx::Error> {
    sqlx::query(
        "SELECT u.id, u.login, u.name, u.role, s.csrf, s.expires_at FROM auth_sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND u.disabled = 0",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?
    .map(|r| {
        Ok(LoginSession {
            user: User {
                id: r.try_get("id")?,
                login: r.try_get("login")?,
                name: r.try_get("name")?,
                role: r.try_get("role")?,
            },
            csrf: r.try_get("csrf")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}
