//! Loading: read each file, parse, expand `${env:...}`, merge in order (maps
//! merge recursively, later files win for scalars and sequences, as in the
//! collector), then decode every section and validate the service graph,
//! collecting every error found.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;

use super::{
    env, from_node, node, ComponentId, Config, ConfigError, ConfigErrors, GoDuration, Mark, Node,
    NodeValue, PipelineConfig, PipelineId, ServiceConfig, TelemetryConfig, ValidationError,
    DEFAULT_OOM_SCORE_ADJ,
};
use crate::exporters::ExporterConfig;
use crate::extensions::ExtensionConfig;
use crate::processors::ProcessorConfig;
use crate::receivers::ReceiverConfig;

/// Largest configuration file read; anything bigger is surely not a config.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Default for `service.shutdown_timeout`.
const DEFAULT_SHUTDOWN_TIMEOUT: GoDuration = GoDuration::from_secs(10);

/// Loads, merges (in order) and validates configuration files, expanding
/// variables from the process environment.
pub fn load_files(paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
    load_files_with_env(paths, &|name| std::env::var(name).ok())
}

/// Loads and validates one configuration text; `name` is used in positions.
pub fn load_str(name: &str, text: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(name, text, &|name| std::env::var(name).ok())
}

/// [`load_files`] with variables looked up through `env`.
pub fn load_files_with_env(
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
        Some(root) if errors.is_empty() => build(&root),
        _ => Err(ConfigErrors(errors)),
    }
}

/// [`load_str`] with variables looked up through `env`.
pub fn load_str_with_env(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let root = parse_and_expand(name, text, env).map_err(ConfigErrors)?;
    build(&root)
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

/// The key's text, or an error when a key is not a scalar.
fn key_text<'a>(key: &'a Node, path: &str, errors: &mut Vec<ConfigError>) -> Option<&'a str> {
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
fn entries<'a>(node: &'a Node, path: &str, errors: &mut Vec<ConfigError>) -> &'a [(Node, Node)] {
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

/// `has invalid keys: a, b`, at the first bad key, when a map has keys not in `allowed`.
fn check_keys(node: &Node, path: &str, allowed: &[&str], errors: &mut Vec<ConfigError>) {
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
            format!("has invalid keys: {}", names.join(", ")),
        ));
    }
}

/// A decode error from `from_node`, its path prefixed by where the node sits.
fn prefixed(mut e: ConfigError, prefix: &str) -> ConfigError {
    e.path = if e.path.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}::{}", e.path)
    };
    e
}

/// A configured component: its config and where its id was written.
struct Component<T> {
    config: T,
    key_mark: Mark,
    node: Node,
}

/// One decoded section.
struct Section<T> {
    ok: BTreeMap<ComponentId, Component<T>>,
    /// Declared, but reported as invalid: references to these are not
    /// reported again as "not configured".
    failed: BTreeSet<ComponentId>,
}

impl<T> Section<T> {
    fn get(&self, id: &ComponentId) -> Option<&Component<T>> {
        self.ok.get(id)
    }

    fn contains_key(&self, id: &ComponentId) -> bool {
        self.ok.contains_key(id)
    }

    /// Neither configured nor reported already.
    fn missing(&self, id: &ComponentId) -> bool {
        !self.ok.contains_key(id) && !self.failed.contains(id)
    }

    fn is_empty(&self) -> bool {
        self.ok.is_empty() && self.failed.is_empty()
    }
}

