//! The untyped configuration tree that the YAML file and the environment are merged into.
//!
//! Merging has to happen before typing: an environment variable is only text, and whether
//! `CITYPASS_SERVER__CONCURRENCY_LIMIT=64` is a number or a string is known only to the
//! target type. So the file is read into a [`Node`] tree whose leaves are text, variables
//! overwrite leaves, and then the tree is deserialized *type-directed*: a leaf becomes an
//! integer when the field asks for an integer, a string when it asks for a string. That is
//! also how YAML itself treats plain scalars.
//!
//! Errors carry the dotted key path and, for leaves that came from the environment, the
//! variable's name, so that a bad value can be found without guessing.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// One node of the merged configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// YAML `~`, `null` or an empty value.
    Null,
    /// Any scalar, kept as text until a type asks for it.
    Scalar {
        text: String,
        env: Option<String>,
    },
    Seq(Vec<Node>),
    Map(BTreeMap<String, Node>),
}

impl Node {
    fn file_scalar(text: impl Into<String>) -> Self {
        Node::Scalar {
            text: text.into(),
            env: None,
        }
    }

    /// The environment variable this leaf came from, if it did.
    fn env_var(&self) -> Option<&str> {
        match self {
            Node::Scalar { env, .. } => env.as_deref(),
            _ => None,
        }
    }

