//! `journald` receiver configuration: the collector's keys where it has them
//! (contrib `receiver/journaldreceiver`), the pattern library's keys as in
//! `filelog` and `kmsg`, and the checkpoint and batching keys of `kmsg`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use crate::component::{ComponentConfig, Reference};
use crate::config::{ComponentId, GoDuration, ValidationError};
use crate::patterns::{Library, UserPattern};
use crate::receivers::filelog::ByteSize;

/// Where a start without a usable checkpoint reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only entries written after the receiver starts.
    #[default]
    End,
    /// Every entry the journal still has.
    Beginning,
}

/// What happens to entries the kernel wrote (`_TRANSPORT=kernel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KernelTransport {
    /// `skip` when an `oom` or `kmsg` receiver runs in the same agent (they
    /// read the same lines from /dev/kmsg), else `read`.
    #[default]
    Auto,
    /// Kernel entries are passed over (they still move the checkpoint).
    Skip,
    /// Kernel entries are matched like any other.
    Read,
}

/// A syslog priority range, both ends included (0 = emerg .. 7 = debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityRange {
    pub min: u8,
    pub max: u8,
}

/// journalctl's level names, by number.
const PRIORITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl PriorityRange {
    /// journalctl's `--priority` syntax: a level (`info`, `6`: that level and
    /// more severe ones) or a range `FROM..TO` (`err..warning`, `3..4`).
    pub fn parse(s: &str) -> Result<PriorityRange, String> {
        let level = |t: &str| -> Result<u8, String> {
            let t = t.trim();
            if let Ok(n) = t.parse::<u8>() {
                if n <= 7 {
                    return Ok(n);
                }
            }
            let lower = t.to_ascii_lowercase();
            let alias = match lower.as_str() {
                "error" => "err",
                "warn" => "warning",
                "emergency" => "emerg",
                "critical" => "crit",
                other => other,
            };
            PRIORITY_NAMES
                .iter()
                .position(|n| *n == alias)
                .and_then(|p| u8::try_from(p).ok())
                .ok_or_else(|| {
                    format!(
                        "invalid priority {t:?} (expected 0-7 or one of {})",
                        PRIORITY_NAMES.join(", ")
                    )
                })
        };
        match s.split_once("..") {
            Some((from, to)) => {
                let (a, b) = (level(from)?, level(to)?);
                Ok(PriorityRange {
                    min: a.min(b),
                    max: a.max(b),
                })
            }
            None => Ok(PriorityRange {
                min: 0,
                max: level(s)?,
            }),
        }
    }

    /// Every level: no match is needed.
    pub fn is_all(self) -> bool {
        self.min == 0 && self.max == 7
    }
}

impl fmt::Display for PriorityRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}..{}",
            PRIORITY_NAMES[usize::from(self.min.min(7))],
            PRIORITY_NAMES[usize::from(self.max.min(7))]
        )
    }
}

