//! `filelog` receiver configuration: the collector's keys and defaults
//! (contrib `receiver/filelogreceiver`), plus the pattern library's keys.

use std::collections::BTreeMap;
use std::fmt;

use opentelemetry_proto::tonic::common::v1::KeyValue;

use serde::{Deserialize, Deserializer};

use crate::component::{ComponentConfig, Reference};
use crate::config::{ComponentId, GoDuration, ValidationError};
use crate::patterns::UserPattern;
use crate::pipeline::data::kv_str;

/// Where a file first seen is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only lines written after the receiver found the file (files that
    /// appear later, or while the agent was down with `storage`, are read
    /// from their start).
    #[default]
    End,
    /// The whole file.
    Beginning,
}

/// How each line of a file is decoded before grouping and matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Per file: CRI or docker `json-file` when its path has the kubelet's
    /// or docker's layout, else decided by its first line's shape.
    #[default]
    Auto,
    /// Lines as they are.
    Plain,
    /// containerd / CRI-O: `<time> <stdout|stderr> <P|F> <message>`.
    Cri,
    /// docker `json-file`: `{"log":"...","stream":"...","time":"..."}`.
    Docker,
}

/// A size in bytes written as an integer or with a unit, the collector's
/// way: `1kb` = 1000, `1KiB` = 1024, `1mb`, `1MiB`, `1gb`, `1GiB`
/// (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let err = || {
            format!(
                "invalid size {s:?} (expected bytes, or a number with kb, KiB, mb, MiB, gb or GiB)"
            )
        };
        let value: f64 = num.parse().map_err(|_| err())?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" => 1e3,
            "kib" => 1024.0,
            "mb" => 1e6,
            "mib" => 1024.0 * 1024.0,
            "gb" => 1e9,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(err()),
        };
        let bytes = value * mult;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(err());
        }
        Ok(ByteSize(bytes as u64))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// `multiline`: how lines are grouped into one record.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// A record starts at each line matching this regex; the lines up to the
    /// next match belong to it.
    pub line_start_pattern: Option<String>,
}

/// `filelog` receiver configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilelogReceiverConfig {
    /// Globs of the files to read (required).
    pub include: Vec<String>,
    /// Globs of files not to read, even when `include` matches them.
    pub exclude: Vec<String>,
    /// `end` or `beginning`: where a file found at the first poll is read from.
    pub start_at: StartAt,
    /// How often the globs are expanded and files are read.
    pub poll_interval: GoDuration,
    /// While a poll finds nothing to do, wait for a change reported by
    /// inotify (at most 5 s) instead of polling every `poll_interval`; only
    /// where inotify sees every change (local file systems, no symbolic
    /// links among the files, at most 1,024 directories). `false`: always
    /// poll, as the collector does.
    pub inotify: bool,
    /// How many leading bytes identify a file (across renames and restarts).
    pub fingerprint_size: ByteSize,
    /// Longest record; longer entries are truncated to this size and the rest
    /// of the line is skipped (counted as truncated).
    pub max_log_size: ByteSize,
    /// Most files open at once; more wait for a later poll.
    pub max_concurrent_files: usize,
    /// Add `log.file.name`.
    pub include_file_name: bool,
    /// Add `log.file.path`.
    pub include_file_path: bool,
    /// A `file_storage` extension keeping the read offsets across restarts;
    /// without it, offsets live in memory only.
    pub storage: Option<ComponentId>,
    /// Patterns added to the built-in OOM pattern library.
    pub patterns: Vec<UserPattern>,
    /// Built-in patterns turned off, by name (`*` wildcards: `kernel.*`
    /// where kernel lines come from the `kmsg` receiver instead).
    pub disable_patterns: Vec<String>,
    /// `false`: only lines the pattern library matches become records;
    /// `true`: every line does (matched ones carry `oom.*` attributes).
    pub include_all: bool,
    /// The kernel's OOM report found in a file (kern.log, messages, a
    /// saved dmesg) becomes one record with the `kmsg` receiver's report
    /// attributes, instead of a record per matching line.
    pub oom_reports: bool,
    /// How long a report waits for its "Killed process" line while its
    /// file does not grow, before it is sent with what it has.
    pub oom_report_wait: GoDuration,
    /// How long a partial line at the end of a file, or a multiline record,
    /// waits for more before it is emitted as it is.
    pub force_flush_period: GoDuration,
    /// Grouping of lines into records.
    pub multiline: MultilineConfig,
    /// Only `utf-8` (invalid sequences are replaced by U+FFFD).
    pub encoding: String,
    /// `auto`, `plain`, `cri` or `docker`: container runtime log formats are
    /// decoded (partial lines joined, time and stream taken) before grouping.
    pub format: LogFormat,
    /// How often the `oom.log.matches` counter is reported.
    pub metrics_interval: GoDuration,
    /// Static attributes added to every record, as stanza's `attributes`
    /// (values are strings; `EXPR(...)` is refused).
    pub attributes: BTreeMap<String, StaticValue>,
    /// Static attributes of the records' resource, as stanza's `resource`.
    pub resource: BTreeMap<String, StaticValue>,
}

