//! Free text from callers (labels, reasons, notes): one rule for every service.
//!
//! Such text is stored, logged in audit records and shown to operators, so it must be
//! bounded and printable: no control characters (a newline or an escape sequence in a
//! note would forge audit lines or terminal output), at most a fixed number of
//! characters (not bytes, so a Chinese label has the same room as a Latin one).
//! Surrounding whitespace is trimmed. Each service maps [`TextError`] to its own
//! `INVALID_ARGUMENT`, naming the field.

/// Why free text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A control character (newline, tab, escape, …).
    #[error("must not contain control characters")]
    ControlCharacter,
    /// More characters than allowed.
    #[error("longer than {max_chars} characters")]
    TooLong {
        /// The limit.
        max_chars: usize,
    },
}

/// `text` trimmed, if it is printable and at most `max_chars` characters long.
pub fn bounded_text(text: &str, max_chars: usize) -> Result<&str, TextError> {
    if text.chars().any(char::is_control) {
        return Err(TextError::ControlCharacter);
    }
    if text.chars().count() > max_chars {
        return Err(TextError::TooLong { max_chars });
    }
    Ok(text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_bounded_printable_and_trimmed() {
        assert_eq!(bounded_text(" my phone ", 64), Ok("my phone"));
        assert_eq!(bounded_text("地铁卡", 3), Ok("地铁卡"));
        assert_eq!(
            bounded_text("地铁卡们", 3),
            Err(TextError::TooLong { max_chars: 3 })
        );
        for bad in ["a\nb", "tab\there", "esc\u{1b}[2J", "nul\0"] {
            assert_eq!(
                bounded_text(bad, 64),
                Err(TextError::ControlCharacter),
                "{bad:?}"
            );
        }
    }
}
