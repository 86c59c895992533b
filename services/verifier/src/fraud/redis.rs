//! The fraud log in Redis, beside the single-use marks: one stream (`XADD … MAXLEN`,
//! trimmed exactly: signals are rare)
//! under one hash tag, so it lives on one shard of a cluster; stream ids are the page
//! tokens.

use std::time::Duration;

use citypass_runtime::Deadline;
use futures::future::BoxFuture;

use super::{FraudError, FraudLog, FraudSignal, SignalPage};
use crate::replay::RedisConnection as Connection;

/// The Redis log; see the module documentation.
#[derive(Clone)]
pub struct RedisFraudLog {
    connection: Connection,
    key: String,
    capacity: usize,
    timeout: Duration,
}

impl std::fmt::Debug for RedisFraudLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFraudLog")
            .field("key", &self.key)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl RedisFraudLog {
    /// The log at `<prefix>{fraud}` on `connection`, keeping the newest `capacity` signals,
    /// each call bounded by `timeout` and the caller's deadline.
    pub fn new(connection: Connection, prefix: &str, capacity: usize, timeout: Duration) -> Self {
        RedisFraudLog {
            connection,
            key: format!("{prefix}{{fraud}}"),
            capacity: capacity.max(1),
            timeout,
        }
    }

    async fn bounded<T>(
        &self,
        deadline: Option<Deadline>,
        work: impl std::future::Future<Output = Result<T, FraudError>>,
    ) -> Result<T, FraudError> {
        let limit = deadline.map_or(self.timeout, |d| d.remaining().min(self.timeout));
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| FraudError::Timeout)?
    }
}

/// A stream id (`<ms>-<seq>`), the only page token this log gives out.
fn stream_id(text: &str) -> bool {
    let mut parts = text.split('-');
    let number = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    number(parts.next()) && number(parts.next()) && parts.next().is_none()
}

impl FraudLog for RedisFraudLog {
    fn record(
        &self,
        signal: FraudSignal,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'_, Result<(), FraudError>> {
        Box::pin(self.bounded(deadline, async move {
            let mut command = redis::cmd("XADD");
            command
                .arg(&self.key)
                .arg("MAXLEN")
                .arg(self.capacity)
                .arg("*")
                .arg("s")
                .arg(signal.encode());
            self.connection
                .query::<String>(&command)
                .await
                .map(|_| ())
                .map_err(FraudError::Backend)
        }))
    }

    fn list(
        &self,
        page_size: usize,
        page_token: Option<String>,
    ) -> BoxFuture<'_, Result<SignalPage, FraudError>> {
        Box::pin(self.bounded(None, async move {
            let end = match page_token {
                None => "+".to_owned(),
                Some(token) if stream_id(&token) => format!("({token}"),
                Some(_) => return Err(FraudError::BadPageToken),
            };
            let mut command = redis::cmd("XREVRANGE");
            command
                .arg(&self.key)
                .arg(end)
                .arg("-")
                .arg("COUNT")
                .arg(page_size.saturating_add(1));
            let reply: redis::streams::StreamRangeReply = self
                .connection
                .query(&command)
                .await
                .map_err(FraudError::Backend)?;
            let more = reply.ids.len() > page_size;
            let mut signals = Vec::with_capacity(page_size);
            let mut last = None;
            for entry in reply.ids.into_iter().take(page_size) {
                let text: String = entry.get("s").ok_or(FraudError::Corrupt)?;
                signals.push(FraudSignal::decode(&text).ok_or(FraudError::Corrupt)?);
                last = Some(entry.id);
            }
            Ok(SignalPage {
                signals,
                next_page_token: if more { last } else { None },
            })
        }))
    }
}
