//! The Kubernetes manifests as they are applied: an overlay of `k8s/` rendered by
//! `kubectl kustomize`, for `tests/manifests.rs` (the manifests held to the services'
//! configurations) and `tests/launch.rs` (a service started from its Deployment).
//!
//! kubectl comes from scripts/test (`CITYPASS_TEST_KUBECTL`, the tools venv), else from
//! PATH; without it these tests fail, saying so.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// Runs a tool scripts/test installed (the path in `variable`, else `name` on PATH).
pub fn run_tool(variable: &str, name: &str, args: &[&OsStr]) -> Output {
    let program = std::env::var_os(variable).map_or_else(|| PathBuf::from(name), PathBuf::from);
    Command::new(&program)
        .args(args)
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {program:?} ({err}): scripts/test installs it into the tools venv \
             and sets {variable}"
            )
        })
}

/// `k8s/overlays/<overlay>` as kubectl renders it: the text, and each object.
pub fn render(overlay: &str) -> (String, Vec<Value>) {
    let dir = repo().join("k8s/overlays").join(overlay);
    let out = run_tool(
        "CITYPASS_TEST_KUBECTL",
        "kubectl",
        &["kustomize".as_ref(), dir.as_os_str()],
    );
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 manifests");
    let objects = serde_saphyr::from_multiple(&text).expect("YAML documents");
    (text, objects)
}
