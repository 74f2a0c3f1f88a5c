//! Loading: read each file, parse, expand `${env:...}`, merge in order (maps
//! merge recursively, later files win for scalars and sequences, as in the
//! collector), then decode every section and validate the service graph,
//! collecting every error found.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;

use super::{
    env, from_node, node, ComponentId, Config, ConfigError, ConfigErrors, GoDuration, Mark, Node,
    NodeValue, PipelineConfig, PipelineId, ServiceConfig, TelemetryConfig, DEFAULT_OOM_SCORE_ADJ,
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
            for (key, value) in over_entries {
                let existing = entries
                    .iter()
                    .position(|(k, _)| k.as_str().is_some() && k.as_str() == key.as_str());
                match existing {
                    Some(i) => {
                        let (_, old_value) = entries.remove(i);
                        entries.insert(i, (key, merge(old_value, value)));
                    }
                    None => entries.push((key, value)),
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

/// Decodes one section (`receivers:` ...) with its registry.
fn section<T>(
    root: &Node,
    name: &str,
    types: &[&str],
    decode: impl Fn(&str, &Node) -> Option<Result<T, ConfigError>>,
    validate: impl Fn(&T) -> Result<(), String>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<ComponentId, Component<T>> {
    let mut out = BTreeMap::new();
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
        if out.contains_key(&id) {
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
                continue;
            }
            None if name == "exporters" && id.type_name == "logging" => {
                errors.push(ConfigError::new(
                    Some(key.mark.clone()),
                    path,
                    "the logging exporter has been deprecated, use the debug exporter instead",
                ));
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
                continue;
            }
        };
        if let Err(message) = validate(&config) {
            errors.push(ConfigError::new(Some(key.mark.clone()), path, message));
            continue;
        }
        out.insert(
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
        ProcessorConfig::validate,
        &mut errors,
    );
    let exporters = section(
        root,
        "exporters",
        ExporterConfig::TYPES,
        ExporterConfig::from_node,
        ExporterConfig::validate,
        &mut errors,
    );
    let extensions = section(
        root,
        "extensions",
        ExtensionConfig::TYPES,
        ExtensionConfig::from_node,
        ExtensionConfig::validate,
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
                None => errors.push(not_configured(&path, "receiver", r)),
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
            if !processors.contains_key(&r.id) {
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
            if !exporters.contains_key(&r.id) {
                errors.push(not_configured(&path, "exporter", r));
            }
        }
    }

    // Persistent queues need a configured, enabled file_storage extension.
    for (id, exporter) in &exporters {
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
        receivers: configs(receivers),
        processors: configs(processors),
        exporters: configs(exporters),
        extensions: configs(extensions),
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
