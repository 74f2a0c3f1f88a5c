//! From the merged, expanded YAML tree to a [`Config`]: each section decoded
//! through the registry's factories, the service section read, then every
//! reference between components checked in one pass ([`super::references`]).
//! Every error is collected, so one run reports them all.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use super::references::{self, Declared, Link};
use super::walk::{
    check_keys, entries, id_list, key_mark, key_text, prefixed, unknown_type_message, IdRef,
};
use super::{
    from_node, ComponentId, Config, ConfigError, ConfigErrors, GoDuration, Mark, Node, NodeValue,
    PipelineConfig, PipelineId, ServiceConfig, TelemetryConfig, DEFAULT_OOM_SCORE_ADJ,
};
use crate::component::{ComponentConfig, Factory, Kind, Registry};

/// Default for `service.shutdown_timeout`.
const DEFAULT_SHUTDOWN_TIMEOUT: GoDuration = GoDuration::from_secs(10);

/// Top-level keys of a config.
const TOP_LEVEL_KEYS: &[&str] = &[
    "receivers",
    "processors",
    "exporters",
    "extensions",
    "connectors",
    "service",
];

/// Keys of `service`.
const SERVICE_KEYS: &[&str] = &[
    "extensions",
    "pipelines",
    "telemetry",
    "oom_score_adj",
    "shutdown_timeout",
    "drop_capabilities",
];

/// A decoded component: its config, the factory's type and where it is written.
pub(super) struct Decoded<C: ?Sized> {
    pub config: Box<C>,
    /// The type's current spelling (the id keeps what the user wrote).
    pub type_name: &'static str,
    pub signals: &'static [crate::pipeline::Signal],
    pub key_mark: Mark,
    pub node: Node,
}

/// One decoded section.
pub(super) struct Section<C: ?Sized> {
    pub ok: BTreeMap<ComponentId, Decoded<C>>,
    /// Declared, but reported as invalid: references to these are not
    /// reported again as "not configured".
    pub failed: BTreeSet<ComponentId>,
}

/// A pipeline as written: its ids with their positions.
pub(super) struct PipelineRefs {
    pub key_mark: Mark,
    pub receivers: Vec<IdRef>,
    pub processors: Vec<IdRef>,
    pub exporters: Vec<IdRef>,
}

/// The service section as written.
struct Service {
    config: ServiceConfig,
    extensions: Vec<IdRef>,
    pipelines: BTreeMap<PipelineId, PipelineRefs>,
}

pub(super) fn build(registry: &Registry, root: &Node) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    check_keys(root, "", TOP_LEVEL_KEYS, &mut errors);
    let receivers = section(
        root,
        registry,
        Kind::Receiver,
        |t| registry.receiver(t),
        |f, n| f.decode(n),
        &mut errors,
    );
    let processors = section(
        root,
        registry,
        Kind::Processor,
        |t| registry.processor(t),
        |f, n| f.decode(n),
        &mut errors,
    );
    let exporters = section(
        root,
        registry,
        Kind::Exporter,
        |t| registry.exporter(t),
        |f, n| f.decode(n),
        &mut errors,
    );
    let extensions = section(
        root,
        registry,
        Kind::Extension,
        |t| registry.extension(t),
        |f, n| f.decode(n),
        &mut errors,
    );
    refuse_connectors(root, &mut errors);
    require_section(root, "receivers", receivers.is_empty(), &mut errors);
    require_section(root, "exporters", exporters.is_empty(), &mut errors);

    let service = decode_service(root, &mut errors);

    let mut declared = Declared::default();
    declared.add(Kind::Receiver, &receivers);
    declared.add(Kind::Processor, &processors);
    declared.add(Kind::Exporter, &exporters);
    declared.add(Kind::Extension, &extensions);
    declared.enabled_extensions = service.extensions.iter().map(|r| r.id.clone()).collect();
    let mut links = references::service_links(&service.extensions, &service.pipelines);
    links.extend(component_links(Kind::Receiver, &receivers));
    links.extend(component_links(Kind::Processor, &processors));
    links.extend(component_links(Kind::Exporter, &exporters));
    links.extend(component_links(Kind::Extension, &extensions));
    references::check_lists(&service.extensions, &service.pipelines, &mut errors);
    references::check(&links, &declared, &mut errors);

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(assemble(
        service, receivers, processors, exporters, extensions,
    ))
}

