//! The gRPC identity client against a stand-in IdentityService served on loopback:
//! answers are mapped to what the issuer decides on, errors to the right kinds, and
//! the caller's deadline travels with each call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use citypass_issuer::{CertificateRecord, GrpcIdentity, IdentityError, IdentityLookup};
use citypass_proto::v1::identity_service_server::{IdentityService, IdentityServiceServer};
use citypass_proto::v1::*;
use citypass_runtime::{Deadline, Server, ServerConfig};
use citypass_token::{DeviceId, DeviceKey, SubjectId, SystemRandom};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

const DEV_1: &str = "11111111111111111111111111111111";
const DEV_BAD_KEY: &str = "22222222222222222222222222222222";
const DEV_DOWN: &str = "33333333333333333333333333333333";
const DEV_NOPE: &str = "44444444444444444444444444444444";
const DEV_GONE: &str = "55555555555555555555555555555555";
const DEV_UNBOUND: &str = "66666666666666666666666666666666";
const DEV_LIMIT: &str = "77777777777777777777777777777777";

fn dev(id: &str) -> DeviceId {
    DeviceId::parse(id).expect("a well-formed device id")
}

/// Answers GetDevice and RecordCertificate by device id; everything else is
/// unimplemented.
struct StandIn {
    device_key: Vec<u8>,
    recorded: Arc<Mutex<Vec<(DeviceCertificate, bool)>>>,
}

