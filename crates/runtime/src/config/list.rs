//! Lists that can be set from one environment variable, comma-separated.
//!
//! In the file a list is a YAML sequence; a variable holds text, so `CITYPASS_PEERS=a:1,b:2`
//! sets the list `[a:1, b:2]`. The split is asked for by the field (with
//! `#[serde(deserialize_with = "citypass_runtime::config::list::deserialize")]`), never
//! guessed from a comma in the value: a log filter such as `info,citypass=debug` stays
//! one string.

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrText<T> {
    List(Vec<T>),
    Text(String),
}

/// Serde adapter for a `Vec<String>` field: a sequence, or one comma-separated string.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match ListOrText::<String>::deserialize(deserializer)? {
        ListOrText::List(items) => items,
        ListOrText::Text(text) if text.trim().is_empty() => Vec::new(),
        ListOrText::Text(text) => text.split(',').map(|s| s.trim().to_owned()).collect(),
    })
}
