//! The authorisation matrix of one service, checked over real TLS.
//!
//! For every RPC of the service in the descriptor set, and every kind of caller (no
//! certificate, a certificate from another CA, an expired one, the wrong service, each
//! principal the table admits, an operator without the needed role, one with it), the
//! test calls the RPC with an empty request and checks who answered: refused by the
//! authorisation layer with the code the table implies, or let through to the handler
//! (whose answer to an empty request is its own business). An RPC without a table
//! entry fails the check: default deny must never hide a forgotten RPC.

use std::net::SocketAddr;

use citypass_runtime::authz::REFUSED_BY;
use citypass_runtime::{Allow, Policy, Role};
use prost::Message as _;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

use crate::tls::{As, TestPki};

/// One RPC of the descriptor set.
#[derive(Debug, Clone)]
pub struct Method {
    /// `Revoke`.
    pub name: String,
    /// Whether the server streams its answer.
    pub server_streaming: bool,
    /// Whether the client streams its request.
    pub client_streaming: bool,
}

/// The RPCs of `service` (`citypass.v1.RevocationService`) in an encoded descriptor set.
pub fn methods(descriptor_set: &[u8], service: &str) -> Vec<Method> {
    let set = prost_types::FileDescriptorSet::decode(descriptor_set).expect("descriptor set");
    let mut found = Vec::new();
    for file in &set.file {
        for s in &file.service {
            if format!("{}.{}", file.package(), s.name()) == service {
                for m in &s.method {
                    found.push(Method {
                        name: m.name().to_owned(),
                        server_streaming: m.server_streaming(),
                        client_streaming: m.client_streaming(),
                    });
                }
            }
        }
    }
    assert!(!found.is_empty(), "{service} is not in the descriptor set");
    found
}

/// What a call's answer was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Refused by the authorisation layer with this code.
    Refused(Code),
    /// Let through to the handler.
    Handled,
}

/// What the table implies for `who` calling an RPC whose entry is `allow`.
pub fn expected(allow: &[Allow], who: &As) -> Outcome {
    match who {
        As::OtherCa(_) | As::Expired(_) => Outcome::Refused(Code::Unauthenticated),
        As::Nobody => {
            if allow.iter().any(|a| {
                matches!(
                    a,
                    Allow::Anyone | Allow::Citizen | Allow::DeviceSigned | Allow::ProviderSigned
                )
            }) {
                Outcome::Handled
            } else {
                Outcome::Refused(Code::Unauthenticated)
            }
        }
        other => {
            let principal = other.principal().expect("a valid identity");
            let admitted = allow.iter().any(|a| match (a, &principal) {
                (
                    Allow::Anyone | Allow::Citizen | Allow::DeviceSigned | Allow::ProviderSigned,
                    _,
                ) => true,
                (Allow::Service(n), citypass_runtime::Principal::Service(s)) => n == s,
                (Allow::AnyGate, citypass_runtime::Principal::Gate(_)) => true,
                (Allow::Role(r), citypass_runtime::Principal::Operator { roles, .. }) => {
                    roles.contains(r)
                }
                _ => false,
            });
            if admitted {
                Outcome::Handled
            } else {
                Outcome::Refused(Code::PermissionDenied)
            }
        }
    }
}

/// Every kind of caller worth trying against an RPC whose entry is `allow`.
pub fn callers(allow: &[Allow]) -> Vec<As> {
    let all_roles: &'static [Role] = &Role::ALL;
    let mut callers = vec![
        As::Nobody,
        As::OtherCa(Box::new(As::Operator(all_roles))),
        As::Expired(Box::new(As::Operator(all_roles))),
        As::Service("not-a-citypass-service"),
        As::Gate("gate-test-1"),
        As::Operator(&[]),
    ];
    for a in allow {
        match a {
            Allow::Service(name) => {
                callers.push(As::Service(name));
                callers.push(As::OtherCa(Box::new(As::Service(name))));
                callers.push(As::Expired(Box::new(As::Service(name))));
            }
            Allow::Role(role) => {
                let others: Vec<Role> = Role::ALL.into_iter().filter(|r| r != role).collect();
                callers.push(As::Operator(Box::leak(others.into_boxed_slice())));
                callers.push(As::Operator(Box::leak(vec![*role].into_boxed_slice())));
            }
            _ => {}
        }
    }
    callers
}

