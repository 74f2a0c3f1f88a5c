//! The `resource` processor: changes resource attributes like the collector's
//! `resourceprocessor`, and adds the host's own attributes like the
//! `resource_detection` processor's `system` detector.
//!
//! Order of work on each resource:
//! 1. detected host attributes (`detect: true`, the default) are *inserted*:
//!    an attribute the data already has is left alone. Our own receivers do
//!    not set these, so inserting is enough; data relayed from other hosts
//!    keeps its origin's values (the collector's `override: false`).
//! 2. the configured `attributes` actions run in order, so they can update
//!    or delete a detected attribute.
//!
//! Detection runs once, at build.

use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::component::{
    BuildContext, ComponentConfig, Factory, ProcessorConfig, ProcessorFactory, Stability,
};
use crate::config::{from_node, ConfigError, Node, ValidationError};
use crate::pipeline::data::kv_str;
use crate::pipeline::{Batch, ConsumeError, Consumer, DynConsumer, Payload, Signal};

/// `resource` configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceConfig {
    /// Actions on resource attributes, applied in order (after detection).
    pub attributes: Vec<AttributeAction>,
    /// Insert the host's attributes (`host.name`, `host.id`, `host.arch`,
    /// `os.type`, `os.description`), detected once at build. On by default.
    pub detect: bool,
}

impl Default for ResourceConfig {
    fn default() -> Self {
        ResourceConfig {
            attributes: Vec::new(),
            detect: true,
        }
    }
}

/// One entry of `attributes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeAction {
    /// The attribute acted on (may be left out by `delete` and `hash` with
    /// a `pattern`).
    #[serde(default)]
    pub key: String,
    /// The value to set (string, int, float or bool); for insert, update and upsert.
    #[serde(default)]
    pub value: Option<AttributeValue>,
    /// Copy the value of this attribute of the same resource instead of
    /// `value`; nothing happens when it is absent.
    #[serde(default)]
    pub from_attribute: Option<String>,
    /// `extract`: a regular expression with named groups; each group that
    /// matches the attribute's string value is upserted under its name.
    /// `delete`, `hash`: also act on every attribute whose name matches.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `convert`: `int`, `double` or `string`.
    #[serde(default)]
    pub converted_type: Option<String>,
    /// The collector's request-metadata source; refused (see `validate`).
    #[serde(default)]
    pub from_context: Option<String>,
    pub action: Action,
}

/// What to do with `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set only when absent.
    Insert,
    /// Set only when present.
    Update,
    /// Set in both cases.
    Upsert,
    /// Remove.
    Delete,
    /// Replace the value by the hex SHA-256 of it, as the collector does.
    Hash,
    /// Upsert the named groups of `pattern` matched on the value.
    Extract,
    /// Change the value's type to `converted_type`.
    Convert,
}

/// A configured attribute value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    Bool(bool),
    Int(i64),
    Double(f64),
    String(String),
}

impl AttributeValue {
    fn to_any_value(&self) -> AnyValue {
        let value = match self {
            AttributeValue::Bool(b) => any_value::Value::BoolValue(*b),
            AttributeValue::Int(i) => any_value::Value::IntValue(*i),
            AttributeValue::Double(d) => any_value::Value::DoubleValue(*d),
            AttributeValue::String(s) => any_value::Value::StringValue(s.clone()),
        };
        AnyValue { value: Some(value) }
    }
}

impl ComponentConfig for ResourceConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        for (i, a) in self.attributes.iter().enumerate() {
            a.validate()
                .map_err(|message| ValidationError::at(format!("attributes[{i}]"), message))?;
        }
        Ok(())
    }
}

