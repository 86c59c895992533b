//! The YAML configuration file as a figment provider.
//!
//! The file is read and parsed here rather than by a figment format provider, so that an
//! unreadable file and malformed YAML are errors of their own ([`ConfigError::Read`],
//! [`ConfigError::Parse`], with line and column) at load time, and a duplicate key is
//! refused instead of the last one silently winning.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};

use super::ConfigError;

/// A parsed configuration file.
pub(crate) struct File {
    path: PathBuf,
    root: Dict,
}

impl File {
    /// Reads and parses `path`. An empty file is an empty configuration.
    pub(crate) fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parse_error = |source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        };
        let root = if text.trim().is_empty() {
            Dict::new()
        } else {
            // serde-saphyr refuses duplicate keys by default.
            match serde_saphyr::from_str::<Value>(&text).map_err(parse_error)? {
                Value::Dict(_, dict) => dict,
                _ => {
                    return Err(ConfigError::NotAMapping {
                        path: path.to_owned(),
                    });
                }
            }
        };
        Ok(File {
            path: path.to_owned(),
            root,
        })
    }
}

impl Provider for File {
    fn metadata(&self) -> Metadata {
        Metadata::from("config file", Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.root.clone()))
    }
}
