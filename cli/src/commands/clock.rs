//! Wall-clock time in the Unix seconds every citypass object uses.

use anyhow::Context as _;

/// Now, in Unix seconds.
pub fn now() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_secs())
}
