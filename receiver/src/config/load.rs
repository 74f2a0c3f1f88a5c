//! Loading: read each file, parse, expand `${env:...}`, merge in order (maps
//! merge recursively, later files win for scalars and sequences, as in the
//! collector), then decode every section and validate the service graph,
//! collecting every error found.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;

use super::build::build;
use super::{env, node, Config, ConfigError, ConfigErrors, Node, NodeValue};
use crate::component::Registry;

/// Largest configuration file read; anything bigger is surely not a config.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Where one part of the configuration comes from, as the collector's
/// `--config` and `--set` take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// `file:PATH`, or a bare path.
    File(PathBuf),
    /// `env:NAME`: the whole YAML text in an environment variable.
    Env(String),
    /// `yaml:KEY::PATH: VALUE`: inline YAML whose keys may be `::` paths.
    Yaml(String),
    /// `--set KEY::PATH=VALUE` (`.` also separates keys, as the collector
    /// once had it); applied after every `--config`.
    Set(String),
    /// A text held by the program (the built-in default pipeline).
    Text { name: String, text: String },
}

impl FromStr for ConfigSource {
    type Err = String;

    /// A `--config` value: `file:`, `env:` or `yaml:` URI, or a path.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("file:") {
            return Ok(ConfigSource::File(PathBuf::from(path)));
        }
        if let Some(name) = s.strip_prefix("env:") {
            if name.is_empty() {
                return Err("env: needs the name of a variable (env:NAME)".to_string());
            }
            return Ok(ConfigSource::Env(name.to_string()));
        }
        if let Some(text) = s.strip_prefix("yaml:") {
            return Ok(ConfigSource::Yaml(text.to_string()));
        }
        if let Some((scheme, _)) = s.split_once(':') {
            let is_scheme = scheme.len() > 1
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if is_scheme && !std::path::Path::new(s).exists() {
                return Err(format!(
                    "{scheme}: is not a supported config source (file:, env:, yaml: or a path)"
                ));
            }
        }
        Ok(ConfigSource::File(PathBuf::from(s)))
    }
}

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
    let sources: Vec<ConfigSource> = paths.iter().cloned().map(ConfigSource::File).collect();
    load(registry, &sources, env)
}

/// [`load_str`] with variables looked up through `env`.
pub fn load_str_with_env(
    registry: &Registry,
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let source = ConfigSource::Text {
        name: name.to_string(),
        text: text.to_string(),
    };
    load(registry, &[source], env)
}

/// Resolves `sources` ([`resolve`]) and decodes and validates the result.
pub fn load(
    registry: &Registry,
    sources: &[ConfigSource],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    decode(registry, &resolve(sources, env)?)
}

/// Decodes and validates a resolved tree ([`resolve`]).
pub fn decode(registry: &Registry, root: &Node) -> Result<Config, ConfigErrors> {
    build(registry, root)
}

