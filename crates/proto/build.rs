//! Compiles proto/citypass/v1/*.proto with protox (pure Rust, no system protoc) and
//! generates prost messages plus tonic clients and servers from the descriptor set.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let package_dir = proto_root.join("citypass/v1");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    // A directory here makes cargo rerun when any file under it changes (or is
    // added or removed).
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let files = proto_files(&package_dir)?;
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(&files)?;

    // The encoded set (with the well-known types it imports) is what
    // tonic-reflection serves.
    std::fs::write(
        out_dir.join("citypass_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

/// Every `.proto` file of the package, sorted so that generation is deterministic.
fn proto_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