/// Decodes one section (`receivers:` ...) with the factories of its kind.
fn section<F, C>(
    root: &Node,
    registry: &Registry,
    kind: Kind,
    lookup: impl Fn(&str) -> Option<&'static F>,
    decode: impl Fn(&F, &Node) -> Result<Box<C>, ConfigError>,
    errors: &mut Vec<ConfigError>,
) -> Section<C>
where
    F: ?Sized + Factory,
    C: ?Sized + ComponentConfig,
{
    let name = kind.section();
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
        if out.ok.contains_key(&id) || out.failed.contains(&id) {
            errors.push(ConfigError::new(
                Some(key.mark.clone()),
                name,
                format!("duplicate id {:?}", id.to_string()),
            ));
            continue;
        }
        let path = format!("{name}::{id}");
        let Some(factory) = lookup(&id.type_name) else {
            errors.push(match registry.retired(kind, &id.type_name) {
                Some(message) => ConfigError::new(Some(key.mark.clone()), path, message),
                None => ConfigError::new(
                    Some(key.mark.clone()),
                    name,
                    unknown_type_message(&id, &registry.type_names(kind)),
                ),
            });
            out.failed.insert(id);
            continue;
        };
        let config = match decode(factory, value) {
            Ok(config) => config,
            Err(e) => {
                errors.push(prefixed(e, &path));
                out.failed.insert(id);
                continue;
            }
        };
        if let Err(e) = config.validate() {
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
            Decoded {
                config,
                type_name: factory.type_name(),
                signals: factory.signals(),
                key_mark: key.mark.clone(),
                node: value.clone(),
            },
        );
    }
    out
}

impl<C: ?Sized> Section<C> {
    fn is_empty(&self) -> bool {
        self.ok.is_empty() && self.failed.is_empty()
    }
}

/// The references a section's components declare, with where each is written.
fn component_links<C: ?Sized + ComponentConfig>(kind: Kind, section: &Section<C>) -> Vec<Link> {
    let mut links = Vec::new();
    for (id, decoded) in &section.ok {
        for reference in decoded.config.references() {
            let mark = super::walk::value_mark(&decoded.node, &reference.key)
                .or_else(|| key_mark(&decoded.node, &reference.key))
                .unwrap_or_else(|| decoded.key_mark.clone());
            links.push(Link::from_component(kind, id, mark, reference));
        }
    }
    links
}

fn refuse_connectors(root: &Node, errors: &mut Vec<ConfigError>) {
    if let Some(connectors) = root.get("connectors") {
        if let Some((key, _)) = entries(connectors, "connectors", errors).first() {
            errors.push(ConfigError::new(
                Some(key.mark.clone()),
                "connectors",
                "connectors are not supported by oomscope",
            ));
        }
    }
}

/// Where a top-level key is written.
fn section_mark(root: &Node, name: &str) -> Option<Mark> {
    let NodeValue::Map(entries) = &root.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(k, _)| k.mark.clone())
}

/// Whether an error was reported at or under `path` already.
pub(super) fn reported_under(path: &str, errors: &[ConfigError]) -> bool {
    errors
        .iter()
        .any(|e| e.path == path || e.path.starts_with(&format!("{path}::")))
}

/// `no receiver configuration specified in config`, unless the section's
/// components were reported already.
fn require_section(root: &Node, name: &str, empty: bool, errors: &mut Vec<ConfigError>) {
    if !empty || reported_under(name, errors) {
        return;
    }
    let singular = name.trim_end_matches('s');
    errors.push(ConfigError::new(
        section_mark(root, name),
        "",
        format!("no {singular} configuration specified in config"),
    ));
}

fn decode_service(root: &Node, errors: &mut Vec<ConfigError>) -> Service {
    let mut service = Service {
        config: ServiceConfig {
            extensions: Vec::new(),
            pipelines: BTreeMap::new(),
            telemetry: TelemetryConfig::default(),
            oom_score_adj: Some(DEFAULT_OOM_SCORE_ADJ),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            drop_capabilities: true,
        },
        extensions: Vec::new(),
        pipelines: BTreeMap::new(),
    };
    if let Some(node) = root.get("service") {
        entries(node, "service", errors);
        check_keys(node, "service", SERVICE_KEYS, errors);
        service.extensions = id_list(node.get("extensions"), "service::extensions", errors);
        if let Some(pipelines) = node.get("pipelines") {
            service.pipelines = decode_pipelines(pipelines, errors);
        }
        decode_service_settings(node, &mut service.config, errors);
    }
    if service.pipelines.is_empty() && !reported_under("service::pipelines", errors) {
        errors.push(ConfigError::new(
            section_mark(root, "service"),
            "",
            "service must have at least one pipeline",
        ));
    }
    service
}