/// Reads every source, expands `${env:...}` and merges them in order (`--set`
/// last): the configuration as a tree, before decoding. Every unreadable or
/// malformed source is reported.
pub fn resolve(
    sources: &[ConfigSource],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Node, ConfigErrors> {
    if !sources.iter().any(|s| !matches!(s, ConfigSource::Set(_))) {
        return Err(ConfigError::new(None, "", "no configuration file given").into());
    }
    let (sets, configs): (Vec<&ConfigSource>, Vec<&ConfigSource>) = sources
        .iter()
        .partition(|s| matches!(s, ConfigSource::Set(_)));
    let mut merged: Option<Node> = None;
    let mut errors = Vec::new();
    for source in configs.into_iter().chain(sets) {
        match read_source(source, env) {
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
        Some(root) if errors.is_empty() => Ok(root),
        _ => Err(ConfigErrors(errors)),
    }
}

/// One source as a tree, variables expanded.
fn read_source(
    source: &ConfigSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Node, Vec<ConfigError>> {
    let unreadable = |what: String, message: String| {
        vec![ConfigError::new(
            None,
            "",
            format!("cannot read {what}: {message}"),
        )]
    };
    match source {
        ConfigSource::File(path) => {
            let name = path.display().to_string();
            let text =
                read_file(path).map_err(|m| unreadable(format!("configuration file {name}"), m))?;
            parse_and_expand(&name, &text, env)
        }
        ConfigSource::Env(var) => {
            let name = format!("env:{var}");
            let text = env(var)
                .ok_or_else(|| unreadable(name.clone(), "the variable is not set".to_string()))?;
            if text.len() as u64 > MAX_FILE_BYTES {
                return Err(unreadable(
                    name,
                    format!("larger than {MAX_FILE_BYTES} bytes"),
                ));
            }
            parse_and_expand(&name, &text, env)
        }
        ConfigSource::Yaml(text) => {
            let mut node = parse_and_expand("yaml:", text, env)?;
            split_key_paths(&mut node);
            Ok(node)
        }
        ConfigSource::Set(assignment) => set_node(assignment, env),
        ConfigSource::Text { name, text } => parse_and_expand(name, text, env),
    }
}

/// `--set a::b=value` as the tree `{a: {b: value}}`; the value is YAML.
fn set_node(
    assignment: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Node, Vec<ConfigError>> {
    let name = format!("--set {assignment}");
    let Some((path, value)) = assignment.split_once('=') else {
        return Err(vec![ConfigError::new(
            None,
            "",
            format!("{name}: expected KEY::PATH=VALUE"),
        )]);
    };
    let separator = if path.contains("::") { "::" } else { "." };
    let keys: Vec<&str> = path.split(separator).map(str::trim).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(vec![ConfigError::new(
            None,
            "",
            format!("{name}: the key path {path:?} has an empty key"),
        )]);
    }
    let mut node = node::parse(&name, value).map_err(|e| vec![e])?;
    for key in keys.iter().rev() {
        let mark = node.mark.clone();
        let key = Node {
            value: NodeValue::Scalar {
                text: key.to_string(),
                quoted: false,
            },
            mark: mark.clone(),
        };
        node = Node {
            value: NodeValue::Map(vec![(key, node)]),
            mark,
        };
    }
    env::expand(&mut node, env)?;
    Ok(node)
}

/// Keys written as `a::b::c` (in `yaml:` sources) become nested maps, as the
/// collector reads them.
fn split_key_paths(node: &mut Node) {
    match &mut node.value {
        NodeValue::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (key, mut value) in std::mem::take(entries) {
                split_key_paths(&mut value);
                let path: Option<Vec<String>> = key
                    .as_str()
                    .filter(|t| t.contains("::"))
                    .map(|t| t.split("::").map(str::to_string).collect());
                let Some(path) = path else {
                    out.push((key, value));
                    continue;
                };
                let mut nested = value;
                for segment in path.iter().skip(1).rev() {
                    let k = Node {
                        value: NodeValue::Scalar {
                            text: segment.clone(),
                            quoted: false,
                        },
                        mark: key.mark.clone(),
                    };
                    nested = Node {
                        mark: key.mark.clone(),
                        value: NodeValue::Map(vec![(k, nested)]),
                    };
                }
                let first = Node {
                    value: NodeValue::Scalar {
                        text: path[0].clone(),
                        quoted: false,
                    },
                    mark: key.mark.clone(),
                };
                out.push((first, nested));
            }
            // Two paths under one key (`a::b: 1` and `a::c: 2`) merge.
            let mut merged: Vec<(Node, Node)> = Vec::with_capacity(out.len());
            for (key, value) in out {
                match merged
                    .iter_mut()
                    .find(|(k, _)| k.as_str().is_some() && k.as_str() == key.as_str())
                {
                    Some((_, existing)) => {
                        let base = std::mem::replace(
                            existing,
                            Node {
                                value: NodeValue::Null,
                                mark: value.mark.clone(),
                            },
                        );
                        *existing = merge(base, value);
                    }
                    None => merged.push((key, value)),
                }
            }
            *entries = merged;
        }
        NodeValue::Seq(items) => items.iter_mut().for_each(split_key_paths),
        NodeValue::Null | NodeValue::Scalar { .. } => {}
    }
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

#[cfg(test)]
mod tests {
    use super::super::print::to_yaml;
    use super::*;

    fn resolved(sources: &[ConfigSource], env: &[(&str, &str)]) -> Result<String, String> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        resolve(sources, &lookup)
            .map(|node| to_yaml(&node, false))
            .map_err(|e| e.to_string())
    }

    fn text(t: &str) -> ConfigSource {
        ConfigSource::Text {
            name: "c.yaml".into(),
            text: t.into(),
        }
    }

    #[test]
    fn config_uris_are_read_as_the_collector_reads_them() {
        assert_eq!(
            "file:/etc/x.yaml".parse(),
            Ok(ConfigSource::File("/etc/x.yaml".into()))
        );
        assert_eq!(
            "/etc/x.yaml".parse(),
            Ok(ConfigSource::File("/etc/x.yaml".into()))
        );
        assert_eq!("env:CFG".parse(), Ok(ConfigSource::Env("CFG".into())));
        assert_eq!(
            "yaml:processors::batch::timeout: 2s".parse(),
            Ok(ConfigSource::Yaml("processors::batch::timeout: 2s".into()))
        );
        let http: Result<ConfigSource, String> = "https://example.com/c.yaml".parse();
        assert!(http.is_err_and(|e| e.contains("https: is not a supported config source")));
        assert!("env:".parse::<ConfigSource>().is_err());
    }

    #[test]
    fn yaml_env_and_set_sources_merge_in_order_with_set_last() {
        let base =
            text("receivers:\n  otlp:\n    protocols: {grpc: {endpoint: '127.0.0.1:4317'}}\n");
        let out = resolved(
            &[
                ConfigSource::Set("processors::batch::timeout=5s".into()),
                base,
                ConfigSource::Env("CFG".into()),
                ConfigSource::Yaml("processors::batch::timeout: 2s".into()),
                ConfigSource::Yaml("receivers::otlp::protocols::http: {}".into()),
            ],
            &[("CFG", "exporters: {debug: {verbosity: basic}}")],
        )
        .expect("resolves");
        assert_eq!(
            out,
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: \"127.0.0.1:4317\"\n      http: {}\n\
             exporters:\n  debug:\n    verbosity: basic\n\
             processors:\n  batch:\n    timeout: 5s\n"
        );
        // `.` separates keys too, and values are YAML.
        let out = resolved(
            &[text("a: {b: 1}"), ConfigSource::Set("a.c=[x, y]".into())],
            &[],
        )
        .expect("resolves");
        assert_eq!(out, "a:\n  b: 1\n  c:\n    - x\n    - y\n");
    }

    #[test]
    fn bad_sources_are_each_reported() {
        let err = resolved(
            &[
                ConfigSource::Env("MISSING".into()),
                ConfigSource::Set("novalue".into()),
                ConfigSource::Set("a::::b=1".into()),
                ConfigSource::File("/nonexistent/oomscope.yaml".into()),
            ],
            &[],
        )
        .expect_err("invalid");
        assert!(
            err.contains("cannot read env:MISSING: the variable is not set"),
            "{err}"
        );
        assert!(
            err.contains("--set novalue: expected KEY::PATH=VALUE"),
            "{err}"
        );
        assert!(err.contains("has an empty key"), "{err}");
        assert!(
            err.contains("cannot read configuration file /nonexistent/oomscope.yaml"),
            "{err}"
        );
        assert!(resolved(&[ConfigSource::Set("a=1".into())], &[])
            .is_err_and(|e| e.contains("no configuration file given")));
    }
}
