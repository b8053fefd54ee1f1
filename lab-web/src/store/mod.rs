//! The store: every SQL statement of lab-web, one module per entity. Each
//! function takes the pool (or, inside a transaction, the connection) and
//! returns the typed rows of [`crate::types`]; rows are read by column name
//! in one mapping function per type. The SQL is written once for both
//! backends through sqlx's `Any` driver (`$N` placeholders, 64-bit integers
//! and doubles only, see [`crate::db`]); full-text search is the one place
//! that differs ([`search`]). Above the store sit the services (jobs, import,
//! withdrawal, clips, map, search, setups) and the HTTP handlers, which hold no SQL.

pub mod audit;
pub mod batch;
pub mod bundle_sums;
pub mod candidates;
pub mod clips;
pub mod findings;
pub mod import;
pub mod jobs;
pub mod journeys;
pub mod leader;
pub mod leases;
pub mod login_attempts;
pub mod map;
pub mod search;
pub mod sensors;
pub mod sessions;
pub mod setups;
pub mod tags;
pub mod timeline;
pub mod tokens;
pub mod uploads;
pub mod users;
pub mod withdrawal;

pub use sqlx::AnyConnection as Conn;
pub use sqlx::AnyPool as Pool;

/// Whether the database answers (`/healthz`).
pub async fn ping(pool: &Pool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
