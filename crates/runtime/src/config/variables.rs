//! `<PREFIX>_…` environment variables as a figment provider, in our convention.
//!
//! figment's own `Env` provider parses each value into a guessed type (`"12345"`
//! becomes a number, `"[a]"` a list), which turns a password or a log filter of digits
//! into the wrong type before the field is known. Here every value stays text, and the
//! loader extracts *lossily*, so a text leaf becomes a number, a bool or a list element
//! only when the field it lands in asks for one: the type comes from the field, never
//! from the look of the value. An empty value unsets an optional key. The provider also
//! remembers which variable set which key, so that an error names the variable.

use std::collections::BTreeMap;
use std::ffi::OsString;

use figment::value::{Dict, Empty, Map, Tag, Value};
use figment::{Metadata, Profile, Provider};

use super::ConfigError;

/// The name figment's errors carry for values from here.
pub(crate) const NAME: &str = "environment variable";

/// The variables under one prefix, each with the key path it sets.
pub(crate) struct Variables {
    /// `(variable, key path, value)`, shallow keys first.
    vars: Vec<(String, Vec<String>, String)>,
}

impl Variables {
    /// Collects `vars` under `<env_prefix>_`, leaving out `<PREFIX>_CONFIG` (the file's
    /// path) and `<PREFIX>_CLI_…` (the `citypass` command's own settings).
    pub(crate) fn collect<I>(env_prefix: &str, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let prefix = format!("{env_prefix}_");
        let reserved = format!("{env_prefix}_CONFIG");
        let command_line = format!("{env_prefix}_CLI_");
        let mut collected = Vec::new();
        for (name, value) in vars {
            // Variables of other programs may be anything; only ours must be UTF-8.
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            if name == reserved || name.starts_with(&command_line) {
                continue;
            }
            let value = value.into_string().map_err(|_| ConfigError::Environment {
                var: name.to_owned(),
                reason: "value is not valid UTF-8",
            })?;
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::Environment {
                    var: name.to_owned(),
                    reason: "empty key segment (check for stray or tripled underscores)",
                });
            }
            collected.push((name.to_owned(), path, value));
        }
        // Deterministic whatever the environment's order: a parent set after its child
        // would otherwise erase the child.
        collected.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(Variables { vars: collected })
    }
}

impl Provider for Variables {
    fn metadata(&self) -> Metadata {
        let by_path: BTreeMap<Vec<String>, String> = self
            .vars
            .iter()
            .map(|(name, path, _)| (path.clone(), name.clone()))
            .collect();
        Metadata::named(NAME).interpolater(move |_, key| {
            // The variable that set this key or the nearest enclosing one.
            (0..=key.len())
                .rev()
                .find_map(|len| {
                    let prefix: Vec<String> = key[..len].iter().map(|s| (*s).to_owned()).collect();
                    by_path.get(&prefix).cloned()
                })
                .unwrap_or_else(|| key.join("."))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (_, path, value) in &self.vars {
            set(&mut root, path, leaf(value));
        }
        Ok(Profile::Default.collect(root))
    }
}

fn leaf(text: &str) -> Value {
    if text.is_empty() {
        Value::Empty(Tag::Default, Empty::None)
    } else {
        Value::from(text.to_owned())
    }
}

/// Sets `value` at `path`, turning whatever is in the way into a map.
fn set(dict: &mut Dict, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        dict.insert(first.clone(), value);
        return;
    }
    let child = dict
        .entry(first.clone())
        .or_insert_with(|| Value::from(Dict::new()));
    if !matches!(child, Value::Dict(..)) {
        *child = Value::from(Dict::new());
    }
    if let Value::Dict(_, inner) = child {
        set(inner, rest, value);
    }
}
