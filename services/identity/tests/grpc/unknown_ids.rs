//! Unknown and malformed subject and device ids are refused by every RPC that takes
//! them, and change nothing.

use citypass_proto::v1::{
    CreateBindingChallengeRequest, GetDeviceRequest, GetSubjectRequest, ListCertificatesRequest,
    ListDevicesRequest,
};
use citypass_token::DeviceKey;
use tonic::Code;

use crate::support::{assert_code, bind_request, digest, rng, start_default};

#[tokio::test]
async fn unknown_and_malformed_ids_are_refused() {
    let h = start_default().await;
    let mut client = h.client.clone();
    let mut issuer = h.issuer.clone();
    let unknown = "0123456789abcdef0123456789abcdef".to_owned();
    let before = digest(&h.pool).await;
    assert_code(
        client
            .get_subject(GetSubjectRequest {
                subject_id: unknown.clone(),
            })
            .await,
        Code::NotFound,
        "subject not found",
    );
    assert_code(
        client
            .create_binding_challenge(CreateBindingChallengeRequest {
                subject_id: unknown.clone(),
            })
            .await,
        Code::NotFound,
        "subject not found",
    );
    assert_code(
        client
            .list_devices(ListDevicesRequest {
                subject_id: unknown.clone(),
                include_unbound: true,
                ..ListDevicesRequest::default()
            })
            .await,
        Code::NotFound,
        "subject not found",
    );
    assert_code(
        issuer
            .get_device(GetDeviceRequest {
                device_id: unknown.clone(),
            })
            .await,
        Code::NotFound,
        "device not found",
    );
    let key = DeviceKey::generate(&rng()).unwrap();
    assert_code(
        client
            .bind_device(bind_request(&unknown, &[7; 32], &key))
            .await,
        Code::NotFound,
        "subject not found",
    );
    assert_code(
        client
            .get_subject(GetSubjectRequest {
                subject_id: unknown.to_uppercase(),
            })
            .await,
        Code::InvalidArgument,
        "subject_id",
    );
    assert_code(
        client
            .list_certificates(ListCertificatesRequest {
                device_id: unknown.clone(),
                subject_id: unknown.clone(),
                include_expired: true,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "exactly one",
    );
    assert_eq!(digest(&h.pool).await, before);
}
