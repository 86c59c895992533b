//! Identity documents: validating the number, and the keyed hash that is all we keep of it.
//!
//! A document number is personal data that never needs to be read back: the service
//! only has to recognise the same document when it is enrolled twice. So it is
//! validated here, then reduced to an HMAC-SHA256 under a server key
//! ([`DocumentHasher`]) and dropped. A plain hash would not do: resident ID numbers
//! have so little entropy (region, birth date, a 3-digit sequence) that anyone with the
//! table could enumerate them; without the key they cannot.
//!
//! Resident ID numbers (GB 11643-1999) are checked fully: 18 characters, a known
//! province code, a real birth date that is not in the future, and the ISO 7064
//! MOD 11-2 check digit (weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2; a remainder of 10
//! is written `X`). The 2023 foreign permanent resident ID uses the same layout and
//! check digit. Other documents have no check digit and get a format check only.
//!
//! Errors name what is wrong, never the number itself.

use std::fmt;

use citypass_proto::v1::{AssuranceLevel, DocumentType};
use ring::hmac;

use crate::error::Error;
use citypass_pseudonym::{HmacKeys, KeyId};

/// The request field every error here is about.
const FIELD: &str = "document_number";

/// GB 11643 weights for the first 17 digits.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for each remainder of the weighted sum modulo 11.
const CHECK_CHARS: &[u8; 11] = b"10X98765432";
/// Province-level codes (GB/T 2260) a resident ID can start with; 81-83 are the
/// residence permits of Hong Kong, Macao and Taiwan residents.
const PROVINCES: [u8; 35] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83,
];
/// Earliest birth year accepted.
const MIN_BIRTH_YEAR: i32 = 1900;

/// A calendar date (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// The UTC date `unix_seconds` falls on.
    pub fn from_unix(unix_seconds: i64) -> Date {
        // Howard Hinnant's civil_from_days.
        let z = unix_seconds.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date {
            year: i32::try_from(year).unwrap_or(i32::MAX),
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
        }
    }

    /// The date `years` later, as a birthday falls (29 February falls on 1 March in
    /// other years, since dates compare as (year, month, day)).
    pub fn years_later(self, years: i32) -> Date {
        Date {
            year: self.year.saturating_add(years),
            ..self
        }
    }

    /// The date as the number YYYYMMDD (how stores keep it).
    pub fn to_number(self) -> i32 {
        self.year * 10_000 + i32::try_from(self.month * 100 + self.day).unwrap_or(0)
    }

    /// The inverse of [`Date::to_number`]; `None` unless it is a real date.
    pub fn from_number(n: i32) -> Option<Date> {
        let date = Date {
            year: n / 10_000,
            month: u32::try_from(n / 100 % 100).ok()?,
            day: u32::try_from(n % 100).ok()?,
        };
        date.is_valid().then_some(date)
    }

    /// Whether this is a real calendar date.
    fn is_valid(self) -> bool {
        let leap = (self.year % 4 == 0 && self.year % 100 != 0) || self.year % 400 == 0;
        let days = match self.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (1..=days).contains(&self.day)
    }
}

/// A validated document number, normalised (upper case, no surrounding spaces).
///
/// Its `Debug` form hides the number, so it cannot leak through a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Document {
    kind: DocumentType,
    number: String,
    check_digit: bool,
    /// The birth date a resident ID number carries (characters 7-14).
    birth_date: Option<Date>,
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Document({:?}, <redacted>)", self.kind)
    }
}