/// A value of `attributes`/`resource`: stanza reads them as strings, so a
/// YAML number or bool is kept as its text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StaticValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl StaticValue {
    pub fn text(&self) -> String {
        match self {
            StaticValue::Text(s) => s.clone(),
            StaticValue::Int(i) => i.to_string(),
            StaticValue::Float(f) => f.to_string(),
            StaticValue::Bool(b) => b.to_string(),
        }
    }
}

/// `attributes`/`resource` as string attributes, in key order.
pub fn static_attributes(map: &BTreeMap<String, StaticValue>) -> Vec<KeyValue> {
    map.iter().map(|(k, v)| kv_str(k, &v.text())).collect()
}

impl Default for FilelogReceiverConfig {
    fn default() -> Self {
        FilelogReceiverConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            start_at: StartAt::End,
            poll_interval: GoDuration::from_millis(200),
            inotify: true,
            fingerprint_size: ByteSize(1000),
            max_log_size: ByteSize(1024 * 1024),
            max_concurrent_files: 1024,
            include_file_name: true,
            include_file_path: false,
            storage: None,
            patterns: Vec::new(),
            disable_patterns: Vec::new(),
            include_all: false,
            oom_reports: true,
            oom_report_wait: GoDuration::from_secs(5),
            force_flush_period: GoDuration::from_millis(500),
            multiline: MultilineConfig::default(),
            encoding: "utf-8".to_string(),
            format: LogFormat::Auto,
            metrics_interval: GoDuration::from_secs(10),
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
        }
    }
}

/// Smallest fingerprint that still tells files apart (the collector's
/// minimum is 16 bytes).
pub const MIN_FINGERPRINT_SIZE: u64 = 16;
/// Largest record we agree to assemble in memory.
pub const MAX_MAX_LOG_SIZE: u64 = 64 * 1024 * 1024;

impl ComponentConfig for FilelogReceiverConfig {
    /// The collector's checks plus the pattern library's.
    fn validate(&self) -> Result<(), ValidationError> {
        for (field, map) in [
            ("attributes", &self.attributes),
            ("resource", &self.resource),
        ] {
            for (key, value) in map {
                if matches!(value, StaticValue::Text(t) if t.trim_start().starts_with("EXPR(")) {
                    return Err(ValidationError::at(
                        format!("{field}::{key}"),
                        "EXPR(...) expressions are not supported: give a literal value \
                         (or set it with the resource processor)",
                    ));
                }
            }
        }
        if self.include.is_empty() {
            return Err(ValidationError::at(
                "include",
                "at least one glob is required",
            ));
        }
        for (key, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            for g in globs {
                glob::Pattern::new(g)
                    .map_err(|e| ValidationError::at(key, format!("invalid glob {g:?}: {e}")))?;
            }
        }
        if self.poll_interval.is_zero() {
            return Err(ValidationError::at(
                "poll_interval",
                "must be greater than zero",
            ));
        }
        if self.fingerprint_size.get() < MIN_FINGERPRINT_SIZE {
            return Err(ValidationError::at(
                "fingerprint_size",
                format!("must be at least {MIN_FINGERPRINT_SIZE} bytes"),
            ));
        }
        if self.max_log_size.get() == 0 || self.max_log_size.get() > MAX_MAX_LOG_SIZE {
            return Err(ValidationError::at(
                "max_log_size",
                format!("must be between 1 byte and {MAX_MAX_LOG_SIZE} bytes"),
            ));
        }
        if self.max_concurrent_files == 0 {
            return Err(ValidationError::at(
                "max_concurrent_files",
                "must be at least 1",
            ));
        }
        if self.metrics_interval.is_zero() {
            return Err(ValidationError::at(
                "metrics_interval",
                "must be greater than zero",
            ));
        }
        let enc = self.encoding.to_ascii_lowercase();
        if enc != "utf-8" && enc != "utf8" {
            return Err(ValidationError::at(
                "encoding",
                format!("{:?} is not supported (only utf-8)", self.encoding),
            ));
        }
        if let Some(p) = &self.multiline.line_start_pattern {
            regex::Regex::new(p).map_err(|e| {
                ValidationError::at(
                    "multiline::line_start_pattern",
                    format!("invalid regex: {e}"),
                )
            })?;
        }
        crate::patterns::Library::new(&self.patterns, &self.disable_patterns)
            .map_err(|e| ValidationError::at("patterns", e.to_string()))?;
        Ok(())
    }