impl<'de> Deserialize<'de> for PriorityRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string(),
            Raw::Text(s) => s,
        };
        PriorityRange::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `journald` receiver configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournaldReceiverConfig {
    /// A directory of journal files (and its machine-id subdirectories);
    /// unset: the system journal (`/var/log/journal`, `/run/log/journal`,
    /// under `root_path`).
    pub directory: Option<PathBuf>,
    /// Journal files (globs) read instead of a directory.
    pub files: Vec<String>,
    /// The host's root, where the system journal is found when the agent
    /// runs in a container (`/host`): `<root_path>/var/log/journal` and
    /// `<root_path>/run/log/journal`.
    pub root_path: Option<PathBuf>,
    /// Only these units' entries (journalctl `--unit`).
    pub units: Vec<String>,
    /// Only entries with these syslog identifiers (journalctl `--identifier`).
    pub identifiers: Vec<String>,
    /// Only entries of these priorities (journalctl `--priority`); entries
    /// without a priority are left out unless every level is selected.
    pub priority: PriorityRange,
    /// Field matches: the fields of one map must all match, any map may.
    pub matches: Vec<BTreeMap<String, String>>,
    /// `end` or `beginning`: where a start without a checkpoint reads from.
    pub start_at: StartAt,
    /// `file_storage[/name]` keeping the cursor of the last acknowledged entry.
    pub storage: Option<ComponentId>,
    /// Entries the kernel wrote: `auto`, `skip` or `read`.
    pub kernel_transport: KernelTransport,
    /// Send every entry, not only those the pattern library matches.
    pub include_all: bool,
    /// Patterns added to the built-in library.
    pub patterns: Vec<UserPattern>,
    /// Built-in patterns turned off, by name (`*` wildcards).
    pub disable_patterns: Vec<String>,
    /// Longest record body; longer messages are cut (`oomscope.log.truncated`).
    pub max_log_size: ByteSize,
    /// How long a stack trace waits for its next entry before it is sent.
    pub force_flush_period: GoDuration,
    /// How often a missing journal directory, or the `files` globs, are
    /// looked at again.
    pub poll_interval: GoDuration,
    /// Argument names whose values are redacted from `process.command_line`.
    pub secret_keys: Vec<String>,
    /// How long records are collected before a batch is sent.
    pub batch_wait: GoDuration,
    /// Records per batch at most.
    pub max_batch_records: usize,
    /// Batches sent but not yet acknowledged, at most; reading waits beyond.
    pub max_unacknowledged_batches: usize,
    /// How often the counters are reported.
    pub metrics_interval: GoDuration,

    // The collector's keys oomscope does not have: refused with a reason.
    pub grep: Option<IgnoredAny>,
    pub dmesg: Option<IgnoredAny>,
    pub all: Option<IgnoredAny>,
    pub namespace: Option<IgnoredAny>,
    pub merge: Option<IgnoredAny>,
    pub convert_message_bytes: Option<IgnoredAny>,
    pub operators: Option<IgnoredAny>,
    pub retry_on_failure: Option<IgnoredAny>,
}

impl Default for JournaldReceiverConfig {
    fn default() -> Self {
        JournaldReceiverConfig {
            directory: None,
            files: Vec::new(),
            root_path: None,
            units: Vec::new(),
            identifiers: Vec::new(),
            priority: PriorityRange { min: 0, max: 6 },
            matches: Vec::new(),
            start_at: StartAt::End,
            storage: None,
            kernel_transport: KernelTransport::Auto,
            include_all: false,
            patterns: Vec::new(),
            disable_patterns: Vec::new(),
            max_log_size: ByteSize(1024 * 1024),
            force_flush_period: GoDuration::from_millis(500),
            poll_interval: GoDuration::from_millis(250),
            secret_keys: crate::redact::default_keys(),
            batch_wait: GoDuration::from_millis(200),
            max_batch_records: 1000,
            max_unacknowledged_batches: 64,
            metrics_interval: GoDuration::from_secs(10),
            grep: None,
            dmesg: None,
            all: None,
            namespace: None,
            merge: None,
            convert_message_bytes: None,
            operators: None,
            retry_on_failure: None,
        }
    }
}

/// Upper bounds of the numeric keys.
pub const MAX_BATCH_RECORDS: usize = 100_000;
pub const MAX_UNACKNOWLEDGED_BATCHES: usize = 4096;
const MAX_BATCH_WAIT: Duration = Duration::from_secs(60);
/// Largest record body we agree to assemble in memory.
pub const MAX_MAX_LOG_SIZE: u64 = 64 * 1024 * 1024;
/// Most units, identifiers and match maps (each is a term of the query).
const MAX_TERMS: usize = 1024;

