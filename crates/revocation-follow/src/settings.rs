//! How a service follows the revocation log, as its configuration file writes it
//! (`revocation.*`): the issuer and the verifier read the same section into this one
//! type and turn it into a [`FollowerConfig`] the same way.

use std::time::Duration;

use citypass_revocation::Kinds;
use citypass_runtime::UpstreamConfig;
use citypass_runtime::config::{Deployment, RedisConfig, duration};
use serde::Deserialize;

use crate::FollowerError;
use crate::config::FollowerConfig;

/// Where the revocation data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowMode {
    /// `redis` when a Redis URL is known (`revocation.redis`, or the service's own
    /// `redis`), else `watch` (the default).
    #[default]
    Auto,
    /// Tail the revocation service's Redis Stream, resyncing with ListRevocations.
    Redis,
    /// Follow the revocation service's WatchRevocations stream over gRPC.
    Watch,
}

/// A service's `revocation` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationSettings {
    /// RevocationService (ListRevocations, WatchRevocations), e.g.
    /// `https://revocation:50054` (default `http://127.0.0.1:50054`); its
    /// `request_timeout` bounds one List page, Watch call or Redis command.
    pub service: UpstreamConfig,
    /// `auto` (default), `redis` or `watch`.
    pub follow: FollowMode,
    /// Redis holding the revocation stream; unset: the service's own `redis`.
    pub redis: Option<RedisConfig>,
    /// The stream key (default `citypass:revocation:log`, the service's default).
    pub stream_key: String,
    /// The service refuses to decide (the issuer to issue, the verifier to admit)
    /// while its revocation data is older than this (default `10s`; between 2s and 5m).
    #[serde(deserialize_with = "duration::deserialize_positive")]
    pub max_age: Duration,
}

/// Least `revocation.max_age`: the follower hears from an idle stream about once a
/// second, so less would refuse on healthy data.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(2);
/// Largest `revocation.max_age`.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(300);

impl Default for RevocationSettings {
    fn default() -> Self {
        RevocationSettings {
            service: UpstreamConfig::new("http://127.0.0.1:50054"),
            follow: FollowMode::Auto,
            redis: None,
            stream_key: crate::DEFAULT_STREAM_KEY.to_owned(),
            max_age: Duration::from_secs(10),
        }
    }
}

/// A broken rule of the section: the dotted key and what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSettings {
    /// The key, e.g. `revocation.max_age`.
    pub key: &'static str,
    /// What is wrong.
    pub problem: &'static str,
}

impl RevocationSettings {
    /// Checks the limits described on each field.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let invalid = |key, problem| Err(InvalidSettings { key, problem });
        if self.service.url.is_empty() {
            return invalid("revocation.service.url", "must be set");
        }
        if self.stream_key.is_empty() {
            return invalid("revocation.stream_key", "must not be empty");
        }
        if self.max_age < MIN_MAX_AGE || self.max_age > MAX_MAX_AGE {
            return invalid("revocation.max_age", "must be between 2s and 5m");
        }
        Ok(())
    }

    /// [`Self::validate`], and that `follow: redis` has a Redis to follow: the section's
    /// own, or `service_redis` (the service's `redis`).
    pub fn validate_with(
        &self,
        service_redis: Option<&RedisConfig>,
    ) -> Result<(), InvalidSettings> {
        self.validate()?;
        if self.follow == FollowMode::Redis && self.redis_or(service_redis).is_none() {
            return Err(InvalidSettings {
                key: "revocation.follow",
                problem: "is redis but neither revocation.redis nor redis is set",
            });
        }
        Ok(())
    }

    /// The Redis the follower reads: the section's own, else `service_redis`.
    pub fn redis_or<'a>(
        &'a self,
        service_redis: Option<&'a RedisConfig>,
    ) -> Option<&'a RedisConfig> {
        self.redis.as_ref().or(service_redis)
    }

    /// Names the section's URLs (the revocation service, its own Redis) for the
    /// plaintext check.
    pub fn name_urls<'a>(&'a self, deployment: &mut Deployment<'a>) {
        deployment
            .url("revocation.service.url", self.service.url.as_str())
            .redis("revocation.redis.url", self.redis.as_ref());
    }

    /// The follower configuration these settings describe, keeping entries of `kinds`;
    /// `fallback_redis` is the service's own `redis`.
    pub fn follower_config(
        &self,
        fallback_redis: Option<&RedisConfig>,
        kinds: Kinds,
    ) -> Result<FollowerConfig, FollowerError> {
        let redis_url = self
            .redis_or(fallback_redis)
            .map(|redis| redis.url.expose());
        let mut config = match (self.follow, redis_url) {
            (FollowMode::Watch, _) | (FollowMode::Auto, None) => FollowerConfig::watch(),
            (FollowMode::Redis | FollowMode::Auto, Some(url)) => {
                FollowerConfig::redis(url, self.stream_key.clone())
            }
            (FollowMode::Redis, None) => {
                return Err(FollowerError::Config(
                    "revocation.follow is redis but no Redis URL is set (revocation.redis or redis)"
                        .into(),
                ));
            }
        };
        config.request_timeout = self.service.request_timeout;
        config.kinds = kinds;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;
    use citypass_revocation::TargetKind;

    #[test]
    fn the_follow_mode_picks_the_source() {
        let subjects = Kinds::of([TargetKind::Subject, TargetKind::Device]);
        let settings = RevocationSettings::default();
        let watch = settings.follower_config(None, subjects).unwrap();
        assert_eq!(watch.source, Source::Watch);
        assert_eq!(watch.kinds, subjects);
        let redis = settings
            .follower_config(
                Some(&RedisConfig::new("redis://127.0.0.1:6379/")),
                Kinds::ALL,
            )
            .unwrap();
        assert!(matches!(
            redis.source,
            Source::Redis { ref stream_key, .. } if stream_key == crate::DEFAULT_STREAM_KEY
        ));
        assert_eq!(redis.kinds, Kinds::ALL);
        let forced = RevocationSettings {
            follow: FollowMode::Redis,
            ..RevocationSettings::default()
        };
        assert!(forced.follower_config(None, Kinds::ALL).is_err());
        let own = RevocationSettings {
            follow: FollowMode::Watch,
            redis: Some(RedisConfig::new("redis://elsewhere/")),
            ..RevocationSettings::default()
        };
        assert_eq!(
            own.follower_config(Some(&RedisConfig::new("redis://127.0.0.1/")), Kinds::ALL)
                .unwrap()
                .source,
            Source::Watch
        );
    }

    #[test]
    fn limits_name_their_key() {
        let mut settings = RevocationSettings::default();
        assert_eq!(settings.validate(), Ok(()));
        settings.max_age = Duration::from_secs(1);
        assert_eq!(settings.validate().unwrap_err().key, "revocation.max_age");
        settings.max_age = Duration::from_secs(10);
        settings.stream_key.clear();
        assert_eq!(
            settings.validate().unwrap_err().key,
            "revocation.stream_key"
        );
    }
}
