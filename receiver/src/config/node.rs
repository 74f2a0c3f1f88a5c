//! A YAML value with the position it came from.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

use super::ConfigError;

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
    Scalar {
        text: String,
        quoted: bool,
    },
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

impl Node {
    /// Whether this is `Null` (`~`, `null`, or an empty value).
    pub fn is_null(&self) -> bool {
        matches!(self.value, NodeValue::Null)
    }

    /// What this value is, for error messages: `null`, `"text"`, `a sequence`, `a map`.
    pub fn describe(&self) -> String {
        match &self.value {
            NodeValue::Null => "null".to_string(),
            NodeValue::Scalar { text, .. } => format!("{text:?}"),
            NodeValue::Seq(_) => "a sequence".to_string(),
            NodeValue::Map(_) => "a map".to_string(),
        }
    }

    /// Number of nodes in this tree (itself included).
    fn size(&self) -> usize {
        1 + match &self.value {
            NodeValue::Null | NodeValue::Scalar { .. } => 0,
            NodeValue::Seq(items) => items.iter().map(Node::size).sum(),
            NodeValue::Map(entries) => entries.iter().map(|(k, v)| k.size() + v.size()).sum(),
        }
    }
}

/// Deepest nesting accepted; decoding and merging recurse, so this bounds the stack.
const MAX_DEPTH: usize = 128;
/// Most nodes one file may produce, aliases expanded (stops "billion laughs").
const MAX_NODES: usize = 1_000_000;

/// Parses one YAML text into a [`Node`]. An empty text (or only comments)
/// gives a `Null` node at 1:1. Several documents, duplicate keys, nesting
/// deeper than [`MAX_DEPTH`] and YAML syntax errors are errors with position.
pub fn parse(file: &str, text: &str) -> Result<Node, ConfigError> {
    Builder::new(file).run(text)
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// Index of each scalar key in `entries`, for the duplicate check.
        scalar_keys: HashMap<String, usize>,
    },
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
}

impl Builder {
    fn new(file: &str) -> Self {
        Builder {
            file: Arc::from(file),
            stack: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            documents: 0,
            nodes: 0,
        }
    }

    fn mark(&self, m: &Marker) -> Mark {
        Mark {
            file: self.file.clone(),
            line: m.line(),
            column: m.col() + 1,
        }
    }

    fn error(&self, m: &Marker, message: impl Into<String>) -> ConfigError {
        ConfigError::new(Some(self.mark(m)), "", message)
    }