impl AttributeAction {
    /// The collector's rules for one action.
    fn validate(&self) -> Result<(), String> {
        let by_pattern =
            matches!(self.action, Action::Delete | Action::Hash) && self.pattern.is_some();
        if self.key.is_empty() && !by_pattern {
            return Err("missing required field \"key\"".to_string());
        }
        if self.from_context.is_some() {
            return Err(format!(
                "(key {:?}): \"from_context\" is not supported: this agent keeps no request \
                 metadata (its otlp receiver refuses include_metadata: true); set the value \
                 with \"value\" or copy it with \"from_attribute\"",
                self.key
            ));
        }
        let takes_value = matches!(
            self.action,
            Action::Insert | Action::Update | Action::Upsert
        );
        if !takes_value && (self.value.is_some() || self.from_attribute.is_some()) {
            return Err(format!(
                "(key {:?}): action {:?} takes neither \"value\" nor \"from_attribute\"",
                self.key,
                self.action.as_str()
            ));
        }
        match (self.action, &self.pattern) {
            (Action::Extract, None) => {
                return Err(format!(
                    "(key {:?}): missing required field \"pattern\" for action \"extract\"",
                    self.key
                ))
            }
            (Action::Delete | Action::Hash, Some(_)) => {
                self.pattern_regex()?;
            }
            (Action::Insert | Action::Update | Action::Upsert | Action::Convert, Some(_)) => {
                return Err(format!(
                    "(key {:?}): action {:?} does not take \"pattern\"",
                    self.key,
                    self.action.as_str()
                ))
            }
            _ => {}
        }
        if self.converted_type.is_some() != (self.action == Action::Convert) {
            return Err(format!(
                "(key {:?}): \"converted_type\" is required by action \"convert\" and taken by no other",
                self.key
            ));
        }
        match self.action {
            Action::Hash => return Ok(()),
            Action::Extract => return self.extract_regex().map(|_| ()),
            Action::Convert => {
                return match self.converted_type.as_deref() {
                    Some("int" | "double" | "string") => Ok(()),
                    other => Err(format!(
                        "(key {:?}): converted_type {:?} is not one of int, double, string",
                        self.key,
                        other.unwrap_or_default()
                    )),
                }
            }
            _ => {}
        }
        match (self.action, &self.value, &self.from_attribute) {
            (Action::Delete, None, None) => Ok(()),
            (Action::Delete, _, _) => Err(format!(
                "(key {:?}): action \"delete\" takes neither \"value\" nor \"from_attribute\"",
                self.key
            )),
            (_, None, None) => Err(format!(
                "(key {:?}): missing required field \"value\" or \"from_attribute\" for action {:?}",
                self.key,
                self.action.as_str()
            )),
            (_, Some(_), Some(_)) => Err(format!(
                "(key {:?}): set only one of \"value\" and \"from_attribute\"",
                self.key
            )),
            _ => Ok(()),
        }
    }
}

/// Makes `resource` processors.
pub struct ResourceProcessorFactory;

impl Factory for ResourceProcessorFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["resource"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "sets, changes or removes resource attributes, and can add the host's own"
    }
}

impl ProcessorFactory for ResourceProcessorFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ProcessorConfig>, ConfigError> {
        Ok(Box::new(from_node::<ResourceConfig>(node)?))
    }
}

impl ProcessorConfig for ResourceConfig {
    fn build(
        &self,
        ctx: &BuildContext,
        signal: Signal,
        next: DynConsumer,
    ) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)> {
        build(self, ctx, signal, next)
    }
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Insert => "insert",
            Action::Update => "update",
            Action::Upsert => "upsert",
            Action::Delete => "delete",
            Action::Hash => "hash",
            Action::Extract => "extract",
            Action::Convert => "convert",
        }
    }
}

impl AttributeAction {
    /// `pattern` compiled (bounded in size).
    fn pattern_regex(&self) -> Result<regex::Regex, String> {
        let pattern = self.pattern.as_deref().unwrap_or_default();
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("(key {:?}): invalid pattern: {e}", self.key))
    }

    /// `pattern` of `extract`: every group must be named, and one at least
    /// (the collector's rules).
    fn extract_regex(&self) -> Result<regex::Regex, String> {
        let re = self.pattern_regex()?;
        let pattern = self.pattern.as_deref().unwrap_or_default();
        let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
        if names.is_empty() {
            return Err(format!(
                "(key {:?}): pattern {pattern:?} has no named group such as (?P<name>...)",
                self.key
            ));
        }
        if names.iter().any(Option::is_none) {
            return Err(format!(
                "(key {:?}): pattern {pattern:?} has an unnamed group; name every group (?P<name>...) or use (?:...)",
                self.key
            ));
        }
        Ok(re)
    }
}

