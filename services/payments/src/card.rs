//! Card numbers are refused wherever a payment token or label is accepted.
//!
//! The service stores a provider's own token for an account, never a card number (PCI
//! DSS would then cover the whole system). A client that sends a card number where the
//! token goes, by mistake or by design, must be refused before anything is stored or
//! logged. What counts as one: a run of 13 to 19 digits, possibly broken by single
//! spaces or dashes (as cards are printed and typed), whose Luhn check digit is right.
//! Real provider tokens are long random strings that rarely pass both tests; a token
//! that does is refused too, which costs its owner a re-link with another token and
//! costs no one a leaked card.

/// Whether `text` contains something that looks like a payment card number: a run of
/// 13 to 19 digits (single spaces or dashes between digits do not end a run) whose
/// Luhn check holds.
pub fn contains_card_number(text: &str) -> bool {
    digit_runs(text.as_bytes()).any(|run| (13..=19).contains(&run.len()) && luhn_valid(&run))
}

/// The maximal runs of digits in `bytes`, as digit values; a single space or dash with
/// a digit on each side joins two runs into one.
fn digit_runs(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == bytes.len() {
            return None;
        }
        let mut run = Vec::new();
        while i < bytes.len() {
            match bytes[i] {
                b @ b'0'..=b'9' => run.push(b - b'0'),
                b' ' | b'-' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {}
                _ => break,
            }
            i += 1;
        }
        Some(run)
    })
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
        ] {
            assert!(contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn tokens_short_runs_and_bad_check_digits_pass() {
        for text in [
            "",
            "tok_sandbox_4f9c2a7e1b",
            "4111111111111112",
            "411111111111",
            "4111  1111 1111 1111",
            "13800138000",
            "2026-12-02",
        ] {
            assert!(!contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn only_whole_runs_of_13_to_19_digits_count() {
        // 20 digits: not a card number, though a prefix would pass Luhn.
        assert!(!contains_card_number("41111111111111110000"));
        // A leading zero does not change the Luhn sum: 17 digits, refused.
        assert!(contains_card_number("04111111111111111"));
        assert_eq!(
            digit_runs(b"a12 34-5  6").collect::<Vec<_>>(),
            vec![vec![1, 2, 3, 4, 5], vec![6]]
        );
    }

    #[test]
    fn luhn_known_answers() {
        assert!(luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
        assert!(!luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 4]));
    }
}