    fn run(mut self, text: &str) -> Result<Node, ConfigError> {
        let mut parser = Parser::new_from_str(text);
        while let Some(event) = parser.next_event() {
            let (event, span) =
                event.map_err(|e| self.error(e.marker(), format!("yaml: {}", e.info())))?;
            let at = &span.start;
            match event {
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart(_) => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(self.error(
                            at,
                            "a configuration file must hold one YAML document, found several",
                        ));
                    }
                }
                Event::Alias(id) => {
                    let (node, size) = self
                        .anchors
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| self.error(at, "yaml: unknown anchor"))?;
                    self.count(at, size)?;
                    self.complete(node, 0, at)?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    self.count(at, 1)?;
                    let tagged_str = tag
                        .as_ref()
                        .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                    let quoted = tagged_str || style != ScalarStyle::Plain;
                    let value = if !quoted && matches!(&*text, "~" | "null" | "Null" | "NULL" | "")
                    {
                        NodeValue::Null
                    } else {
                        NodeValue::Scalar {
                            text: text.into_owned(),
                            quoted,
                        }
                    };
                    let node = Node {
                        value,
                        mark: self.mark(at),
                    };
                    self.complete(node, anchor, at)?;
                }
                Event::SequenceStart(anchor, _) => {
                    self.push(
                        at,
                        Frame::Seq {
                            mark: self.mark(at),
                            anchor,
                            items: Vec::new(),
                        },
                    )?;
                }
                Event::MappingStart(anchor, _) => {
                    self.push(
                        at,
                        Frame::Map {
                            mark: self.mark(at),
                            anchor,
                            entries: Vec::new(),
                            key: None,
                            scalar_keys: HashMap::new(),
                        },
                    )?;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (node, anchor) = match self.stack.pop() {
                        Some(Frame::Seq {
                            mark,
                            anchor,
                            items,
                        }) => (
                            Node {
                                value: NodeValue::Seq(items),
                                mark,
                            },
                            anchor,
                        ),
                        Some(Frame::Map {
                            mark,
                            anchor,
                            entries,
                            ..
                        }) => (
                            Node {
                                value: NodeValue::Map(entries),
                                mark,
                            },
                            anchor,
                        ),
                        None => return Err(self.error(at, "yaml: unbalanced collection end")),
                    };
                    self.complete(node, anchor, at)?;
                }
            }
        }
        Ok(self.root.unwrap_or_else(|| Node {
            value: NodeValue::Null,
            mark: Mark {
                file: self.file.clone(),
                line: 1,
                column: 1,
            },
        }))
    }

    fn count(&mut self, at: &Marker, n: usize) -> Result<(), ConfigError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(self.error(
                at,
                format!("too many values (more than {MAX_NODES}, aliases expanded)"),
            ));
        }
        Ok(())
    }

    fn push(&mut self, at: &Marker, frame: Frame) -> Result<(), ConfigError> {
        self.count(at, 1)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(at, format!("values nested deeper than {MAX_DEPTH} levels")));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Hands a finished node to its parent (or makes it the root).
    fn complete(&mut self, node: Node, anchor: usize, at: &Marker) -> Result<(), ConfigError> {
        if anchor != 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_some() {
                    return Err(self.error(
                        at,
                        "a configuration file must hold one YAML document, found several",
                    ));
                }
                self.root = Some(node);
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                scalar_keys,
                ..
            }) => match key.take() {
                Some(k) => {
                    if let NodeValue::Scalar { text, .. } = &k.value {
                        scalar_keys.insert(text.clone(), entries.len());
                    }
                    entries.push((k, node))
                }
                None => {
                    // Scalar keys (nearly all) are found through the index,
                    // so a large map is checked in linear time.
                    let first = match &node.value {
                        NodeValue::Scalar { text, .. } => {
                            scalar_keys.get(text).and_then(|&i| entries.get(i))
                        }
                        _ => entries.iter().find(|(k, _)| same_key(k, &node)),
                    };
                    if let Some((first, _)) = first {
                        let message = match &node.value {
                            NodeValue::Scalar { text, .. } => {
                                format!("mapping key {text:?} already defined at {}", first.mark)
                            }
                            _ => format!("mapping key already defined at {}", first.mark),
                        };
                        return Err(ConfigError::new(Some(node.mark.clone()), "", message));
                    }
                    *key = Some(node);
                }
            },
        }
        Ok(())
    }
}

