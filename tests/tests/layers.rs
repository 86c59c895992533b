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
    /// `stack`, `loadtest`, `cli`, `tests`: what composes services.
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
    (
        "citypass-verifier",
        "citypass-revocation-service",
        "the verifier's revocation step is tested against a real revocation service",
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

/// The top-level module a source file belongs to (`registry` for `src/registry.rs` and
/// `src/registry/x.rs`); `None` for the crate root.
fn top_module(src: &std::path::Path, file: &std::path::Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// The `crate::<module>` paths a file's code (not its comments or tests) names.
fn referenced_modules(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = Vec::new();
    for line in code.lines() {
        // Comments name modules without depending on them.
        let mut rest = line.split("//").next().unwrap_or_default();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("read a source folder")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A module path that leads back to where it started, if any.
fn find_cycle(graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next)
                && let Some(cycle) = visit(next, graph, path, done)
            {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_cycles_inside_a_crate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let mut checked = 0;
    let mut cycles = Vec::new();
    let mut crate_dirs: Vec<std::path::PathBuf> = Vec::new();
    for folder in ["crates", "services"] {
        crate_dirs.extend(
            std::fs::read_dir(root.join(folder))
                .expect("read")
                .flatten()
                .map(|entry| entry.path()),
        );
    }
    // Top-level composition crates whose library is split into modules.
    crate_dirs.extend(["stack", "loadtest"].map(|name| root.join(name)));
    for dir in crate_dirs {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in files {
            let Some(module) = top_module(&src, &file) else {
                continue;
            };
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let edges = graph.entry(module.clone()).or_default();
            edges.extend(
                referenced_modules(&text)
                    .into_iter()
                    .filter(|m| *m != module),
            );
        }
        checked += 1;
        if let Some(cycle) = find_cycle(&graph) {
            cycles.push(format!("{}: {}", dir.display(), cycle.join(" → ")));
        }
    }
    assert!(checked >= 14, "crates checked: {checked}");
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, Vec<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let cycle = find_cycle(&graph).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    let acyclic: BTreeMap<String, Vec<String>> = [("a", vec!["b"]), ("b", vec![])]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
    assert!(find_cycle(&acyclic).is_none());
    assert_eq!(
        referenced_modules(
            "use crate::tls::Tls; // crate::peer\n// crate::authz\nx(crate::config::X)"
        ),
        vec!["tls", "config"]
    );
}
