//! The identity service's authorisation table, over real TLS, on the service as
//! `build` makes it: every RPC against every kind of caller, and the writes an
//! attacker wants (suspend or un-suspend a citizen, raise an assurance level) refused
//! with nothing changed.

use std::net::SocketAddr;

use citypass_identity::{AUTHORIZATION, IdentityConfig, build};
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::{
    AssuranceLevel, DocumentType, EnrolRequest, GetSubjectRequest, SetAttributesRequest,
    SetSubjectStatusRequest, Subject, SubjectStatus,
};
use citypass_runtime::Role;
use citypass_testkit::tls::{As, TestPki};
use citypass_testkit::{Served, serve};
use tonic::Code;

struct Running {
    addr: SocketAddr,
    pki: TestPki,
    _served: Served,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("identity");
    let mut config = IdentityConfig::dev();
    config.server.tls = Some(pki.server_files(dir.path()));
    let served = serve(build(config).await.expect("the service builds").server).await;
    Running {
        addr: served.addr,
        pki,
        _served: served,
        _dir: dir,
    }
}

impl Running {
    fn client(&self, who: &As) -> IdentityServiceClient<tonic::transport::Channel> {
        IdentityServiceClient::new(self.pki.channel(self.addr, who))
    }

    async fn subject(&self, subject_id: &str) -> Subject {
        self.client(&As::Operator(&[Role::Auditor]))
            .get_subject(GetSubjectRequest {
                subject_id: subject_id.to_owned(),
            })
            .await
            .expect("an auditor reads a subject")
            .into_inner()
            .subject
            .expect("a subject")
    }
}

#[tokio::test]
async fn every_rpc_answers_every_caller_as_the_table_says() {
    let running = start().await;
    citypass_testkit::authz::assert_table_holds(&running.pki, running.addr, &AUTHORIZATION).await;
}

#[tokio::test]
async fn only_identity_admins_change_a_subject() {
    let running = start().await;
    // A citizen enrols without a certificate.
    let subject = running
        .client(&As::Nobody)
        .enrol(EnrolRequest {
            document_type: DocumentType::ResidentIdCard as i32,
            document_number: "11010519491231002X".to_owned(),
            name: "Li Lei".to_owned(),
            request_id: String::new(),
        })
        .await
        .expect("enrolment is open to citizens")
        .into_inner()
        .subject
        .expect("a subject");
    let before = running.subject(&subject.subject_id).await;
    let suspend = || SetSubjectStatusRequest {
        subject_id: subject.subject_id.clone(),
        status: SubjectStatus::Suspended as i32,
        reason: "test".to_owned(),
    };
    let raise = || SetAttributesRequest {
        subject_id: subject.subject_id.clone(),
        assurance_level: AssuranceLevel::InPerson as i32,
        ..SetAttributesRequest::default()
    };
    for (who, code) in [
        (As::Nobody, Code::Unauthenticated),
        (
            As::OtherCa(Box::new(As::Operator(&[Role::IdentityAdmin]))),
            Code::Unauthenticated,
        ),
        (
            As::Expired(Box::new(As::Operator(&[Role::IdentityAdmin]))),
            Code::Unauthenticated,
        ),
        (As::Service("issuer"), Code::PermissionDenied),
        (As::Gate("hospital-desk-1"), Code::PermissionDenied),
        (
            As::Operator(&[Role::Auditor, Role::Revoker]),
            Code::PermissionDenied,
        ),
    ] {
        let mut client = running.client(&who);
        let status = client
            .set_subject_status(suspend())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{who:?} suspend: {status:?}");
        let status = client.set_attributes(raise()).await.expect_err("refused");
        assert_eq!(status.code(), code, "{who:?} raise: {status:?}");
    }
    assert_eq!(
        running.subject(&subject.subject_id).await,
        before,
        "nothing changed"
    );

    let mut admin = running.client(&As::Operator(&[Role::IdentityAdmin]));
    admin
        .set_subject_status(suspend())
        .await
        .expect("an identity admin suspends");
    assert_eq!(
        running.subject(&subject.subject_id).await.status(),
        SubjectStatus::Suspended
    );
}
