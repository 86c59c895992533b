//! Who may call each RPC of the payments service (see `citypass_runtime::authz`).
//!
//! Taps and voids come from the verifier only, with its service certificate: it has
//! checked the rider's code at the gate and passes the transit account it read. So do
//! offline gates' taps (RecordOfflineTap), which the verifier checked as of their scan
//! time when the gate uploaded them; their times are bounded by the late window. The
//! citizen's own calls are device-signed, like IssueToken: the layer admits a request
//! carrying a device proof and the handler checks it (`crate::citizen`: signature,
//! freshness, single-use nonce, the device bound, its transit account at identity).
//! The daily settlement is read by operators with the auditor role. A provider's
//! notification (NotifyCharge) is proven by the provider's signature over it, which
//! the handler checks before anything else (`crate::notification`): whoever delivers
//! it (the provider, or the edge receiving its callbacks) is not trusted for it.

use citypass_runtime::{Allow, Policy, Role, Rule};

const VERIFIER: &[Allow] = &[Allow::Service("verifier")];
const CITIZEN: &[Allow] = &[Allow::DeviceSigned];

/// The table.
pub const AUTHORIZATION: Policy = Policy {
    service: "citypass.v1.PaymentsService",
    rules: &[
        Rule {
            method: "TapIn",
            allow: VERIFIER,
        },
        Rule {
            method: "TapOut",
            allow: VERIFIER,
        },
        Rule {
            method: "RecordOfflineTap",
            allow: VERIFIER,
        },
        Rule {
            method: "LinkAccount",
            allow: CITIZEN,
        },
        Rule {
            method: "UnlinkAccount",
            allow: CITIZEN,
        },
        Rule {
            method: "GetLink",
            allow: CITIZEN,
        },
        Rule {
            method: "GetTrips",
            allow: CITIZEN,
        },
        Rule {
            method: "GetArrears",
            allow: CITIZEN,
        },
        Rule {
            method: "RepayArrears",
            allow: CITIZEN,
        },
        Rule {
            method: "VoidTap",
            allow: VERIFIER,
        },
        Rule {
            method: "NotifyCharge",
            allow: &[Allow::ProviderSigned],
        },
        Rule {
            method: "GetSettlement",
            allow: &[Allow::Role(Role::Auditor)],
        },
    ],
};
