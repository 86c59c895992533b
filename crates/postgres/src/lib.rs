//! What every PostgreSQL-backed store shares: how a pool is opened, and which database
//! errors mean "unavailable, retry" rather than "a bug".
//!
//! The classification matters for callers: UNAVAILABLE tells a gate or an app to back
//! off and retry, INTERNAL tells an operator to look. Keeping it in one place means
//! every service answers the same way when PostgreSQL goes away (the revocation
//! service's "nothing acknowledged that is not stored" depends on it).
#![forbid(unsafe_code)]

mod migrations;

use std::time::Duration;

use citypass_runtime::ErrorKind;
use sqlx::postgres::{PgPool, PgPoolOptions};

pub use migrations::{Embedded, migrate};

/// How long a query waits for a free connection before the store reports UNAVAILABLE.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a pool of up to `max_connections` to `url`.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await
}

/// A database that cannot be reached is `Unavailable`; anything else is `Internal`.
pub fn error_kind(err: &sqlx::Error) -> ErrorKind {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // Class 08: connection exceptions; 57P01-57P03: administrator or crash
            // shutdown, cannot connect now; 3D000: the database does not exist
            // (dropped); 53300: too many connections; 55000: the database does not
            // allow connections (ALTER DATABASE ... ALLOW_CONNECTIONS false).
            Some(code)
                if code.starts_with("08")
                    || matches!(
                        code,
                        "57P01" | "57P02" | "57P03" | "3D000" | "53300" | "55000"
                    ) =>
            {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_is_unavailable_and_the_rest_internal() {
        assert_eq!(
            error_kind(&sqlx::Error::PoolTimedOut),
            ErrorKind::Unavailable
        );
        assert_eq!(error_kind(&sqlx::Error::PoolClosed), ErrorKind::Unavailable);
        assert_eq!(error_kind(&sqlx::Error::RowNotFound), ErrorKind::Internal);
    }

    /// A real server refusing a database that does not exist is UNAVAILABLE.
    #[tokio::test]
    async fn a_missing_database_is_unavailable() {
        let url = std::env::var("CITYPASS_TEST_DATABASE_URL")
            .expect("CITYPASS_TEST_DATABASE_URL: run ./scripts/test");
        let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
        let err = connect(&format!("{base}/no_such_database_here"), 1)
            .await
            .expect_err("the database does not exist");
        assert_eq!(error_kind(&err), ErrorKind::Unavailable);
    }
}