/// Keys are the same when their values are, wherever they were written.
fn same_key(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (NodeValue::Null, NodeValue::Null) => true,
        (NodeValue::Scalar { text: x, .. }, NodeValue::Scalar { text: y, .. }) => x == y,
        (NodeValue::Seq(x), NodeValue::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_key(a, b))
        }
        (NodeValue::Map(x), NodeValue::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same_key(ka, kb) && same_key(va, vb))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(node: &Node) -> (usize, usize) {
        (node.mark.line, node.mark.column)
    }

    #[test]
    fn parses_maps_sequences_and_scalars_with_positions() {
        let text = "receivers:\n  otlp:\n  other: {a: 1, b: \"2\"}\nlist:\n  - plain\n  - 'single'\n  - |\n    block\n";
        let root = parse("c.yaml", text).expect("parses");
        assert_eq!(at(&root), (1, 1));
        let receivers = root.get("receivers").expect("receivers");
        let otlp = receivers.get("otlp").expect("otlp");
        assert!(otlp.is_null());
        let NodeValue::Map(entries) = &receivers.value else {
            panic!("receivers is not a map")
        };
        assert_eq!(at(&entries[0].0), (2, 3));
        assert_eq!(at(&entries[1].0), (3, 3));
        let other = receivers.get("other").expect("other");
        assert_eq!(at(other), (3, 10));
        assert_eq!(
            other.get("a").map(|n| &n.value),
            Some(&NodeValue::Scalar {
                text: "1".into(),
                quoted: false
            })
        );
        assert_eq!(at(other.get("b").expect("b")), (3, 20));
        assert_eq!(
            other.get("b").map(|n| &n.value),
            Some(&NodeValue::Scalar {
                text: "2".into(),
                quoted: true
            })
        );
        let NodeValue::Seq(items) = &root.get("list").expect("list").value else {
            panic!("list is not a sequence")
        };
        let styles: Vec<(&str, bool, (usize, usize))> = items
            .iter()
            .map(|n| match &n.value {
                NodeValue::Scalar { text, quoted } => (text.as_str(), *quoted, at(n)),
                _ => panic!("not a scalar"),
            })
            .collect();
        assert_eq!(
            styles,
            [
                ("plain", false, (5, 5)),
                ("single", true, (6, 5)),
                ("block\n", true, (8, 5))
            ]
        );
        assert_eq!(&*root.mark.file, "c.yaml");
    }

    #[test]
    fn null_forms_and_tagged_strings() {
        let root = parse("n.yaml", "a: ~\nb: null\nc:\nd: 'null'\ne: !!str 5\n").expect("parses");
        for key in ["a", "b", "c"] {
            assert!(root.get(key).expect(key).is_null(), "{key}");
        }
        assert_eq!(root.get("d").and_then(Node::as_str), Some("null"));
        assert_eq!(
            root.get("e").map(|n| &n.value),
            Some(&NodeValue::Scalar {
                text: "5".into(),
                quoted: true
            })
        );
    }

    #[test]
    fn empty_text_is_null() {
        let root = parse("e.yaml", "# only a comment\n").expect("parses");
        assert!(root.is_null());
        assert_eq!(root.mark.to_string(), "e.yaml:1:1");
    }

    #[test]
    fn duplicate_keys_in_a_large_map_are_found() {
        let mut text: String = (0..20_000).map(|i| format!("k{i}: {i}\n")).collect();
        text.push_str("k17: again\n");
        let e = parse("big.yaml", &text).expect_err("duplicate");
        assert!(
            e.to_string()
                .contains("\"k17\" already defined at big.yaml:18:1"),
            "{e}"
        );
        let mut ok: String = (0..20_000).map(|i| format!("k{i}: {i}\n")).collect();
        ok.push_str("last: 1\n");
        assert!(parse("big.yaml", &ok).is_ok());
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("d.yaml", "a: 1\nb:\n  x: 1\n  x: 2\n").expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "d.yaml:4:3: mapping key \"x\" already defined at d.yaml:3:3"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("s.yaml", "a: [1, 2\nb: 3\n").expect_err("syntax error");
        let text = err.to_string();
        assert!(text.starts_with("s.yaml:"), "{text}");
        assert!(text.contains("yaml: "), "{text}");
        let err = parse("t.yaml", "a: 1\n  b: 2\n").expect_err("bad indentation");
        assert_eq!(err.mark.as_ref().map(|m| m.line), Some(2), "{err}");
    }

    #[test]
    fn several_documents_are_an_error() {
        let err = parse("m.yaml", "a: 1\n---\nb: 2\n").expect_err("two documents");
        assert_eq!(
            err.to_string(),
            "m.yaml:2:1: a configuration file must hold one YAML document, found several"
        );
    }

    #[test]
    fn aliases_are_resolved() {
        let root = parse("a.yaml", "base: &b {x: 1}\ncopy: *b\n").expect("parses");
        assert_eq!(
            root.get("copy")
                .and_then(|c| c.get("x"))
                .and_then(Node::as_str),
            Some("1")
        );
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            bomb.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                [prev.as_str(); 10].join(", ")
            ));
        }
        let err = parse("bomb.yaml", &bomb).expect_err("too big");
        assert!(err.message.contains("too many values"), "{err}");

        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = parse("deep.yaml", &deep).expect_err("too deep");
        assert!(err.message.contains("nested deeper"), "{err}");
    }
}
