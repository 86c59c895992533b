//! What `citypass app code`, `offline-code`, `certificate` and `status` show: a code
//! written to files and drawn as a terminal QR (or as JSON), the saved certificate's
//! claims, and `code --watch`, which fetches and redraws a code before each one expires.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use citypass_app::{App, OfflineState};
use citypass_proto::v1::IssueTokenResponse;
use citypass_token::{
    CertificateClaims, CodeKind, DeviceKey, Inspection, OfflineSigner, Qr, SystemRandom, inspect,
};

use crate::commands::clock;
use crate::commands::token::scope_names;

/// Where `code` and `offline-code` also write a code.
pub(super) struct Files {
    pub out: Option<PathBuf>,
    pub png: Option<PathBuf>,
    pub svg: Option<PathBuf>,
}

impl Files {
    /// Writes the code's text, PNG and SVG where asked; returns what the code says.
    pub(super) fn write(&self, code: &str, svg: Option<&str>) -> anyhow::Result<Inspection> {
        let facts = inspect(code)?;
        if let Some(path) = &self.out {
            std::fs::write(path, code).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &self.png {
            std::fs::write(path, Qr::encode(code)?.to_png(8)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let (Some(path), Some(doc)) = (&self.svg, svg) {
            std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(facts)
    }

    fn written(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.out, &self.png, &self.svg].into_iter().flatten()
    }
}

/// Draws a code as a terminal QR with its size, QR version and times.
pub(super) fn draw(code: &str, facts: &Inspection, files: &Files) -> anyhow::Result<()> {
    println!("{}", Qr::encode(code)?.to_terminal());
    let kind = match facts.kind {
        CodeKind::Online => "online code (CP1)",
        CodeKind::Offline => "offline code (CP2)",
    };
    println!(
        "{kind}, {} characters, QR version {}, scopes {}",
        facts.text_len, facts.qr_version, facts.scopes
    );
    println!("issued   {}", clock::show(facts.iat));
    println!("expires  {}", clock::show(facts.exp));
    for path in files.written() {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// A code as JSON: its text, kind, size, QR version, scopes, times, the files written
/// and, under `--watch`, its number.
pub(super) fn code_json(
    code: &str,
    facts: &Inspection,
    files: &Files,
    number: Option<u64>,
) -> serde_json::Value {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let mut value = clock::with_times(
        serde_json::json!({
            "code": code,
            "kind": match facts.kind {
                CodeKind::Online => "online",
                CodeKind::Offline => "offline",
            },
            "text_len": facts.text_len,
            "qr_version": facts.qr_version,
            "scopes": scope_names(facts.scopes),
            "counter": facts.counter,
            "out": path(&files.out),
            "png": path(&files.png),
            "svg": path(&files.svg),
        }),
        &[
            ("issued_at", Some(facts.iat)),
            ("expires_at", Some(facts.exp)),
        ],
    );
    if let Some(n) = number {
        value["number"] = n.into();
    }
    value
}

/// The claims of the saved certificate (serial, validity, scopes); the signature is not
/// checked (the app trusts the issuer it got it from, as `OfflineSigner` does).
pub(super) fn certificate_claims(offline: &OfflineState) -> anyhow::Result<CertificateClaims> {
    let key = hex::decode(&offline.key_pkcs8).context("saved app state: offline key")?;
    let certificate = hex::decode(&offline.certificate).context("saved app state: certificate")?;
    let key = DeviceKey::from_pkcs8(&key, &SystemRandom::new())?;
    Ok(OfflineSigner::new(key, certificate)?.certificate().clone())
}

pub(super) fn certificate_json(claims: &CertificateClaims, clock_offset: i64) -> serde_json::Value {
    clock::with_times(
        serde_json::json!({
            "serial": hex::encode(claims.serial),
            "scopes": scope_names(claims.scopes),
            "clock_offset_seconds": clock_offset,
        }),
        &[
            ("not_before", Some(claims.iat)),
            ("not_after", Some(claims.exp)),
        ],
    )
}

/// The pause after a failed fetch before the one retry.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The shortest pause between two codes (a code of a second or less would otherwise
/// make the loop spin).
const MIN_REFRESH: Duration = Duration::from_millis(500);
/// Clears the terminal and moves the cursor home (ANSI).
const CLEAR: &str = "\x1b[2J\x1b[H";

/// `code --watch`: fetch, clear, draw, wait until the code is near its end, again;
/// until `count` codes were shown or Ctrl-C (or SIGTERM).
pub(super) async fn watch(
    app: &mut App,
    files: &Files,
    count: Option<u64>,
    refresh: Option<u64>,
) -> anyhow::Result<()> {
    let stop = citypass_runtime::shutdown::signal();
    tokio::pin!(stop);
    let mut shown = 0u64;
    loop {
        let code = tokio::select! {
            () = &mut stop => return Ok(()),
            code = fetch(app, files.svg.is_some()) => code?,
        };
        // Timed from arrival on this machine's monotonic clock, not from the code's
        // `iat`, so that a phone clock that is off does not matter.
        let arrived = tokio::time::Instant::now();
        let facts = files.write(&code.qr_text, code.svg.as_deref())?;
        shown += 1;
        print!("{CLEAR}");
        draw(&code.qr_text, &facts, files)?;
        let last = count.is_some_and(|n| shown >= n);
        let wait = next_refresh(facts.iat, facts.exp, refresh);
        if last {
            println!("code {shown} of {shown}");
        } else {
            let next = clock::now()?.saturating_add(wait.as_secs());
            println!(
                "code {shown}; the next at {} (Ctrl-C stops)",
                clock::show(next)
            );
        }
        std::io::stdout()
            .flush()
            .context("writing to the terminal")?;
        if last {
            return Ok(());
        }
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep_until(arrived + wait) => {}
        }
    }
}

/// A new online code, with one retry after [`RETRY_AFTER`] (a restarting issuer, a
/// dropped connection); a second failure is the caller's error.
async fn fetch(app: &mut App, want_svg: bool) -> anyhow::Result<IssueTokenResponse> {
    match app.code(want_svg).await {
        Ok(code) => Ok(code),
        Err(first) => {
            eprintln!(
                "getting a code failed ({first}); retrying in {} s",
                RETRY_AFTER.as_secs()
            );
            tokio::time::sleep(RETRY_AFTER).await;
            app.code(want_svg).await.context("getting a new code")
        }
    }
}

/// How long after a code arrives to fetch the next: at 80% of its life and at least
/// 1 s before it expires, or after `refresh` seconds if that is sooner; never less than
/// [`MIN_REFRESH`].
fn next_refresh(iat: u64, exp: u64, refresh: Option<u64>) -> Duration {
    let life_ms = exp.saturating_sub(iat).saturating_mul(1000);
    let due = (life_ms / 5 * 4).min(life_ms.saturating_sub(1000));
    let ms = refresh.map_or(due, |s| s.saturating_mul(1000).min(due));
    Duration::from_millis(ms).max(MIN_REFRESH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_code_is_fetched_at_80_percent_and_a_second_before_expiry() {
        assert_eq!(next_refresh(100, 160, None), Duration::from_secs(48));
        assert_eq!(next_refresh(100, 103, None), Duration::from_secs(2));
        assert_eq!(next_refresh(100, 160, Some(1)), Duration::from_secs(1));
        assert_eq!(next_refresh(100, 160, Some(100)), Duration::from_secs(48));
        assert_eq!(next_refresh(100, 101, None), MIN_REFRESH);
        assert_eq!(next_refresh(100, 100, None), MIN_REFRESH);
        assert_eq!(next_refresh(100, 50, None), MIN_REFRESH);
    }
}
