//! Who may call each RPC of the revocation service (see `citypass_runtime::authz`).
//!
//! Writes are operators' only; a key revocation additionally needs `key-admin`, which
//! the handler checks before any other work (the table admits either role, since the
//! target kind is in the request). The log is read by the services that follow it (the
//! issuer and payments for citizens' devices, the verifier for codes), by
//! auditors, and (WatchRevocations and GetRevocationSnapshot) by gates, which keep offline sets.

use citypass_runtime::{Allow, Policy, Role, Rule};

/// The table.
pub const AUTHORIZATION: Policy = Policy {
    service: "citypass.v1.RevocationService",
    rules: &[
        Rule {
            method: "Revoke",
            allow: &[Allow::Role(Role::Revoker), Allow::Role(Role::KeyAdmin)],
        },
        Rule {
            method: "Reinstate",
            allow: &[Allow::Role(Role::Revoker)],
        },
        Rule {
            method: "ListRevocations",
            allow: READERS,
        },
        Rule {
            method: "WatchRevocations",
            allow: &[
                Allow::Service("issuer"),
                Allow::Service("verifier"),
                Allow::Service("payments"),
                Allow::AnyGate,
                Allow::Role(Role::Auditor),
                Allow::Role(Role::Revoker),
            ],
        },
        Rule {
            method: "GetRevocationSnapshot",
            allow: &[
                Allow::Service("verifier"),
                Allow::AnyGate,
                Allow::Role(Role::Auditor),
                Allow::Role(Role::Revoker),
            ],
        },
    ],
};

/// Who reads the log page by page.
const READERS: &[Allow] = &[
    Allow::Service("issuer"),
    Allow::Service("verifier"),
    Allow::Service("payments"),
    Allow::Role(Role::Auditor),
    Allow::Role(Role::Revoker),
];
