//! A stand-in for the national real-name check as Tencent Cloud publishes its contract
//! (faceid `IdCardVerification`, version 2018-03-01, API 3.0 with TC3-HMAC-SHA256
//! signatures): the one test double of an external system in citypass's tests, since
//! the real one answers only a contracted city about real people.
//!
//! It is a real HTTPS server on loopback (rustls, a throwaway CA of its own), and it
//! holds calls to the documented contract before answering: `POST /`, JSON, the
//! action and version headers, a timestamp within five minutes, and an
//! `Authorization` whose signature it recomputes from the request as received with
//! the documented algorithm (written here again, separately from identity's signer, so
//! that one mistake cannot hide in both). A call that breaks the contract gets the
//! documented error (`AuthFailure.SignatureFailure`, …) and is counted in
//! [`RealNameDouble::refused`].
//!
//! Its people are a table of ID number → name: `0` when the name matches, `-1` when it
//! does not, `-5` for an unknown number, `-2` for a number that is not 18 characters,
//! `-3` for an empty name; a test may script the next answers for a number
//! ([`Reply`]) to see each documented result, an error, an HTTP failure, garbage or
//! silence.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use citypass_pki::{Authority, CA_LIFE, Subject};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::{digest, hmac};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// The SecretId the double accepts.
pub const SECRET_ID: &str = "AKIDcitypassTESTonly0000000000000000";
/// The SecretKey the double checks signatures with.
pub const SECRET_KEY: &str = "citypass-test-secret-key-NOT-SECRET";

