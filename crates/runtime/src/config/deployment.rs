//! What a service connects to, checked the same way by every service: a database pool
//! of at least one connection, what production may not run without, and the URLs that
//! [`ServerConfig::check_transport`] refuses in clear. Each service lists its own
//! stores and upstreams (and why production needs them); the rules live here once.

use super::{PostgresConfig, RedisConfig, ServerConfig};
use crate::environment::Environment;

/// A setting refused: the dotted key and what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{key} {problem}")]
pub struct Refusal {
    /// The offending key, dotted.
    pub key: &'static str,
    /// What is wrong, worded to follow the key.
    pub problem: &'static str,
}

/// The stores and upstreams of one service's configuration, gathered as they are
/// checked; [`Deployment::check_transport`] ends with the plaintext rule over their
/// URLs, in the order they were named.
#[derive(Debug)]
pub struct Deployment<'a> {
    server: &'a ServerConfig,
    environment: Environment,
    urls: Vec<(&'static str, &'a str)>,
}

impl<'a> Deployment<'a> {
    /// The deployment of a service served by `server` in `environment`.
    pub fn new(server: &'a ServerConfig, environment: Environment) -> Self {
        Deployment {
            server,
            environment,
            urls: Vec::new(),
        }
    }

    /// In production, refuses `key` unset (`present` false) with `problem` (e.g. "is
    /// required in production: …"); elsewhere anything goes.
    pub fn require(
        &self,
        key: &'static str,
        present: bool,
        problem: &'static str,
    ) -> Result<(), Refusal> {
        if self.environment.is_production() && !present {
            return Err(Refusal { key, problem });
        }
        Ok(())
    }

    /// The service's PostgreSQL (`database`): a pool of at least one connection, its URL
    /// for the transport check, and in production, when `in_production` says why, present.
    pub fn database(
        &mut self,
        database: Option<&'a PostgresConfig>,
        in_production: Option<&'static str>,
    ) -> Result<&mut Self, Refusal> {
        if database.is_some_and(|d| d.max_connections == 0) {
            return Err(Refusal {
                key: "database.max_connections",
                problem: "must be at least 1",
            });
        }
        if let Some(problem) = in_production {
            self.require("database", database.is_some(), problem)?;
        }
        if let Some(database) = database {
            self.urls.push(("database.url", database.url.expose()));
        }
        Ok(self)
    }

    /// A Redis the service uses, its URL under `key` (e.g. `redis.url`), if set.
    pub fn redis(&mut self, key: &'static str, redis: Option<&'a RedisConfig>) -> &mut Self {
        if let Some(redis) = redis {
            self.urls.push((key, redis.url.expose()));
        }
        self
    }

    /// An upstream's URL under `key` (e.g. `identity.url`).
    pub fn url(&mut self, key: &'static str, url: &'a str) -> &mut Self {
        self.urls.push((key, url));
        self
    }

    /// The plaintext rule over every URL named ([`ServerConfig::check_transport`]).
    pub fn check_transport(&self) -> Result<(), Refusal> {
        self.server
            .check_transport(self.environment, &self.urls)
            .map_err(|e| Refusal {
                key: e.key,
                problem: e.problem,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> ServerConfig {
        let mut server = ServerConfig::new("test");
        server.tls = Some(crate::TlsConfig::in_dir(std::path::Path::new("/tls")));
        server
    }

    #[test]
    fn a_database_needs_a_connection_and_production_may_need_it() {
        let server = production();
        let empty = PostgresConfig {
            max_connections: 0,
            ..PostgresConfig::new("postgres://db/x?sslmode=verify-full")
        };
        let mut dev = Deployment::new(&server, Environment::Dev);
        let err = dev.database(Some(&empty), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "database.max_connections must be at least 1"
        );
        dev.database(None, Some("is required")).unwrap();

        let mut prod = Deployment::new(&server, Environment::Production);
        assert_eq!(
            prod.database(None, Some("is required")).unwrap_err().key,
            "database"
        );
        prod.database(None, None).unwrap();
        assert!(prod.require("redis", false, "is required").is_err());
        prod.require("redis", true, "is required").unwrap();
    }

    #[test]
    fn the_first_plaintext_url_named_is_refused_in_production() {
        let server = production();
        let database = PostgresConfig::new("postgres://db/x");
        let redis = RedisConfig::new("rediss://redis/");
        let mut prod = Deployment::new(&server, Environment::Production);
        prod.url("identity.url", "https://identity")
            .redis("redis.url", Some(&redis));
        prod.check_transport().unwrap();
        prod.database(Some(&database), None).unwrap();
        prod.url("issuer.url", "http://issuer");
        assert_eq!(prod.check_transport().unwrap_err().key, "database.url");
        let mut dev = Deployment::new(&server, Environment::Dev);
        dev.database(Some(&database), None).unwrap();
        dev.check_transport().unwrap();
    }
}
