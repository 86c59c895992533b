//! The stack's payments service, as `citypass dev` runs it: reachable over mutual TLS,
//! answering the verifier's taps and refusing anyone else's, and the citizen's own
//! calls signed by the bound device and mapped to its transit account at identity.

use std::time::{Duration, Instant};

use citypass_device_proof::{LINK_ACCOUNT, sign_request};
use citypass_e2e::{TestStack, dev_ring, device_key, ids, status_of, within};
use citypass_pki::Subject;
use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::{self as pb, TapInRequest};
use citypass_runtime::reason_of;
use tonic::Code;

fn metro_entry(account: &str) -> TapInRequest {
    TapInRequest {
        transit_account: account.to_owned(),
        scene: pb::Scene::Metro as i32,
        gate_id: "metro-entry-1".to_owned(),
        station_id: "xizhimen".to_owned(),
        scan_id: "e2e-scan-1".to_owned(),
        tapped_at: Some(Timestamp {
            seconds: i64::try_from(citypass_e2e::now()).expect("a time"),
            nanos: 0,
        }),
        fare_class: pb::FareClass::Adult as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stacks_payments_answer_the_verifier_and_refuse_a_gate() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let account = "00112233445566778899aabbccddeeff";

    // The verifier's certificate: a rider with no payment link is refused, as data.
    let mut verifier = t.payments(&Subject::service("verifier")).await;
    let answer = within("TapIn", verifier.tap_in(metro_entry(account)))
        .await
        .expect("the verifier may tap")
        .into_inner();
    assert_eq!(
        answer.refusal(),
        pb::TapRefusal::NoPaymentLink,
        "{answer:?}"
    );
    assert!(answer.trip.is_none());

    // A gate may not charge anyone directly.
    let mut gate = t.payments(&Subject::gate("metro-entry-1")).await;
    let refused = within("TapIn", gate.tap_in(metro_entry(account)))
        .await
        .expect_err("a gate is not the verifier");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

fn now_stamp() -> Option<Timestamp> {
    Some(Timestamp {
        seconds: i64::try_from(citypass_e2e::now()).expect("a time"),
        nanos: 0,
    })
}

fn link_request(device_id: &str, token: &str) -> pb::LinkAccountRequest {
    pb::LinkAccountRequest {
        device_id: device_id.to_owned(),
        provider: pb::PaymentProvider::Sandbox as i32,
        provider_token: token.to_owned(),
        last4: "1234".to_owned(),
        consent: Some(pb::Consent {
            text_version: "2026-01".to_owned(),
            consented_at: now_stamp(),
        }),
        ..pb::LinkAccountRequest::default()
    }
}

/// Issue 11's citizen path over the real stack: enrol, bind, link (signed by the
/// device; unsigned, replayed and card-number links refused with nothing linked),
/// GetTrips empty, a TapIn and TapOut as the verifier, GetTrips shows the one priced
/// trip. An unknown device is NOT_FOUND; once the device is unbound at identity, its
/// calls are refused (within the GetDevice cache's few seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_links_by_device_signature_and_sees_the_verifiers_trip() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("Zhang Wei").await;
    let key = device_key(&app);
    let (subject_id, device_id) = ids(&app);
    let mut raw = t.payments_app().await;

    // Unsigned: UNAUTHENTICATED, nothing linked.
    let unsigned = within(
        "LinkAccount",
        raw.link_account(link_request(&device_id, "agr_sandbox_e2e_1")),
    )
    .await
    .expect_err("an unsigned link is refused");
    assert_eq!(unsigned.code(), Code::Unauthenticated, "{unsigned:?}");
    assert_eq!(reason_of(&unsigned).as_deref(), Some("PROOF_MISSING"));
    // A card number as the token, signed: INVALID_ARGUMENT naming the field, not
    // echoing the number.
    let mut card = link_request(&device_id, "4111111111111111");
    card.proof = Some(sign_request(LINK_ACCOUNT, &card, &key).expect("sign"));
    let refused = within("LinkAccount", raw.link_account(card))
        .await
        .expect_err("a card number is refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("provider_token"), "{refused:?}");
    assert!(!refused.message().contains("4111"), "{refused:?}");
    let none = within("GetLink", app.payment_link()).await;
    assert_eq!(
        status_of(none.expect_err("nothing linked")).code(),
        Code::NotFound
    );

    // Signed by the bound device: linked to its subject's transit account.
    let mut signed = link_request(&device_id, "agr_sandbox_e2e_1");
    signed.proof = Some(sign_request(LINK_ACCOUNT, &signed, &key).expect("sign"));
    let link = within("LinkAccount", raw.link_account(signed.clone()))
        .await
        .expect("a signed link")
        .into_inner()
        .link
        .expect("the link");
    assert_eq!(link.status(), pb::LinkStatus::Active);
    let account = link.transit_account.clone();
    assert_eq!(account.len(), 32, "the transit account, not the subject id");
    assert_ne!(account, subject_id);
    // The same signed request again: a replay, refused before anything is looked at.
    let replayed = within("LinkAccount", raw.link_account(signed))
        .await
        .expect_err("a replay is refused");
    assert_eq!(replayed.code(), Code::Unauthenticated, "{replayed:?}");
    assert_eq!(reason_of(&replayed).as_deref(), Some("NONCE_REUSED"));
    // A device identity does not know, signing with a real key: NOT_FOUND.
    let stranger = "ffeeddccbbaa99887766554433221100";
    let mut unknown = pb::GetLinkRequest {
        device_id: stranger.to_owned(),
        ..pb::GetLinkRequest::default()
    };
    unknown.proof =
        Some(sign_request(citypass_device_proof::GET_LINK, &unknown, &key).expect("sign"));
    let unknown = within("GetLink", raw.get_link(unknown))
        .await
        .expect_err("an unknown device is refused");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(reason_of(&unknown).as_deref(), Some("DEVICE_NOT_FOUND"));

    let empty = within("GetTrips", app.trips(0, "")).await.expect("trips");
    assert!(empty.trips.is_empty(), "{empty:?}");

    // The verifier's taps for that account: an entry and an exit.
    let mut verifier = t.payments(&Subject::service("verifier")).await;
    let entry = TapInRequest {
        transit_account: account.clone(),
        scene: pb::Scene::Metro as i32,
        gate_id: "metro-entry-1".to_owned(),
        station_id: "pingguoyuan".to_owned(),
        scan_id: "e2e-link-in".to_owned(),
        tapped_at: now_stamp(),
        fare_class: pb::FareClass::Adult as i32,
    };
    let opened = within("TapIn", verifier.tap_in(entry))
        .await
        .expect("TapIn")
        .into_inner();
    assert_eq!(opened.refusal(), pb::TapRefusal::Unspecified, "{opened:?}");
    let exit = pb::TapOutRequest {
        transit_account: account.clone(),
        gate_id: "metro-exit-1".to_owned(),
        station_id: "xidan".to_owned(),
        scan_id: "e2e-link-out".to_owned(),
        tapped_at: now_stamp(),
        fare_class: pb::FareClass::Adult as i32,
    };
    within("TapOut", verifier.tap_out(exit))
        .await
        .expect("TapOut");

    let page = within("GetTrips", app.trips(0, "")).await.expect("trips");
    assert_eq!(page.trips.len(), 1, "{page:?}");
    let trip = &page.trips[0];
    assert_eq!(trip.status(), pb::TripStatus::Closed);
    assert_eq!(trip.transit_account, account);
    assert_eq!(
        (
            trip.entry_station_id.as_str(),
            trip.exit_station_id.as_str()
        ),
        ("pingguoyuan", "xidan")
    );
    assert_eq!(trip.fare.as_ref().map(|m| m.minor_units), Some(500));
    assert!(page.next_page_token.is_empty());
    let arrears = within("GetArrears", app.arrears()).await.expect("arrears");
    assert!(!arrears.in_arrears, "{arrears:?}");

    // The device unbound at identity: its calls are refused once the payments
    // service's GetDevice cache (3 s) lets go. Each try is freshly signed.
    within(
        "UnbindDevice",
        t.identity().await.unbind_device(pb::UnbindDeviceRequest {
            subject_id,
            device_id,
            reason: "e2e".to_owned(),
        }),
    )
    .await
    .expect("unbind");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match within("GetTrips", app.trips(0, "")).await {
            Err(err) => {
                let status = status_of(err);
                assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
                assert_eq!(reason_of(&status).as_deref(), Some("DEVICE_NOT_ACTIVE"));
                break;
            }
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the unbound device is still served"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// A phone reported lost is revoked in the revocation log at once, while identity may
/// still show it bound: payments follows the log as the issuer does and refuses the
/// device's calls (`DEVICE_REVOKED`) once the revocation reaches it, so whoever holds
/// the phone can neither read the rider's trips nor unlink the owner's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_revoked_in_the_log_can_no_longer_act_for_its_account() {
    let t = TestStack::with_ring(&dev_ring()).await;
    let mut app = t.citizen("Sun Li").await;
    let (_, device_id) = ids(&app);
    within("GetTrips", app.trips(0, ""))
        .await
        .expect("served before the revocation");

    within(
        "revoke the device",
        t.revocation().await.revoke(pb::RevokeRequest {
            target_kind: pb::TargetKind::Device.into(),
            target_id: device_id,
            reason: pb::RevocationReason::DeviceLost.into(),
            ..pb::RevokeRequest::default()
        }),
    )
    .await
    .expect("acknowledged");

    // The follower's bound is seconds; the deadline is generous for a busy machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match within("GetTrips", app.trips(0, "")).await {
            Err(err) => {
                let status = status_of(err);
                assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
                assert_eq!(reason_of(&status).as_deref(), Some("DEVICE_REVOKED"));
                break;
            }
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the revoked device is still served"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let unlink = within("UnlinkAccount", app.unlink())
        .await
        .map_err(status_of)
        .expect_err("a revoked device cannot unlink");
    assert_eq!(reason_of(&unlink).as_deref(), Some("DEVICE_REVOKED"));
    t.shutdown().await;
}
