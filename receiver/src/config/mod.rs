//! Collector-style YAML configuration: loading, merging, `${env:...}`
//! expansion, strict typed decoding with file:line:column errors, and
//! validation of the service graph.
//!
//! Public surface used by components:
//! - [`Node`]: a YAML value with its position, produced by the loader;
//! - [`from_node`]: strict serde decoding of a component's typed config;
//! - [`GoDuration`]: durations written the collector's way (`5s`, `200ms`, `1m30s`).

mod build;
mod de;
mod duration;
mod env;
mod error;
mod load;
mod node;
mod print;
mod references;
pub mod suggest;
mod walk;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use de::{from_node, some_when_present};
pub use duration::GoDuration;
pub use error::{ConfigError, ConfigErrors, ValidationError};
pub use load::{
    decode, load, load_files, load_files_with_env, load_str, load_str_with_env, resolve,
    ConfigSource,
};
pub use node::{parse as parse_yaml, Mark, Node, NodeValue};
pub use print::to_yaml;

use crate::component::{ExporterConfig, ExtensionConfig, ProcessorConfig, ReceiverConfig};
use crate::pipeline::Signal;

/// `type[/name]`, as in the collector (`otlp`, `otlp/2`, `file_storage/queue`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    /// The type as written (an alias such as `otlp_grpc` stays as written, so
    /// messages quote what the user typed).
    pub type_name: String,
    pub name: Option<String>,
}

impl ComponentId {
    pub fn new(type_name: &str, name: Option<&str>) -> Self {
        ComponentId {
            type_name: type_name.to_string(),
            name: name.map(str::to_string),
        }
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.type_name, n),
            None => f.write_str(&self.type_name),
        }
    }
}

impl FromStr for ComponentId {
    type Err = String;

    /// The collector's rules: type `^[a-zA-Z][0-9a-zA-Z_]{0,62}$`; name
    /// 1..=1024 characters, none of them whitespace, control or symbol.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("id must not be empty".to_string());
        }
        let (type_name, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        let mut chars = type_name.chars();
        let type_ok = type_name.len() <= 63
            && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !type_ok {
            return Err(format!("invalid character(s) in type {type_name:?}"));
        }
        if let Some(n) = name {
            if n.is_empty() {
                return Err(format!("in {s:?} id: the part after / should not be empty"));
            }
            let bad = n.chars().count() > 1024
                || n.chars().any(|c| {
                    c.is_whitespace()
                        || c.is_control()
                        || (c.is_ascii_punctuation() && !"-_.:/@".contains(c))
                });
            if bad {
                return Err(format!("in {s:?} id: invalid character(s) in name {n:?}"));
            }
        }
        Ok(ComponentId::new(type_name, name))
    }
}

/// Ids in typed configs (for example `sending_queue.storage`) are checked as
/// they decode.
impl<'de> serde::Deserialize<'de> for ComponentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `signal[/name]`: `logs`, `metrics/oom`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineId {
    pub signal: Signal,
    pub name: Option<String>,
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.signal, n),
            None => write!(f, "{}", self.signal),
        }
    }
}

impl FromStr for PipelineId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (sig, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        let signal = match sig {
            "logs" => Signal::Logs,
            "metrics" => Signal::Metrics,
            "traces" | "profiles" => {
                return Err(format!(
                    "pipeline {s:?}: the {sig} signal is not supported by oomscope (logs, metrics)"
                ))
            }
            other => {
                return Err(format!(
                    "pipeline {s:?}: unknown signal {other:?} (valid values: [logs metrics])"
                ))
            }
        };
        if name == Some("") {
            return Err(format!("in {s:?} id: the part after / should not be empty"));
        }
        Ok(PipelineId {
            signal,
            name: name.map(str::to_string),
        })
    }
}

/// One pipeline: `receivers -> processors -> exporters`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineConfig {
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
}

/// `service.telemetry`: the agent's own logs and metrics, with the
/// collector's keys (`service/telemetry/otelconftelemetry`: the
/// OpenTelemetry declarative configuration's `readers`, and `resource`).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub logs: TelemetryLogsConfig,
    pub metrics: TelemetryMetricsConfig,
    /// Resource attributes of the own metrics; `null` removes one the agent
    /// sets itself (`service.name`, `service.instance.id`, `service.version`).
    pub resource: TelemetryResource,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryLogsConfig {
    /// `debug`, `info` (default), `warn`, `error`; the collector's `dpanic`,
    /// `panic` and `fatal` are read as `error`.
    pub level: LogLevel,
    /// `console` (default) or `json`.
    pub encoding: LogEncoding,
}