impl Document {
    /// Validates `number` as a document of `kind`; `today` bounds birth dates.
    pub fn parse(kind: DocumentType, number: &str, today: Date) -> Result<Document, Error> {
        let number = number.trim().to_ascii_uppercase();
        if number.is_empty() {
            return Err(Error::invalid(FIELD, "required"));
        }
        let mut birth_date = None;
        let check_digit = match kind {
            DocumentType::Unspecified => {
                return Err(Error::invalid("document_type", "required"));
            }
            DocumentType::ResidentIdCard => {
                check_resident_id(&number, today).map_err(|r| Error::invalid(FIELD, r))?;
                birth_date = gb11643_layout(&number)
                    .and_then(|digits| gb11643_birth_date(&digits, today))
                    .ok();
                true
            }
            DocumentType::ForeignPermanentResidentId => {
                check_foreign_permanent_resident_id(&number, today)
                    .map_err(|r| Error::invalid(FIELD, r))?
            }
            DocumentType::Passport => {
                check_alphanumeric(
                    &number,
                    5,
                    17,
                    "a passport number must be 5 to 17 letters or digits",
                )?;
                false
            }
            DocumentType::HkMacaoPermit => {
                let ok = matches!(number.as_bytes().first(), Some(b'H' | b'M'))
                    && (number.len() == 9 || number.len() == 11)
                    && number.bytes().skip(1).all(|b| b.is_ascii_digit());
                if !ok {
                    return Err(Error::invalid(
                        FIELD,
                        "a Hong Kong/Macao permit number is H or M followed by 8 or 10 digits",
                    ));
                }
                false
            }
            DocumentType::TaiwanPermit => {
                check_alphanumeric(
                    &number,
                    8,
                    10,
                    "a Taiwan permit number must be 8 to 10 letters or digits",
                )?;
                false
            }
        };
        Ok(Document {
            kind,
            number,
            check_digit,
            birth_date,
        })
    }

    /// The kind of document.
    pub fn kind(&self) -> DocumentType {
        self.kind
    }

    /// The assurance a well-formed number gives by itself: DOCUMENT_CHECKED when it
    /// carries a check digit that matched, SELF_ASSERTED otherwise.
    pub fn assurance(&self) -> AssuranceLevel {
        if self.check_digit {
            AssuranceLevel::DocumentChecked
        } else {
            AssuranceLevel::SelfAsserted
        }
    }

    /// The holder's birth date, where the number carries one (a resident ID): kept
    /// with the subject for the face-consent rule on children under 14 (a guardian
    /// consents), which the service could not apply later without the number.
    pub fn birth_date(&self) -> Option<Date> {
        self.birth_date
    }

    /// The normalised number, for the real-name check and the government-service
    /// pseudonym only. Never log it.
    pub fn number(&self) -> &str {
        &self.number
    }
}

fn check_alphanumeric(
    number: &str,
    min: usize,
    max: usize,
    reason: &'static str,
) -> Result<(), Error> {
    if (min..=max).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(Error::invalid(FIELD, reason))
    }
}

/// Checks a resident ID number (already upper-cased) against GB 11643.
pub fn check_resident_id(number: &str, today: Date) -> Result<(), &'static str> {
    let digits = gb11643_layout(number)?;
    let province = digits[0] * 10 + digits[1];
    if !PROVINCES.contains(&province) {
        return Err("unknown province code in the first two digits");
    }
    gb11643_birth_date(&digits, today)?;
    gb11643_check_digit(number.as_bytes(), &digits)
}

/// The foreign permanent resident ID: the 2004 card (3 letters, 12 digits) or the
/// 2023 card (18 characters starting with 9, GB 11643 layout and check digit).
/// Returns whether a check digit was verified.
fn check_foreign_permanent_resident_id(number: &str, today: Date) -> Result<bool, &'static str> {
    let bytes = number.as_bytes();
    if bytes.len() == 15 {
        let ok = bytes[..3].iter().all(u8::is_ascii_uppercase)
            && bytes[3..].iter().all(u8::is_ascii_digit);
        return if ok {
            Ok(false)
        } else {
            Err("a 15-character foreign permanent resident ID is 3 letters followed by 12 digits")
        };
    }
    let digits = gb11643_layout(number)?;
    if digits[0] != 9 {
        return Err("an 18-character foreign permanent resident ID starts with 9");
    }
    gb11643_birth_date(&digits, today)?;
    gb11643_check_digit(bytes, &digits)?;
    Ok(true)
}

