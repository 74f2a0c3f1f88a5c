//! Strict serde decoding of a [`Node`] tree, with collector-style errors.
//!
//! Plain scalars are typed on demand: a field that wants a string gets the
//! text as written (`8080` stays `"8080"`), a field that wants a number parses
//! it, and `deserialize_any` follows the YAML 1.2 core schema. Quoted scalars
//! are strings only. `Null` is `None`/unit, and an empty map or sequence where
//! one is wanted (so `batch:` alone means "all defaults").
//!
//! Every error carries the position of the offending node and the path to it
//! (`protocols::grpc::endpoint`, `include[2]`), relative to the node given to
//! [`from_node`]; the loader prefixes the component's own path.

use std::fmt::{self, Display};
use std::sync::LazyLock;

use regex::Regex;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::{ConfigError, Mark, Node, NodeValue};

/// Decodes `node` into `T`, strictly: unknown keys, wrong types and values out
/// of range are errors that say where.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, ConfigError> {
    T::deserialize(NodeDeserializer::new(node, String::new()))
        .map_err(|e| e.into_config_error(node))
}

/// Decodes an optional section the way the collector's `configoptional` does:
/// present (even empty, as in `grpc:`) means `Some` with defaults for what is
/// not written; absent means `None`. Use with
/// `#[serde(default, deserialize_with = "crate::config::some_when_present")]`.
pub fn some_when_present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: de::Deserializer<'de>,
    T: de::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A decoding error; position and path are filled in by the innermost node
