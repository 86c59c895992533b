//! Property tests: random claims round-trip; any single-byte change is refused.

mod common;
use citypass_token::*;
use common::*;
use proptest::prelude::*;

fn cp1_text(bytes: &[u8]) -> String {
    format!("CP1:{}", base45::encode(bytes))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_claims_round_trip(
        iss in "[a-z]{1,8}",
        subject in proptest::collection::vec(any::<u8>(), 1..32),
        iat in 0u64..4_000_000_000,
        lifetime in 1u64..300,
        scopes in any::<u64>(),
        cti in any::<[u8; 16]>(),
    ) {
        let issuer = Issuer::new(iss.clone(), issuer_key(), subject_key());
        let issued = issuer
            .issue_token_with_cti(&subject, Scopes::from_bits(scopes), iat, iat + lifetime, Cti::from_bytes(cti))
            .unwrap();
        let v = verify_online(&issued.text, &keyset(), &Validation::at(iat)).unwrap();
        prop_assert_eq!(&v.claims.iss, &iss);
        prop_assert_eq!(v.claims.iat, iat);
        prop_assert_eq!(v.claims.exp, iat + lifetime);
        prop_assert_eq!(*v.claims.cti.as_bytes(), cti);
        prop_assert_eq!(v.claims.scopes.bits(), scopes);
        prop_assert_eq!(v.subject(&subject_key()).unwrap(), subject);
        let i = inspect(&issued.text).unwrap();
        prop_assert_eq!((i.iat, i.exp), (iat, iat + lifetime));
    }

    #[test]
    fn any_single_byte_change_to_an_online_token_is_refused(
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let issued = cp1();
        let mut bytes = base45::decode(&issued.text[4..]).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= xor;
        let result = verify_online(&cp1_text(&bytes), &keyset(), &Validation::at(NOW));
        prop_assert!(result.is_err(), "flip at {} accepted", i);
    }

    #[test]
    fn any_single_byte_change_to_an_offline_code_is_refused(
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let code = cp2();
        let mut bytes = base45::decode(&code[4..]).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= xor;
        let text = format!("CP2:{}", base45::encode(&bytes));
        prop_assert!(verify_offline(&text, &keyset(), &Validation::at(NOW)).is_err(), "flip at {} accepted", i);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "CP[12]:[0-9A-Z $%*+./:-]{0,600}") {
        let _ = verify_online(&text, &keyset(), &Validation::at(NOW));
        let _ = verify_offline(&text, &keyset(), &Validation::at(NOW));
        let _ = inspect(&text);
    }
}