pub fn build(
    c: &ResourceConfig,
    ctx: &BuildContext,
    _s: Signal,
    next: DynConsumer,
) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)> {
    c.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?;
    let detected = if c.detect { detect_host() } else { Vec::new() };
    if c.attributes.is_empty() && detected.is_empty() {
        // Nothing to do: no processor in the way.
        return Ok((next, None));
    }
    let mut actions = Vec::with_capacity(c.attributes.len());
    for a in &c.attributes {
        let regex = match (a.action, &a.pattern) {
            (Action::Extract, _) => Some(a.extract_regex()),
            (Action::Delete | Action::Hash, Some(_)) => Some(a.pattern_regex()),
            _ => None,
        };
        let regex = regex
            .transpose()
            .map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?;
        actions.push((a.clone(), regex));
    }
    Ok((
        Arc::new(ResourceProcessor {
            detected,
            actions,
            next,
        }),
        None,
    ))
}

struct ResourceProcessor {
    detected: Vec<KeyValue>,
    /// Each action with its compiled `pattern` (extract; delete and hash
    /// by attribute name).
    actions: Vec<(AttributeAction, Option<regex::Regex>)>,
    next: DynConsumer,
}

#[async_trait]
impl Consumer for ResourceProcessor {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        match Arc::make_mut(&mut batch.payload) {
            Payload::Logs(rls) => rls
                .iter_mut()
                .for_each(|rl| self.apply(rl.resource.get_or_insert_with(Resource::default))),
            Payload::Metrics(rms) => rms
                .iter_mut()
                .for_each(|rm| self.apply(rm.resource.get_or_insert_with(Resource::default))),
        }
        self.next.consume(batch).await
    }
}

impl ResourceProcessor {
    fn apply(&self, resource: &mut Resource) {
        let attrs = &mut resource.attributes;
        for kv in &self.detected {
            if position(attrs, &kv.key).is_none() {
                attrs.push(kv.clone());
            }
        }
        for (a, regex) in &self.actions {
            match (a.action, regex) {
                (Action::Hash, names) => {
                    hash_value(attrs, &a.key);
                    if let Some(re) = names {
                        for key in matching_keys(attrs, re) {
                            hash_value(attrs, &key);
                        }
                    }
                }
                (Action::Delete, Some(re)) => {
                    attrs.retain(|kv| kv.key != a.key && !re.is_match(&kv.key));
                }
                (Action::Convert, _) => convert_value(
                    attrs,
                    &a.key,
                    a.converted_type.as_deref().unwrap_or_default(),
                ),
                (Action::Extract, Some(re)) => extract_value(attrs, &a.key, re),
                _ => apply_action(attrs, a),
            }
        }
    }
}

fn position(attrs: &[KeyValue], key: &str) -> Option<usize> {
    attrs.iter().position(|kv| kv.key == key)
}

fn apply_action(attrs: &mut Vec<KeyValue>, a: &AttributeAction) {
    let existing = position(attrs, &a.key);
    if a.action == Action::Delete {
        // Duplicate keys are invalid OTLP but possible on the wire: remove all.
        attrs.retain(|kv| kv.key != a.key);
        return;
    }
    let set = matches!(
        (a.action, existing),
        (Action::Insert, None) | (Action::Update, Some(_)) | (Action::Upsert, _)
    );
    if !set {
        return;
    }
    let value = match (&a.value, &a.from_attribute) {
        (Some(v), _) => v.to_any_value(),
        (None, Some(from)) => match position(attrs, from).and_then(|i| attrs[i].value.clone()) {
            Some(v) => v,
            None => return,
        },
        (None, None) => return,
    };
    match existing {
        Some(i) => attrs[i].value = Some(value),
        None => attrs.push(KeyValue {
            key: a.key.clone(),
            value: Some(value),
            ..Default::default()
        }),
    }
}

