//! A service's authorisation table: for each RPC, who may call it.

use crate::caller::{Principal, Role};

/// Who may call an RPC. An RPC's entry lists one or more; any one suffices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Anyone, with or without a certificate (the public key set, health).
    Anyone,
    /// A citizen's app before it has a bound device (enrolment, binding): anyone,
    /// under the tighter per-address rate limit of anonymous callers.
    Citizen,
    /// The subject's own bound device: the request carries a device signature, which
    /// the handler checks first, before any other work (as IssueToken does).
    DeviceSigned,
    /// A payment provider's notification: the request carries the provider's
    /// signature, which the handler checks first, before any other work (NotifyCharge).
    ProviderSigned,
    /// The named citypass service (`spiffe://citypass/service/<name>`).
    Service(&'static str),
    /// Any gate (`spiffe://citypass/gate/<id>`); the handler may narrow it to the
    /// gate named in the request.
    AnyGate,
    /// An operator holding this role.
    Role(Role),
}

impl Allow {
    /// Whether this entry admits callers by who they are (a service, a gate, a role),
    /// rather than letting anyone through to a handler that checks them itself.
    pub(crate) fn names_a_principal(self) -> bool {
        matches!(self, Allow::Service(_) | Allow::AnyGate | Allow::Role(_))
    }

    pub(crate) fn admits(self, principal: Option<&Principal>) -> bool {
        match (self, principal) {
            (Allow::Anyone | Allow::Citizen | Allow::DeviceSigned | Allow::ProviderSigned, _) => {
                true
            }
            (Allow::Service(name), Some(Principal::Service(service))) => service == name,
            (Allow::AnyGate, Some(Principal::Gate(_))) => true,
            (Allow::Role(role), Some(Principal::Operator { roles, .. })) => roles.contains(&role),
            _ => false,
        }
    }
}

/// One RPC's entry.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The RPC's method name (`Revoke`).
    pub method: &'static str,
    /// Who may call it.
    pub allow: &'static [Allow],
}

/// A service's authorisation table.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The full gRPC service name (`citypass.v1.RevocationService`).
    pub service: &'static str,
    /// One entry per RPC.
    pub rules: &'static [Rule],
}

impl Policy {
    /// The entry for `method`, if the table has one.
    pub fn rule(&self, method: &str) -> Option<&'static Rule> {
        self.rules.iter().find(|rule| rule.method == method)
    }
}
