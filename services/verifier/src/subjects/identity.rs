//! Identity's GetSubjectProfile as a [`ProfileSource`]: the only call the verifier
//! makes to identity, through the cache ([`crate::subjects::cache`]), never per scan.
//!
//! The call carries the scan's remaining deadline (`grpc-timeout`) and the trace
//! context. NOT_FOUND is [`SubjectsError::UnknownSubject`]; every other failure, and
//! an answer that breaks the API, is [`SubjectsError::Unavailable`] (logged without
//! the subject).

use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::{AssuranceLevel, FareClass, GetSubjectProfileRequest, SubjectStatus};
use citypass_runtime::{Deadline, InjectTraceContext};
use citypass_token::SubjectId;
use futures::future::BoxFuture;
use tonic::Code;
use tonic::transport::Channel;

use crate::subjects::cache::ProfileSource;
use crate::subjects::{SubjectProfile, SubjectsError};

/// The gRPC client of identity's GetSubjectProfile.
#[derive(Debug, Clone)]
pub struct IdentityProfiles {
    client: IdentityServiceClient<InjectTraceContext<Channel>>,
}

impl IdentityProfiles {
    /// Over `channel` (the runtime's upstream channel to identity, with the verifier's
    /// own certificate: identity serves GetSubjectProfile to `service:verifier` only).
    pub fn new(channel: Channel) -> Self {
        IdentityProfiles {
            client: IdentityServiceClient::new(InjectTraceContext::new(channel)),
        }
    }
}

impl ProfileSource for IdentityProfiles {
    fn fetch(
        &self,
        subject: SubjectId,
        deadline: Deadline,
    ) -> BoxFuture<'_, Result<SubjectProfile, SubjectsError>> {
        Box::pin(async move {
            let mut request = tonic::Request::new(GetSubjectProfileRequest {
                subject_id: subject.to_string(),
            });
            deadline.apply(&mut request);
            let answer = match self.client.clone().get_subject_profile(request).await {
                Ok(answer) => answer.into_inner(),
                Err(status) if status.code() == Code::NotFound => {
                    return Err(SubjectsError::UnknownSubject);
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), "identity: GetSubjectProfile failed");
                    return Err(SubjectsError::Unavailable);
                }
            };
            let Some(attributes) = answer.attributes else {
                tracing::warn!("identity: GetSubjectProfile answered without attributes");
                return Err(SubjectsError::Unavailable);
            };
            Ok(SubjectProfile {
                status: SubjectStatus::try_from(answer.status)
                    .unwrap_or(SubjectStatus::Unspecified),
                assurance: AssuranceLevel::try_from(attributes.assurance_level)
                    .unwrap_or(AssuranceLevel::Unspecified),
                fare_class: FareClass::try_from(attributes.fare_class)
                    .unwrap_or(FareClass::Unspecified),
                medical_insurance_linked: attributes.medical_insurance_linked,
                transit_account: answer.transit_account,
                government_pseudonym: (!answer.government_pseudonym.is_empty())
                    .then_some(answer.government_pseudonym),
                masked_name: answer.masked_name,
            })
        })
    }
}