    fn references(&self) -> Vec<Reference> {
        self.storage
            .iter()
            .map(|id| {
                Reference::file_storage(
                    "storage",
                    id,
                    "file offsets are kept in a file_storage extension",
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_collectors() {
        let c: FilelogReceiverConfig =
            serde_json::from_value(serde_json::json!({"include": ["/var/log/*.log"]}))
                .expect("decodes");
        assert_eq!(c.start_at, StartAt::End);
        assert_eq!(c.poll_interval, GoDuration::from_millis(200));
        assert!(c.inotify);
        assert_eq!(c.fingerprint_size, ByteSize(1000));
        assert_eq!(c.max_log_size, ByteSize(1 << 20));
        assert_eq!(c.max_concurrent_files, 1024);
        assert!(c.include_file_name && !c.include_file_path && !c.include_all);
        assert_eq!(c.force_flush_period, GoDuration::from_millis(500));
        assert_eq!(c.format, LogFormat::Auto);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn sizes_take_units_and_integers() {
        assert_eq!(ByteSize::parse("1kb"), Ok(ByteSize(1000)));
        assert_eq!(ByteSize::parse("1KiB"), Ok(ByteSize(1024)));
        assert_eq!(ByteSize::parse("2MiB"), Ok(ByteSize(2 << 20)));
        assert_eq!(ByteSize::parse("512"), Ok(ByteSize(512)));
        assert!(ByteSize::parse("1 parsec").is_err());
        let c: FilelogReceiverConfig = serde_json::from_value(serde_json::json!({
            "include": ["/x"], "fingerprint_size": 2048, "max_log_size": "16KiB", "start_at": "beginning",
            "format": "cri"
        }))
        .expect("decodes");
        assert_eq!(c.fingerprint_size, ByteSize(2048));
        assert_eq!(c.max_log_size, ByteSize(16384));
        assert_eq!(c.start_at, StartAt::Beginning);
        assert_eq!(c.format, LogFormat::Cri);
    }

    #[test]
    fn bad_configs_are_refused() {
        let unknown = serde_json::from_value::<FilelogReceiverConfig>(
            serde_json::json!({"include": ["/x"], "operators": []}),
        );
        assert!(unknown.is_err());
        let base = || FilelogReceiverConfig {
            include: vec!["/x/*.log".into()],
            ..Default::default()
        };
        assert!(FilelogReceiverConfig::default().validate().is_err());
        let mut c = base();
        c.include = vec!["/x/[".into()];
        assert!(matches!(c.validate(), Err(e) if e.key.as_deref() == Some("include")));
        let mut c = base();
        c.encoding = "utf-16le".into();
        assert!(matches!(c.validate(), Err(e) if e.key.as_deref() == Some("encoding")));
        let mut c = base();
        c.multiline.line_start_pattern = Some("(".into());
        assert!(
            matches!(c.validate(), Err(e) if e.key.as_deref() == Some("multiline::line_start_pattern"))
        );
        let mut c = base();
        c.fingerprint_size = ByteSize(4);
        assert!(c.validate().is_err());
    }
}
