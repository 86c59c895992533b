//! Subject and device ids: the shared newtypes of `citypass_token` (one definition for
//! every service and the gate), whose errors become this service's
//! `INVALID_ARGUMENT` naming the field (see `From<IdError> for Error`).

pub use citypass_token::{CertSerial, DeviceId, ID_LEN, SubjectId};
