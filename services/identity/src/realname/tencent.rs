//! The real-name check of production: Tencent Cloud's identity verification
//! (faceid `IdCardVerification`, API version 2018-03-01, "二要素": does this name
//! belong to this resident ID number?), called over HTTPS as its public documentation
//! describes it.
//!
//! Why this provider: its contract is public and stable (request, response, result
//! codes, the TC3-HMAC-SHA256 signature with a published example, [`super::tc3`]), and
//! it answers from the national identity database, which is what enrolment needs. The
//! city contracts it (a data-processing agreement; SECURITY.md); its name and number
//! leave citypass only in this request, over TLS, and nothing personal is logged.
//!
//! The request: `POST /` to `endpoint` with `{"IdCard": …, "Name": …}`, headers
//! `X-TC-Action: IdCardVerification`, `X-TC-Version`, `X-TC-Timestamp`, `X-TC-Region`
//! when configured, and `Authorization` signed over `content-type`, `host` and
//! `x-tc-action` with the key pair read from two mounted Secret files
//! (`secret_id_file`, `secret_key_file`; read for every check, so a rotated Secret
//! applies without a restart). The answer, `Response.Result`:
//!
//! | result | meaning (documentation) | outcome |
//! |---|---|---|
//! | `0` | name and number match (billed) | MATCHED |
//! | `-1` | name and number do not match (billed) | MISMATCHED |
//! | `-2` | invalid ID number (length, check digit) | NOT_FOUND |
//! | `-3` | invalid name (length, format) | MISMATCHED |
//! | `-4` | the ID database failed | UNAVAILABLE (retried) |
//! | `-5` | no record of this number | NOT_FOUND |
//! | `-6` | the authority's system is being upgraded | UNAVAILABLE |
//! | `-7` | the day's limit of checks is used up | UNAVAILABLE |
//! | anything else, `Response.Error`, a non-200 status, an unreadable body | | UNAVAILABLE |
//!
//! Retries, with doubling pauses, within the one `timeout` of the whole check, only
//! where the provider certainly did no lookup: no connection (nothing was sent),
//! `RequestLimitExceeded…` (refused before any work) and result `-4` (the lookup
//! failed; not billed). A request that was sent and not answered is not repeated: it
//! may have been a billed lookup, and the deadline is spent anyway. Every failure is
//! [`Outcome::Unavailable`], which enrolment reports as `REAL_NAME_UNAVAILABLE`.
//!
//! Only resident ID cards are checked (the API's only document); other documents get
//! UNAVAILABLE without a call until the city names a source for them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use citypass_proto::v1::DocumentType;
use citypass_runtime::Secret;
use citypass_runtime::config::duration;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Deserialize;
use tokio::time::Instant;

use super::tc3;
use super::{Outcome, RealNameCheck};
use crate::document::Document;
use crate::error::Error;
use crate::name::Name;

/// The API's action.
pub const ACTION: &str = "IdCardVerification";
/// The API's version.
pub const VERSION: &str = "2018-03-01";
/// The service in the signature's credential scope (the product of the endpoint
/// `faceid.tencentcloudapi.com`).
pub const SERVICE: &str = "faceid";
/// The provider's endpoint.
pub const ENDPOINT: &str = "https://faceid.tencentcloudapi.com";
/// The content type sent and signed.
const CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// Largest answer read (the documented one is a few hundred bytes).
const MAX_ANSWER: usize = 64 * 1024;
/// The first pause before a retry; each later one doubles.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Attempts at most, the first included.
const ATTEMPTS: u32 = 3;

/// Which real-name provider (`real_name.provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Tencent Cloud faceid `IdCardVerification`.
    Tencent,
}

/// `real_name:` in identity's configuration: the production real-name check.
///
/// ```yaml
/// real_name:
///   provider: tencent
///   endpoint: https://faceid.tencentcloudapi.com
///   region: ap-guangzhou          # optional: the API needs none
///   timeout: 3s                   # the whole check, retries included
///   secret_id_file: /etc/citypass/real-name/secret-id
///   secret_key_file: /etc/citypass/real-name/secret-key
///   ca_file: /etc/citypass/real-name/ca.crt   # optional: else the public web roots
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealNameConfig {
    /// The provider (`tencent`).
    pub provider: Provider,
    /// `https://host[:port]` of the API (default the provider's).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `X-TC-Region`, when set.
    #[serde(default)]
    pub region: Option<String>,
    /// Longest one check may take, retries included (default `3s`; at most `1m`,
    /// under the Enrol call's own deadline).
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration::deserialize_within::<_, 1, { duration::MAX_CONNECT_TIMEOUT_MS }>"
    )]
    pub timeout: Duration,
    /// File holding the SecretId (a mounted Secret).
    pub secret_id_file: PathBuf,
    /// File holding the SecretKey (a mounted Secret).
    pub secret_key_file: PathBuf,
    /// CA bundle to trust for the endpoint instead of the public web roots (a city's
    /// gateway, or a test's double).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_endpoint() -> String {
    ENDPOINT.to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_secs(3)
}