/// `hash`: the value becomes the hex SHA-256 of its bytes, as the collector's
/// `sha2Hasher` computes them (strings as UTF-8, bools as one byte, ints and
/// doubles as 8 little-endian bytes); other types become "".
fn hash_value(attrs: &mut [KeyValue], key: &str) {
    for kv in attrs.iter_mut().filter(|kv| kv.key == key) {
        let bytes: Vec<u8> = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.as_bytes().to_vec(),
            Some(any_value::Value::BoolValue(b)) => vec![u8::from(*b)],
            Some(any_value::Value::IntValue(i)) => i.to_le_bytes().to_vec(),
            Some(any_value::Value::DoubleValue(d)) => d.to_bits().to_le_bytes().to_vec(),
            _ => Vec::new(),
        };
        let hashed = if bytes.is_empty() {
            String::new()
        } else {
            ring::digest::digest(&ring::digest::SHA256, &bytes)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        kv.value = Some(AnyValue {
            value: Some(any_value::Value::StringValue(hashed)),
        });
    }
}

/// `convert`, by the collector's rules: a value that cannot be converted
/// (a string that is no number, an array) is left as it is.
fn convert_value(attrs: &mut [KeyValue], key: &str, to: &str) {
    use any_value::Value as V;
    for kv in attrs.iter_mut().filter(|kv| kv.key == key) {
        let Some(current) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
            continue;
        };
        let converted = match (to, current) {
            ("string", V::StringValue(_)) => None,
            ("string", V::BoolValue(b)) => Some(V::StringValue(b.to_string())),
            ("string", V::IntValue(i)) => Some(V::StringValue(i.to_string())),
            ("string", V::DoubleValue(d)) => Some(V::StringValue(d.to_string())),
            ("int", V::DoubleValue(d)) => Some(V::IntValue(*d as i64)),
            ("int", V::BoolValue(b)) => Some(V::IntValue(i64::from(*b))),
            ("int", V::StringValue(s)) => s.parse::<i64>().ok().map(V::IntValue),
            ("double", V::IntValue(i)) => Some(V::DoubleValue(*i as f64)),
            ("double", V::BoolValue(b)) => Some(V::DoubleValue(f64::from(u8::from(*b)))),
            ("double", V::StringValue(s)) => s.parse::<f64>().ok().map(V::DoubleValue),
            _ => None,
        };
        if let Some(v) = converted {
            kv.value = Some(AnyValue { value: Some(v) });
        }
    }
}

/// Keys matching `re` (deduplicated), for `delete` and `hash` by pattern.
fn matching_keys(attrs: &[KeyValue], re: &regex::Regex) -> Vec<String> {
    let mut keys: Vec<String> = attrs
        .iter()
        .filter(|kv| re.is_match(&kv.key))
        .map(|kv| kv.key.clone())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// `extract`: on a string value that matches, each named group is upserted
/// under its name (`""` for a group that took no part, as in the collector).
fn extract_value(attrs: &mut Vec<KeyValue>, key: &str, re: &regex::Regex) {
    let Some(text) = attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        }
    }) else {
        return;
    };
    let Some(caps) = re.captures(&text) else {
        return;
    };
    for name in re.capture_names().flatten() {
        let text = caps.name(name).map_or("", |m| m.as_str());
        let value = Some(AnyValue {
            value: Some(any_value::Value::StringValue(text.to_string())),
        });
        match position(attrs, name) {
            Some(i) => attrs[i].value = value,
            None => attrs.push(KeyValue {
                key: name.to_string(),
                value,
                ..Default::default()
            }),
        }
    }
}

/// The host's attributes, as far as they can be read; missing sources are
/// skipped (logged at debug level), never an error.
pub fn detect_host() -> Vec<KeyValue> {
    let mut attrs = Vec::new();
    let uname = uname();
    if let Some(u) = &uname {
        if !u.nodename.is_empty() {
            attrs.push(kv_str("host.name", &u.nodename));
        }
    }
    match machine_id() {
        Some(id) => attrs.push(kv_str("host.id", &id)),
        None => tracing::debug!(
            "resource detection: no /etc/machine-id or /var/lib/dbus/machine-id; host.id not set"
        ),
    }
    if let Some(u) = &uname {
        attrs.push(kv_str("host.arch", semconv_arch(&u.machine)));
    }
    attrs.push(kv_str("os.type", "linux"));
    let pretty = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .ok()
        .and_then(|s| os_release_value(&s, "PRETTY_NAME"));
    let kernel = uname.as_ref().map(|u| format!("Linux {}", u.release));
    let description = match (pretty, kernel) {
        (Some(p), Some(k)) => Some(format!("{p} ({k})")),
        (Some(p), None) => Some(p),
        (None, Some(k)) => Some(k),
        (None, None) => None,
    };
    if let Some(d) = description {
        attrs.push(kv_str("os.description", &d));
    }
    attrs
}

