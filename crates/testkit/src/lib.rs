//! Real PostgreSQL and Redis for tests.
//!
//! `./scripts/test` starts both servers on private ports and exports their URLs.
//! Tests that need a server take it from here and fail (never skip) when the URL is
//! missing: a test suite that silently skips its database tests proves nothing.
//! Every test gets its own PostgreSQL database and its own Redis key prefix, so tests
//! run in parallel without seeing each other's data.

use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

/// The variable naming the test PostgreSQL server.
pub const DATABASE_URL_VAR: &str = "CITYPASS_TEST_DATABASE_URL";
/// The variable naming the test Redis server.
pub const REDIS_URL_VAR: &str = "CITYPASS_TEST_REDIS_URL";

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the tests with ./scripts/test, which starts PostgreSQL and Redis"
        )
    })
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

/// The test Redis server's URL.
pub fn redis_url() -> String {
    required(REDIS_URL_VAR)
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