/// Decodes one section (`receivers:` ...) with its registry.
fn section<T>(
    root: &Node,
    name: &str,
    types: &[&str],
    decode: impl Fn(&str, &Node) -> Option<Result<T, ConfigError>>,
    validate: impl Fn(&T) -> Result<(), ValidationError>,
    errors: &mut Vec<ConfigError>,
) -> Section<T> {
    let mut out = Section {
        ok: BTreeMap::new(),
        failed: BTreeSet::new(),
    };
    let Some(node) = root.get(name) else {
        return out;
    };
    for (key, value) in entries(node, name, errors) {
        let Some(text) = key_text(key, name, errors) else {
            continue;
        };
        let id = match ComponentId::from_str(text) {
            Ok(id) => id,
            Err(message) => {
                errors.push(ConfigError::new(Some(key.mark.clone()), name, message));
                continue;
            }
        };
        let path = format!("{name}::{id}");
        if out.ok.contains_key(&id) || out.failed.contains(&id) {
            errors.push(ConfigError::new(
                Some(key.mark.clone()),
                name,
                format!("duplicate id {:?}", id.to_string()),
            ));
            continue;
        }
        let config = match decode(&id.type_name, value) {
            Some(Ok(config)) => config,
            Some(Err(e)) => {
                errors.push(prefixed(e, &path));
                out.failed.insert(id);
                continue;
            }
            None if name == "exporters" && id.type_name == "logging" => {
                errors.push(ConfigError::new(
                    Some(key.mark.clone()),
                    path,
                    "the logging exporter has been deprecated, use the debug exporter instead",
                ));
                out.failed.insert(id);
                continue;
            }
            None => {
                let mut valid = types.to_vec();
                valid.sort_unstable();
                errors.push(ConfigError::new(
                    Some(key.mark.clone()),
                    name,
                    format!(
                        "unknown type: {:?} for id: {:?} (valid values: [{}])",
                        id.type_name,
                        id.to_string(),
                        valid.join(" ")
                    ),
                ));
                out.failed.insert(id);
                continue;
            }
        };
        if let Err(e) = validate(&config) {
            let error = match &e.key {
                // Point at the key when the config has it (it may be a
                // default that was not written).
                Some(key_path) => ConfigError::new(
                    Some(key_mark(value, key_path).unwrap_or_else(|| key.mark.clone())),
                    format!("{path}::{key_path}"),
                    e.message,
                ),
                None => ConfigError::new(Some(key.mark.clone()), path, e.message),
            };
            errors.push(error);
            out.failed.insert(id);
            continue;
        }
        out.ok.insert(
            id,
            Component {
                config,
                key_mark: key.mark.clone(),
                node: value.clone(),
            },
        );
    }
    out
}

/// Where the deepest written key of `key_path` (`a::b::c`) is, inside `node`.
fn key_mark(node: &Node, key_path: &str) -> Option<Mark> {
    let mut current = node;
    let mut mark = None;
    for segment in key_path.split("::") {
        let NodeValue::Map(entries) = &current.value else {
            break;
        };
        let Some((k, v)) = entries.iter().find(|(k, _)| k.as_str() == Some(segment)) else {
            break;
        };
        mark = Some(k.mark.clone());
        current = v;
    }
    mark
}

/// A component id in a list, with where it was written.
struct IdRef {
    id: ComponentId,
    mark: Mark,
}

