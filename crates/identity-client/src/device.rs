//! A device as services need it, with its subject's standing, read from identity's
//! GetDevice answer. The answer is checked, not trusted: it must name the device asked
//! for, with well-formed ids and a valid P-256 key.

use citypass_proto::v1::{Attributes, DeviceStatus, GetDeviceResponse, SubjectStatus};
use citypass_token::{DeviceId, PublicKey, SubjectId};

use crate::error::IdentityError;

/// A device with its subject's standing.
#[derive(Clone)]
pub struct DeviceRecord {
    /// The device's id.
    pub device: DeviceId,
    /// The subject the device is bound to.
    pub subject: SubjectId,
    /// The bound P-256 key that signs the device's requests (validated).
    pub public_key: PublicKey,
    /// Binding state.
    pub device_status: DeviceStatus,
    /// The subject's lifecycle state.
    pub subject_status: SubjectStatus,
    /// The subject's attributes, for scene policies.
    pub attributes: Attributes,
}

impl std::fmt::Debug for DeviceRecord {
    // Ids stay out of debug output, which may end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRecord")
            .field("device_status", &self.device_status)
            .field("subject_status", &self.subject_status)
            .finish_non_exhaustive()
    }
}

impl DeviceRecord {
    /// Reads identity's answer to GetDevice for `asked`.
    /// [`IdentityError::Unexpected`] if the answer breaks the API contract.
    pub fn from_answer(answer: GetDeviceResponse, asked: &DeviceId) -> Result<Self, IdentityError> {
        let found = answer.device.ok_or(IdentityError::Unexpected(
            "GetDevice answered without a device",
        ))?;
        let answered = DeviceId::parse(&found.device_id)
            .map_err(|_| IdentityError::Unexpected("GetDevice answered a malformed id"))?;
        if answered != *asked {
            return Err(IdentityError::Unexpected(
                "GetDevice answered another device",
            ));
        }
        let subject = SubjectId::parse(&found.subject_id)
            .map_err(|_| IdentityError::Unexpected("GetDevice answered a malformed id"))?;
        let public_key = PublicKey::p256(&found.public_key)
            .map_err(|_| IdentityError::Unexpected("the device's key is malformed"))?;
        Ok(DeviceRecord {
            device_status: DeviceStatus::try_from(found.status)
                .unwrap_or(DeviceStatus::Unspecified),
            subject_status: SubjectStatus::try_from(answer.subject_status)
                .unwrap_or(SubjectStatus::Unspecified),
            attributes: answer.subject_attributes.unwrap_or_default(),
            device: answered,
            subject,
            public_key,
        })
    }

    /// Whether the device may act for its subject now: the device is bound (ACTIVE) and
    /// its subject is ACTIVE.
    pub fn is_active(&self) -> bool {
        self.device_status == DeviceStatus::Active && self.subject_status == SubjectStatus::Active
    }
}