impl JournaldReceiverConfig {
    /// Which collector key, if any, is set that oomscope does not support,
    /// and why.
    fn unsupported_key(&self) -> Option<(&'static str, &'static str)> {
        [
            (self.grep.is_some(), "grep", "use `patterns` (regexes with named captures) instead"),
            (self.dmesg.is_some(), "dmesg", "the kernel log is read by the `kmsg` and `oom` receivers"),
            (self.all.is_some(), "all", "fields are never shortened by oomscope (only a body longer than `max_log_size` is cut)"),
            (self.namespace.is_some(), "namespace", "point `directory` at the namespace's journal (/var/log/journal/<machine-id>.<namespace>)"),
            (self.merge.is_some(), "merge", "the files of `directory` (every machine-id below it) are always read together"),
            (self.convert_message_bytes.is_some(), "convert_message_bytes", "a binary MESSAGE is always decoded as UTF-8, invalid bytes replaced"),
            (self.operators.is_some(), "operators", "stanza operators are not supported; use processors"),
            (self.retry_on_failure.is_some(), "retry_on_failure", "delivery is retried until acknowledged (the checkpoint waits for it)"),
        ]
        .into_iter()
        .find(|(set, _, _)| *set)
        .map(|(_, key, why)| (key, why))
    }

    /// `disable_patterns` as given.
    pub fn library(&self) -> Result<Library, String> {
        Library::new(&self.patterns, &self.disable_patterns)
    }
}