/// 18 characters: 17 digits, then a digit or X. Returns the 17 digit values.
fn gb11643_layout(number: &str) -> Result<[u8; 17], &'static str> {
    let bytes = number.as_bytes();
    if number.chars().count() != 18 {
        return Err("must be 18 characters");
    }
    let mut digits = [0u8; 17];
    for (d, &b) in digits.iter_mut().zip(bytes) {
        if !b.is_ascii_digit() {
            return Err("the first 17 characters must be digits");
        }
        *d = b - b'0';
    }
    match bytes.get(17) {
        Some(b) if b.is_ascii_digit() || *b == b'X' => Ok(digits),
        _ => Err("the last character must be a digit or X"),
    }
}

/// Characters 7-14 are the birth date YYYYMMDD.
fn gb11643_birth_date(digits: &[u8; 17], today: Date) -> Result<Date, &'static str> {
    let num = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let birth = Date {
        year: i32::try_from(num(6..10)).unwrap_or(0),
        month: num(10..12),
        day: num(12..14),
    };
    if !birth.is_valid() {
        return Err("the birth date (characters 7-14) is not a real date");
    }
    if birth.year < MIN_BIRTH_YEAR {
        return Err("the birth date (characters 7-14) is before 1900");
    }
    if birth > today {
        return Err("the birth date (characters 7-14) is in the future");
    }
    Ok(birth)
}

/// ISO 7064 MOD 11-2 over the first 17 digits.
fn gb11643_check_digit(bytes: &[u8], digits: &[u8; 17]) -> Result<(), &'static str> {
    let sum: u32 = digits
        .iter()
        .zip(WEIGHTS)
        .map(|(&d, w)| u32::from(d) * w)
        .sum();
    let expected = CHECK_CHARS[(sum % 11) as usize];
    if bytes.get(17) == Some(&expected) {
        Ok(())
    } else {
        Err("check digit does not match (GB 11643)")
    }
}

/// The check character GB 11643 gives to 17 digits (for tests and tools).
pub fn gb11643_check_char(first17: &str) -> Option<char> {
    let digits: Vec<u32> = first17
        .chars()
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()?;
    if digits.len() != 17 {
        return None;
    }
    let sum: u32 = digits.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
    Some(char::from(CHECK_CHARS[(sum % 11) as usize]))
}

/// The keyed hash of a document: what the stores keep for de-duplication.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DocumentHash(pub [u8; 32]);

impl fmt::Debug for DocumentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DocumentHash(..)")
    }
}

/// Domain separation for the document hash.
const HASH_CONTEXT: &[u8] = b"citypass/v1/document-hash";

/// A document's hash with the id of the key that made it: what a new row stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyedDocumentHash {
    pub key_id: KeyId,
    pub hash: DocumentHash,
}

/// HMAC-SHA256 under the server's document keys.
///
/// The input is the context string, the document type number (so the same string as a
/// passport and as a permit are different documents) and the normalised number. The
/// keys have ids (`citypass_pseudonym::hmac_keys`): a new row stores its hash under the current key
/// with that key's id; a lookup tries the hash under every configured key, so rows made
/// under a previous key are still recognised during a rotation. The service keeps no
/// number, so rows cannot be re-hashed in bulk: a previous key stays configured while
/// rows carry its id (keys/README.md).
pub struct DocumentHasher(HmacKeys);

impl fmt::Debug for DocumentHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DocumentHasher").field(&self.0).finish()
    }
}

impl DocumentHasher {
    /// A hasher under `keys` (each at least 32 bytes; checked by the configuration).
    pub fn new(keys: HmacKeys) -> Self {
        DocumentHasher(keys)
    }

    /// The hash a new row stores: under the current key.
    pub fn hash(&self, document: &Document) -> KeyedDocumentHash {
        let (key_id, key) = self.0.current();
        KeyedDocumentHash {
            key_id,
            hash: hash_under(key, document),
        }
    }

