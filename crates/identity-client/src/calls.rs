//! The identity calls services make, over the generated client with W3C trace context,
//! each with the caller's deadline passed on, and how a failure is read.

use std::time::Duration;

use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::{GetDeviceRequest, GetTransitAccountRequest};
use citypass_runtime::{Deadline, InjectTraceContext};
use citypass_token::{DeviceId, SubjectId};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::device::DeviceRecord;
use crate::error::IdentityError;

/// The generated identity client, with W3C trace context on every call.
pub type IdentityClient = IdentityServiceClient<InjectTraceContext<Channel>>;

/// A client on an existing channel (e.g. `UpstreamConfig::channel`, over TLS with the
/// service's own certificate).
pub fn client(channel: Channel) -> IdentityClient {
    IdentityServiceClient::new(InjectTraceContext::new(channel))
}

/// A plaintext client for `url` (e.g. `http://identity:50051`) that connects on first
/// use and reconnects by itself, so a service starts even while identity is starting.
pub fn connect_lazy(url: &str, connect_timeout: Duration) -> Result<IdentityClient, IdentityError> {
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(IdentityError::InvalidUrl)?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(client(channel))
}

/// `message` as a request carrying `deadline` (the caller's own, passed on).
pub fn request<T>(message: T, deadline: Option<Deadline>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(deadline) = deadline {
        deadline.apply(&mut request);
    }
    request
}

/// A failed call's status read as an [`IdentityError`] (statuses a call expects, such
/// as NOT_FOUND, are read by the call first).
pub fn transport_error(status: tonic::Status) -> IdentityError {
    match status.code() {
        Code::DeadlineExceeded => IdentityError::DeadlineExceeded,
        Code::Unavailable | Code::ResourceExhausted | Code::Cancelled | Code::Unknown => {
            IdentityError::Unavailable(status)
        }
        _ => IdentityError::Failed(status),
    }
}

/// GetDevice: the device with its subject's standing, checked
/// ([`DeviceRecord::from_answer`]); `Ok(None)` if identity knows no such device.
pub async fn get_device(
    client: &IdentityClient,
    device: &DeviceId,
    deadline: Option<Deadline>,
) -> Result<Option<DeviceRecord>, IdentityError> {
    let message = GetDeviceRequest {
        device_id: device.to_string(),
    };
    match client.clone().get_device(request(message, deadline)).await {
        Ok(answer) => DeviceRecord::from_answer(answer.into_inner(), device).map(Some),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(transport_error(status)),
    }
}

/// GetTransitAccount: the subject's transit pseudonym (32 lower-case hex characters,
/// checked); `Ok(None)` if identity knows no such subject.
pub async fn transit_account(
    client: &IdentityClient,
    subject: &SubjectId,
    deadline: Option<Deadline>,
) -> Result<Option<String>, IdentityError> {
    let message = GetTransitAccountRequest {
        subject_id: subject.to_string(),
    };
    match client
        .clone()
        .get_transit_account(request(message, deadline))
        .await
    {
        Ok(answer) => {
            let account = answer.into_inner().transit_account;
            let well_formed = account.len() == 32
                && account
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !well_formed {
                return Err(IdentityError::Unexpected(
                    "GetTransitAccount answered a malformed account",
                ));
            }
            Ok(Some(account))
        }
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(transport_error(status)),
    }
}