/// that sees it without them.
#[derive(Debug)]
pub struct Error {
    mark: Option<Mark>,
    path: Option<String>,
    message: String,
    /// Set by serde's `deny_unknown_fields`: the key it rejected and the keys it knows.
    unknown_field: Option<&'static [&'static str]>,
}

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Error {
            mark: None,
            path: None,
            message: message.into(),
            unknown_field: None,
        }
    }

    fn at(mut self, mark: &Mark, path: &str) -> Self {
        if self.mark.is_none() {
            self.mark = Some(mark.clone());
        }
        if self.path.is_none() {
            self.path = Some(path.to_string());
        }
        self
    }

    fn into_config_error(self, root: &Node) -> ConfigError {
        ConfigError::new(
            Some(self.mark.unwrap_or_else(|| root.mark.clone())),
            self.path.unwrap_or_default(),
            self.message,
        )
    }
}

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::new(format!(
            "expected {exp}, got {}",
            describe_unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::new(format!(
            "invalid value {}: expected {exp}",
            describe_unexpected(&unexp)
        ))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Error::new(format!("expected {exp}, got {len} element(s)"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::new(format!(
            "unknown value {variant:?} (valid values: [{}])",
            expected.join(" ")
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error {
            unknown_field: Some(expected),
            ..Error::new(format!("has invalid keys: {field}"))
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Error::new(format!("missing required key {field:?}"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Error::new(format!("key {field:?} is set more than once"))
    }
}

fn describe_unexpected(u: &de::Unexpected<'_>) -> String {
    match u {
        de::Unexpected::Unit | de::Unexpected::Option => "null".to_string(),
        de::Unexpected::Seq => "a sequence".to_string(),
        de::Unexpected::Map => "a map".to_string(),
        de::Unexpected::Str(s) => format!("{s:?}"),
        de::Unexpected::Bool(b) => b.to_string(),
        de::Unexpected::Unsigned(n) => n.to_string(),
        de::Unexpected::Signed(n) => n.to_string(),
        de::Unexpected::Float(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}::{key}")
    }
}

/// A plain scalar's type under the YAML 1.2 core schema.
enum Plain {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str,
}

static FLOAT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").ok());

fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`, with `_` anywhere ignored
/// as the collector's YAML parser (yaml.v3) does (`65_536`, as the
/// file_storage README writes it). `None` when not an integer or too large
/// for 128 bits.
fn parse_int(text: &str) -> Option<i128> {
    if text.contains('_') {
        return parse_int(&text.replace('_', ""))
            .filter(|_| text.bytes().any(|b| b.is_ascii_digit()));
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| i128::from_str_radix(hex, 16).ok())
            .flatten();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return (!oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)))
            .then(|| i128::from_str_radix(oct, 8).ok())
            .flatten();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    if FLOAT.as_ref().is_some_and(|re| re.is_match(text)) {
        text.parse().ok()
    } else {
        None
    }
}

fn classify(text: &str) -> Plain {
    if is_null_text(text) {
        Plain::Null
    } else if let Some(b) = parse_bool(text) {
        Plain::Bool(b)
    } else if let Some(n) = parse_int(text) {
        Plain::Int(n)
    } else if let Some(f) = parse_float(text) {
        Plain::Float(f)
    } else {
        Plain::Str
    }
}

/// A `serde::Deserializer` over one node.
pub struct NodeDeserializer<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDeserializer<'a> {
    fn new(node: &'a Node, path: String) -> Self {
        NodeDeserializer { node, path }
    }

    fn fail(&self, message: impl Into<String>) -> Error {
        Error::new(message).at(&self.node.mark, &self.path)
    }

    fn wrong_type(&self, expected: &str) -> Error {
        self.fail(format!("expected {expected}, got {}", self.node.describe()))
    }

    /// Null, or a plain scalar that reads as null (`${env:UNSET}` expands to one).
    fn is_nullish(&self) -> bool {
        match &self.node.value {
            NodeValue::Null => true,
            NodeValue::Scalar {
                text,
                quoted: false,
            } => is_null_text(text),
            _ => false,
        }
    }

    fn plain_text(&self) -> Option<&'a str> {
        match &self.node.value {
            NodeValue::Scalar {
                text,
                quoted: false,
            } => Some(text),
            _ => None,
        }
    }

    fn integer<T: TryFrom<i128>>(&self, what: &str, min: i128, max: i128) -> Result<T, Error> {
        let n = self
            .plain_text()
            .and_then(parse_int)
            .ok_or_else(|| self.wrong_type("an integer"))?;
        T::try_from(n)
            .map_err(|_| self.fail(format!("expected {what} between {min} and {max}, got {n}")))
    }

    fn float(&self) -> Result<f64, Error> {
        let text = self
            .plain_text()
            .ok_or_else(|| self.wrong_type("a number"))?;
        parse_int(text)
            .map(|n| n as f64)
            .or_else(|| parse_float(text))
            .ok_or_else(|| self.wrong_type("a number"))
    }

    fn seq_access(&self) -> Option<SeqDeserializer<'a>> {
        match &self.node.value {
            NodeValue::Seq(items) => Some(SeqDeserializer {
                items: items.iter().enumerate(),
                path: self.path.clone(),
            }),
            _ if self.is_nullish() => Some(SeqDeserializer {
                items: [].iter().enumerate(),
                path: self.path.clone(),
            }),
            _ => None,
        }
    }

    fn map_access(&self) -> Option<MapDeserializer<'a>> {
        match &self.node.value {
            NodeValue::Map(entries) => Some(MapDeserializer {
                entries,
                next: 0,
                path: self.path.clone(),
            }),
            _ if self.is_nullish() => Some(MapDeserializer {
                entries: &[],
                next: 0,
                path: self.path.clone(),
            }),
            _ => None,
        }
    }
}

macro_rules! deserialize_integer {
    ($method:ident, $visit:ident, $ty:ty, $what:literal) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let n: $ty = self.integer($what, <$ty>::MIN as i128, <$ty>::MAX as i128)?;
            visitor
                .$visit(n)
                .map_err(|e: Error| e.at(&self.node.mark, &self.path))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Scalar { text, quoted: true } => visitor.visit_borrowed_str(text),
            NodeValue::Scalar {
                text,
                quoted: false,
            } => match classify(text) {
                Plain::Null => visitor.visit_unit(),
                Plain::Bool(b) => visitor.visit_bool(b),
                Plain::Int(n) => match (i64::try_from(n), u64::try_from(n)) {
                    (_, Ok(u)) => visitor.visit_u64(u),
                    (Ok(i), _) => visitor.visit_i64(i),
                    _ => visitor.visit_i128(n),
                },
                Plain::Float(f) => visitor.visit_f64(f),
                Plain::Str => visitor.visit_borrowed_str(text),
            },
            NodeValue::Seq(_) => return self.deserialize_seq(visitor),
            NodeValue::Map(_) => return self.deserialize_map(visitor),
        };
        result.map_err(|e: Error| e.at(&self.node.mark, &self.path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let b = self
            .plain_text()
            .and_then(parse_bool)
            .ok_or_else(|| self.wrong_type("a boolean (true or false)"))?;
        visitor
            .visit_bool(b)
            .map_err(|e: Error| e.at(&self.node.mark, &self.path))
    }

    deserialize_integer!(deserialize_i8, visit_i8, i8, "an integer");
    deserialize_integer!(deserialize_i16, visit_i16, i16, "an integer");
    deserialize_integer!(deserialize_i32, visit_i32, i32, "an integer");
    deserialize_integer!(deserialize_i64, visit_i64, i64, "an integer");
    deserialize_integer!(deserialize_i128, visit_i128, i128, "an integer");
    deserialize_integer!(deserialize_u8, visit_u8, u8, "an integer");
    deserialize_integer!(deserialize_u16, visit_u16, u16, "an integer");
    deserialize_integer!(deserialize_u32, visit_u32, u32, "an integer");
    deserialize_integer!(deserialize_u64, visit_u64, u64, "an integer");

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let n: u128 = self.integer("an integer", 0, i128::MAX)?;
        visitor
            .visit_u128(n)
            .map_err(|e: Error| e.at(&self.node.mark, &self.path))
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let f = self.float()?;
        visitor
            .visit_f32(f as f32)
            .map_err(|e: Error| e.at(&self.node.mark, &self.path))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let f = self.float()?;
        visitor
            .visit_f64(f)
            .map_err(|e: Error| e.at(&self.node.mark, &self.path))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Scalar { text, .. } => visitor
                .visit_borrowed_str(text)
                .map_err(|e: Error| e.at(&self.node.mark, &self.path)),
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Scalar { text, .. } => visitor
                .visit_borrowed_bytes(text.as_bytes())
                .map_err(|e: Error| e.at(&self.node.mark, &self.path)),
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_nullish() {
            visitor
                .visit_none()
                .map_err(|e: Error| e.at(&self.node.mark, &self.path))
        } else {
            let (mark, path) = (self.node.mark.clone(), self.path.clone());
            visitor
                .visit_some(self)
                .map_err(|e: Error| e.at(&mark, &path))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_nullish() {
            visitor
                .visit_unit()
                .map_err(|e: Error| e.at(&self.node.mark, &self.path))
        } else {
            Err(self.wrong_type("null"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark.clone(), self.path.clone());
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: Error| e.at(&mark, &path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let access = self
            .seq_access()
            .ok_or_else(|| self.wrong_type("a sequence"))?;
        visitor
            .visit_seq(access)
            .map_err(|e: Error| e.at(&self.node.mark, &self.path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let access = self.map_access().ok_or_else(|| self.wrong_type("a map"))?;
        visitor
            .visit_map(access)
            .map_err(|e: Error| e.at(&self.node.mark, &self.path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            NodeValue::Scalar { text, .. } => visitor.visit_enum(text.as_str().into_deserializer()),
            NodeValue::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                visitor.visit_enum(EnumDeserializer {
                    key,
                    value,
                    path: self.path.clone(),
                })
            }
            _ => return Err(self.wrong_type("a string or a map with one key")),
        };
        result.map_err(|e: Error| e.at(&self.node.mark, &self.path))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct SeqDeserializer<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: String,
}

impl<'de> SeqAccess<'de> for SeqDeserializer<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some((i, item)) => seed
                .deserialize(NodeDeserializer::new(item, format!("{}[{i}]", self.path)))
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDeserializer<'a> {
    entries: &'a [(Node, Node)],
    /// Index of the next entry; its key has been handed out when `next_value` runs.
    next: usize,
    path: String,
}

impl MapDeserializer<'_> {
    /// Every key of this map that `expected` does not list, for the
    /// collector's `has invalid keys: a, b`.
    fn invalid_keys(&self, expected: &[&str]) -> Vec<String> {
        self.entries
            .iter()
            .map(|(k, _)| k.as_str().map_or_else(|| k.describe(), str::to_string))
            .filter(|k| !expected.contains(&k.as_str()))
            .collect()
    }
}

impl<'de> MapAccess<'de> for MapDeserializer<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(NodeDeserializer::new(key, self.path.clone()))
            .map(Some)
            .map_err(|mut e| {
                if let Some(expected) = e.unknown_field.take() {
                    let mut invalid = self.invalid_keys(expected);
                    if invalid.is_empty() {
                        // `expected` did not list an alias; keep serde's word.
                        return e;
                    }
                    invalid.dedup();
                    e.message = super::walk::invalid_keys_message(&invalid, expected);
                }
                e
            })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((key, value)) = self.next.checked_sub(1).and_then(|i| self.entries.get(i)) else {
            return Err(Error::new(
                "internal error: map value requested before its key",
            ));
        };
        let key_text = key.as_str().map_or_else(|| key.describe(), str::to_string);
        seed.deserialize(NodeDeserializer::new(value, join(&self.path, &key_text)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

/// `{variant: value}`.
struct EnumDeserializer<'a> {
    key: &'a Node,
    value: &'a Node,
    path: String,
}

impl<'de> EnumAccess<'de> for EnumDeserializer<'de> {
    type Error = Error;
    type Variant = NodeDeserializer<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Error> {
        let variant = seed.deserialize(NodeDeserializer::new(self.key, self.path.clone()))?;
        let key_text = self
            .key
            .as_str()
            .map_or_else(|| self.key.describe(), str::to_string);
        Ok((
            variant,
            NodeDeserializer::new(self.value, join(&self.path, &key_text)),
        ))
    }
}

impl<'de> VariantAccess<'de> for NodeDeserializer<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::config::node::parse;
    use crate::config::{some_when_present, GoDuration};

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        #[default]
        Fast,
        Slow,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tls {
        cert_file: String,
        #[serde(default)]
        insecure: bool,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Server {
        endpoint: String,
        port: u16,
        enabled: bool,
        ratio: f64,
        timeout: GoDuration,
        tags: Vec<String>,
        headers: BTreeMap<String, String>,
        mode: Mode,
        tls: Option<Tls>,
        name: Option<String>,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Protocols {
        #[serde(deserialize_with = "some_when_present")]
        grpc: Option<Server>,
        #[serde(deserialize_with = "some_when_present")]
        http: Option<Server>,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Receiver {
        protocols: Protocols,
    }

    fn decode<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
        from_node(&parse("r.yaml", text).expect("valid yaml"))
    }

    fn error<T: DeserializeOwned + fmt::Debug>(text: &str) -> String {
        decode::<T>(text).expect_err("must fail").to_string()
    }

    #[test]
    fn decodes_every_kind_of_field() {
        let server: Server = decode(
            "endpoint: 8080\nport: 8080\nenabled: true\nratio: 0.5\ntimeout: 1m30s\n\
             tags: [a, 'b']\nheaders: {x-token: abc, n: 1}\nmode: slow\n\
             tls: {cert_file: /c.pem}\nname: ~\n",
        )
        .expect("decodes");
        assert_eq!(
            server,
            Server {
                endpoint: "8080".into(),
                port: 8080,
                enabled: true,
                ratio: 0.5,
                timeout: GoDuration::from_secs(90),
                tags: vec!["a".into(), "b".into()],
                headers: [
                    ("n".to_string(), "1".to_string()),
                    ("x-token".to_string(), "abc".to_string())
                ]
                .into(),
                mode: Mode::Slow,
                tls: Some(Tls {
                    cert_file: "/c.pem".into(),
                    insecure: false
                }),
                name: None,
            }
        );
    }

    #[test]
    fn null_struct_means_defaults_and_present_sections_are_some() {
        assert_eq!(decode::<Server>("~").expect("defaults"), Server::default());
        let r: Receiver = decode("protocols:\n  grpc:\n").expect("decodes");
        assert_eq!(r.protocols.grpc, Some(Server::default()));
        assert_eq!(r.protocols.http, None);
    }

    #[test]
    fn quoted_scalars_are_strings_only() {
        assert_eq!(
            error::<Server>("port: \"8080\"\n"),
            "r.yaml:1:7: 'port' expected an integer, got \"8080\""
        );
        assert_eq!(
            error::<Server>("enabled: 'true'\n"),
            "r.yaml:1:10: 'enabled' expected a boolean (true or false), got \"true\""
        );
        assert_eq!(
            error::<Server>("enabled: yes\n"),
            "r.yaml:1:10: 'enabled' expected a boolean (true or false), got \"yes\""
        );
    }

    #[test]
    fn unknown_keys_point_at_the_key() {
        let text = "protocols:\n  grpc:\n    endpoint: x\n  htttp:\n    endpoint: y\n";
        assert_eq!(
            error::<Receiver>(text),
            "r.yaml:4:3: 'protocols' has invalid keys: htttp; did you mean \"http\"?"
        );
        assert_eq!(
            error::<Server>("endpoint: a\nfoo: 1\nbar: 2\n"),
            "r.yaml:2:1: has invalid keys: foo, bar"
        );
        // Unknown keys with an empty value are found too.
        assert_eq!(
            error::<Receiver>("protocols:\n  grpc:\n    nope:\n"),
            "r.yaml:3:5: 'protocols::grpc' has invalid keys: nope"
        );
    }

    #[test]
    fn wrong_types_point_at_the_value_with_its_path() {
        let text = "protocols:\n  grpc:\n    endpoint: [a, b]\n";
        assert_eq!(
            error::<Receiver>(text),
            "r.yaml:3:15: 'protocols::grpc::endpoint' expected a string, got a sequence"
        );
        assert_eq!(
            error::<Server>("tags:\n  - a\n  - {b: 1}\n"),
            "r.yaml:3:5: 'tags[1]' expected a string, got a map"
        );
        assert_eq!(
            error::<Server>("tags: a\n"),
            "r.yaml:1:7: 'tags' expected a sequence, got \"a\""
        );
        assert_eq!(
            error::<Server>("endpoint:\n"),
            "r.yaml:1:9: 'endpoint' expected a string, got null"
        );
    }

    #[test]
    fn numbers_are_range_checked() {
        assert_eq!(
            error::<Server>("port: 70000\n"),
            "r.yaml:1:7: 'port' expected an integer between 0 and 65535, got 70000"
        );
        assert_eq!(
            error::<Server>("port: -1\n"),
            "r.yaml:1:7: 'port' expected an integer between 0 and 65535, got -1"
        );
        assert_eq!(decode::<Server>("port: 0x10\n").expect("hex").port, 16);
        assert_eq!(
            decode::<Server>("port: 65_535\n")
                .expect("underscores")
                .port,
            65535
        );
        assert_eq!(
            decode::<Server>("ratio: 2\n").expect("int as float").ratio,
            2.0
        );
        assert_eq!(
            error::<Server>("ratio: fast\n"),
            "r.yaml:1:8: 'ratio' expected a number, got \"fast\""
        );
    }

    #[test]
    fn enums_durations_and_required_keys() {
        assert_eq!(
            error::<Server>("mode: medium\n"),
            "r.yaml:1:7: 'mode' unknown value \"medium\" (valid values: [fast slow])"
        );
        let err = error::<Server>("timeout: 5 sec\n");
        assert!(
            err.starts_with("r.yaml:1:10: 'timeout' invalid duration \"5 sec\""),
            "{err}"
        );
        assert_eq!(
            decode::<Server>("timeout: 1000\n")
                .expect("nanoseconds")
                .timeout,
            GoDuration(std::time::Duration::from_micros(1))
        );
        assert_eq!(
            error::<Server>("tls:\n  insecure: true\n"),
            "r.yaml:2:3: 'tls' missing required key \"cert_file\""
        );
    }

    #[test]
    fn untyped_values_follow_the_core_schema() {
        let values: BTreeMap<String, serde_json::Value> = decode(
            "a: 1\nb: true\nc: 1.5\nd: \"1\"\ne: ~\nf: x\ng: 0o17\nh: -3\ni: 1e3\nj: True\n",
        )
        .expect("decodes");
        let json = serde_json::to_string(&values).expect("json");
        assert_eq!(
            json,
            r#"{"a":1,"b":true,"c":1.5,"d":"1","e":null,"f":"x","g":15,"h":-3,"i":1000.0,"j":true}"#
        );
    }

    #[test]
    fn expanded_unset_variable_reads_as_absent() {
        let mut node =
            parse("r.yaml", "name: ${env:UNSET}\nendpoint: ${env:UNSET}\n").expect("parses");
        crate::config::env::expand(&mut node, &|_| None).expect("expands");
        let server: Server = from_node(&node).expect("decodes");
        assert_eq!(server.name, None);
        assert_eq!(server.endpoint, "");
    }
}
