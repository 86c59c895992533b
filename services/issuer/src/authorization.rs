//! Who may call each RPC of the issuer (see `citypass_runtime::authz`).
//!
//! Codes and certificates go to the subject's own bound device: the request is signed
//! by the device key, and the handler checks that signature (method, freshness, nonce,
//! body hash) before it does anything else. The public key set is public.

use citypass_runtime::{Allow, Policy, Rule};

/// The table.
pub const AUTHORIZATION: Policy = Policy {
    service: "citypass.v1.IssuerService",
    rules: &[
        Rule {
            method: "IssueToken",
            allow: &[Allow::DeviceSigned],
        },
        Rule {
            method: "IssueDeviceCertificate",
            allow: &[Allow::DeviceSigned],
        },
        Rule {
            method: "GetKeySet",
            allow: &[Allow::Anyone],
        },
    ],
};