    /// The document's hash under every configured key, the current one first: what a
    /// lookup must try.
    pub fn all_hashes(&self, document: &Document) -> Vec<KeyedDocumentHash> {
        self.0
            .all()
            .map(|(key_id, key)| KeyedDocumentHash {
                key_id,
                hash: hash_under(key, document),
            })
            .collect()
    }
}

fn hash_under(key: &hmac::Key, document: &Document) -> DocumentHash {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(HASH_CONTEXT);
    ctx.update(&(document.kind as i32).to_be_bytes());
    ctx.update(document.number.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    DocumentHash(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Date = Date {
        year: 2026,
        month: 11,
        day: 29,
    };

    /// A resident ID with a correct check digit.
    fn resident_id(first17: &str) -> String {
        format!("{first17}{}", gb11643_check_char(first17).unwrap())
    }

    fn reason(number: &str) -> String {
        Document::parse(DocumentType::ResidentIdCard, number, TODAY)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn well_known_valid_numbers_pass() {
        // The examples from GB 11643-1999 itself, one ending in X.
        for number in ["11010519491231002X", "440524188001010014"] {
            // 1880 is before 1900: the second example checks the digit only.
            assert_eq!(
                gb11643_check_digit(number.as_bytes(), &gb11643_layout(number).unwrap()),
                Ok(())
            );
        }
        let doc =
            Document::parse(DocumentType::ResidentIdCard, "11010519491231002X", TODAY).unwrap();
        assert_eq!(doc.assurance(), AssuranceLevel::DocumentChecked);
        // Lower-case x and surrounding spaces are normalised.
        let lower =
            Document::parse(DocumentType::ResidentIdCard, " 11010519491231002x ", TODAY).unwrap();
        assert_eq!(lower, doc);
        Document::parse(
            DocumentType::ResidentIdCard,
            &resident_id("31010420000229123"),
            TODAY,
        )
        .unwrap();
    }

    #[test]
    fn an_x_check_digit_is_computed_and_required() {
        // Find a number whose check character is X and check both directions.
        let first17 = (100..1000)
            .map(|seq| format!("33010619850716{seq}"))
            .find(|n| gb11643_check_char(n) == Some('X'))
            .unwrap();
        Document::parse(DocumentType::ResidentIdCard, &format!("{first17}X"), TODAY).unwrap();
        assert!(reason(&format!("{first17}0")).contains("check digit does not match"));
    }

    #[test]
    fn a_wrong_check_digit_is_refused_without_echoing_the_number() {
        let number = "110105194912310021";
        let message = reason(number);
        assert_eq!(
            message,
            "document_number: check digit does not match (GB 11643)"
        );
        assert!(!message.contains("1101051949"));
        // Every single-digit change is caught.
        let good = resident_id("11010519491231002");
        for i in 0..17 {
            let mut bytes = good.clone().into_bytes();
            bytes[i] = if bytes[i] == b'9' { b'8' } else { bytes[i] + 1 };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(
                Document::parse(DocumentType::ResidentIdCard, &changed, TODAY).is_err(),
                "{i}"
            );
        }
    }

    #[test]
    fn birth_dates_must_be_real_and_not_in_the_future() {
        assert!(reason(&resident_id("11010519490231002")).contains("not a real date"));
        assert!(reason(&resident_id("11010520230229002")).contains("not a real date"));
        assert!(reason(&resident_id("11010519491331002")).contains("not a real date"));
        assert!(reason(&resident_id("11010518991231002")).contains("before 1900"));
        assert!(reason(&resident_id("11010520261130002")).contains("in the future"));
        Document::parse(
            DocumentType::ResidentIdCard,
            &resident_id("11010520261129002"),
            TODAY,
        )
        .unwrap();
    }

    #[test]
    fn wrong_lengths_and_characters_are_refused() {
        assert_eq!(reason(""), "document_number: required");
        assert!(reason("11010519491231002").contains("18 characters"));
        assert!(reason("11010519491231002X1").contains("18 characters"));
        assert!(reason("1101051949123100２X").contains("first 17 characters"));
        assert!(reason("1101051949A231002X").contains("first 17 characters"));
        assert!(reason("11010519491231002Y").contains("digit or X"));
        assert!(reason(&resident_id("99010519491231002")).contains("province"));
        let err = Document::parse(DocumentType::Unspecified, "X", TODAY).unwrap_err();
        assert_eq!(err.to_string(), "document_type: required");
    }

    #[test]
    fn other_documents_get_format_checks() {
        let ok = |kind, n: &str| Document::parse(kind, n, TODAY).unwrap().assurance();
        assert_eq!(
            ok(DocumentType::Passport, "e12345678"),
            AssuranceLevel::SelfAsserted
        );
        assert_eq!(
            ok(DocumentType::HkMacaoPermit, "H12345678"),
            AssuranceLevel::SelfAsserted
        );
        assert_eq!(
            ok(DocumentType::TaiwanPermit, "12345678"),
            AssuranceLevel::SelfAsserted
        );
        assert_eq!(
            ok(DocumentType::ForeignPermanentResidentId, "USA123456789012"),
            AssuranceLevel::SelfAsserted
        );
        let fpr = format!("9{}", &resident_id("31840119850716001")[1..]);
        let fpr17 = &fpr[..17];
        let fpr = format!("{fpr17}{}", gb11643_check_char(fpr17).unwrap());
        assert_eq!(
            ok(DocumentType::ForeignPermanentResidentId, &fpr),
            AssuranceLevel::DocumentChecked
        );
        for (kind, bad) in [
            (DocumentType::Passport, "E1"),
            (DocumentType::Passport, "E1234-5678"),
            (DocumentType::HkMacaoPermit, "X12345678"),
            (DocumentType::TaiwanPermit, "1234567"),
            (DocumentType::ForeignPermanentResidentId, "123456789012345"),
        ] {
            assert!(Document::parse(kind, bad, TODAY).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_are_keyed_and_typed_and_debug_hides_the_number() {
        let a = DocumentHasher::new(HmacKeys::single(&[1; 32]));
        let b = DocumentHasher::new(HmacKeys::single(&[2; 32]));
        let doc = Document::parse(DocumentType::Passport, "E12345678", TODAY).unwrap();
        let permit = Document::parse(DocumentType::TaiwanPermit, "E12345678", TODAY).unwrap();
        assert_eq!(a.hash(&doc), a.hash(&doc));
        assert_ne!(a.hash(&doc), b.hash(&doc));
        assert_ne!(a.hash(&doc), a.hash(&permit));
        assert!(!format!("{doc:?}").contains("12345678"));
    }

    #[test]
    fn a_rotated_hasher_makes_new_hashes_under_the_new_key_and_finds_old_ones() {
        let doc = Document::parse(DocumentType::Passport, "E12345678", TODAY).unwrap();
        let one = DocumentHasher::new(HmacKeys::single(&[1; 32]));
        let two = KeyId::new(2).unwrap();
        let rotated = DocumentHasher::new(
            HmacKeys::new((two, &[2; 32]), &[(KeyId::FIRST, &[1; 32])]).unwrap(),
        );
        let old = one.hash(&doc);
        assert_eq!(old.key_id, KeyId::FIRST);
        let new = rotated.hash(&doc);
        assert_eq!(new.key_id, two);
        assert_ne!(new.hash, old.hash);
        assert_eq!(rotated.all_hashes(&doc), vec![new, old]);
    }

    #[test]
    fn unix_days_become_calendar_dates() {
        assert_eq!(
            Date::from_unix(0),
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(
            Date::from_unix(951_782_400),
            Date {
                year: 2000,
                month: 2,
                day: 29
            }
        );
        assert_eq!(
            Date::from_unix(-1),
            Date {
                year: 1969,
                month: 12,
                day: 31
            }
        );
    }
}