/// Calls `method` of `service` at `addr` as `who` with an empty request.
pub async fn call(
    pki: &TestPki,
    addr: SocketAddr,
    service: &str,
    method: &Method,
    who: &As,
) -> Outcome {
    let channel = pki.channel(addr, who);
    let mut grpc = tonic::client::Grpc::new(channel);
    let path: PathAndQuery = format!("/{service}/{}", method.name)
        .parse()
        .expect("a path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let status = match grpc.ready().await {
        Err(e) => {
            // A connection that fails never reaches the layer; the table never expects
            // that (certificates are checked after the handshake).
            eprintln!("connection failed: {e}");
            return Outcome::Refused(Code::Unknown);
        }
        Ok(()) => {
            let result = if method.client_streaming {
                grpc.streaming(
                    tonic::Request::new(futures::stream::empty::<()>()),
                    path,
                    codec,
                )
                .await
                .map(|_| ())
            } else if method.server_streaming {
                grpc.server_streaming(tonic::Request::new(()), path, codec)
                    .await
                    .map(|_| ())
            } else {
                grpc.unary(tonic::Request::new(()), path, codec)
                    .await
                    .map(|_| ())
            };
            match result {
                Ok(()) => return Outcome::Handled,
                Err(status) => status,
            }
        }
    };
    if status.metadata().get(REFUSED_BY).is_some() {
        Outcome::Refused(status.code())
    } else {
        Outcome::Handled
    }
}

/// Walks every RPC of `policy.service` in `descriptor_set` with every kind of caller;
/// returns one line per disagreement with the table (empty: all agree).
pub async fn check(
    pki: &TestPki,
    addr: SocketAddr,
    policy: &Policy,
    descriptor_set: &[u8],
) -> Vec<String> {
    let mut failures = Vec::new();
    for method in methods(descriptor_set, policy.service) {
        let Some(rule) = policy.rule(&method.name) else {
            failures.push(format!("{} has no authorisation entry", method.name));
            continue;
        };
        for who in callers(rule.allow) {
            let want = expected(rule.allow, &who);
            let got = call(pki, addr, policy.service, &method, &who).await;
            if got != want {
                failures.push(format!(
                    "{} as {who:?}: expected {want:?}, got {got:?}",
                    method.name
                ));
            }
        }
    }
    failures
}

/// [`check`] against the citypass API's descriptor set, panicking with every
/// disagreement: what each service's authorisation test runs.
pub async fn assert_table_holds(pki: &TestPki, addr: SocketAddr, policy: &Policy) {
    let failures = check(pki, addr, policy, citypass_proto::FILE_DESCRIPTOR_SET).await;
    assert!(
        failures.is_empty(),
        "{} disagrees with its table:\n{}",
        policy.service,
        failures.join("\n")
    );
}

/// A table that lets anyone call every RPC of `service`: for stand-ins and servers in
/// tests of their *callers* (a follower, a client), never for a test of the service's
/// own authorisation, which uses the service's real table.
pub fn open_to_anyone(service: &'static str) -> &'static Policy {
    let rules: Vec<citypass_runtime::Rule> = methods(citypass_proto_set(), service)
        .into_iter()
        .map(|m| citypass_runtime::Rule {
            method: Box::leak(m.name.into_boxed_str()),
            allow: &[Allow::Anyone],
        })
        .collect();
    Box::leak(Box::new(Policy {
        service,
        rules: Box::leak(rules.into_boxed_slice()),
    }))
}

fn citypass_proto_set() -> &'static [u8] {
    citypass_proto::FILE_DESCRIPTOR_SET
}
