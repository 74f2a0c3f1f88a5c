//! Every reference between components, checked in one pass: pipelines and
//! `service::extensions` naming components, and the references each
//! component's config declares (`storage:`, `auth::authenticator`).

use std::collections::{BTreeMap, BTreeSet};

use super::build::{reported_under, PipelineRefs, Section};
use super::suggest::did_you_mean;
use super::walk::IdRef;
use super::{ComponentId, ConfigError, Mark, PipelineId};
use crate::component::{Kind, Reference};
use crate::pipeline::Signal;

/// What the config declares, as references see it.
#[derive(Default)]
pub(super) struct Declared {
    /// Decoded components: their type's current spelling and signals.
    ok: BTreeMap<(Kind, ComponentId), (&'static str, &'static [Signal])>,
    /// Declared but reported as invalid: not reported again when named.
    failed: BTreeSet<(Kind, ComponentId)>,
    /// `service::extensions`: only these run.
    pub enabled_extensions: BTreeSet<ComponentId>,
}

impl Declared {
    pub fn add<C: ?Sized>(&mut self, kind: Kind, section: &Section<C>) {
        for (id, d) in &section.ok {
            self.ok.insert((kind, id.clone()), (d.type_name, d.signals));
        }
        for id in &section.failed {
            self.failed.insert((kind, id.clone()));
        }
    }

    /// The configured ids of one kind, for suggestions.
    fn ids(&self, kind: Kind) -> Vec<String> {
        self.ok
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| id.to_string())
            .collect()
    }
}

/// One reference, with where it is written.
pub(super) struct Link {
    /// The error's path: `service::pipelines::logs`,
    /// `exporters::otlp::sending_queue::storage`.
    path: String,
    mark: Mark,
    id: ComponentId,
    kind: Kind,
    from: From,
}

enum From {
    /// An entry of `service::extensions` or of a pipeline (with its signal).
    List { signal: Option<Signal> },
    /// A key of a component's config.
    Key {
        /// The key's last segment (`storage`), the noun of the message.
        noun: String,
        type_names: &'static [&'static str],
        purpose: &'static str,
    },
}

impl Link {
    pub fn from_component(kind: Kind, id: &ComponentId, mark: Mark, r: Reference) -> Link {
        let noun = r.key.rsplit("::").next().unwrap_or(&r.key).to_string();
        Link {
            path: format!("{}::{id}::{}", kind.section(), r.key),
            mark,
            id: r.id,
            kind: r.kind,
            from: From::Key {
                noun,
                type_names: r.type_names,
                purpose: r.purpose,
            },
        }
    }
}

/// The references the service section makes.
pub(super) fn service_links(
    extensions: &[IdRef],
    pipelines: &BTreeMap<PipelineId, PipelineRefs>,
) -> Vec<Link> {
    let list = |path: &str, kind: Kind, signal: Option<Signal>, r: &IdRef| Link {
        path: path.to_string(),
        mark: r.mark.clone(),
        id: r.id.clone(),
        kind,
        from: From::List { signal },
    };
    let mut links: Vec<Link> = extensions
        .iter()
        .map(|r| list("service::extensions", Kind::Extension, None, r))
        .collect();
    for (pid, refs) in pipelines {
        let path = format!("service::pipelines::{pid}");
        let signal = Some(pid.signal);
        for (kind, ids) in [
            (Kind::Receiver, &refs.receivers),
            (Kind::Processor, &refs.processors),
            (Kind::Exporter, &refs.exporters),
        ] {
            links.extend(ids.iter().map(|r| list(&path, kind, signal, r)));
        }
    }
    links
}

/// Checks every reference against what is declared.
pub(super) fn check(links: &[Link], declared: &Declared, errors: &mut Vec<ConfigError>) {
    for link in links {
        let key = (link.kind, link.id.clone());
        if declared.failed.contains(&key) {
            continue;
        }
        let problem = match (declared.ok.get(&key), &link.from) {
            (None, From::List { .. }) => Some(format!(
                "references {} {:?} which is not configured{}",
                link.kind,
                link.id.to_string(),
                suggestion(&link.id, declared, link.kind)
            )),
            (None, From::Key { noun, purpose, .. }) => Some(format!(
                "{noun} {:?} is not configured in {}: {purpose}{}",
                link.id.to_string(),
                link.kind.section(),
                suggestion(&link.id, declared, link.kind)
            )),
            (Some((_, signals)), From::List { signal: Some(s) }) if !signals.contains(s) => {
                Some(format!(
                    "{} {:?} does not support the {s} signal",
                    link.kind,
                    link.id.to_string()
                ))
            }
            (Some(_), From::List { .. }) => None,
            (
                Some((type_name, _)),
                From::Key {
                    noun,
                    type_names: wants,
                    purpose,
                },
            ) if !wants.is_empty() && !wants.contains(type_name) => Some(format!(
                "{noun} {:?} is not a {} {kind}: {purpose}",
                link.id.to_string(),
                one_of(wants),
                kind = link.kind
            )),
            (Some(_), From::Key { noun, purpose, .. })
                if link.kind == Kind::Extension
                    && !declared.enabled_extensions.contains(&link.id) =>
            {
                Some(format!(
                    "{noun} {:?} is not enabled in service::extensions: {purpose}",
                    link.id.to_string()
                ))
            }
            (Some(_), From::Key { .. }) => None,
        };
        if let Some(message) = problem {
            errors.push(ConfigError::new(
                Some(link.mark.clone()),
                &link.path,
                message,
            ));
        }
    }
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn suggestion(id: &ComponentId, declared: &Declared, kind: Kind) -> String {
    let ids = declared.ids(kind);
    did_you_mean(&id.to_string(), ids.iter().map(String::as_str))
}

/// What the lists themselves must satisfy: no id twice in
/// `service::extensions` or in one pipeline's processors, and at least one
/// receiver and one exporter per pipeline.
pub(super) fn check_lists(
    extensions: &[IdRef],
    pipelines: &BTreeMap<PipelineId, PipelineRefs>,
    errors: &mut Vec<ConfigError>,
) {
    repeated("service::extensions", Kind::Extension, extensions, errors);
    for (pid, refs) in pipelines {
        let path = format!("service::pipelines::{pid}");
        for (name, ids) in [
            ("receivers", &refs.receivers),
            ("exporters", &refs.exporters),
        ] {
            if ids.is_empty() && !reported_under(&format!("{path}::{name}"), errors) {
                errors.push(ConfigError::new(
                    Some(refs.key_mark.clone()),
                    &path,
                    format!("must have at least one {}", name.trim_end_matches('s')),
                ));
            }
        }
        repeated(&path, Kind::Processor, &refs.processors, errors);
    }
}

fn repeated(path: &str, kind: Kind, ids: &[IdRef], errors: &mut Vec<ConfigError>) {
    let mut seen = BTreeSet::new();
    for r in ids {
        if !seen.insert(&r.id) {
            errors.push(ConfigError::new(
                Some(r.mark.clone()),
                path,
                format!("references {kind} {:?} multiple times", r.id.to_string()),
            ));
        }
    }
}