/// The check against Tencent Cloud (see the module documentation).
pub struct Tencent {
    host: String,
    port: u16,
    /// The `Host` header (and signed host): the endpoint's authority.
    authority: String,
    region: Option<String>,
    timeout: Duration,
    secret_id_file: PathBuf,
    secret_key_file: PathBuf,
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Tencent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tencent")
            .field("authority", &self.authority)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn config_error(what: impl std::fmt::Display) -> Error {
    Error::Config(format!("real_name: {what}"))
}

/// The key pair, read from its files.
struct Credentials {
    id: Secret,
    key: Secret,
}

fn read_secret(path: &Path, what: &str) -> Result<Secret, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{what} {}: the file is empty", path.display()));
    }
    Ok(Secret::new(text))
}

fn read_credentials(id_file: &Path, key_file: &Path) -> Result<Credentials, String> {
    Ok(Credentials {
        id: read_secret(id_file, "secret_id_file")?,
        key: read_secret(key_file, "secret_key_file")?,
    })
}

impl Tencent {
    /// The check `config` describes; its credential files must be readable now.
    pub fn new(config: &RealNameConfig) -> Result<Tencent, Error> {
        let uri: http::Uri = config
            .endpoint
            .parse()
            .map_err(|e| config_error(format!("endpoint: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(config_error("endpoint: must be https://"));
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(config_error("endpoint: no path (API 3.0 posts to /)"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| config_error("endpoint: no host"))?
            .clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        read_credentials(&config.secret_id_file, &config.secret_key_file).map_err(config_error)?;
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| config_error(format!("ca_file {}: {e}", path.display())))?;
                let certs = citypass_runtime::tls::pem_certificates(&pem)
                    .map_err(|e| config_error(format!("ca_file {}: {e}", path.display())))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(config_error(format!(
                        "ca_file {}: no certificate",
                        path.display()
                    )));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let mut tls =
            rustls::ClientConfig::builder_with_provider(citypass_runtime::tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(config_error)?
                .with_root_certificates(roots)
                .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tencent {
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
            host,
            region: config.region.clone().filter(|r| !r.is_empty()),
            timeout: config.timeout,
            secret_id_file: config.secret_id_file.clone(),
            secret_key_file: config.secret_key_file.clone(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        })
    }

    async fn run(&self, document: &Document, name: &Name) -> Outcome {
        if document.kind() != DocumentType::ResidentIdCard {
            tracing::warn!(
                document_type = document.kind().as_str_name(),
                "real-name check unavailable: the provider checks resident ID cards only"
            );
            return Outcome::Unavailable;
        }
        let (id_file, key_file) = (self.secret_id_file.clone(), self.secret_key_file.clone());
        let credentials = match tokio::task::spawn_blocking(move || {
            read_credentials(&id_file, &key_file)
        })
        .await
        {
            Ok(Ok(credentials)) => credentials,
            Ok(Err(problem)) => {
                tracing::error!(%problem, "real-name check unavailable: credentials");
                return Outcome::Unavailable;
            }
            Err(_) => return Outcome::Unavailable,
        };
        let body = match serde_json::to_vec(&serde_json::json!({
            "IdCard": document.number(),
            "Name": name.as_str(),
        })) {
            Ok(body) => Bytes::from(body),
            Err(_) => return Outcome::Unavailable,
        };
        let deadline = Instant::now() + self.timeout;
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=ATTEMPTS {
            let answer =
                tokio::time::timeout_at(deadline, self.attempt(&credentials, body.clone())).await;
            let retry = match answer {
                Err(_) => {
                    tracing::warn!(attempt, "real-name check unavailable: no answer in time");
                    return Outcome::Unavailable;
                }
                Ok(Attempt::Answered(outcome)) => return outcome,
                Ok(Attempt::Failed(why)) => {
                    tracing::warn!(attempt, why, "real-name check unavailable");
                    return Outcome::Unavailable;
                }
                Ok(Attempt::Retry(why)) => why,
            };
            if attempt == ATTEMPTS || Instant::now() + pause >= deadline {
                tracing::warn!(attempt, retry, "real-name check unavailable, not retried");
                return Outcome::Unavailable;
            }
            tracing::info!(attempt, retry, "real-name check retried");
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        Outcome::Unavailable
    }

    /// One request and its answer.
    async fn attempt(&self, credentials: &Credentials, body: Bytes) -> Attempt {
        let timestamp = citypass_token::unix_now();
        let mut headers = vec![
            ("Content-Type", CONTENT_TYPE),
            ("Host", self.authority.as_str()),
            ("X-TC-Action", ACTION),
        ];
        let authorization = tc3::authorization(
            &tc3::Request {
                headers: &headers,
                body: &body,
            },
            credentials.id.expose(),
            credentials.key.expose(),
            timestamp,
            SERVICE,
        );
        let timestamp = timestamp.to_string();
        headers.extend([
            ("X-TC-Version", VERSION),
            ("X-TC-Timestamp", timestamp.as_str()),
            ("Authorization", authorization.as_str()),
        ]);
        if let Some(region) = &self.region {
            headers.push(("X-TC-Region", region.as_str()));
        }
        let mut request = http::Request::post("/");
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let Ok(request) = request.body(Full::new(body)) else {
            return Attempt::Failed("the request could not be built");
        };

        // Connecting: nothing has been sent yet, so a failure here is safe to retry.
        let Ok(tcp) = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await else {
            return Attempt::Retry("no connection");
        };
        let Ok(server) = ServerName::try_from(self.host.clone()) else {
            return Attempt::Failed("the endpoint's host is not a server name");
        };
        let tls = match self.tls.connect(server, tcp).await {
            Ok(tls) => tls,
            Err(_) => return Attempt::Retry("TLS handshake failed"),
        };
        let Ok((mut sender, connection)) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await
        else {
            return Attempt::Retry("HTTP handshake failed");
        };
        let connection = tokio::spawn(connection);

        // Sent from here on: a failure may follow a billed lookup, so it is not repeated.
        let answer = sender.send_request(request).await;
        let attempt = match answer {
            Err(_) => Attempt::Failed("the request failed"),
            Ok(response) if response.status() != http::StatusCode::OK => {
                Attempt::Failed("the provider answered with an HTTP error")
            }
            Ok(response) => match Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
            {
                Ok(body) => read_answer(&body.to_bytes()),
                Err(_) => Attempt::Failed("the answer could not be read"),
            },
        };
        connection.abort();
        attempt
    }
}

impl RealNameCheck for Tencent {
    fn check<'a>(&'a self, document: &'a Document, name: &'a Name) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run(document, name))
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// An answer to give.
    Answered(Outcome),
    /// No answer; the provider certainly did no lookup, so another attempt is safe.
    Retry(&'static str),
    /// No answer, and none to be had by repeating the request.
    Failed(&'static str),
}

/// The documented answer: `{"Response": {"Result": "0", "Description": …, "RequestId":
/// …}}`, or `{"Response": {"Error": {"Code": …, "Message": …}, "RequestId": …}}`.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Response")]
    response: AnswerBody,
}

#[derive(Deserialize)]
struct AnswerBody {
    #[serde(rename = "Result", default)]
    result: Option<String>,
    #[serde(rename = "Error", default)]
    error: Option<ApiError>,
    #[serde(rename = "RequestId", default)]
    request_id: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(rename = "Code")]
    code: String,
}

/// The outcome of an answer's body (its Description and Message are not read: they
/// could echo what was sent).
fn read_answer(body: &[u8]) -> Attempt {
    let Ok(Answer { response }) = serde_json::from_slice::<Answer>(body) else {
        return Attempt::Failed("the answer is not the documented JSON");
    };
    let request_id = response.request_id.as_deref().unwrap_or("");
    if let Some(error) = response.error {
        // The code names a fault of the call (AuthFailure.*, InvalidParameter.*, …),
        // never a person; RequestId lets the provider find the call.
        tracing::warn!(code = %error.code, request_id, "the real-name provider refused the call");
        return if error.code.starts_with("RequestLimitExceeded") {
            Attempt::Retry("rate limited")
        } else {
            Attempt::Failed("the provider refused the call")
        };
    }
    let Some(result) = response.result else {
        return Attempt::Failed("the answer has no Result");
    };
    let outcome = match result.as_str() {
        "0" => Outcome::Matched,
        "-1" | "-3" => Outcome::Mismatched,
        "-2" | "-5" => Outcome::NotFound,
        "-4" => return Attempt::Retry("the ID database failed (-4)"),
        _ => {
            tracing::warn!(%result, request_id, "real-name check unavailable");
            return Attempt::Failed("the provider could not check");
        }
    };
    Attempt::Answered(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: &str) -> Attempt {
        read_answer(
            format!(
                r#"{{"Response": {{"Result": "{code}", "Description": "x", "RequestId": "r"}}}}"#
            )
            .as_bytes(),
        )
    }

    #[test]
    fn each_documented_result_has_its_outcome() {
        assert_eq!(result("0"), Attempt::Answered(Outcome::Matched));
        assert_eq!(result("-1"), Attempt::Answered(Outcome::Mismatched));
        assert_eq!(result("-2"), Attempt::Answered(Outcome::NotFound));
        assert_eq!(result("-3"), Attempt::Answered(Outcome::Mismatched));
        assert!(matches!(result("-4"), Attempt::Retry(_)));
        assert_eq!(result("-5"), Attempt::Answered(Outcome::NotFound));
        for unavailable in ["-6", "-7", "-8", "1", ""] {
            assert!(
                matches!(result(unavailable), Attempt::Failed(_)),
                "{unavailable}"
            );
        }
    }

    #[test]
    fn errors_and_garbage_are_unavailable_and_only_rate_limits_retried() {
        let error = |code: &str| {
            read_answer(
                format!(r#"{{"Response": {{"Error": {{"Code": "{code}", "Message": "m"}}, "RequestId": "r"}}}}"#)
                    .as_bytes(),
            )
        };
        assert!(matches!(error("RequestLimitExceeded"), Attempt::Retry(_)));
        assert!(matches!(
            error("RequestLimitExceeded.UinLimitExceeded"),
            Attempt::Retry(_)
        ));
        for code in [
            "AuthFailure.SignatureFailure",
            "InternalError",
            "InvalidParameter",
        ] {
            assert!(matches!(error(code), Attempt::Failed(_)), "{code}");
        }
        for garbage in [&b"not json"[..], b"{}", br#"{"Response": {}}"#, b""] {
            assert!(matches!(read_answer(garbage), Attempt::Failed(_)));
        }
    }

    #[test]
    fn the_configuration_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (id, key) = (dir.path().join("id"), dir.path().join("key"));
        std::fs::write(&id, "AKIDexample\n").unwrap();
        std::fs::write(&key, "secret\n").unwrap();
        let config = |endpoint: &str| RealNameConfig {
            provider: Provider::Tencent,
            endpoint: endpoint.to_owned(),
            region: None,
            timeout: default_timeout(),
            secret_id_file: id.clone(),
            secret_key_file: key.clone(),
            ca_file: None,
        };
        let tencent = Tencent::new(&config(ENDPOINT)).unwrap();
        assert_eq!(
            (tencent.host.as_str(), tencent.port),
            ("faceid.tencentcloudapi.com", 443)
        );
        let local = Tencent::new(&config("https://127.0.0.1:8443")).unwrap();
        assert_eq!(
            (local.authority.as_str(), local.port),
            ("127.0.0.1:8443", 8443)
        );
        for bad in [
            "http://faceid.tencentcloudapi.com",
            "https://h/path",
            "not a url",
        ] {
            assert!(Tencent::new(&config(bad)).is_err(), "{bad}");
        }
        std::fs::write(&key, "  \n").unwrap();
        let err = Tencent::new(&config(ENDPOINT)).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let parsed: RealNameConfig = serde_saphyr::from_str(
            "provider: tencent\nsecret_id_file: /a\nsecret_key_file: /b\ntimeout: 2s",
        )
        .unwrap();
        assert_eq!(parsed.endpoint, ENDPOINT);
        assert_eq!(parsed.timeout, Duration::from_secs(2));
        assert!(
            serde_saphyr::from_str::<RealNameConfig>(
                "provider: alibaba\nsecret_id_file: /a\nsecret_key_file: /b"
            )
            .is_err()
        );
    }
}
