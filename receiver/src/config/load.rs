//! Loading: read each file, parse, expand `${env:...}`, merge in order (maps
//! merge recursively, later files win for scalars and sequences, as in the
//! collector), then decode every section and validate the service graph,
//! collecting every error found.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use super::build::build;
use super::{env, node, Config, ConfigError, ConfigErrors, Node, NodeValue};
use crate::component::Registry;

/// Largest configuration file read; anything bigger is surely not a config.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Loads, merges (in order) and validates configuration files, expanding
/// variables from the process environment.
pub fn load_files(registry: &Registry, paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
    load_files_with_env(registry, paths, &|name| std::env::var(name).ok())
}

/// Loads and validates one configuration text; `name` is used in positions.
pub fn load_str(registry: &Registry, name: &str, text: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(registry, name, text, &|name| std::env::var(name).ok())
}

/// [`load_files`] with variables looked up through `env`.
pub fn load_files_with_env(
    registry: &Registry,
    paths: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    if paths.is_empty() {
        return Err(ConfigError::new(None, "", "no configuration file given").into());
    }
    let mut merged: Option<Node> = None;
    let mut errors = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let text = match read_file(path) {
            Ok(text) => text,
            Err(message) => {
                errors.push(ConfigError::new(
                    None,
                    "",
                    format!("cannot read configuration file {name}: {message}"),
                ));
                continue;
            }
        };
        match parse_and_expand(&name, &text, env) {
            Ok(node) => {
                merged = Some(match merged {
                    Some(base) => merge(base, node),
                    None => node,
                })
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    match merged {
        Some(root) if errors.is_empty() => build(registry, &root),
        _ => Err(ConfigErrors(errors)),
    }
}

/// [`load_str`] with variables looked up through `env`.
pub fn load_str_with_env(
    registry: &Registry,
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let root = parse_and_expand(name, text, env).map_err(ConfigErrors)?;
    build(registry, &root)
}

fn read_file(path: &PathBuf) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}

/// One file: parsed, checked to be a non-empty map, variables expanded.
fn parse_and_expand(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Node, Vec<ConfigError>> {
    let mut root = node::parse(name, text).map_err(|e| vec![e])?;
    match &root.value {
        NodeValue::Null => {
            return Err(vec![ConfigError::new(
                Some(root.mark.clone()),
                "",
                "empty configuration file",
            )]);
        }
        NodeValue::Map(_) => {}
        _ => {
            return Err(vec![ConfigError::new(
                Some(root.mark.clone()),
                "",
                format!("expected a map at the top level, got {}", root.describe()),
            )]);
        }
    }
    env::expand(&mut root, env)?;
    Ok(root)
}

/// `over` on top of `base`: maps merge key by key, anything else is replaced.
fn merge(base: Node, over: Node) -> Node {
    match (base.value, over.value) {
        (NodeValue::Map(mut entries), NodeValue::Map(over_entries)) => {
            // Index the base's string keys once: merging stays linear in
            // the size of both maps.
            let mut index: HashMap<String, usize> = entries
                .iter()
                .enumerate()
                .filter_map(|(i, (k, _))| k.as_str().map(|t| (t.to_string(), i)))
                .collect();
            for (key, value) in over_entries {
                let existing = key.as_str().and_then(|t| index.get(t).copied());
                match existing {
                    Some(i) => {
                        let placeholder = Node {
                            value: NodeValue::Null,
                            mark: value.mark.clone(),
                        };
                        let placeholder = (key, placeholder);
                        let (_, old_value) = std::mem::replace(&mut entries[i], placeholder);
                        entries[i].1 = merge(old_value, value);
                    }
                    None => {
                        if let Some(t) = key.as_str() {
                            index.insert(t.to_string(), entries.len());
                        }
                        entries.push((key, value));
                    }
                }
            }
            Node {
                value: NodeValue::Map(entries),
                mark: base.mark,
            }
        }
        (_, value) => Node {
            value,
            mark: over.mark,
        },
    }
}