fn decode_pipelines(
    pipelines: &Node,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<PipelineId, PipelineRefs> {
    let mut out = BTreeMap::new();
    for (key, value) in entries(pipelines, "service::pipelines", errors) {
        let Some(text) = key_text(key, "service::pipelines", errors) else {
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
        entries(value, &path, errors);
        check_keys(
            value,
            &path,
            &["receivers", "processors", "exporters"],
            errors,
        );
        let list = |name: &str, errors: &mut Vec<ConfigError>| {
            id_list(value.get(name), &format!("{path}::{name}"), errors)
        };
        let refs = PipelineRefs {
            key_mark: key.mark.clone(),
            receivers: list("receivers", errors),
            processors: list("processors", errors),
            exporters: list("exporters", errors),
        };
        out.insert(id, refs);
    }
    out
}

/// `telemetry`, `oom_score_adj`, `shutdown_timeout`, `drop_capabilities`.
fn decode_service_settings(node: &Node, config: &mut ServiceConfig, errors: &mut Vec<ConfigError>) {
    if let Some(telemetry) = node.get("telemetry") {
        match from_node::<TelemetryConfig>(telemetry) {
            // As the collector: metrics on with no reader is a mistake.
            Ok(t)
                if t.metrics.readers.as_ref().is_some_and(Vec::is_empty)
                    && t.metrics.level != crate::config::MetricsLevel::None =>
            {
                errors.push(ConfigError::new(
                    Some(telemetry.mark.clone()),
                    "service::telemetry::metrics::readers",
                    "must not be empty when metrics::level is not none".to_string(),
                ))
            }
            Ok(t) => match t.metrics.unsupported() {
                Some((key, message)) => errors.push(ConfigError::new(
                    Some(telemetry.mark.clone()),
                    format!("service::telemetry::metrics::{key}"),
                    message,
                )),
                None => config.telemetry = t,
            },
            Err(e) => errors.push(prefixed(e, "service::telemetry")),
        }
    }
    if let Some(adj) = node.get("oom_score_adj") {
        if adj.is_null() {
            config.oom_score_adj = None;
        } else {
            match from_node::<i32>(adj) {
                Ok(v) if (-1000..=1000).contains(&v) => config.oom_score_adj = Some(v),
                Ok(v) => errors.push(ConfigError::new(
                    Some(adj.mark.clone()),
                    "service::oom_score_adj",
                    format!("must be between -1000 and 1000, got {v}"),
                )),
                Err(e) => errors.push(prefixed(e, "service::oom_score_adj")),
            }
        }
    }
    if let Some(drop) = node.get("drop_capabilities") {
        if !drop.is_null() {
            match from_node::<bool>(drop) {
                Ok(v) => config.drop_capabilities = v,
                Err(e) => errors.push(prefixed(e, "service::drop_capabilities")),
            }
        }
    }
    if let Some(timeout) = node.get("shutdown_timeout") {
        if !timeout.is_null() {
            match from_node::<GoDuration>(timeout) {
                Ok(t) => config.shutdown_timeout = t,
                Err(e) => errors.push(prefixed(e, "service::shutdown_timeout")),
            }
        }
    }
}

fn assemble(
    service: Service,
    receivers: Section<dyn crate::component::ReceiverConfig>,
    processors: Section<dyn crate::component::ProcessorConfig>,
    exporters: Section<dyn crate::component::ExporterConfig>,
    extensions: Section<dyn crate::component::ExtensionConfig>,
) -> Config {
    let mut config = service.config;
    config.extensions = service.extensions.into_iter().map(|r| r.id).collect();
    config.pipelines = service
        .pipelines
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
    fn configs<C: ?Sized>(section: Section<C>) -> BTreeMap<ComponentId, Box<C>> {
        section
            .ok
            .into_iter()
            .map(|(id, d)| (id, d.config))
            .collect()
    }
    Config {
        receivers: configs(receivers),
        processors: configs(processors),
        exporters: configs(exporters),
        extensions: configs(extensions),
        service: config,
    }
}
