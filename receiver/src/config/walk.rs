//! Reading a [`Node`] tree by hand (the parts no serde type covers: section
//! maps keyed by component id, id lists), collecting every error found.

use std::str::FromStr;

use super::suggest::{closest, did_you_mean};
use super::{ComponentId, ConfigError, Mark, Node, NodeValue};

/// The key's text, or an error when a key is not a scalar.
pub(super) fn key_text<'a>(
    key: &'a Node,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<&'a str> {
    let text = key.as_str();
    if text.is_none() {
        errors.push(ConfigError::new(
            Some(key.mark.clone()),
            path,
            format!("keys must be strings, got {}", key.describe()),
        ));
    }
    text
}

/// The entries of a map node; `Null` is an empty map.
pub(super) fn entries<'a>(
    node: &'a Node,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> &'a [(Node, Node)] {
    match &node.value {
        NodeValue::Map(entries) => entries,
        NodeValue::Null => &[],
        _ => {
            errors.push(ConfigError::new(
                Some(node.mark.clone()),
                path,
                format!("expected a map, got {}", node.describe()),
            ));
            &[]
        }
    }
}

/// `has invalid keys: a, b`, at the first bad key, when a map has keys not in
/// `allowed`; with a suggestion for a key that looks like a misspelt one.
pub(super) fn check_keys(node: &Node, path: &str, allowed: &[&str], errors: &mut Vec<ConfigError>) {
    let NodeValue::Map(entries) = &node.value else {
        return;
    };
    let bad: Vec<&Node> = entries
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !k.as_str().is_some_and(|t| allowed.contains(&t)))
        .collect();
    if let Some(first) = bad.first() {
        let names: Vec<String> = bad
            .iter()
            .map(|k| k.as_str().map_or_else(|| k.describe(), str::to_string))
            .collect();
        errors.push(ConfigError::new(
            Some(first.mark.clone()),
            path,
            invalid_keys_message(&names, allowed),
        ));
    }
}

/// `has invalid keys: protcol; did you mean "protocols"?`
pub(crate) fn invalid_keys_message(names: &[String], allowed: &[&str]) -> String {
    let mut message = format!("has invalid keys: {}", names.join(", "));
    let suggestions: Vec<(String, &str)> = names
        .iter()
        .filter_map(|n| closest(n, allowed.iter().copied()).map(|c| (n.clone(), c)))
        .collect();
    match suggestions.as_slice() {
        [] => {}
        [(_, c)] if names.len() == 1 => message.push_str(&format!("; did you mean {c:?}?")),
        many => {
            for (n, c) in many {
                message.push_str(&format!("; did you mean {c:?} for {n:?}?"));
            }
        }
    }
    message
}

/// A decode error from `from_node`, its path prefixed by where the node sits.
pub(super) fn prefixed(mut e: ConfigError, prefix: &str) -> ConfigError {
    e.path = if e.path.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}::{}", e.path)
    };
    e
}

/// One step of a key path: `name` or `name[index]`.
fn step<'a>(node: &'a Node, segment: &str) -> Option<(&'a Node, &'a Node)> {
    let (name, index) = match segment.strip_suffix(']').and_then(|s| s.split_once('[')) {
        Some((name, index)) => (name, index.parse::<usize>().ok()),
        None => (segment, None),
    };
    let NodeValue::Map(entries) = &node.value else {
        return None;
    };
    let (key, value) = entries.iter().find(|(k, _)| k.as_str() == Some(name))?;
    match (index, &value.value) {
        (None, _) => Some((key, value)),
        (Some(i), NodeValue::Seq(items)) => items.get(i).map(|item| (item, item)),
        (Some(_), _) => Some((key, value)),
    }
}

/// Where the deepest written key of `key_path` (`a::b::c`, `list[2]::d`) is,
/// inside `node`.
pub(super) fn key_mark(node: &Node, key_path: &str) -> Option<Mark> {
    let mut current = node;
    let mut mark = None;
    for segment in key_path.split("::") {
        let Some((key, value)) = step(current, segment) else {
            break;
        };
        mark = Some(key.mark.clone());
        current = value;
    }
    mark
}

/// Where the value of `key_path` is written inside `node`, if it is.
pub(super) fn value_mark(node: &Node, key_path: &str) -> Option<Mark> {
    let mut current = node;
    for segment in key_path.split("::") {
        current = step(current, segment)?.1;
    }
    Some(current.mark.clone())
}

/// A component id in a list, with where it was written.
pub(super) struct IdRef {
    pub id: ComponentId,
    pub mark: Mark,
}

/// A list of ids (`Null` is empty); bad entries are reported and skipped.
pub(super) fn id_list(
    node: Option<&Node>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<IdRef> {
    let Some(node) = node else {
        return Vec::new();
    };
    let items: &[Node] = match &node.value {
        NodeValue::Seq(items) => items,
        NodeValue::Null => &[],
        _ => {
            errors.push(ConfigError::new(
                Some(node.mark.clone()),
                path,
                format!(
                    "expected a sequence of component ids, got {}",
                    node.describe()
                ),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(text) = item.as_str() else {
            errors.push(ConfigError::new(
                Some(item.mark.clone()),
                format!("{path}[{i}]"),
                format!("expected a component id, got {}", item.describe()),
            ));
            continue;
        };
        match ComponentId::from_str(text) {
            Ok(id) => out.push(IdRef {
                id,
                mark: item.mark.clone(),
            }),
            Err(message) => errors.push(ConfigError::new(
                Some(item.mark.clone()),
                format!("{path}[{i}]"),
                message,
            )),
        }
    }
    out
}

/// `unknown type: "x" for id: "x" (valid values: [...])`, the collector's
/// words, with a suggestion when the type looks misspelt.
pub(super) fn unknown_type_message(id: &ComponentId, valid: &[&str]) -> String {
    format!(
        "unknown type: {:?} for id: {:?} (valid values: [{}]){}",
        id.type_name,
        id.to_string(),
        valid.join(" "),
        did_you_mean(&id.type_name, valid.iter().copied())
    )
}
