//! Generated Rust code for the citypass gRPC API.
//!
//! The API is defined in `proto/citypass/v1/` (package `citypass.v1`, linted with buf)
//! and compiled at build time with protox, so no system `protoc` is needed. Services
//! never depend on each other's crates: they talk through the clients generated here.
//!
//! - [`v1`]: messages, enums, and for each service a client module (e.g.
//!   [`v1::issuer_service_client::IssuerServiceClient`]) and a server module (e.g.
//!   [`v1::issuer_service_server::IssuerServiceServer`] with the
//!   [`v1::issuer_service_server::IssuerService`] trait).
//! - [`scene`], [`time`]: conversions between API values and the code format's.
//! - [`tap_id`]: the rule for a transit tap's ids, shared by payments and the verifier.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptor set, for tonic-reflection.

pub mod face_place;
pub mod scene;
pub mod tap_id;
pub mod time;

/// Package `citypass.v1`: all five services and their messages.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/citypass.v1.rs"));
}

/// The encoded `google.protobuf.FileDescriptorSet` of the API, including the
/// well-known types it imports and the source comments. Register it with
/// tonic-reflection:
/// `tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/citypass_descriptor.bin"));

/// Fully-qualified names of the five services, as in gRPC paths and health checks.
pub const SERVICE_NAMES: [&str; 5] = [
    "citypass.v1.IdentityService",
    "citypass.v1.IssuerService",
    "citypass.v1.VerifierService",
    "citypass.v1.RevocationService",
    "citypass.v1.PaymentsService",
];

/// Re-exported so that services use the same `Timestamp` and `Duration` types as
/// the generated messages.
pub use prost_types;

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use prost_types::FileDescriptorSet;

    fn descriptor_set() -> FileDescriptorSet {
        FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
    }

    fn citypass_files(set: &FileDescriptorSet) -> Vec<&prost_types::FileDescriptorProto> {
        set.file
            .iter()
            .filter(|f| f.package() == "citypass.v1")
            .collect()
    }

    #[test]
    fn descriptor_set_has_all_five_services() {
        let set = descriptor_set();
        let services: Vec<String> = citypass_files(&set)
            .iter()
            .flat_map(|f| {
                f.service
                    .iter()
                    .map(|s| format!("citypass.v1.{}", s.name()))
            })
            .collect();
        for name in SERVICE_NAMES {
            assert!(services.iter().any(|s| s == name), "{name} missing");
        }
        assert_eq!(services.len(), SERVICE_NAMES.len(), "{services:?}");
    }

    #[test]
    fn generated_service_names_match() {
        use tonic::server::NamedService;
        type Identity = v1::identity_service_server::IdentityServiceServer<()>;
        type Issuer = v1::issuer_service_server::IssuerServiceServer<()>;
        type Verifier = v1::verifier_service_server::VerifierServiceServer<()>;
        type Revocation = v1::revocation_service_server::RevocationServiceServer<()>;
        type Payments = v1::payments_service_server::PaymentsServiceServer<()>;
        assert_eq!(
            [
                Identity::NAME,
                Issuer::NAME,
                Verifier::NAME,
                Revocation::NAME,
                Payments::NAME,
            ],
            SERVICE_NAMES
        );
    }

    #[test]
    fn descriptor_set_keeps_comments_and_well_known_types() {
        let set = descriptor_set();
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/timestamp.proto"),
            "imports must be included for reflection"
        );
        assert!(
            citypass_files(&set)
                .iter()
                .all(|f| f.source_code_info.is_some()),
            "source info (doc comments) must be kept"
        );
    }

    /// The raw document number goes in (EnrolRequest) and never comes out: no other
    /// message of the API has a field that could carry it.
    #[test]
    fn document_number_only_in_enrol_request() {
        let set = descriptor_set();
        let mut holders = Vec::new();
        for file in citypass_files(&set) {
            for message in &file.message_type {
                if message
                    .field
                    .iter()
                    .any(|f| f.name().contains("document_number") || f.name() == "id_number")
                {
                    holders.push(message.name().to_owned());
                }
            }
        }
        assert_eq!(holders, ["EnrolRequest"]);
    }

    #[test]
    fn messages_round_trip() {
        let request = v1::VerifyRequest {
            gate_id: "gate-1".into(),
            scene: v1::Scene::Metro as i32,
            scan_id: "scan-1".into(),
            qr_text: "CP1:ABC".into(),
            direction: v1::Direction::Entry as i32,
            station_id: "station-1".into(),
            scanned_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            live_face: None,
        };
        let bytes = request.encode_to_vec();
        assert_eq!(
            v1::VerifyRequest::decode(bytes.as_slice()).unwrap(),
            request
        );
        assert_eq!(
            v1::DenyReason::from_str_name("DENY_REASON_REPLAYED"),
            Some(v1::DenyReason::Replayed)
        );
    }
}