/// journalctl's field-name rule: upper-case letters, digits and `_`, not
/// starting with a digit.
pub fn is_valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl ComponentConfig for JournaldReceiverConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some((key, why)) = self.unsupported_key() {
            return Err(ValidationError::at(
                key,
                format!("the collector's `{key}` is not supported by oomscope's journald receiver: {why}"),
            ));
        }
        if self.directory.is_some() && !self.files.is_empty() {
            return Err(ValidationError::at(
                "files",
                "`directory` and `files` exclude each other: set one",
            ));
        }
        if self.root_path.is_some() && (self.directory.is_some() || !self.files.is_empty()) {
            return Err(ValidationError::at(
                "root_path",
                "`root_path` locates the system journal; with `directory` or `files`, give their paths as seen by the agent instead",
            ));
        }
        for (key, path) in [
            ("directory", &self.directory),
            ("root_path", &self.root_path),
        ] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                return Err(ValidationError::at(key, "must be an absolute path"));
            }
        }
        for f in &self.files {
            if !f.starts_with('/') {
                return Err(ValidationError::at(
                    "files",
                    format!("{f:?} must be an absolute path or glob"),
                ));
            }
            glob::Pattern::new(f)
                .map_err(|e| ValidationError::at("files", format!("invalid glob {f:?}: {e}")))?;
        }
        for (key, list) in [("units", &self.units), ("identifiers", &self.identifiers)] {
            if list.len() > MAX_TERMS {
                return Err(ValidationError::at(
                    key,
                    format!("at most {MAX_TERMS} entries"),
                ));
            }
            if let Some(bad) = list
                .iter()
                .find(|v| v.is_empty() || v.contains(['\n', '\0']))
            {
                return Err(ValidationError::at(
                    key,
                    format!("{bad:?} is not a valid name"),
                ));
            }
        }
        if self.matches.len() > MAX_TERMS {
            return Err(ValidationError::at(
                "matches",
                format!("at most {MAX_TERMS} entries"),
            ));
        }
        for m in &self.matches {
            if m.is_empty() {
                return Err(ValidationError::at(
                    "matches",
                    "an empty map would match every entry; leave it out",
                ));
            }
            for (field, value) in m {
                if !is_valid_field_name(field) {
                    return Err(ValidationError::at(
                        "matches",
                        format!("{field:?} is not a journal field name (upper-case letters, digits and _)"),
                    ));
                }
                if value.contains('\0') {
                    return Err(ValidationError::at(
                        "matches",
                        format!("the value of {field} must not contain NUL"),
                    ));
                }
            }
        }
        if self.max_log_size.get() == 0 || self.max_log_size.get() > MAX_MAX_LOG_SIZE {
            return Err(ValidationError::at(
                "max_log_size",
                format!("must be between 1 byte and {MAX_MAX_LOG_SIZE} bytes"),
            ));
        }
        for (key, d) in [
            ("poll_interval", self.poll_interval),
            ("metrics_interval", self.metrics_interval),
            ("force_flush_period", self.force_flush_period),
        ] {
            if d.is_zero() {
                return Err(ValidationError::at(key, "must be greater than zero"));
            }
        }
        if self.batch_wait.get() > MAX_BATCH_WAIT {
            return Err(ValidationError::at(
                "batch_wait",
                format!("must be at most {}s", MAX_BATCH_WAIT.as_secs()),
            ));
        }
        if !(1..=MAX_BATCH_RECORDS).contains(&self.max_batch_records) {
            return Err(ValidationError::at(
                "max_batch_records",
                format!("must be between 1 and {MAX_BATCH_RECORDS}"),
            ));
        }
        if !(1..=MAX_UNACKNOWLEDGED_BATCHES).contains(&self.max_unacknowledged_batches) {
            return Err(ValidationError::at(
                "max_unacknowledged_batches",
                format!("must be between 1 and {MAX_UNACKNOWLEDGED_BATCHES}"),
            ));
        }
        self.library()
            .map_err(|err| ValidationError::at("patterns", err))?;
        Ok(())
    }

    fn references(&self) -> Vec<Reference> {
        self.storage
            .iter()
            .map(|id| {
                Reference::file_storage(
                    "storage",
                    id,
                    "the journal cursor is kept in a file_storage extension",
                )
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn decode(v: serde_json::Value) -> Result<JournaldReceiverConfig, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn defaults_are_the_collectors() {
        let c = decode(serde_json::json!({})).unwrap();
        assert_eq!(c.start_at, StartAt::End);
        assert_eq!(c.priority, PriorityRange { min: 0, max: 6 });
        assert_eq!(c.kernel_transport, KernelTransport::Auto);
        assert!(c.directory.is_none() && c.files.is_empty());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn priorities_take_journalctls_syntax() {
        let p = |s: &str| PriorityRange::parse(s);
        assert_eq!(p("info"), Ok(PriorityRange { min: 0, max: 6 }));
        assert_eq!(p("3"), Ok(PriorityRange { min: 0, max: 3 }));
        assert_eq!(p("err..warning"), Ok(PriorityRange { min: 3, max: 4 }));
        assert_eq!(p("warning..err"), Ok(PriorityRange { min: 3, max: 4 }));
        assert_eq!(p("debug").map(PriorityRange::is_all), Ok(true));
        assert!(p("loud").is_err());
        assert!(p("8").is_err());
        let c = decode(serde_json::json!({"priority": 4})).unwrap();
        assert_eq!(c.priority, PriorityRange { min: 0, max: 4 });
    }

    #[test]
    fn bad_configs_are_refused_with_the_key() {
        let key = |v: serde_json::Value| decode(v).unwrap().validate().unwrap_err().key;
        assert_eq!(
            key(serde_json::json!({"directory": "/a", "files": ["/b"]})).as_deref(),
            Some("files")
        );
        assert_eq!(
            key(serde_json::json!({"grep": "x"})).as_deref(),
            Some("grep")
        );
        assert_eq!(
            key(serde_json::json!({"matches": [{"lower": "x"}]})).as_deref(),
            Some("matches")
        );
        assert_eq!(
            key(serde_json::json!({"matches": [{}]})).as_deref(),
            Some("matches")
        );
        assert_eq!(
            key(serde_json::json!({"directory": "rel"})).as_deref(),
            Some("directory")
        );
        assert_eq!(
            key(serde_json::json!({"root_path": "/host", "directory": "/x"})).as_deref(),
            Some("root_path")
        );
        assert_eq!(
            key(serde_json::json!({"max_log_size": 0})).as_deref(),
            Some("max_log_size")
        );
        assert_eq!(
            key(serde_json::json!({"disable_patterns": ["nope.*"]})).as_deref(),
            Some("patterns")
        );
        assert!(decode(serde_json::json!({"unknown": 1})).is_err());
        assert!(decode(serde_json::json!({"start_at": "middle"})).is_err());
    }
}
