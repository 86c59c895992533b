//! Card numbers are refused wherever a payment token or label is accepted.
//!
//! The service stores a provider's own token for an account, never a card number (PCI
//! DSS would then cover the whole system). A client that sends a card number where the
//! token goes, by mistake or by design, must be refused before anything is stored or
//! logged. What counts as one: 13 to 19 consecutive digits of a *run* whose Luhn check
//! digit is right, where a run is the digits of the text with any characters that are
//! not letters between them (spaces, dashes, dots, underscores, slashes, ... as cards
//! are printed and typed, or disguised); a letter ends a run. Every 13–19-digit window
//! of a run is tried, so a card with digits added before or after is still found.
//! Real provider tokens are long random strings that rarely pass; a token that does is
//! refused too (a long run of digits nearly always has a passing window), which costs
//! its owner a re-link with another token and costs no one a leaked card.

/// Whether `text` contains something that looks like a payment card number: 13 to 19
/// consecutive digits of a run (digits with no letter between them, whatever else
/// separates them) whose Luhn check holds.
pub fn contains_card_number(text: &str) -> bool {
    digit_runs(text).any(|run| (13..=19).any(|len| run.windows(len).any(luhn_valid)))
}

/// The runs of digits in `text`, as digit values: a letter (any alphabetic or
/// non-ASCII alphanumeric character) ends a run; every other character is a separator
/// inside one.
fn digit_runs(text: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    text.split(|c: char| c.is_alphanumeric() && !c.is_ascii_digit())
        .map(|part| {
            part.bytes()
                .filter(u8::is_ascii_digit)
                .map(|b| b - b'0')
                .collect::<Vec<u8>>()
        })
        .filter(|run| !run.is_empty())
}

/// The Luhn check (ISO/IEC 7812-1) over `digits`, check digit last.
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_found_with_or_without_separators() {
        // Published test numbers (Visa, Mastercard, UnionPay), never real accounts.
        for text in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "token:5555555555554444",
            "6212345678901265",
            "x 6212 3456 7890 1265 y",
            // Any separator, any number of them.
            "4111.1111.1111.1111",
            "4111_1111_1111_1111",
            "4111/1111/1111/1111",
            "4111  1111 1111 1111",
            "4111,1111;1111:1111",
            "4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1",
            "tok_4111.1111.1111.1111_x",
        ] {
            assert!(contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn a_card_inside_a_longer_run_is_found() {
        // Digits appended or prepended: a 13-19 digit window still passes.
        for text in [
            "41111111111111110",
            "41111111111111110000",
            "941111111111111111",
            "tok_00004111111111111111000000",
            "04111111111111111",
            "1.4111.1111.1111.1111.7",
        ] {
            assert!(contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn tokens_short_runs_and_bad_check_digits_pass() {
        for text in [
            "",
            "tok_sandbox_4f9c2a7e1b",
            "411111111111",
            "13800138000",
            "2026-12-02",
            "2026-01",
            // Letters end a run: no 13 digits together.
            "4111a1111b1111c1111",
        ] {
            assert!(!contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn runs_end_at_letters_only() {
        assert_eq!(
            digit_runs("a12 34-5  6.7_8/9x0").collect::<Vec<_>>(),
            vec![vec![1, 2, 3, 4, 5, 6, 7, 8, 9], vec![0]]
        );
    }

    #[test]
    fn luhn_known_answers() {
        assert!(luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
        assert!(!luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 4]));
    }
}
