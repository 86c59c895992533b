//! Who may call each RPC of the identity service (see `citypass_runtime::authz`).
//!
//! Citizens' apps enrol and bind without a certificate, under the per-address rate
//! limit (and Enrol under its own attempt limits, `crate::attempts`). A subject's
//! transit pseudonym goes only to the payments service and the verifier
//! (GetTransitAccount), and with the government-service pseudonym to the verifier alone
//! (GetSubjectProfile): no other answer carries them. Reading a subject (without its
//! pseudonym) or its devices, and changing them, is for operators
//! (`identity-admin`; `auditor` reads): the citizen's own view, device-signed like
//! IssueToken, comes with identity's own device-proof check. Devices are read by the
//! issuer and the payments service, which both check device-signed calls; certificate
//! records are for the issuer, which decides and records issuance; certificate lists
//! are for the revocation service's cascade and for operators. Face consent and
//! enrolment come from the citizen's app, device-signed (checked in the handler), or
//! from a face counter (`face-counter`; consents also from an `identity-admin`, who
//! records a guardian's at a service desk, but no enrolment: face review finding F8);
//! the sealed templates go to the verifier alone, and operators see counts only.

use citypass_runtime::{Allow, Policy, Role, Rule};

const ADMIN: &[Allow] = &[Allow::Role(Role::IdentityAdmin)];
const ADMIN_OR_AUDITOR: &[Allow] = &[Allow::Role(Role::IdentityAdmin), Allow::Role(Role::Auditor)];
const FACE_CITIZEN_OR_COUNTER: &[Allow] = &[
    Allow::DeviceSigned,
    Allow::Role(Role::IdentityAdmin),
    Allow::Role(Role::FaceCounter),
];
/// A template's enrolment: the citizen's app or a face counter only. An
/// identity-admin is not the counter (F8): the lending check trusts COUNTER templates.
const FACE_CITIZEN_OR_FACE_COUNTER: &[Allow] =
    &[Allow::DeviceSigned, Allow::Role(Role::FaceCounter)];

/// The table.
pub const AUTHORIZATION: Policy = Policy {
    service: "citypass.v1.IdentityService",
    rules: &[
        Rule {
            method: "Enrol",
            allow: &[Allow::Citizen],
        },
        Rule {
            method: "CreateBindingChallenge",
            allow: &[Allow::Citizen],
        },
        Rule {
            method: "BindDevice",
            allow: &[Allow::Citizen],
        },
        Rule {
            method: "GetSubject",
            allow: ADMIN_OR_AUDITOR,
        },
        // The transit pseudonym, only to the services keyed by it (security finding 8):
        // payments (its ledger) and the verifier (what transit gates get back). Not
        // operators: GetSubject leaves it out.
        Rule {
            method: "GetTransitAccount",
            allow: &[Allow::Service("payments"), Allow::Service("verifier")],
        },
        // Everything a scene policy needs (with both pseudonyms identity stores), only
        // to the verifier, which caches it for a bounded age.
        Rule {
            method: "GetSubjectProfile",
            allow: &[Allow::Service("verifier")],
        },
        Rule {
            method: "SetAttributes",
            allow: ADMIN,
        },
        Rule {
            method: "SetSubjectStatus",
            allow: ADMIN,
        },
        Rule {
            method: "IssueEnrolmentSecret",
            allow: ADMIN,
        },
        Rule {
            method: "UnbindDevice",
            allow: ADMIN,
        },
        Rule {
            method: "ListDevices",
            allow: ADMIN_OR_AUDITOR,
        },
        // A device's key, status and subject: the issuer (before it issues) and the
        // payments service (before a citizen's device-signed call).
        Rule {
            method: "GetDevice",
            allow: &[Allow::Service("issuer"), Allow::Service("payments")],
        },
        Rule {
            method: "RecordCertificate",
            allow: &[Allow::Service("issuer")],
        },
        // Face (issue 14): the citizen's app, signed by the subject's bound device
        // (checked by the handler before any work), or in person at a counter: consents
        // by a face counter or an identity-admin, enrolments by a face counter alone.
        Rule {
            method: "RecordFaceConsent",
            allow: FACE_CITIZEN_OR_COUNTER,
        },
        Rule {
            method: "WithdrawFaceConsent",
            allow: FACE_CITIZEN_OR_COUNTER,
        },
        Rule {
            method: "EnrolFace",
            allow: FACE_CITIZEN_OR_FACE_COUNTER,
        },
        // Counts only: no template, no subject.
        Rule {
            method: "GetFaceEnrolmentStats",
            allow: ADMIN_OR_AUDITOR,
        },
        // Sealed templates for the gallery: the verifier alone (it holds the key).
        Rule {
            method: "ListFaceTemplateChanges",
            allow: &[Allow::Service("verifier")],
        },
        Rule {
            method: "ListCertificates",
            allow: &[
                Allow::Service("revocation"),
                Allow::Role(Role::IdentityAdmin),
                Allow::Role(Role::Auditor),
            ],
        },
    ],
};
