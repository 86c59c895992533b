//! What a follower is connected to, kept as one atomic byte.

/// What the follower is connected to right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceState {
    /// Not synced yet (start-up).
    Starting,
    /// Tailing the Redis Stream.
    Streaming,
    /// Redis is lost: polling List until it is back; the stream is not trusted.
    Polling,
    /// Following Watch.
    Watching,
    /// The Watch stream is down: reconnecting.
    Disconnected,
}

impl SourceState {
    pub(crate) fn code(self) -> u8 {
        match self {
            SourceState::Starting => 0,
            SourceState::Streaming => 1,
            SourceState::Polling => 2,
            SourceState::Watching => 3,
            SourceState::Disconnected => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            1 => SourceState::Streaming,
            2 => SourceState::Polling,
            3 => SourceState::Watching,
            4 => SourceState::Disconnected,
            _ => SourceState::Starting,
        }
    }
}
