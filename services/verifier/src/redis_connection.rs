//! One Redis connection for the verifier's shared state (single-use marks, the fraud
//! log): a single Redis or a Redis Cluster, behind one `query`.

use redis::aio::ConnectionManager;

/// A single Redis (reconnecting in the background) or a Redis Cluster (commands
/// routed by their key's slot).
#[derive(Clone)]
pub enum Connection {
    /// One Redis.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Connection {
    /// Runs `command` on the connection (or the node that owns its key's slot).
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        match self {
            Connection::Single(connection) => command.query_async(&mut connection.clone()).await,
            Connection::Cluster(connection) => command.query_async(&mut connection.clone()).await,
        }
    }
}
