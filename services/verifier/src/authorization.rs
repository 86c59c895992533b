//! Who may call each RPC of the verifier (see `citypass_runtime::authz`).
//!
//! Gates, each with its own certificate (`spiffe://citypass/gate/<id>`), decide and
//! upload. The table admits any gate; the handler then takes the gate id from the
//! certificate and refuses a request naming another gate (`PERMISSION_DENIED`,
//! `GATE_MISMATCH`). Fraud signals are read by operators with the auditor role.

use citypass_runtime::{Allow, Policy, Role, Rule};

/// The table.
pub const AUTHORIZATION: Policy = Policy {
    service: "citypass.v1.VerifierService",
    rules: &[
        Rule {
            method: "Verify",
            allow: &[Allow::AnyGate],
        },
        Rule {
            method: "VerifyStream",
            allow: &[Allow::AnyGate],
        },
        Rule {
            method: "UploadOfflineScans",
            allow: &[Allow::AnyGate],
        },
        Rule {
            method: "VoidScan",
            allow: &[Allow::AnyGate],
        },
        // Face pass: gates only; the handler further refuses gates the registry does
        // not mark face_pass (FACE_PASS_NOT_HERE).
        Rule {
            method: "VerifyFace",
            allow: &[Allow::AnyGate],
        },
        Rule {
            method: "ListFraudSignals",
            allow: &[Allow::Role(Role::Auditor)],
        },
    ],
};
