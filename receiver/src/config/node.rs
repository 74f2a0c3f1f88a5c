//! A YAML value with the position it came from.

use std::fmt;
use std::sync::Arc;

/// Where a value was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub file: Arc<str>,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    /// `~`, `null`, or nothing (`otlp:` with no body).
    Null,
    /// A scalar as written, after `${env:...}` expansion. Typed on decoding:
    /// a plain scalar may become a bool or a number, a quoted one is a string.
    Scalar { text: String, quoted: bool },
    Seq(Vec<Node>),
    /// Keys in file order.
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub mark: Mark,
}

impl Node {
    /// The scalar's text, when this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value under `key`, when this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}
