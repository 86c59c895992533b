//! The dependency rule of docs/architecture.md ("Crates by layer"), checked over
//! `cargo metadata`: each workspace crate depends only on crates of its own layer or
//! below, services never on each other, and the code format on nothing of ours.

use std::collections::BTreeMap;
use std::process::Command;

/// A crate's layer, bottom first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// `crates/token`: no I/O, nothing of ours.
    Format,
    /// Shared libraries in `crates/`.
    Shared,
    /// `services/*`.
    Service,
    /// `stack`, `cli`, `tests`: what composes services.
    Composition,
}

/// Test-only dependencies that cross the rule, each with its reason.
const DEV_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "citypass-issuer",
        "citypass-revocation-service",
        "the issuer's follower is tested against a real revocation service",
    ),
    (
        "citypass-revocation-follow",
        "citypass-revocation-service",
        "the follower is tested against a real revocation service",
    ),
];

fn layer(manifest_dir: &str, root: &str) -> Layer {
    let relative = manifest_dir
        .strip_prefix(root)
        .unwrap_or(manifest_dir)
        .trim_start_matches('/');
    if relative == "crates/token" {
        Layer::Format
    } else if relative.starts_with("crates/") {
        Layer::Shared
    } else if relative.starts_with("services/") {
        Layer::Service
    } else {
        Layer::Composition
    }
}

#[test]
fn every_dependency_points_down_the_layers() {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let root = metadata["workspace_root"].as_str().expect("workspace root");
    let packages = metadata["packages"].as_array().expect("packages");
    let layers: BTreeMap<&str, Layer> = packages
        .iter()
        .map(|p| {
            let manifest = p["manifest_path"].as_str().expect("manifest path");
            let dir = manifest.trim_end_matches("/Cargo.toml");
            (p["name"].as_str().expect("name"), layer(dir, root))
        })
        .collect();
    assert!(layers.len() >= 15, "the workspace's crates: {layers:?}");

    let mut violations = Vec::new();
    for package in packages {
        let name = package["name"].as_str().expect("name");
        let own = layers[name];
        for dependency in package["dependencies"].as_array().expect("dependencies") {
            let target = dependency["name"].as_str().expect("dependency name");
            let Some(&theirs) = layers.get(target) else {
                continue; // not ours
            };
            let dev = dependency["kind"].as_str() == Some("dev");
            let allowed = match own {
                Layer::Format => false,
                Layer::Shared => theirs <= Layer::Shared,
                Layer::Service => theirs < Layer::Service,
                Layer::Composition => true,
            };
            let excepted = dev
                && DEV_EXCEPTIONS
                    .iter()
                    .any(|(from, to, _)| *from == name && *to == target);
            if !allowed && !excepted {
                violations.push(format!(
                    "{name} ({own:?}) depends on {target} ({theirs:?}){}",
                    if dev { " for its tests" } else { "" }
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}