/// A list of ids (`Null` is empty); bad entries are reported and skipped.
fn id_list(node: Option<&Node>, path: &str, errors: &mut Vec<ConfigError>) -> Vec<IdRef> {
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

struct PipelineRefs {
    key_mark: Mark,
    receivers: Vec<IdRef>,
    processors: Vec<IdRef>,
    exporters: Vec<IdRef>,
}

fn build(root: &Node) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    check_keys(
        root,
        "",
        &[
            "receivers",
            "processors",
            "exporters",
            "extensions",
            "connectors",
            "service",
        ],
        &mut errors,
    );

    let receivers = section(
        root,
        "receivers",
        ReceiverConfig::TYPES,
        ReceiverConfig::from_node,
        ReceiverConfig::validate,
        &mut errors,
    );
    let processors = section(
        root,
        "processors",
        ProcessorConfig::TYPES,
        ProcessorConfig::from_node,
        |c: &ProcessorConfig| c.validate().map_err(ValidationError::from),
        &mut errors,
    );
    let exporters = section(
        root,
        "exporters",
        ExporterConfig::TYPES,
        ExporterConfig::from_node,
        |c: &ExporterConfig| c.validate().map_err(ValidationError::from),
        &mut errors,
    );
    let extensions = section(
        root,
        "extensions",
        ExtensionConfig::TYPES,
        ExtensionConfig::from_node,
        |c: &ExtensionConfig| c.validate().map_err(ValidationError::from),
        &mut errors,
    );

    if let Some(connectors) = root.get("connectors") {
        if let Some((key, _)) = entries(connectors, "connectors", &mut errors).first() {
            errors.push(ConfigError::new(
                Some(key.mark.clone()),
                "connectors",
                "connectors are not supported by oomscope",
            ));
        }
    }

    let section_mark = |name: &str| {
        let NodeValue::Map(entries) = &root.value else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(k, _)| k.mark.clone())
    };
    // Only when the section itself decoded cleanly: a receiver that failed to
    // decode was reported already.
    let section_failed = |name: &str, errors: &[ConfigError]| {
        errors
            .iter()
            .any(|e| e.path == name || e.path.starts_with(&format!("{name}::")))
    };
    if receivers.is_empty() && !section_failed("receivers", &errors) {
        errors.push(ConfigError::new(
            section_mark("receivers"),
            "",
            "no receiver configuration specified in config",
        ));
    }
    if exporters.is_empty() && !section_failed("exporters", &errors) {
        errors.push(ConfigError::new(
            section_mark("exporters"),
            "",
            "no exporter configuration specified in config",
        ));
    }

    // service
    let service_node = root.get("service");
    let mut service = ServiceConfig {
        extensions: Vec::new(),
        pipelines: BTreeMap::new(),
        telemetry: TelemetryConfig::default(),
        oom_score_adj: Some(DEFAULT_OOM_SCORE_ADJ),
        shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
    };
    let mut pipeline_refs: BTreeMap<PipelineId, PipelineRefs> = BTreeMap::new();
    let mut service_extensions = Vec::new();
    if let Some(node) = service_node {
        entries(node, "service", &mut errors);
        check_keys(
            node,
            "service",
            &[
                "extensions",
                "pipelines",
                "telemetry",
                "oom_score_adj",
                "shutdown_timeout",
            ],
            &mut errors,
        );
        service_extensions = id_list(node.get("extensions"), "service::extensions", &mut errors);
        if let Some(pipelines) = node.get("pipelines") {
            for (key, value) in entries(pipelines, "service::pipelines", &mut errors) {
                let Some(text) = key_text(key, "service::pipelines", &mut errors) else {
                    continue;
                };
                let id = match PipelineId::from_str(text) {
                    Ok(id) => id,
                    Err(message) => {
                        errors.push(ConfigError::new(
                            Some(key.mark.clone()),
                            "service::pipelines",
                            message,
                        ));
                        continue;
                    }
                };
                let path = format!("service::pipelines::{id}");
                entries(value, &path, &mut errors);
                check_keys(
                    value,
                    &path,
                    &["receivers", "processors", "exporters"],
                    &mut errors,
                );
                let refs = PipelineRefs {
                    key_mark: key.mark.clone(),
                    receivers: id_list(
                        value.get("receivers"),
                        &format!("{path}::receivers"),
                        &mut errors,
                    ),
                    processors: id_list(
                        value.get("processors"),
                        &format!("{path}::processors"),
                        &mut errors,
                    ),
                    exporters: id_list(
                        value.get("exporters"),
                        &format!("{path}::exporters"),
                        &mut errors,
                    ),
                };
                pipeline_refs.insert(id, refs);
            }
        }
        if let Some(telemetry) = node.get("telemetry") {
            match from_node::<TelemetryConfig>(telemetry) {
                Ok(t) => service.telemetry = t,
                Err(e) => errors.push(prefixed(e, "service::telemetry")),
            }
        }
        if let Some(adj) = node.get("oom_score_adj") {
            if adj.is_null() {
                service.oom_score_adj = None;
            } else {
                match from_node::<i32>(adj) {
                    Ok(v) if (-1000..=1000).contains(&v) => service.oom_score_adj = Some(v),
                    Ok(v) => errors.push(ConfigError::new(
                        Some(adj.mark.clone()),
                        "service::oom_score_adj",
                        format!("must be between -1000 and 1000, got {v}"),
                    )),
                    Err(e) => errors.push(prefixed(e, "service::oom_score_adj")),
                }
            }
        }
        if let Some(timeout) = node.get("shutdown_timeout") {
            if !timeout.is_null() {
                match from_node::<GoDuration>(timeout) {
                    Ok(t) => service.shutdown_timeout = t,
                    Err(e) => errors.push(prefixed(e, "service::shutdown_timeout")),
                }
            }
        }
    }

    // service::extensions
    let mut seen_extensions = BTreeSet::new();
    for r in &service_extensions {
        if extensions.failed.contains(&r.id) {
            continue;
        }
        if !extensions.contains_key(&r.id) {
            errors.push(ConfigError::new(
                Some(r.mark.clone()),
                "service::extensions",
                format!(
                    "references extension {:?} which is not configured",
                    r.id.to_string()
                ),
            ));
        } else if !seen_extensions.insert(r.id.clone()) {
            errors.push(ConfigError::new(
                Some(r.mark.clone()),
                "service::extensions",
                format!("references extension {:?} multiple times", r.id.to_string()),
            ));
        }
    }

    // Pipelines.
    let service_mark = section_mark("service");
    if pipeline_refs.is_empty() && !section_failed("service::pipelines", &errors) {
        errors.push(ConfigError::new(
            service_mark,
            "",
            "service must have at least one pipeline",
        ));
    }
    for (id, refs) in &pipeline_refs {
        let path = format!("service::pipelines::{id}");
        if refs.receivers.is_empty() && !section_failed(&format!("{path}::receivers"), &errors) {
            errors.push(ConfigError::new(
                Some(refs.key_mark.clone()),
                &path,
                "must have at least one receiver",
            ));
        }
        if refs.exporters.is_empty() && !section_failed(&format!("{path}::exporters"), &errors) {
            errors.push(ConfigError::new(
                Some(refs.key_mark.clone()),
                &path,
                "must have at least one exporter",
            ));
        }
        for r in &refs.receivers {
            match receivers.get(&r.id) {
                None if receivers.missing(&r.id) => {
                    errors.push(not_configured(&path, "receiver", r))
                }
                None => {}
                Some(c) if !c.config.signals().contains(&id.signal) => {
                    errors.push(ConfigError::new(
                        Some(r.mark.clone()),
                        &path,
                        format!(
                            "receiver {:?} does not support the {} signal",
                            r.id.to_string(),
                            id.signal
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        let mut seen = BTreeSet::new();
        for r in &refs.processors {
            if processors.missing(&r.id) {
                errors.push(not_configured(&path, "processor", r));
            } else if !seen.insert(r.id.clone()) {
                errors.push(ConfigError::new(
                    Some(r.mark.clone()),
                    &path,
                    format!("references processor {:?} multiple times", r.id.to_string()),
                ));
            }
        }
        for r in &refs.exporters {
            // Exporters take both signals.
            if exporters.missing(&r.id) {
                errors.push(not_configured(&path, "exporter", r));
            }
        }
    }

    // Persistent queues need a configured, enabled file_storage extension.
    for (id, exporter) in &exporters.ok {
        let Some(storage) = exporter.config.storage() else {
            continue;
        };
        let mark = exporter
            .node
            .get("sending_queue")
            .and_then(|q| q.get("storage"))
            .map_or_else(|| exporter.key_mark.clone(), |n| n.mark.clone());
        let path = format!("exporters::{id}::sending_queue::storage");
        let problem = match extensions.get(storage) {
            None if extensions.failed.contains(storage) => None,
            None => Some("is not configured in extensions"),
            Some(ext) if !matches!(ext.config, ExtensionConfig::FileStorage(_)) => {
                Some("is not a file_storage extension")
            }
            Some(_) if !seen_extensions.contains(storage) => {
                Some("is not enabled in service::extensions")
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            errors.push(ConfigError::new(
                Some(mark),
                path,
                format!(
                    "storage {:?} {problem}: a persistent sending queue needs a file_storage extension",
                    storage.to_string()
                ),
            ));
        }
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    service.extensions = service_extensions.into_iter().map(|r| r.id).collect();
    service.pipelines = pipeline_refs
        .into_iter()
        .map(|(id, refs)| {
            let ids = |v: Vec<IdRef>| v.into_iter().map(|r| r.id).collect();
            (
                id,
                PipelineConfig {
                    receivers: ids(refs.receivers),
                    processors: ids(refs.processors),
                    exporters: ids(refs.exporters),
                },
            )
        })
        .collect();
    Ok(Config {
        receivers: configs(receivers.ok),
        processors: configs(processors.ok),
        exporters: configs(exporters.ok),
        extensions: configs(extensions.ok),
        service,
    })
}

fn configs<T>(components: BTreeMap<ComponentId, Component<T>>) -> BTreeMap<ComponentId, T> {
    components
        .into_iter()
        .map(|(id, c)| (id, c.config))
        .collect()
}

fn not_configured(path: &str, kind: &str, r: &IdRef) -> ConfigError {
    ConfigError::new(
        Some(r.mark.clone()),
        path,
        format!(
            "references {kind} {:?} which is not configured",
            r.id.to_string()
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::pipeline::Signal;

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        load_str_with_env("c.yaml", text, &|_| None)
    }

    fn errors(text: &str) -> Vec<String> {
        load(text)
            .expect_err("must be invalid")
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn id(s: &str) -> ComponentId {
        s.parse().expect("valid id")
    }

    const VALID: &str = "\
receivers:
  otlp: {protocols: {grpc: }}
processors:
  batch:
exporters:
  debug:
  otlp/2:
    endpoint: localhost:4317
    sending_queue:
      storage: file_storage/queue
extensions:
  health_check:
  file_storage/queue:
service:
  extensions: [health_check, file_storage/queue]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug, otlp/2]
    metrics/oom:
      receivers: [otlp]
      exporters: [debug]
";

    #[test]
    fn loads_a_valid_config_with_defaults() {
        let config = load(VALID).expect("valid");
        assert_eq!(
            config.receivers.keys().cloned().collect::<Vec<_>>(),
            [id("otlp")]
        );
        assert_eq!(
            config.processors.keys().cloned().collect::<Vec<_>>(),
            [id("batch")]
        );
        assert_eq!(
            config.exporters.keys().cloned().collect::<Vec<_>>(),
            [id("debug"), id("otlp/2")]
        );
        assert_eq!(
            config
                .exporters
                .get(&id("otlp/2"))
                .and_then(ExporterConfig::storage),
            Some(&id("file_storage/queue"))
        );
        assert_eq!(
            config.service.extensions,
            [id("health_check"), id("file_storage/queue")]
        );
        let logs = PipelineId {
            signal: Signal::Logs,
            name: None,
        };
        let oom = PipelineId {
            signal: Signal::Metrics,
            name: Some("oom".into()),
        };
        assert_eq!(
            config.service.pipelines.get(&logs),
            Some(&PipelineConfig {
                receivers: vec![id("otlp")],
                processors: vec![id("batch")],
                exporters: vec![id("debug"), id("otlp/2")],
            })
        );
        assert_eq!(
            config
                .service
                .pipelines
                .get(&oom)
                .map(|p| p.exporters.clone()),
            Some(vec![id("debug")])
        );
        assert_eq!(config.service.oom_score_adj, Some(DEFAULT_OOM_SCORE_ADJ));
        assert_eq!(config.service.shutdown_timeout, GoDuration::from_secs(10));
        assert_eq!(config.service.telemetry, TelemetryConfig::default());
    }

    #[test]
    fn service_settings_decode() {
        let with = |extra: &str| format!("{VALID}  {extra}\n");
        let config = load(&with("oom_score_adj: 500")).expect("valid");
        assert_eq!(config.service.oom_score_adj, Some(500));
        let config = load(&with("oom_score_adj:")).expect("valid");
        assert_eq!(config.service.oom_score_adj, None);
        let config = load(&with("shutdown_timeout: 30s")).expect("valid");
        assert_eq!(config.service.shutdown_timeout, GoDuration::from_secs(30));
        let config = load(&with(
            "telemetry: {logs: {level: debug}, metrics: {address: ''}}",
        ))
        .expect("valid");
        assert_eq!(
            config.service.telemetry.logs.level,
            super::super::LogLevel::Debug
        );
        assert_eq!(
            config.service.telemetry.logs.encoding,
            super::super::LogEncoding::Console
        );
        assert_eq!(config.service.telemetry.metrics.address, "");

        assert_eq!(
            errors(&with("oom_score_adj: 2000")),
            ["c.yaml:24:18: 'service::oom_score_adj' must be between -1000 and 1000, got 2000"]
        );
        assert_eq!(
            errors(&with("telemetry: {logs: {levle: debug}}")),
            ["c.yaml:24:22: 'service::telemetry::logs' has invalid keys: levle"]
        );
        // Telemetry values are checked where they are written.
        let config = load(&with(
            "telemetry: {logs: {level: fatal, encoding: json}, metrics: {level: none}}",
        ))
        .expect("valid");
        let telemetry = &config.service.telemetry;
        assert_eq!(telemetry.logs.level, super::super::LogLevel::Error);
        assert_eq!(telemetry.logs.encoding, super::super::LogEncoding::Json);
        assert_eq!(telemetry.metrics.level, super::super::MetricsLevel::None);
        for (bad, key) in [
            ("logs: {level: verbose}", "logs::level"),
            ("logs: {encoding: text}", "logs::encoding"),
            ("metrics: {level: full}", "metrics::level"),
        ] {
            let e = errors(&with(&format!("telemetry: {{{bad}}}")));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with("c.yaml:24:")
                    && e[0].contains(&format!("'service::telemetry::{key}'")),
                "{e:?}"
            );
        }
        assert_eq!(
            errors(&with("shutdown_timeout: [1]")),
            ["c.yaml:24:21: 'service::shutdown_timeout' expected a duration such as 5s, 200ms or 1m30s, got a sequence"]
        );
    }

    #[test]
    fn reports_every_graph_error_at_the_entry_that_names_it() {
        let text = "\
receivers:
  otlp: {protocols: {grpc: }}
processors:
  batch:
exporters:
  debug:
  otlp:
    endpoint: localhost:4317
    sending_queue:
      storage: file_storage/missing
extensions:
  health_check:
service:
  extensions: [health_check, pprof]
  pipelines:
    logs:
      receivers: [otlp, nope]
      processors: [batch, batch, ghost]
      exporters: [debug, gone]
    metrics:
      receivers: []
    traces:
      receivers: [otlp]
      exporters: [debug]
";
        assert_eq!(
            errors(text),
            [
                "c.yaml:22:5: 'service::pipelines' pipeline \"traces\": the traces signal is not supported by oomscope (logs, metrics)",
                "c.yaml:14:30: 'service::extensions' references extension \"pprof\" which is not configured",
                "c.yaml:17:25: 'service::pipelines::logs' references receiver \"nope\" which is not configured",
                "c.yaml:18:27: 'service::pipelines::logs' references processor \"batch\" multiple times",
                "c.yaml:18:34: 'service::pipelines::logs' references processor \"ghost\" which is not configured",
                "c.yaml:19:26: 'service::pipelines::logs' references exporter \"gone\" which is not configured",
                "c.yaml:20:5: 'service::pipelines::metrics' must have at least one receiver",
                "c.yaml:20:5: 'service::pipelines::metrics' must have at least one exporter",
                "c.yaml:10:16: 'exporters::otlp::sending_queue::storage' storage \"file_storage/missing\" is not configured in extensions: a persistent sending queue needs a file_storage extension",
            ]
        );
    }

    #[test]
    fn storage_must_be_an_enabled_file_storage() {
        let text = "\
receivers: {otlp: {protocols: {grpc: }}}
exporters:
  otlp:
    endpoint: localhost:4317
    sending_queue: {storage: health_check}
  otlp/2:
    endpoint: localhost:4317
    sending_queue: {storage: file_storage}
extensions: {health_check: , file_storage: }
service:
  extensions: [health_check]
  pipelines:
    logs: {receivers: [otlp], exporters: [otlp, otlp/2]}
";
        assert_eq!(
            errors(text),
            [
                "c.yaml:5:30: 'exporters::otlp::sending_queue::storage' storage \"health_check\" is not a file_storage extension: a persistent sending queue needs a file_storage extension",
                "c.yaml:8:30: 'exporters::otlp/2::sending_queue::storage' storage \"file_storage\" is not enabled in service::extensions: a persistent sending queue needs a file_storage extension",
            ]
        );
    }

    #[test]
    fn empty_sections_are_reported() {
        assert_eq!(
            errors("receivers:\nservice:\n  pipelines:\n"),
            [
                "c.yaml:1:1: no receiver configuration specified in config",
                "no exporter configuration specified in config",
                "c.yaml:2:1: service must have at least one pipeline",
            ]
        );
        assert_eq!(
            errors("# nothing\n"),
            ["c.yaml:1:1: empty configuration file"]
        );
        assert_eq!(
            errors("- a\n"),
            ["c.yaml:1:1: expected a map at the top level, got a sequence"]
        );
    }

    #[test]
    fn unknown_keys_types_and_ids() {
        let text = "\
receivers:
  otlp:
    protocol: {grpc: }
  foo/1:
  9bad:
processors:
  batch:
exporters:
  logging:
  debug:
connectors:
  forward:
extras: 1
service:
  extension: []
  pipelines:
    logs:
      receivers: [otlp]
      exporter: [debug]
";
        assert_eq!(
            errors(text),
            [
                "c.yaml:13:1: has invalid keys: extras",
                "c.yaml:3:5: 'receivers::otlp' has invalid keys: protocol",
                "c.yaml:4:3: 'receivers' unknown type: \"foo\" for id: \"foo/1\" (valid values: [file_log filelog kmsg memory oom otlp])",
                "c.yaml:5:3: 'receivers' invalid character(s) in type \"9bad\"",
                "c.yaml:9:3: 'exporters::logging' the logging exporter has been deprecated, use the debug exporter instead",
                "c.yaml:12:3: 'connectors' connectors are not supported by oomscope",
                "c.yaml:15:3: 'service' has invalid keys: extension",
                "c.yaml:19:7: 'service::pipelines::logs' has invalid keys: exporter",
                "c.yaml:17:5: 'service::pipelines::logs' must have at least one exporter",
            ]
        );
        assert_eq!(
            errors("receivers: {otlp: {protocols: {grpc: }}}\nexporters: {nope: }\nservice: {pipelines: {logs: {receivers: [otlp], exporters: [nope]}}}\n"),
            [
                "c.yaml:2:13: 'exporters' unknown type: \"nope\" for id: \"nope\" (valid values: [debug file otlp otlp_grpc otlp_http otlphttp])",
            ]
        );
    }

    #[test]
    fn component_validation_errors_carry_the_component_position_and_path() {
        let text = "\
receivers:
  otlp:
  otlp/http:
    protocols:
      http: {endpoint: localhost}
exporters:
  debug:
  otlp:
    compression: zstd
  otlphttp: {}
service:
  pipelines:
    logs: {receivers: [otlp, otlp/http], exporters: [debug, otlp, otlphttp]}
";
        // Each invalid component is reported once, at its id; the pipeline
        // naming it does not report it again as "not configured".
        assert_eq!(
            errors(text),
            [
                "c.yaml:2:3: 'receivers::otlp' must specify at least one protocol when using the OTLP receiver",
                // Pointed at the offending key, not at the component.
                "c.yaml:5:14: 'receivers::otlp/http::protocols::http::endpoint' \"localhost\" must be host:port (for example 127.0.0.1:4317, or :4317 for every interface)",
                "c.yaml:8:3: 'exporters::otlp' requires a non-empty \"endpoint\"",
                "c.yaml:10:3: 'exporters::otlphttp' requires a non-empty \"endpoint\" (or both \"logs_endpoint\" and \"metrics_endpoint\"); logs_endpoint is not set",
            ]
        );
    }

    #[test]
    fn old_collector_exporter_spellings_load() {
        let text = "\
receivers: {otlp: {protocols: {http: }}}
exporters:
  otlp_grpc:
    endpoint: localhost:4317
  otlp_http/backup:
    endpoint: http://localhost:4318
  otlp/classic:
    endpoint: localhost:4319
  otlphttp/classic:
    endpoint: http://localhost:4320
service:
  pipelines:
    metrics: {receivers: [otlp], exporters: [otlp_grpc, otlp_http/backup]}
    logs: {receivers: [otlp], exporters: [otlp/classic, otlphttp/classic]}
";
        let config = load(text).expect("valid");
        // The collector's long-standing names `otlp` and `otlphttp`.
        assert!(
            matches!(
                config.exporters.get(&id("otlp/classic")),
                Some(ExporterConfig::OtlpGrpc(c)) if c.endpoint == "localhost:4319"
            ),
            "{:?}",
            config.exporters
        );
        assert!(
            matches!(
                config.exporters.get(&id("otlphttp/classic")),
                Some(ExporterConfig::OtlpHttp(c)) if c.endpoint == "http://localhost:4320"
            ),
            "{:?}",
            config.exporters
        );
        assert!(
            matches!(
                config.exporters.get(&id("otlp_grpc")),
                Some(ExporterConfig::OtlpGrpc(c)) if c.endpoint == "localhost:4317"
            ),
            "{:?}",
            config.exporters
        );
        assert!(
            matches!(
                config.exporters.get(&id("otlp_http/backup")),
                Some(ExporterConfig::OtlpHttp(c)) if c.endpoint == "http://localhost:4318"
            ),
            "{:?}",
            config.exporters
        );
        assert_eq!(
            config
                .service
                .pipelines
                .iter()
                .find(|(pid, _)| pid.signal == Signal::Metrics)
                .map(|(_, p)| p.exporters.clone()),
            Some(vec![id("otlp_grpc"), id("otlp_http/backup")])
        );
    }

    #[test]
    fn environment_values_are_typed_like_the_collector() {
        let vars: HashMap<&str, &str> = [("QS", "5")].into();
        let env = |name: &str| vars.get(name).map(|v| v.to_string());
        let text = "\
receivers: {otlp: {protocols: {grpc: }}}
exporters:
  otlp:
    endpoint: localhost:4317
    sending_queue:
      queue_size: ${env:QS}
service:
  pipelines:
    logs: {receivers: [otlp], exporters: [otlp]}
";
        let config = load_str_with_env("c.yaml", text, &env).expect("valid");
        let Some(ExporterConfig::OtlpGrpc(otlp)) = config.exporters.get(&id("otlp")) else {
            panic!("otlp exporter missing");
        };
        assert_eq!(otlp.sending_queue.queue_size, 5);

        let quoted = text.replace("${env:QS}", "\"${env:QS}\"");
        let errs: Vec<String> = load_str_with_env("c.yaml", &quoted, &env)
            .expect_err("string where a number is wanted")
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(errs.contains(&"c.yaml:6:19: 'exporters::otlp::sending_queue::queue_size' expected an integer, got \"5\"".to_string()), "{errs:?}");
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    #[test]
    fn files_merge_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = write(
            &dir,
            "base.yaml",
            "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nservice:\n  oom_score_adj: 100\n  pipelines:\n    logs: {receivers: [otlp], exporters: [debug]}\n",
        );
        let over = write(
            &dir,
            "over.yaml",
            "exporters:\n  otlp:\n    endpoint: localhost:4317\n    sending_queue: {queue_size: 7}\nservice:\n  oom_score_adj: 200\n  pipelines:\n    logs:\n      exporters: [otlp]\n",
        );
        let config = load_files_with_env(&[base, over], &|_| None).expect("valid");
        assert_eq!(
            config.exporters.keys().cloned().collect::<Vec<_>>(),
            [id("debug"), id("otlp")]
        );
        let logs = config
            .service
            .pipelines
            .values()
            .next()
            .expect("one pipeline");
        assert_eq!(logs.receivers, [id("otlp")]);
        assert_eq!(logs.exporters, [id("otlp")]);
        assert_eq!(config.service.oom_score_adj, Some(200));
    }

    #[test]
    fn merged_errors_point_into_the_file_that_wrote_the_value() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = write(
            &dir,
            "base.yaml",
            "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nservice:\n  pipelines:\n    logs: {receivers: [otlp], exporters: [debug]}\n",
        );
        let over = write(
            &dir,
            "over.yaml",
            "service:\n  pipelines:\n    logs:\n      exporters: [gone]\n",
        );
        let errs = load_files_with_env(&[base, over.clone()], &|_| None).expect_err("invalid");
        assert_eq!(
            errs.to_string(),
            format!(
                "{}:4:19: 'service::pipelines::logs' references exporter \"gone\" which is not configured",
                over.display()
            )
        );
    }

    #[test]
    fn missing_and_empty_files_are_errors_naming_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.yaml");
        let empty = write(&dir, "empty.yaml", "");
        let errs =
            load_files_with_env(&[missing.clone(), empty.clone()], &|_| None).expect_err("invalid");
        let texts: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(
            texts[0].starts_with(&format!(
                "cannot read configuration file {}: ",
                missing.display()
            )),
            "{}",
            texts[0]
        );
        assert_eq!(
            texts[1],
            format!("{}:1:1: empty configuration file", empty.display())
        );
        assert!(load_files(&[]).is_err());
    }

    #[test]
    fn env_errors_carry_positions() {
        assert_eq!(
            errors("receivers:\n  otlp:\nexporters:\n  debug:\n    verbosity: ${env:no-good}\n"),
            ["c.yaml:5:16: environment variable \"no-good\" has invalid name: must match regex ^[a-zA-Z_][a-zA-Z0-9_]*$"]
        );
    }
}
