//! Writing certificate and key files so that no reader sees half a file and no key is
//! readable by others, even for a moment.

use std::path::Path;

use crate::error::{PkiError, io};

/// Writes `text` to `path` through a fresh temporary file (created exclusively, mode
/// 0600, beside `path`) and a rename, so that a reader never sees half a file and a
/// private key is never readable by others, even for a moment. Public files are
/// opened to 0644 before the rename.
pub fn write_file(path: &Path, text: &str, private: bool) -> Result<(), PkiError> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io("create a file in", dir))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .map_err(io("write", path))?;
    if !private {
        publish(file.path())?;
    }
    file.persist(path)
        .map_err(|e| io("rename onto", path)(e.error))?;
    Ok(())
}

#[cfg(unix)]
fn publish(path: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(io("set permissions of", path))
}

#[cfg(not(unix))]
fn publish(_path: &Path) -> Result<(), PkiError> {
    Ok(())
}