/// One scripted answer to the next call about a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `Response.Result` with this code.
    Result(&'static str),
    /// `Response.Error.Code` with this code.
    Error(&'static str),
    /// This HTTP status with an empty body.
    Status(u16),
    /// 200 with a body that is not the documented JSON.
    Garbage,
    /// No answer for this long, then `Result` `0`.
    Silence(Duration),
}

#[derive(Default)]
struct State {
    people: HashMap<String, String>,
    scripted: HashMap<String, VecDeque<Reply>>,
    calls: usize,
    refused: Vec<String>,
}

/// The double, serving until dropped.
pub struct RealNameDouble {
    /// `https://127.0.0.1:<port>`: the `real_name.endpoint` to configure.
    pub endpoint: String,
    /// The CA of its certificate (PEM): the `real_name.ca_file` to configure.
    pub ca_pem: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RealNameDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RealNameDouble {
    /// Starts the double on a loopback port (call inside a tokio runtime).
    pub async fn start() -> RealNameDouble {
        let ca = Authority::generate(CA_LIFE).expect("a CA");
        let issued = ca
            .issue(&Subject::service("real-name"))
            .expect("a certificate");
        let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the certificate");
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("the key");
        let mut config =
            rustls::ServerConfig::builder_with_provider(citypass_runtime::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server TLS");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(State::default()));
        let served = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = Arc::clone(&served);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, std::convert::Infallible>(answer(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        RealNameDouble {
            endpoint: format!("https://{addr}"),
            ca_pem: ca.cert_pem().to_owned(),
            state,
            task,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a person: `name` belongs to `id_card`.
    pub fn person(&self, id_card: &str, name: &str) {
        self.state()
            .people
            .insert(id_card.to_owned(), name.to_owned());
    }

    /// The next calls about `id_card` get `replies`, in order, then the table's answer.
    pub fn script(&self, id_card: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state()
            .scripted
            .entry(id_card.to_owned())
            .or_default()
            .extend(replies);
    }

    /// Calls received (contract breaches included).
    pub fn calls(&self) -> usize {
        self.state().calls
    }

    /// The error codes of the calls that broke the contract, in order.
    pub fn refused(&self) -> Vec<String> {
        self.state().refused.clone()
    }
}

fn json(body: serde_json::Value) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(state: &Arc<Mutex<State>>, code: &str, request_id: &str) -> hyper::Response<Full<Bytes>> {
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .refused
        .push(code.to_owned());
    json(serde_json::json!({"Response": {
        "Error": {"Code": code, "Message": "refused by the test double"},
        "RequestId": request_id,
    }}))
}

async fn answer(
    state: &Arc<Mutex<State>>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let request_id = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.calls += 1;
        format!("test-{}", state.calls)
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return error(state, "InvalidParameter", &request_id);
    };
    if let Err(code) = check_contract(&parts, &body) {
        return error(state, code, &request_id);
    }
    let Ok(fields) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(state, "InvalidParameter", &request_id);
    };
    let (Some(id_card), Some(name)) = (fields["IdCard"].as_str(), fields["Name"].as_str()) else {
        return error(state, "MissingParameter", &request_id);
    };
    let (scripted, known) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let scripted = state
            .scripted
            .get_mut(id_card)
            .and_then(VecDeque::pop_front);
        (scripted, state.people.get(id_card).cloned())
    };
    let result = match scripted {
        Some(Reply::Result(code)) => code,
        Some(Reply::Error(code)) => return error(state, code, &request_id),
        Some(Reply::Status(status)) => {
            let mut response = hyper::Response::new(Full::new(Bytes::new()));
            *response.status_mut() =
                http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            return response;
        }
        Some(Reply::Garbage) => {
            return hyper::Response::new(Full::new(Bytes::from_static(b"<html>busy</html>")));
        }
        Some(Reply::Silence(pause)) => {
            tokio::time::sleep(pause).await;
            "0"
        }
        None if id_card.chars().count() != 18 => "-2",
        None if name.trim().is_empty() => "-3",
        None => match known {
            None => "-5",
            Some(known) if known == name => "0",
            Some(_) => "-1",
        },
    };
    json(serde_json::json!({"Response": {
        "Result": result,
        "Description": "test double",
        "RequestId": request_id,
    }}))
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The documented contract of the call, signature included: the error code of the
/// first breach.
fn check_contract(parts: &http::request::Parts, body: &[u8]) -> Result<(), &'static str> {
    if parts.method != http::Method::POST || parts.uri.path() != "/" {
        return Err("InvalidAction");
    }
    if header(parts, "x-tc-action") != Some("IdCardVerification") {
        return Err("InvalidAction");
    }
    if header(parts, "x-tc-version") != Some("2018-03-01") {
        return Err("NoSuchVersion");
    }
    if !header(parts, "content-type").is_some_and(|t| t.starts_with("application/json")) {
        return Err("InvalidParameter");
    }
    let timestamp: u64 = header(parts, "x-tc-timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or("MissingParameter")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.abs_diff(timestamp) > 300 {
        return Err("AuthFailure.SignatureExpire");
    }
    let authorization = header(parts, "authorization").ok_or("AuthFailure.SignatureFailure")?;
    let rest = authorization
        .strip_prefix("TC3-HMAC-SHA256 Credential=")
        .ok_or("AuthFailure.SignatureFailure")?;
    let (credential, rest) = rest
        .split_once(", SignedHeaders=")
        .ok_or("AuthFailure.SignatureFailure")?;
    let (signed, signature) = rest
        .split_once(", Signature=")
        .ok_or("AuthFailure.SignatureFailure")?;
    let mut scope = credential.splitn(4, '/');
    let (id, date, service, end) = (
        scope.next().unwrap_or(""),
        scope.next().unwrap_or(""),
        scope.next().unwrap_or(""),
        scope.next().unwrap_or(""),
    );
    if id != SECRET_ID {
        return Err("AuthFailure.SecretIdNotFound");
    }
    if service != "faceid" || end != "tc3_request" || date != utc_date(timestamp) {
        return Err("AuthFailure.SignatureFailure");
    }
    let names: Vec<&str> = signed.split(';').collect();
    let sorted = names.windows(2).all(|pair| pair[0] < pair[1]);
    if !sorted || !names.contains(&"content-type") || !names.contains(&"host") {
        return Err("AuthFailure.SignatureFailure");
    }
    // The canonical request, from the request as received.
    let mut canonical_headers = String::new();
    for name in &names {
        let value = header(parts, name).ok_or("AuthFailure.SignatureFailure")?;
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        hex::encode(digest::digest(&digest::SHA256, body))
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/faceid/tc3_request\n{}",
        hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    );
    let step = |key: &[u8], data: &[u8]| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let k = step(format!("TC3{SECRET_KEY}").as_bytes(), date.as_bytes());
    let k = step(k.as_ref(), b"faceid");
    let k = step(k.as_ref(), b"tc3_request");
    let expected = hex::encode(step(k.as_ref(), to_sign.as_bytes()));
    if expected != signature {
        return Err("AuthFailure.SignatureFailure");
    }
    Ok(())
}

/// `YYYY-MM-DD` in UTC, by counting years and months (separately from identity's).
fn utc_date(timestamp: u64) -> String {
    let mut days = timestamp / 86_400;
    let mut year = 1970u64;
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    loop {
        let length = if leap(year) { 366 } else { 365 };
        if days < length {
            break;
        }
        days -= length;
        year += 1;
    }
    let months = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 1;
    for length in months {
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    format!("{year:04}-{month:02}-{:02}", days + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_utc_days() {
        assert_eq!(super::utc_date(1_551_113_065), "2019-02-25");
        assert_eq!(super::utc_date(951_782_400), "2000-02-29");
        assert_eq!(super::utc_date(1_796_256_000), "2026-12-03");
    }
}
