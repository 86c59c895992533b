//! Real PostgreSQL and Redis for tests.
//!
//! `./scripts/test` starts both servers on private ports and exports their URLs.
//! Tests that need a server take it from here and fail (never skip) when the URL is
//! missing: a test suite that silently skips its database tests proves nothing.
//! Every test gets its own PostgreSQL database and its own Redis key prefix, so tests
//! run in parallel without seeing each other's data.

pub mod authz;
mod contract;
pub mod realname;
pub mod redis_cluster;
mod serve;
pub mod tls;

pub use serve::{Served, serve};

use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

/// The variable naming the test PostgreSQL server.
pub const DATABASE_URL_VAR: &str = "CITYPASS_TEST_DATABASE_URL";
/// The variable naming the CA file of the test PostgreSQL server's certificate.
pub const DATABASE_CA_VAR: &str = "CITYPASS_TEST_DATABASE_CA";
/// The variable naming the test Redis server.
pub const REDIS_URL_VAR: &str = "CITYPASS_TEST_REDIS_URL";
/// The variable naming the same Redis server over TLS (`rediss://`).
pub const REDIS_TLS_URL_VAR: &str = "CITYPASS_TEST_REDIS_TLS_URL";
/// The variable naming the CA file of the test Redis server's TLS certificate.
pub const REDIS_CA_VAR: &str = "CITYPASS_TEST_REDIS_CA";

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the tests with ./scripts/test, which starts PostgreSQL and Redis"
        )
    })
}

/// The test PostgreSQL server's URL.
pub fn database_url() -> String {
    required(DATABASE_URL_VAR)
}

/// The CA file of the test PostgreSQL server's certificate (`./scripts/test` makes one).
pub fn database_ca() -> std::path::PathBuf {
    std::path::PathBuf::from(required(DATABASE_CA_VAR))
}

/// A random lower-case suffix for names that must not collide between tests.
pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("system randomness");
    format!("{prefix}{}", hex::encode(bytes))
}

/// The test server's URL with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A fresh, empty database on the test server, and a pool connected to it.
///
/// Databases are not dropped: the test server is a throwaway cluster that
/// `./scripts/test` deletes when it stops.
pub async fn fresh_database() -> (PgPool, String) {
    let url = required(DATABASE_URL_VAR);
    let name = unique("t_");
    let mut admin = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let db_url = with_database(&url, &name);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&db_url)
        .await
        .expect("connect to the test database");
    (pool, db_url)
}

/// The database name in a PostgreSQL URL.
fn database_name(url: &str) -> &str {
    let base = url.split('?').next().unwrap_or(url);
    base.rsplit('/').next().unwrap_or(base)
}

/// Takes the database at `url` away from whoever uses it (`false`): its connections are
/// ended and it is renamed, so reconnecting fails as for a dropped database; or brings it
/// back under its name (`true`). This is "PostgreSQL unavailable, and back" for one
/// service, without disturbing other tests on the same server.
pub async fn set_database_available(url: &str, available: bool) {
    let name = database_name(url).to_owned();
    let parked = format!("{name}_off");
    let (from, to) = if available {
        (parked.as_str(), name.as_str())
    } else {
        (name.as_str(), parked.as_str())
    };
    let mut admin = PgConnection::connect(&required(DATABASE_URL_VAR))
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server: {e}"));
    sqlx::query(&format!("ALTER DATABASE {from} ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .await
        .expect("stop new connections");
    // Backends take a moment to exit after being terminated.
    let mut renamed = false;
    for _ in 0..100 {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(from)
            .execute(&mut admin)
            .await
            .expect("terminate connections");
        if sqlx::query(&format!("ALTER DATABASE {from} RENAME TO {to}"))
            .execute(&mut admin)
            .await
            .is_ok()
        {
            renamed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(renamed, "cannot rename database {from}");
    sqlx::query(&format!("ALTER DATABASE {to} ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .expect("allow connections");
}

/// The test Redis server's URL.
pub fn redis_url() -> String {
    required(REDIS_URL_VAR)
}

/// The test Redis server's `rediss://` URL and the path of its certificate's CA
/// (production refuses plaintext Redis).
pub fn redis_tls() -> (String, std::path::PathBuf) {
    (
        required(REDIS_TLS_URL_VAR),
        std::path::PathBuf::from(required(REDIS_CA_VAR)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:1/citypass_test", "t_1"),
            "postgres://u@h:1/t_1"
        );
        assert_eq!(
            with_database("postgres://u@h:1/db?sslmode=disable", "t_2"),
            "postgres://u@h:1/t_2?sslmode=disable"
        );
    }
}