struct Uname {
    nodename: String,
    release: String,
    machine: String,
}

fn uname() -> Option<Uname> {
    // SAFETY: `utsname` is plain old data; uname(2) fills it with
    // NUL-terminated strings and only reads the pointer we pass.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "resource detection: uname failed");
        return None;
    }
    fn field(chars: &[libc::c_char]) -> String {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    Some(Uname {
        nodename: field(&u.nodename),
        release: field(&u.release),
        machine: field(&u.machine),
    })
}

fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
}

/// The semantic-conventions `host.arch` value for a `uname -m` machine.
fn semconv_arch(machine: &str) -> &str {
    match machine {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" | "aarch64_be" => "arm64",
        "i386" | "i486" | "i586" | "i686" | "x86" => "x86",
        "ia64" => "ia64",
        "ppc64" | "ppc64le" => "ppc64",
        "ppc" | "ppcle" => "ppc32",
        "s390x" => "s390x",
        m if m.starts_with("arm") => "arm32",
        other => other,
    }
}

/// The unquoted value of `key` in os-release(5) content.
fn os_release_value(content: &str, key: &str) -> Option<String> {
    content.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        if k != key {
            return None;
        }
        let v = v.trim();
        let unquoted = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            .unwrap_or(v);
        let mut out = String::with_capacity(unquoted.len());
        let mut chars = unquoted.chars();
        while let Some(c) = chars.next() {
            // Shell-style escapes: \" \\ \$ \`
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        (!out.is_empty()).then_some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ComponentId;
    use crate::extensions::Extensions;
    use crate::pipeline::consumer::testing::Collect;
    use crate::telemetry::Telemetry;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
    use tokio_util::sync::CancellationToken;

    fn ctx() -> BuildContext {
        BuildContext {
            id: ComponentId::new("resource", None),
            telemetry: Telemetry::noop(),
            extensions: Arc::new(Extensions::default()),
            shutdown: CancellationToken::new(),
        }
    }

    fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn str_of(attrs: &[KeyValue], key: &str) -> Option<String> {
        match get(attrs, key) {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn action(json: serde_json::Value) -> AttributeAction {
        serde_json::from_value(json).expect("valid action")
    }

    async fn run(cfg: ResourceConfig, payload: Payload) -> Payload {
        let (collect, mut out) = Collect::new(None);
        let (consumer, task) = build(&cfg, &ctx(), payload.signal(), collect).expect("build");
        assert!(task.is_none());
        consumer
            .consume(Batch::new(payload))
            .await
            .expect("consume");
        let got = out.recv().await.expect("batch");
        Arc::try_unwrap(got.payload).unwrap_or_else(|a| (*a).clone())
    }

    fn logs_with(attrs: Vec<KeyValue>) -> Payload {
        Payload::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: attrs,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn resource_attrs(p: &Payload) -> Vec<KeyValue> {
        match p {
            Payload::Logs(rl) => rl[0].resource.clone().unwrap_or_default().attributes,
            Payload::Metrics(rm) => rm[0].resource.clone().unwrap_or_default().attributes,
        }
    }

    #[tokio::test]
    async fn insert_update_upsert_delete_follow_the_collector() {
        let cfg = ResourceConfig {
            detect: false,
            attributes: vec![
                action(serde_json::json!({"key": "new", "value": "x", "action": "insert"})),
                action(serde_json::json!({"key": "kept", "value": "changed", "action": "insert"})),
                action(serde_json::json!({"key": "absent", "value": 1, "action": "update"})),
                action(serde_json::json!({"key": "present", "value": 42, "action": "update"})),
                action(serde_json::json!({"key": "up1", "value": 1.5, "action": "upsert"})),
                action(serde_json::json!({"key": "kept2", "value": true, "action": "upsert"})),
                action(serde_json::json!({"key": "gone", "action": "delete"})),
                action(
                    serde_json::json!({"key": "copy", "from_attribute": "kept", "action": "upsert"}),
                ),
                action(
                    serde_json::json!({"key": "nocopy", "from_attribute": "missing", "action": "insert"}),
                ),
            ],
        };
        assert!(cfg.validate().is_ok());
        let input = logs_with(vec![
            kv_str("kept", "orig"),
            kv_str("present", "p"),
            kv_str("kept2", "k"),
            kv_str("gone", "g"),
        ]);
        let attrs = resource_attrs(&run(cfg, input).await);
        assert_eq!(str_of(&attrs, "new").as_deref(), Some("x"));
        assert_eq!(
            str_of(&attrs, "kept").as_deref(),
            Some("orig"),
            "insert does not overwrite"
        );
        assert!(get(&attrs, "absent").is_none(), "update does not create");
        assert_eq!(
            get(&attrs, "present"),
            Some(&any_value::Value::IntValue(42))
        );
        assert_eq!(
            get(&attrs, "up1"),
            Some(&any_value::Value::DoubleValue(1.5))
        );
        assert_eq!(
            get(&attrs, "kept2"),
            Some(&any_value::Value::BoolValue(true))
        );
        assert!(get(&attrs, "gone").is_none());
        assert_eq!(str_of(&attrs, "copy").as_deref(), Some("orig"));
        assert!(get(&attrs, "nocopy").is_none());
    }

    #[tokio::test]
    async fn creates_a_missing_resource_on_metrics() {
        let cfg = ResourceConfig {
            detect: false,
            attributes: vec![action(
                serde_json::json!({"key": "a", "value": "b", "action": "upsert"}),
            )],
        };
        let out = run(cfg, Payload::Metrics(vec![ResourceMetrics::default()])).await;
        assert_eq!(str_of(&resource_attrs(&out), "a").as_deref(), Some("b"));
    }

    #[test]
    fn validation_names_the_problem() {
        let missing = ResourceConfig {
            detect: false,
            attributes: vec![action(serde_json::json!({"key": "a", "action": "insert"}))],
        };
        let err = missing
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("missing required field \"value\" or \"from_attribute\""),
            "{err}"
        );
        assert!(serde_json::from_value::<AttributeAction>(
            serde_json::json!({"key": "a", "action": "rename"})
        )
        .is_err());
        let parsed: ResourceConfig =
            serde_json::from_value(serde_json::json!({"detect": false})).expect("valid");
        assert!(parsed.attributes.is_empty() && !parsed.detect);
        assert!(ResourceConfig::default().detect);
    }

    #[tokio::test]
    async fn detection_matches_the_host_and_does_not_override() {
        let cfg = ResourceConfig::default();
        let input = logs_with(vec![kv_str("host.name", "from-the-data")]);
        let attrs = resource_attrs(&run(cfg, input).await);
        assert_eq!(
            str_of(&attrs, "host.name").as_deref(),
            Some("from-the-data")
        );
        assert_eq!(str_of(&attrs, "os.type").as_deref(), Some("linux"));

        let detected = detect_host();
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .or_else(|_| std::fs::read_to_string("/var/lib/dbus/machine-id"))
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty());
        assert_eq!(str_of(&detected, "host.id"), machine_id);
        assert_eq!(str_of(&attrs, "host.id"), machine_id);

        let uname_r = std::process::Command::new("uname")
            .arg("-r")
            .output()
            .expect("uname -r");
        let release = String::from_utf8_lossy(&uname_r.stdout).trim().to_string();
        let description = str_of(&detected, "os.description").unwrap_or_default();
        assert!(
            description.ends_with(&format!("(Linux {release})"))
                || description == format!("Linux {release}"),
            "{description}"
        );

        let uname_n = std::process::Command::new("uname")
            .arg("-n")
            .output()
            .expect("uname -n");
        let hostname = String::from_utf8_lossy(&uname_n.stdout).trim().to_string();
        assert_eq!(str_of(&detected, "host.name"), Some(hostname));
        let expected_arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        assert_eq!(
            str_of(&detected, "host.arch").as_deref(),
            Some(expected_arch)
        );
    }

    #[test]
    fn os_release_parsing() {
        let content = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            os_release_value(content, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_release_value(content, "ID").as_deref(), Some("debian"));
        assert_eq!(
            os_release_value("X='a \\\"b'", "X").as_deref(),
            Some("a \"b")
        );
        assert_eq!(os_release_value(content, "VERSION"), None);
    }

    fn int_of(attrs: &[KeyValue], key: &str) -> Option<i64> {
        attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::IntValue(i) => Some(*i),
                _ => None,
            }
        })
    }

    /// hash, convert and extract as the collector's attraction package does
    /// them; the SHA-256 of "abc" is the FIPS 180-2 test vector.
    #[tokio::test]
    async fn hash_convert_and_extract() {
        let cfg = ResourceConfig {
            detect: false,
            attributes: vec![
                action(serde_json::json!({"key": "secret", "action": "hash"})),
                action(
                    serde_json::json!({"key": "port", "action": "convert", "converted_type": "int"}),
                ),
                action(
                    serde_json::json!({"key": "bad", "action": "convert", "converted_type": "int"}),
                ),
                action(serde_json::json!({"key": "url", "action": "extract",
                    "pattern": "^(?P<http_protocol>.*)://(?P<http_domain>[^/]*)/(?P<never>x)?"})),
                action(serde_json::json!({"action": "delete", "pattern": "^tmp\\."})),
                action(serde_json::json!({"key": "none", "action": "hash", "pattern": "^pii\\."})),
            ],
        };
        cfg.validate().expect("valid");
        let input = logs_with(vec![
            kv_str("secret", "abc"),
            kv_str("port", "4317"),
            kv_str("bad", "x"),
            kv_str("url", "https://example.com/path"),
            kv_str("tmp.a", "1"),
            kv_str("tmp.b", "2"),
            kv_str("pii.email", "abc"),
        ]);
        let attrs = resource_attrs(&run(cfg, input).await);
        assert_eq!(
            str_of(&attrs, "secret").as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(int_of(&attrs, "port"), Some(4317));
        assert_eq!(str_of(&attrs, "bad").as_deref(), Some("x"));
        assert_eq!(str_of(&attrs, "http_protocol").as_deref(), Some("https"));
        assert_eq!(
            str_of(&attrs, "http_domain").as_deref(),
            Some("example.com")
        );
        assert_eq!(str_of(&attrs, "never").as_deref(), Some(""));
        assert!(!attrs.iter().any(|kv| kv.key.starts_with("tmp.")));
        assert_eq!(str_of(&attrs, "pii.email"), str_of(&attrs, "secret"));
    }

    #[test]
    fn new_actions_are_checked() {
        let err = |json: serde_json::Value| {
            ResourceConfig {
                detect: false,
                attributes: vec![action(json)],
            }
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(
            err(serde_json::json!({"key": "a", "action": "extract", "pattern": "a.*"}))
                .contains("no named group")
        );
        assert!(err(
            serde_json::json!({"key": "a", "action": "extract", "pattern": "(?P<x>a)(.*)"})
        )
        .contains("unnamed group"));
        assert!(err(
            serde_json::json!({"key": "a", "action": "upsert", "value": 1, "pattern": "x"})
        )
        .contains("does not take \"pattern\""));
        assert!(err(serde_json::json!({"action": "delete", "pattern": "^secret\\."})).is_empty());
        assert!(err(
            serde_json::json!({"key": "a", "action": "convert", "converted_type": "bool"})
        )
        .contains("not one of int, double, string"));
        assert!(
            err(serde_json::json!({"key": "a", "action": "hash", "value": "x"}))
                .contains("takes neither")
        );
        assert!(err(
            serde_json::json!({"key": "a", "action": "upsert", "from_context": "x-tenant"})
        )
        .contains("\"from_context\" is not supported"));
    }
}