    /// Sets `value` at `path`, turning whatever is in the way into a map: an environment
    /// variable always wins over the file.
    pub(crate) fn set(&mut self, path: &[String], value: Node) {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return;
        };
        if !matches!(self, Node::Map(_)) {
            *self = Node::Map(BTreeMap::new());
        }
        if let Node::Map(map) = self {
            map.entry(first.clone())
                .or_insert(Node::Null)
                .set(rest, value);
        }
    }
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::file_scalar(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::file_scalar(v.to_string()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::file_scalar(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::file_scalar(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(Node::file_scalar(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::file_scalar(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::file_scalar(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::file_scalar(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<Node>()? {
            let key = match key {
                Node::Scalar { text, .. } => text,
                _ => return Err(de::Error::custom("mapping keys must be scalars")),
            };
            let value = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            map.insert(key, value);
        }
        Ok(Node::Map(map))
    }
}

/// A typing error, located by key path and (when known) environment variable.
#[derive(Debug)]
pub(crate) struct TreeError {
    /// Innermost segment first: segments are pushed while the error bubbles outwards.
    path_rev: Vec<String>,
    pub(crate) env: Option<String>,
    pub(crate) message: String,
}

impl TreeError {
    /// The dotted key path, outermost first (`server.request_timeout`).
    pub(crate) fn key(&self) -> String {
        let mut segments = self.path_rev.clone();
        segments.reverse();
        segments.join(".")
    }

    fn under(mut self, segment: &str, env: Option<&str>) -> Self {
        self.path_rev.push(segment.to_owned());
        if self.env.is_none() {
            self.env = env.map(str::to_owned);
        }
        self
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TreeError {}

impl de::Error for TreeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TreeError {
            path_rev: Vec::new(),
            env: None,
            message: msg.to_string(),
        }
    }
}

/// Deserializes a [`Node`] into whatever type asks, parsing leaves on demand.
pub(crate) struct NodeDeserializer(pub(crate) Node);

impl NodeDeserializer {
    fn scalar<'de, V: Visitor<'de>>(self, visitor: &V) -> Result<String, TreeError> {
        match self.0 {
            Node::Scalar { text, .. } => Ok(text),
            other => Err(unexpected(&other, visitor)),
        }
    }
}

fn unexpected<'de, V: Visitor<'de>>(node: &Node, visitor: &V) -> TreeError {
    let unexpected = match node {
        Node::Null => de::Unexpected::Unit,
        Node::Scalar { text, .. } => de::Unexpected::Str(text),
        Node::Seq(_) => de::Unexpected::Seq,
        Node::Map(_) => de::Unexpected::Map,
    };
    de::Error::invalid_type(unexpected, visitor)
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident : $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
            let text = self.scalar(&visitor)?;
            match text.trim().parse::<$ty>() {
                Ok(v) => visitor.$visit(v),
                Err(_) => Err(de::Error::invalid_value(de::Unexpected::Str(&text), &visitor)),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for NodeDeserializer {
    type Error = TreeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self.0 {
            Node::Null => visitor.visit_unit(),
            Node::Scalar { text, .. } => {
                if let Ok(b) = parse_bool(&text) {
                    visitor.visit_bool(b)
                } else if let Ok(i) = text.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(u) = text.parse::<u64>() {
                    visitor.visit_u64(u)
                } else if looks_like_float(&text)
                    && let Ok(f) = text.parse::<f64>()
                {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_string(text)
                }
            }
            Node::Seq(items) => visitor.visit_seq(SeqNodes::new(items)),
            Node::Map(map) => visitor.visit_map(MapNodes::new(map)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        let text = self.scalar(&visitor)?;
        match parse_bool(&text) {
            Ok(b) => visitor.visit_bool(b),
            Err(()) => Err(de::Error::invalid_value(
                de::Unexpected::Str(&text),
                &visitor,
            )),
        }
    }

    parse_number! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        let text = self.scalar(&visitor)?;
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(de::Error::invalid_value(
                de::Unexpected::Str(&text),
                &visitor,
            )),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        let text = self.scalar(&visitor)?;
        visitor.visit_string(text)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        let text = self.scalar(&visitor)?;
        visitor.visit_byte_buf(text.into_bytes())
    }

    /// `~`/`null` in the file, or an *empty* environment variable, mean "not set": that is
    /// the only way to unset an optional value from the environment.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match &self.0 {
            Node::Null => visitor.visit_none(),
            Node::Scalar { text, env } if env.is_some() && text.is_empty() => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self.0 {
            Node::Null => visitor.visit_unit(),
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        visitor.visit_newtype_struct(self)
    }

    /// A scalar where a list is expected is split on commas: lists can be given in one
    /// environment variable (`CITYPASS_PEERS=a:1,b:2`).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self.0 {
            Node::Seq(items) => visitor.visit_seq(SeqNodes::new(items)),
            Node::Null => visitor.visit_seq(SeqNodes::new(Vec::new())),
            Node::Scalar { text, env } => {
                let items = if text.trim().is_empty() {
                    Vec::new()
                } else {
                    text.split(',')
                        .map(|part| Node::Scalar {
                            text: part.trim().to_owned(),
                            env: env.clone(),
                        })
                        .collect()
                };
                visitor.visit_seq(SeqNodes::new(items))
            }
            other @ Node::Map(_) => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        self.deserialize_seq(visitor)
    }

    /// An empty section (`server:` with nothing under it) is an empty map, so that every
    /// field of it takes its default.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self.0 {
            Node::Map(map) => visitor.visit_map(MapNodes::new(map)),
            Node::Null => visitor.visit_map(MapNodes::new(BTreeMap::new())),
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        match self.0 {
            Node::Scalar { text, .. } => {
                visitor.visit_enum(IntoDeserializer::<TreeError>::into_deserializer(text))
            }
            Node::Map(map) if map.len() == 1 => {
                let Some((variant, value)) = map.into_iter().next() else {
                    return Err(de::Error::custom("expected one variant"));
                };
                visitor.visit_enum(NodeEnum { variant, value })
            }
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        visitor.visit_unit()
    }
}

/// YAML 1.2 core-schema booleans.
fn parse_bool(text: &str) -> Result<bool, ()> {
    match text {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(()),
    }
}

/// Guards `deserialize_any` against reading words such as `inf` or `NaN` as numbers.
fn looks_like_float(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
}

struct SeqNodes {
    items: std::iter::Enumerate<std::vec::IntoIter<Node>>,
}

impl SeqNodes {
    fn new(items: Vec<Node>) -> Self {
        SeqNodes {
            items: items.into_iter().enumerate(),
        }
    }
}

impl<'de> SeqAccess<'de> for SeqNodes {
    type Error = TreeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TreeError> {
        let Some((index, node)) = self.items.next() else {
            return Ok(None);
        };
        let env = node.env_var().map(str::to_owned);
        seed.deserialize(NodeDeserializer(node))
            .map(Some)
            .map_err(|e| e.under(&index.to_string(), env.as_deref()))
    }
}

struct MapNodes {
    entries: std::collections::btree_map::IntoIter<String, Node>,
    pending: Option<(String, Node)>,
}

impl MapNodes {
    fn new(map: BTreeMap<String, Node>) -> Self {
        MapNodes {
            entries: map.into_iter(),
            pending: None,
        }
    }
}

impl<'de> MapAccess<'de> for MapNodes {
    type Error = TreeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TreeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        // An unknown field fails here, at the key: name it and where it came from.
        let env = value.env_var().map(str::to_owned);
        let out = seed
            .deserialize(IntoDeserializer::<TreeError>::into_deserializer(
                key.clone(),
            ))
            .map_err(|e| e.under(&key, env.as_deref()))?;
        self.pending = Some((key, value));
        Ok(Some(out))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, TreeError> {
        let Some((key, node)) = self.pending.take() else {
            return Err(de::Error::custom("value requested before its key"));
        };
        let env = node.env_var().map(str::to_owned);
        seed.deserialize(NodeDeserializer(node))
            .map_err(|e| e.under(&key, env.as_deref()))
    }
}

struct NodeEnum {
    variant: String,
    value: Node,
}

impl<'de> EnumAccess<'de> for NodeEnum {
    type Error = TreeError;
    type Variant = NodeDeserializer;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDeserializer), TreeError> {
        let variant = seed.deserialize(IntoDeserializer::<TreeError>::into_deserializer(
            self.variant,
        ))?;
        Ok((variant, NodeDeserializer(self.value)))
    }
}

impl<'de> VariantAccess<'de> for NodeDeserializer {
    type Error = TreeError;

    fn unit_variant(self) -> Result<(), TreeError> {
        match self.0 {
            Node::Null => Ok(()),
            _ => Err(de::Error::custom("unit variant takes no value")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, TreeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        self.deserialize_map(visitor)
    }
}