#[tonic::async_trait]
impl IdentityService for StandIn {
    async fn enrol(&self, _: Request<EnrolRequest>) -> Result<Response<EnrolResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn get_subject(
        &self,
        _: Request<GetSubjectRequest>,
    ) -> Result<Response<GetSubjectResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn get_transit_account(
        &self,
        _: Request<GetTransitAccountRequest>,
    ) -> Result<Response<GetTransitAccountResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn get_subject_profile(
        &self,
        _: Request<citypass_proto::v1::GetSubjectProfileRequest>,
    ) -> Result<Response<citypass_proto::v1::GetSubjectProfileResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn set_attributes(
        &self,
        _: Request<SetAttributesRequest>,
    ) -> Result<Response<SetAttributesResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn set_subject_status(
        &self,
        _: Request<SetSubjectStatusRequest>,
    ) -> Result<Response<SetSubjectStatusResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn create_binding_challenge(
        &self,
        _: Request<CreateBindingChallengeRequest>,
    ) -> Result<Response<CreateBindingChallengeResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn bind_device(
        &self,
        _: Request<BindDeviceRequest>,
    ) -> Result<Response<BindDeviceResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn issue_enrolment_secret(
        &self,
        _: Request<IssueEnrolmentSecretRequest>,
    ) -> Result<Response<IssueEnrolmentSecretResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn unbind_device(
        &self,
        _: Request<UnbindDeviceRequest>,
    ) -> Result<Response<UnbindDeviceResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn list_devices(
        &self,
        _: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<GetDeviceResponse>, Status> {
        let id = request.into_inner().device_id;
        let public_key = match id.as_str() {
            DEV_1 => self.device_key.clone(),
            DEV_BAD_KEY => vec![0x04; 65],
            DEV_DOWN => return Err(Status::unavailable("database down")),
            _ => return Err(Status::not_found("device not found")),
        };
        Ok(Response::new(GetDeviceResponse {
            device: Some(Device {
                device_id: id,
                subject_id: "00112233445566778899aabbccddeeff".into(),
                public_key,
                status: DeviceStatus::Active as i32,
                ..Device::default()
            }),
            subject_status: SubjectStatus::Suspended as i32,
            subject_attributes: Some(Attributes {
                assurance_level: AssuranceLevel::InPerson as i32,
                ..Attributes::default()
            }),
        }))
    }
    async fn record_certificate(
        &self,
        request: Request<RecordCertificateRequest>,
    ) -> Result<Response<RecordCertificateResponse>, Status> {
        let had_deadline = request.metadata().get("grpc-timeout").is_some();
        let certificate = request.into_inner().certificate.unwrap_or_default();
        match certificate.device_id.as_str() {
            DEV_GONE => return Err(Status::not_found("device not found")),
            DEV_UNBOUND => return Err(Status::failed_precondition("device not active")),
            DEV_DOWN => return Err(Status::unavailable("database down")),
            DEV_LIMIT => {
                return Err(citypass_runtime::status_with_reason(
                    tonic::Code::ResourceExhausted,
                    "the device has 8 live certificates, the limit",
                    "CERTIFICATE_LIMIT",
                ));
            }
            _ => {}
        }
        self.recorded
            .lock()
            .unwrap()
            .push((certificate.clone(), had_deadline));
        Ok(Response::new(RecordCertificateResponse {
            certificate: Some(certificate),
        }))
    }
    async fn list_certificates(
        &self,
        _: Request<ListCertificatesRequest>,
    ) -> Result<Response<ListCertificatesResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn record_face_consent(
        &self,
        _: Request<RecordFaceConsentRequest>,
    ) -> Result<Response<RecordFaceConsentResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn withdraw_face_consent(
        &self,
        _: Request<WithdrawFaceConsentRequest>,
    ) -> Result<Response<WithdrawFaceConsentResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn enrol_face(
        &self,
        _: Request<EnrolFaceRequest>,
    ) -> Result<Response<EnrolFaceResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn get_face_enrolment_stats(
        &self,
        _: Request<GetFaceEnrolmentStatsRequest>,
    ) -> Result<Response<GetFaceEnrolmentStatsResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn list_face_template_changes(
        &self,
        _: Request<ListFaceTemplateChangesRequest>,
    ) -> Result<Response<ListFaceTemplateChangesResponse>, Status> {
        Err(Status::unimplemented(""))
    }
}

type Recorded = Arc<Mutex<Vec<(DeviceCertificate, bool)>>>;

async fn serve() -> (
    GrpcIdentity,
    DeviceKey,
    Recorded,
    tokio::sync::oneshot::Sender<()>,
) {
    let key = DeviceKey::generate(&SystemRandom::new()).unwrap();
    let recorded: Recorded = Arc::default();
    let stand_in = StandIn {
        device_key: key.public_key().as_bytes().to_vec(),
        recorded: recorded.clone(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        Server::new(ServerConfig::new("identity-stand-in"))
            .add_service(
                IdentityServiceServer::new(stand_in),
                citypass_testkit::authz::open_to_anyone("citypass.v1.IdentityService"),
            )
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let client = GrpcIdentity::connect_lazy(&format!("http://{addr}"), Duration::from_secs(2))
        .expect("valid URL");
    (client, key, recorded, stop)
}

#[tokio::test]
async fn get_device_maps_the_answer() {
    let (client, key, _, _stop) = serve().await;
    let device = client
        .get_device(&dev(DEV_1), Some(Deadline::after(Duration::from_secs(2))))
        .await
        .expect("answer")
        .expect("found");
    assert_eq!(device.device, dev(DEV_1));
    assert_eq!(
        device.subject.to_string(),
        "00112233445566778899aabbccddeeff"
    );
    assert_eq!(&device.public_key, key.public_key());
    assert_eq!(device.device_status, DeviceStatus::Active);
    assert_eq!(device.subject_status, SubjectStatus::Suspended);
    assert_eq!(
        device.attributes.assurance_level,
        AssuranceLevel::InPerson as i32
    );

    assert!(
        client
            .get_device(&dev(DEV_NOPE), None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        client.get_device(&dev(DEV_BAD_KEY), None).await,
        Err(IdentityError::Unexpected(_))
    ));
    assert!(matches!(
        client.get_device(&dev(DEV_DOWN), None).await,
        Err(IdentityError::Unavailable(_))
    ));
}

#[tokio::test]
async fn record_certificate_sends_the_record_with_the_deadline() {
    let (client, _, recorded, _stop) = serve().await;
    let record = |device: &str| CertificateRecord {
        serial: citypass_token::CertSerial::from_bytes([7; 16]),
        device: dev(device),
        subject: SubjectId::parse("00112233445566778899aabbccddeeff").expect("id"),
        not_before: 1_800_000_000,
        not_after: 1_800_003_600,
    };
    client
        .record_certificate(
            &record(DEV_1),
            Some(Deadline::after(Duration::from_secs(2))),
        )
        .await
        .expect("recorded");
    let (sent, had_deadline) = recorded.lock().unwrap()[0].clone();
    assert!(had_deadline, "the deadline travels as grpc-timeout");
    assert_eq!(sent.serial, vec![7; 16]);
    assert_eq!(sent.device_id, DEV_1);
    assert_eq!(sent.not_before.unwrap().seconds, 1_800_000_000);
    assert_eq!(sent.not_after.unwrap().seconds, 1_800_003_600);

    assert!(matches!(
        client.record_certificate(&record(DEV_GONE), None).await,
        Err(IdentityError::DeviceNotFound)
    ));
    assert!(matches!(
        client.record_certificate(&record(DEV_UNBOUND), None).await,
        Err(IdentityError::DeviceNotActive)
    ));
    assert!(matches!(
        client.record_certificate(&record(DEV_LIMIT), None).await,
        Err(IdentityError::CertificateLimit)
    ));
    assert!(matches!(
        client.record_certificate(&record(DEV_DOWN), None).await,
        Err(IdentityError::Unavailable(_))
    ));
}

#[tokio::test]
async fn an_unreachable_identity_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let client =
        GrpcIdentity::connect_lazy(&format!("http://{addr}"), Duration::from_millis(500)).unwrap();
    assert!(matches!(
        client.get_device(&dev(DEV_1), None).await,
        Err(IdentityError::Unavailable(_))
    ));
    assert!(matches!(
        GrpcIdentity::connect_lazy("not a url", Duration::from_secs(1)),
        Err(IdentityError::InvalidUrl(_))
    ));
}
