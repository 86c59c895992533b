//! Names: validated at enrolment, sent to the real-name check, kept only masked.
//!
//! The service never needs a citizen's full name after enrolment: the national
//! real-name check sees it once, and staff and apps only need a display form to confirm
//! "this is me". So the stores hold only [`mask`]ed names, the form the proto returns:
//! each word keeps its first character and every other character becomes `*`
//! (`张三丰` → `张**`, `John Smith` → `J*** S****`, `阿依古丽·买买提` → `阿***·买**`).
//! A name of a single character is masked entirely, since its first character is
//! all of it.

use crate::error::Error;

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

const FIELD: &str = "name";

/// A validated full name. Its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Name(String);

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Name(<redacted>)")
    }
}

impl Name {
    /// Validates a name: not blank, at most [`MAX_NAME_CHARS`], no control characters.
    /// Runs of whitespace become one space; surrounding whitespace is dropped.
    pub fn parse(raw: &str) -> Result<Name, Error> {
        if raw.chars().any(|c| c.is_control() && !c.is_whitespace()) {
            return Err(Error::invalid(FIELD, "must not contain control characters"));
        }
        let normalised = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if normalised.is_empty() {
            return Err(Error::invalid(FIELD, "required"));
        }
        if normalised.chars().count() > MAX_NAME_CHARS {
            return Err(Error::invalid(FIELD, "longer than 64 characters"));
        }
        if !normalised.chars().any(char::is_alphabetic) {
            return Err(Error::invalid(FIELD, "must contain a letter"));
        }
        Ok(Name(normalised))
    }

    /// The full name, for the real-name check only. Never log or store it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked display form (see the module documentation).
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Characters that separate the parts of a name and stay visible.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '·' | '•' | '・' | '-')
}

/// Masks a name: each word's first character stays, the rest become `*`.
pub fn mask(name: &str) -> String {
    let visible = name.chars().filter(|&c| !is_separator(c)).count();
    if visible <= 1 {
        return "*".repeat(visible.max(1));
    }
    let mut out = String::with_capacity(name.len());
    let mut word_start = true;
    for c in name.chars() {
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            word_start = true;
        } else if is_separator(c) {
            out.push(c);
            word_start = true;
        } else if word_start {
            out.push(c);
            word_start = false;
        } else {
            out.push('*');
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_masked_per_word() {
        assert_eq!(mask("张三丰"), "张**");
        assert_eq!(mask("张三"), "张*");
        assert_eq!(mask("欧阳娜娜"), "欧***");
        assert_eq!(mask("John Smith"), "J*** S****");
        assert_eq!(mask("Jean-Luc Picard"), "J***-L** P*****");
        assert_eq!(mask("阿依古丽·买买提"), "阿***·买**");
        assert_eq!(mask("Ng"), "N*");
    }

    #[test]
    fn a_one_character_name_is_masked_entirely() {
        assert_eq!(mask("张"), "*");
        assert_eq!(Name::parse(" Q ").unwrap().masked(), "*");
    }

    #[test]
    fn names_are_validated_and_normalised() {
        let name = Name::parse("  John \t Smith ").unwrap();
        assert_eq!(name.as_str(), "John Smith");
        assert_eq!(name.masked(), "J*** S****");
        assert_eq!(Name::parse("").unwrap_err().to_string(), "name: required");
        assert_eq!(
            Name::parse("   ").unwrap_err().to_string(),
            "name: required"
        );
        assert!(Name::parse("John\u{0}Smith").is_err());
        assert!(Name::parse("123").is_err());
        assert!(Name::parse(&"张".repeat(65)).is_err());
        assert!(Name::parse(&"张".repeat(64)).is_ok());
        assert!(!format!("{name:?}").contains("John"));
    }
}
