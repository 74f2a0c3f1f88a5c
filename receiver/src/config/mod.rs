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

/// `service.telemetry`: the agent's own logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub logs: TelemetryLogsConfig,
    pub metrics: TelemetryMetricsConfig,
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

/// `service.telemetry.metrics.level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    /// The agent's own metrics are off.
    None,
    Basic,
    #[default]
    Normal,
    Detailed,
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryMetricsConfig {
    /// `none` turns the agent's own metrics off; `basic`, `normal`
    /// (default), `detailed` keep them.
    pub level: MetricsLevel,
    /// Prometheus scrape endpoint (`host:port`); empty disables it.
    pub address: String,
    /// Optional OTLP push of the agent's own metrics.
    pub otlp: Option<TelemetryOtlpConfig>,
}

impl Default for TelemetryMetricsConfig {
    fn default() -> Self {
        TelemetryMetricsConfig {
            level: MetricsLevel::Normal,
            address: "127.0.0.1:8888".to_string(),
            otlp: None,
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
