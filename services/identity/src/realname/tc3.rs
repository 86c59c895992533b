//! Tencent Cloud API 3.0 request signing, TC3-HMAC-SHA256 ("Signature v3", the
//! provider's public documentation), for the real-name adapter ([`super::tencent`]).
//!
//! Why by hand: the algorithm is four HMAC-SHA256 steps over a canonical request
//! (ring has both primitives), and Tencent's Rust SDK would bring its own HTTP and TLS
//! stacks for one call. The documented example (CVM `DescribeInstances`, timestamp
//! 1551113065, its published intermediate hashes and signature) is a test below.

use ring::{digest, hmac};

/// The algorithm's name, first in the Authorization header and the string to sign.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// One request as signed: the POST of a JSON body to `/` (API 3.0 has no other path),
/// with the headers that take part in the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// `(name, value)` of each signed header; names are lowercased and the list
    /// sorted here, as the canonical form requires.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, exactly as sent.
    pub body: &'a [u8],
}

/// Lowercase hex of SHA-256.
fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// The signed headers' names and the canonical header block, each header
/// `name:value\n` (name lowercased, value trimmed), sorted by name.
fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut lines: Vec<(String, &str)> = headers
        .iter()
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim()))
        .collect();
    lines.sort();
    let names = lines
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let block = lines
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    (names, block)
}

/// The canonical request of a POST to `/`, and the names of the signed headers.
pub fn canonical_request(request: &Request<'_>) -> (String, String) {
    let (names, block) = canonical_headers(request.headers);
    let canonical = format!("POST\n/\n\n{block}\n{names}\n{}", sha256_hex(request.body));
    (canonical, names)
}

/// `2019-02-25/cvm/tc3_request`: the UTC date of `timestamp`, the service, the end.
pub fn credential_scope(timestamp: u64, service: &str) -> String {
    format!("{}/{service}/tc3_request", utc_date(timestamp))
}

/// The string to sign of `canonical` at `timestamp` for `service`.
pub fn string_to_sign(canonical: &str, timestamp: u64, service: &str) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{}\n{}",
        credential_scope(timestamp, service),
        sha256_hex(canonical.as_bytes())
    )
}

/// The signature (lowercase hex) of `to_sign` with `secret_key`, for the date and
/// service of its scope.
pub fn signature(secret_key: &str, timestamp: u64, service: &str, to_sign: &str) -> String {
    let date = hmac_sha256(
        format!("TC3{secret_key}").as_bytes(),
        utc_date(timestamp).as_bytes(),
    );
    let service = hmac_sha256(date.as_ref(), service.as_bytes());
    let signing = hmac_sha256(service.as_ref(), b"tc3_request");
    hex::encode(hmac_sha256(signing.as_ref(), to_sign.as_bytes()))
}

/// The `Authorization` header of `request`, signed at `timestamp` for `service` by
/// the key pair (`secret_id`, `secret_key`).
pub fn authorization(
    request: &Request<'_>,
    secret_id: &str,
    secret_key: &str,
    timestamp: u64,
    service: &str,
) -> String {
    let (canonical, names) = canonical_request(request);
    let to_sign = string_to_sign(&canonical, timestamp, service);
    format!(
        "{ALGORITHM} Credential={secret_id}/{}, SignedHeaders={names}, Signature={}",
        credential_scope(timestamp, service),
        signature(secret_key, timestamp, service, &to_sign)
    )
}

/// `YYYY-MM-DD` of a Unix time, in UTC (the documentation insists: not local time).
pub fn utc_date(timestamp: u64) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = i64::try_from(timestamp / 86_400).unwrap_or(i64::MAX / 2);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documentation's example: CVM DescribeInstances in Guangzhou at 1551113065,
    /// SecretKey `Gu5t9xGARNpq86cd98joQYCN3EXAMPLE` (the published example key).
    #[test]
    fn the_documented_example_signs_to_the_documented_signature() {
        let body = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let headers = [
            ("Host", "cvm.tencentcloudapi.com"),
            ("Content-Type", "application/json; charset=utf-8"),
        ];
        let request = Request {
            headers: &headers,
            body,
        };
        assert_eq!(
            sha256_hex(body),
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        let (canonical, names) = canonical_request(&request);
        assert_eq!(
            canonical,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(names, "content-type;host");
        let to_sign = string_to_sign(&canonical, 1_551_113_065, "cvm");
        assert_eq!(
            to_sign,
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            signature(
                "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
                1_551_113_065,
                "cvm",
                &to_sign
            ),
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        assert_eq!(
            authorization(
                &request,
                "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
                "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
                1_551_113_065,
                "cvm"
            ),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn the_date_is_utc() {
        // 2019-02-26 00:44:25 in UTC+8 is still the 25th in UTC (the documentation's note).
        assert_eq!(utc_date(1_551_113_065), "2019-02-25");
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_796_256_000), "2026-12-03");
    }
}
