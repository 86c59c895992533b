//! Who may call each RPC of the verifier (see `citypass_runtime::authz`).
//!
//! Only gates, each with its own certificate (`spiffe://citypass/gate/<id>`). The table
//! admits any gate; the handler then takes the gate id from the certificate and refuses
//! a request naming another gate (`PERMISSION_DENIED`, `GATE_MISMATCH`).

use citypass_runtime::{Allow, Policy, Rule};

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
    ],
};