/// `service.telemetry.logs.level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    #[serde(alias = "dpanic", alias = "panic", alias = "fatal")]
    Error,
}

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// `service.telemetry.logs.encoding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

/// `service.telemetry.metrics.level`: which own metrics exist (see
/// docs/configuration.md for the list per level).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    /// The agent's own metrics are off: no reader serves or pushes anything.
    None,
    Basic,
    #[default]
    Normal,
    Detailed,
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryMetricsConfig {
    pub level: MetricsLevel,
    /// Where the own metrics go. `None` (the key absent): the default pull
    /// reader on 127.0.0.1:8888, unless the deprecated `address` is given.
    pub readers: Option<Vec<MetricReader>>,
    /// Deprecated (the collector's pre-`readers` key): a Prometheus scrape
    /// endpoint `host:port`; empty disables it.
    pub address: Option<String>,
    /// oomscope's older OTLP push (gRPC); a `periodic` reader does the same.
    pub otlp: Option<TelemetryOtlpConfig>,
}

impl Default for TelemetryMetricsConfig {
    fn default() -> Self {
        TelemetryMetricsConfig {
            level: MetricsLevel::Normal,
            readers: None,
            address: None,
            otlp: None,
        }
    }
}

/// The collector's default own-metrics endpoint.
pub const DEFAULT_TELEMETRY_PROMETHEUS: (&str, u16) = ("127.0.0.1", 8888);

impl TelemetryMetricsConfig {
    /// The readers in effect: `readers` as written; else the deprecated
    /// `address` (and the older `otlp`) as readers; else the default pull
    /// reader. Nothing at `level: none`.
    pub fn effective_readers(&self) -> Vec<MetricReader> {
        if self.level == MetricsLevel::None {
            return Vec::new();
        }
        if let Some(readers) = &self.readers {
            return readers.clone();
        }
        let mut readers = Vec::new();
        match self.address.as_deref() {
            Some("") => {}
            Some(address) => readers.push(MetricReader::Pull {
                pull: PullReader {
                    exporter: PullExporter {
                        prometheus: PrometheusReaderExporter::from_address(address),
                    },
                },
            }),
            None => readers.push(MetricReader::Pull {
                pull: PullReader {
                    exporter: PullExporter {
                        prometheus: PrometheusReaderExporter {
                            host: DEFAULT_TELEMETRY_PROMETHEUS.0.to_string(),
                            port: DEFAULT_TELEMETRY_PROMETHEUS.1,
                            without_units: None,
                            without_type_suffix: None,
                            without_scope_info: None,
                            address: None,
                        },
                    },
                },
            }),
        }
        if let Some(otlp) = &self.otlp {
            readers.push(MetricReader::Periodic {
                periodic: PeriodicReader {
                    interval: ReaderInterval(otlp.interval),
                    timeout: None,
                    exporter: PushExporter {
                        otlp: OtlpReaderExporter {
                            protocol: OtlpProtocol::Grpc,
                            endpoint: otlp.endpoint.clone(),
                            insecure: None,
                            timeout: None,
                            headers: Vec::new(),
                        },
                    },
                },
            });
        }
        readers
    }
}

impl TelemetryMetricsConfig {
    /// What the collector accepts here and oomscope does not do (yet): the
    /// key and why, so that it is refused rather than ignored.
    pub fn unsupported(&self) -> Option<(String, String)> {
        for (i, reader) in self.readers.iter().flatten().enumerate() {
            if let MetricReader::Pull { pull } = reader {
                let p = &pull.exporter.prometheus;
                for (key, value) in [
                    ("without_units", p.without_units),
                    ("without_type_suffix", p.without_type_suffix),
                    ("without_scope_info", p.without_scope_info),
                ] {
                    if value == Some(false) {
                        return Some((
                            format!("readers::{i}::pull::exporter::prometheus::{key}"),
                            "only true (the collector's default) is supported: oomscope serves its own metrics as the collector's default reader does".to_string(),
                        ));
                    }
                }
            }
        }
        None
    }
}

