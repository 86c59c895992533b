//! The text layer: context prefix, size cap and Base45.
//!
//! The size cap is applied to the raw text before Base45 runs, so an oversized scan
//! costs one length comparison. Base45 output uses only QR alphanumeric characters,
//! which is why the QR stays small.

use crate::TokenError;

/// Longest text any citypass code can be (a CP2 code at QR version 15 is ~600
/// characters); anything longer is refused unread.
pub const MAX_TEXT_LEN: usize = 1200;

/// The kinds of code that travel as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// `CP1:` server-signed online token.
    Online,
    /// `CP2:` offline code made on the phone.
    Offline,
}

impl CodeKind {
    /// The context prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            CodeKind::Online => "CP1:",
            CodeKind::Offline => "CP2:",
        }
    }
}

/// Which kind of code `text` claims to be, after the size cap.
pub fn kind_of(text: &str) -> Result<CodeKind, TokenError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(TokenError::TooLarge {
            len: text.len(),
            max: MAX_TEXT_LEN,
        });
    }
    [CodeKind::Online, CodeKind::Offline]
        .into_iter()
        .find(|k| text.starts_with(k.prefix()))
        .ok_or(TokenError::BadPrefix)
}

/// Decodes a code of the `expected` kind to its COSE bytes.
pub(crate) fn decode(text: &str, expected: CodeKind) -> Result<Vec<u8>, TokenError> {
    if kind_of(text)? != expected {
        return Err(TokenError::WrongPrefix);
    }
    base45::decode(&text[expected.prefix().len()..]).map_err(|_| TokenError::BadBase45)
}

/// Encodes COSE bytes as a code of `kind`.
pub(crate) fn encode(kind: CodeKind, bytes: &[u8]) -> String {
    let mut text = String::with_capacity(4 + bytes.len() * 3 / 2 + 2);
    text.push_str(kind.prefix());
    text.push_str(&base45::encode(bytes));
    text
}