/// One entry of `service.telemetry.metrics.readers`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(try_from = "RawMetricReader")]
pub enum MetricReader {
    Pull { pull: PullReader },
    Periodic { periodic: PeriodicReader },
}

/// A reader as written: exactly one of `pull` and `periodic`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetricReader {
    pull: Option<PullReader>,
    periodic: Option<PeriodicReader>,
}

impl TryFrom<RawMetricReader> for MetricReader {
    type Error = &'static str;

    fn try_from(raw: RawMetricReader) -> Result<Self, Self::Error> {
        match (raw.pull, raw.periodic) {
            (Some(pull), None) => Ok(MetricReader::Pull { pull }),
            (None, Some(periodic)) => Ok(MetricReader::Periodic { periodic }),
            _ => Err("a reader has exactly one of pull and periodic"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    pub exporter: PullExporter,
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    pub prometheus: PrometheusReaderExporter,
}

/// `pull.exporter.prometheus`: the scrape endpoint, served at `/metrics`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusReaderExporter {
    #[serde(default = "PrometheusReaderExporter::default_host")]
    pub host: String,
    pub port: u16,
    /// The collector's defaults, `true`, are what oomscope serves; `false`
    /// is refused ([`TelemetryMetricsConfig::unsupported`]).
    #[serde(default)]
    pub without_units: Option<bool>,
    #[serde(default)]
    pub without_type_suffix: Option<bool>,
    #[serde(default)]
    pub without_scope_info: Option<bool>,
    /// The deprecated `metrics.address` this reader stands for.
    #[serde(skip)]
    pub address: Option<String>,
}

impl PrometheusReaderExporter {
    fn default_host() -> String {
        DEFAULT_TELEMETRY_PROMETHEUS.0.to_string()
    }

    /// From the deprecated `address`, bound as written (a bad one is a
    /// warning when binding, as before).
    fn from_address(address: &str) -> Self {
        PrometheusReaderExporter {
            host: String::new(),
            port: 0,
            without_units: None,
            without_type_suffix: None,
            without_scope_info: None,
            address: Some(address.to_string()),
        }
    }

    /// `host:port` for binding (`[v6]:port` for an IPv6 host).
    pub fn bind_address(&self) -> String {
        if let Some(address) = &self.address {
            return address.clone();
        }
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// `periodic`: pushes the own metrics every `interval`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicReader {
    /// Milliseconds (the declarative configuration's unit) or a duration
    /// string; default 60 s as there.
    #[serde(default)]
    pub interval: ReaderInterval,
    /// Milliseconds or a duration string: the time one export may take.
    #[serde(default)]
    pub timeout: Option<ReaderInterval>,
    pub exporter: PushExporter,
}

/// A period in the declarative configuration: an integer of milliseconds,
/// or (oomscope's convenience) a duration such as `10s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReaderInterval(pub GoDuration);

impl Default for ReaderInterval {
    fn default() -> Self {
        ReaderInterval(GoDuration::from_secs(60))
    }
}

impl<'de> serde::Deserialize<'de> for ReaderInterval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(GoDuration),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Millis(0)) => Err(serde::de::Error::custom("must be greater than zero")),
            Ok(Raw::Millis(ms)) => Ok(ReaderInterval(GoDuration(
                std::time::Duration::from_millis(ms),
            ))),
            Ok(Raw::Text(d)) if d.get().is_zero() => {
                Err(serde::de::Error::custom("must be greater than zero"))
            }
            Ok(Raw::Text(d)) => Ok(ReaderInterval(d)),
            Err(_) => Err(serde::de::Error::custom(
                "expected milliseconds (an integer) or a duration such as 10s",
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushExporter {
    pub otlp: OtlpReaderExporter,
}

/// `periodic.exporter.otlp`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReaderExporter {
    #[serde(default)]
    pub protocol: OtlpProtocol,
    pub endpoint: String,
    /// As in the collector: an endpoint without a scheme is `https://`
    /// unless `insecure: true`.
    #[serde(default)]
    pub insecure: Option<bool>,
    #[serde(default)]
    pub timeout: Option<ReaderInterval>,
    /// `[{name, value}]`, sent with every export.
    #[serde(default)]
    pub headers: Vec<NameValue>,
}

impl OtlpReaderExporter {
    /// The endpoint with a scheme, as the collector normalizes it.
    pub fn endpoint_url(&self) -> String {
        if self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://") {
            self.endpoint.clone()
        } else if self.insecure == Some(true) {
            format!("http://{}", self.endpoint)
        } else {
            format!("https://{}", self.endpoint)
        }
    }

    /// The URL an `http/*` push goes to: the endpoint, with `/v1/metrics`
    /// when it has no path (as the collector's otelconf does: a path given
    /// is used as it is).
    pub fn http_metrics_url(&self) -> String {
        let url = self.endpoint_url();
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        let path = url[after_scheme..]
            .find('/')
            .map(|i| &url[after_scheme + i..]);
        match path {
            None | Some("/") => format!("{}/v1/metrics", url.trim_end_matches('/')),
            Some(_) => url,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// `periodic.exporter.otlp.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

/// `service.telemetry.resource`: the inline map the collector documents
/// (`key: value`, `key: null` to remove), or the declarative configuration's
/// `attributes: [{name, value}]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TelemetryResource(pub std::collections::BTreeMap<String, Option<String>>);

impl<'de> serde::Deserialize<'de> for TelemetryResource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Declarative {
            attributes: Vec<NameValue>,
            #[serde(default)]
            #[allow(dead_code)]
            schema_url: Option<String>,
        }
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Declarative(Declarative),
            Inline(std::collections::BTreeMap<String, Option<String>>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Declarative(decl)) => Ok(TelemetryResource(
                decl.attributes
                    .into_iter()
                    .map(|a| (a.name, Some(a.value)))
                    .collect(),
            )),
            Ok(Raw::Inline(map)) => Ok(TelemetryResource(map)),
            Err(_) => Err(serde::de::Error::custom(
                "expected attribute: value pairs (a string or null each), or attributes: [{name, value}]",
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryOtlpConfig {
    /// gRPC endpoint URL, for example `http://127.0.0.1:4317`.
    pub endpoint: String,
    #[serde(default = "TelemetryOtlpConfig::default_interval")]
    pub interval: GoDuration,
}

impl TelemetryOtlpConfig {
    fn default_interval() -> GoDuration {
        GoDuration::from_secs(10)
    }
}

/// `service`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfig {
    pub extensions: Vec<ComponentId>,
    pub pipelines: BTreeMap<PipelineId, PipelineConfig>,
    pub telemetry: TelemetryConfig,
    /// The agent's own `/proc/self/oom_score_adj` (-1000..=1000), set at start
    /// so that it outlives what it reports on. `null` leaves it unchanged.
    pub oom_score_adj: Option<i32>,
    /// How long shutdown may take to drain and flush what is in flight.
    pub shutdown_timeout: GoDuration,
    /// Give up, once the pipelines have started, every capability the
    /// receivers do not need while running (`crate::privileges`).
    pub drop_capabilities: bool,
}

/// Default for `service.oom_score_adj`: far below any normal process, yet not
/// -1000 (which would make the agent unkillable even when it is the problem).
pub const DEFAULT_OOM_SCORE_ADJ: i32 = -900;

/// A whole, validated configuration.
#[derive(Debug)]
pub struct Config {
    pub receivers: BTreeMap<ComponentId, Box<dyn ReceiverConfig>>,
    pub processors: BTreeMap<ComponentId, Box<dyn ProcessorConfig>>,
    pub exporters: BTreeMap<ComponentId, Box<dyn ExporterConfig>>,
    pub extensions: BTreeMap<ComponentId, Box<dyn ExtensionConfig>>,
    pub service: ServiceConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_follow_the_collector_rules() {
        assert_eq!(
            "otlp/2".parse::<ComponentId>().ok(),
            Some(ComponentId::new("otlp", Some("2")))
        );
        assert_eq!(
            "".parse::<ComponentId>().err().as_deref(),
            Some("id must not be empty")
        );
        assert!("1otlp".parse::<ComponentId>().is_err());
        assert!("otlp/".parse::<ComponentId>().is_err());
        assert!("ot-lp".parse::<ComponentId>().is_err());
        assert!("metrics/oom".parse::<PipelineId>().is_ok());
        assert!("traces".parse::<PipelineId>().is_err());
    }
}
