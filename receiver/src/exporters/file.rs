//! The `file` exporter: writes each request as one line of OTLP/JSON
//! (`{"resourceLogs":[...]}` / `{"resourceMetrics":[...]}`), the format of
//! the collector's file exporter and of the OTLP file exporter spec, so
//! `otlpjsonfile` receivers and `jq` can read it.
//!
//! - Each request is written through to the file before the export reports
//!   success, so data acknowledged to a receiver (which then advances its
//!   checkpoint) survives a kill -9. `flush_interval` is accepted for
//!   collector compatibility; there is nothing left to flush periodically.
//! - Size-based rotation, always on so that disk use is bounded: when a write
//!   would take the file past `rotation.max_megabytes`, the file is renamed to
//!   `<stem>-<2006-01-02T15-04-05.000>.<ext>` (lumberjack's naming, UTC unless
//!   `localtime`) and a new one is started; at most `max_backups` backups are
//!   kept (0 keeps all), none older than `max_days` (0 keeps all).
//! - Existing files are appended to (never truncated), so a restart loses nothing.
//! - IO errors are retryable export errors naming the path.
//!
//! The JSON is written by [`super::otlp_json`].

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::helper::{
    ExportClient, ExportError, ExportResponse, ExporterSettings, QueueConfig, RetryConfig,
};
use super::otlp_json;
use crate::component::{
    BuildContext, ComponentConfig, ExporterConfig, ExporterFactory, Factory, Reference, Stability,
    StartFuture,
};
use crate::config::{from_node, ConfigError, GoDuration, Node, ValidationError};
use crate::pipeline::{DynConsumer, Payload};
use crate::secure_fs;

const MIB: u64 = 1024 * 1024;

/// Write buffer size; a line larger than this goes straight to the file.
const WRITE_BUFFER: usize = 256 * 1024;

/// `file` exporter configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileExporterConfig {
    /// The file to write; its directory is created when missing. Required.
    pub path: String,
    /// Size-based rotation (always on).
    pub rotation: RotationConfig,
    /// Accepted for collector compatibility; every request is written
    /// through before it is acknowledged, so nothing waits for a flush.
    pub flush_interval: GoDuration,
    /// Only `json` (OTLP/JSON, one request per line).
    pub format: String,
    /// The exporter helper's queue. One consumer by default, so that lines
    /// are written in the order requests arrive.
    pub sending_queue: QueueConfig,
    /// Retries; off by default (a local file either works or needs a human).
    pub retry_on_failure: RetryConfig,
}

/// `rotation`, with lumberjack's (the collector's) defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Size in MiB at which the file is rotated.
    pub max_megabytes: u64,
    /// Rotated files kept; 0 keeps all.
    pub max_backups: usize,
    /// Rotated files older than this many days are removed; 0 keeps all.
    pub max_days: u64,
    /// Name backups after local time instead of UTC.
    pub localtime: bool,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            max_megabytes: 100,
            max_backups: 100,
            max_days: 0,
            localtime: false,
        }
    }
}

impl Default for FileExporterConfig {
    fn default() -> Self {
        FileExporterConfig {
            path: String::new(),
            rotation: RotationConfig::default(),
            flush_interval: GoDuration::from_secs(1),
            format: "json".to_string(),
            sending_queue: QueueConfig {
                num_consumers: 1,
                ..QueueConfig::default()
            },
            retry_on_failure: RetryConfig::disabled(),
        }
    }
}

impl ComponentConfig for FileExporterConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.path.trim().is_empty() {
            return Err(ValidationError::at("path", "must be non-empty"));
        }
        match self.format.as_str() {
            "json" => {}
            "proto" => {
                return Err(ValidationError::at(
                    "format",
                    "\"proto\" is not supported by oomscope's file exporter; use \"json\"",
                ))
            }
            other => {
                return Err(ValidationError::at(
                    "format",
                    format!("{other:?} is not supported; use \"json\""),
                ))
            }
        }
        if self.rotation.max_megabytes == 0 {
            return Err(ValidationError::at(
                "rotation::max_megabytes",
                "must be greater than zero",
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(ValidationError::at(
                "flush_interval",
                "must be greater than zero",
            ));
        }
        self.sending_queue
            .validate()
            .map_err(|e| e.within("sending_queue"))?;
        self.retry_on_failure
            .validate()
            .map_err(|e| e.within("retry_on_failure"))
    }

    fn references(&self) -> Vec<Reference> {
        self.sending_queue.references()
    }
}

/// Makes `file` exporters.
pub struct FileExporterFactory;

impl Factory for FileExporterFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["file"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "writes OTLP/JSON lines to a file, with rotation"
    }
}

impl ExporterFactory for FileExporterFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExporterConfig>, ConfigError> {
        Ok(Box::new(from_node::<FileExporterConfig>(node)?))
    }
}

impl ExporterConfig for FileExporterConfig {
    fn build<'a>(
        &'a self,
        ctx: &'a BuildContext,
    ) -> StartFuture<'a, (DynConsumer, JoinHandle<()>)> {
        Box::pin(build(self, ctx))
    }
}

pub async fn build(
    c: &FileExporterConfig,
    ctx: &BuildContext,
) -> anyhow::Result<(DynConsumer, JoinHandle<()>)> {
    c.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?;
    let client = FileClient::new(
        PathBuf::from(&c.path),
        Rotation {
            max_bytes: c.rotation.max_megabytes.saturating_mul(MIB),
            max_backups: c.rotation.max_backups,
            max_age: (c.rotation.max_days > 0)
                .then(|| Duration::from_secs(c.rotation.max_days.saturating_mul(86_400))),
            localtime: c.rotation.localtime,
        },
    );
    // Fail at start, not at the first export, when the file cannot be opened.
    client
        .with_writer(|w| w.ensure_open())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", ctx.id, e.message))?;
    let settings = ExporterSettings {
        timeout: None,
        retry: c.retry_on_failure.clone(),
        queue: c.sending_queue.clone(),
    };
    super::helper::spawn(ctx, settings, Arc::new(client)).await
}

/// Rotation settings in bytes (tests use tiny sizes).
#[derive(Debug, Clone)]
pub(crate) struct Rotation {
    pub max_bytes: u64,
    pub max_backups: usize,
    pub max_age: Option<Duration>,
    pub localtime: bool,
}

/// Writes OTLP/JSON lines to a rotated file.
pub(crate) struct FileClient {
    writer: Arc<Mutex<FileWriter>>,
}

impl FileClient {
    pub(crate) fn new(path: PathBuf, rotation: Rotation) -> Self {
        let writer = Arc::new(Mutex::new(FileWriter::new(path, rotation)));
        FileClient { writer }
    }

    /// Runs `f` on the writer off the async threads (file IO blocks).
    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut FileWriter) -> Result<T, ExportError> + Send + 'static,
    ) -> Result<T, ExportError> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let mut w = match writer.lock() {
                Ok(w) => w,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut w)
        })
        .await
        .map_err(|e| ExportError::retryable(format!("file exporter: write task failed: {e}")))?
    }
}

#[async_trait]
impl ExportClient for FileClient {
    async fn export(&self, payload: &Arc<Payload>) -> Result<ExportResponse, ExportError> {
        let payload: &Payload = payload;
        let mut line = otlp_json::encode(payload);
        line.push(b'\n');
        self.with_writer(move |w| w.write_line(&line)).await?;
        Ok(ExportResponse::default())
    }

    async fn shutdown(&self) {
        if let Err(e) = self.with_writer(|w| w.flush()).await {
            tracing::warn!(error = %e.message, "file exporter: final flush failed");
        }
    }
}

struct FileWriter {
    path: PathBuf,
    rotation: Rotation,
    file: Option<BufWriter<File>>,
    /// Bytes of complete lines in the current file.
    size: u64,
    /// After a failed write: the file to cut back to its last complete line
    /// when it is opened again.
    truncate: Option<Truncate>,
    /// Mode of the next file created: 0600, or the mode of the file a
    /// rotation moved away (lumberjack's rule, so a mode the operator set
    /// survives rotation).
    create_mode: u32,
}

/// A file left with part of a line by a failed write (ENOSPC mid-line).
#[derive(Debug, Clone, Copy)]
struct Truncate {
    /// Its size up to the last complete line.
    len: u64,
    /// (device, inode): only this file is cut, not one that replaced it.
    file_id: Option<(u64, u64)>,
}

impl FileWriter {
    fn new(path: PathBuf, rotation: Rotation) -> Self {
        FileWriter {
            path,
            rotation,
            file: None,
            size: 0,
            truncate: None,
            create_mode: secure_fs::FILE_MODE,
        }
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> ExportError {
        ExportError::retryable(format!(
            "file exporter: cannot {what} {}: {e}",
            self.path.display()
        ))
    }

    fn ensure_open(&mut self) -> Result<(), ExportError> {
        if self.file.is_some() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            secure_fs::create_dir_all(dir, secure_fs::DIR_MODE).map_err(|e| {
                ExportError::retryable(format!(
                    "file exporter: cannot create directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        // Never through a symbolic link at `path` (it could point anywhere
        // the agent may write).
        let file = secure_fs::open_append(&self.path, self.create_mode)
            .map_err(|e| self.io_error("open", e))?;
        let metadata = file.metadata().map_err(|e| self.io_error("stat", e))?;
        self.size = metadata.len();
        if let Some(cut) = self.truncate {
            let same_file = cut.file_id == Some((metadata.dev(), metadata.ino()));
            if same_file && metadata.len() > cut.len {
                // Drop the fragment of the failed line, so that the next
                // line does not continue it.
                file.set_len(cut.len)
                    .map_err(|e| self.io_error("truncate the partial line of", e))?;
                self.size = cut.len;
            }
            self.truncate = None;
        }
        self.file = Some(BufWriter::with_capacity(WRITE_BUFFER, file));
        Ok(())
    }

    /// After a failed write: closes the file without writing what is still
    /// buffered (dropping the `BufWriter` would flush it after the fragment
    /// already written) and marks the file to be cut back to its last
    /// complete line on reopening.
    fn discard_after_error(&mut self) {
        if let Some(writer) = self.file.take() {
            let (file, _unwritten) = writer.into_parts();
            let file_id = file.metadata().ok().map(|m| (m.dev(), m.ino()));
            self.truncate = Some(Truncate {
                len: self.size,
                file_id,
            });
        }
    }

    fn write_line(&mut self, line: &[u8]) -> Result<(), ExportError> {
        self.ensure_open()?;
        let len = line.len() as u64;
        // A line larger than the limit still goes out, alone in a fresh file.
        if self.size > 0 && self.size.saturating_add(len) > self.rotation.max_bytes {
            self.rotate()?;
        }
        // Written through before success is reported (see the module doc).
        let result = match self.file.as_mut() {
            Some(f) => f.write_all(line).and_then(|()| f.flush()),
            None => Ok(()),
        };
        if let Err(e) = result {
            // Start over with a fresh handle on the next attempt.
            self.discard_after_error();
            return Err(self.io_error("write to", e));
        }
        self.size += len;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        match self.file.as_mut().map(|f| f.flush()) {
            Some(Err(e)) => {
                self.discard_after_error();
                Err(self.io_error("write to", e))
            }
            _ => Ok(()),
        }
    }

    fn rotate(&mut self) -> Result<(), ExportError> {
        self.flush()?;
        self.file = None;
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            self.create_mode = m.mode() & 0o777;
        }
        let backup = backup_path(&self.path, SystemTime::now(), self.rotation.localtime);
        std::fs::rename(&self.path, &backup).map_err(|e| {
            ExportError::retryable(format!(
                "file exporter: cannot rotate {} to {}: {e}",
                self.path.display(),
                backup.display()
            ))
        })?;
        self.ensure_open()?;
        if let Err(e) = prune_backups(&self.path, &self.rotation) {
            tracing::warn!(path = %self.path.display(), error = %e, "file exporter: cannot remove old backups");
        }
        Ok(())
    }
}

/// (stem, extension with its dot) of the active file's name.
fn name_parts(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// Length of lumberjack's timestamp `2006-01-02T15-04-05.000`.
const STAMP_LEN: usize = 23;

fn format_stamp(t: SystemTime, localtime: bool) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = libc::time_t::try_from(since.as_secs()).unwrap_or(libc::time_t::MAX);
    // SAFETY: `tm` is plain old data; the *_r variants write only into it
    // and are thread-safe.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe {
        if localtime {
            !libc::localtime_r(&secs, &mut tm).is_null()
        } else {
            !libc::gmtime_r(&secs, &mut tm).is_null()
        }
    };
    if !ok {
        return format!("{:0>23}", since.as_millis());
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        since.subsec_millis()
    )
}

/// `<dir>/<stem>-<stamp><ext>`, unique and newer than every backup there:
/// a name taken within the same millisecond moves on by a millisecond, and
/// so does one at or before the newest backup (left by rotations faster than
/// one per millisecond after the oldest was pruned, or by a clock that
/// stepped back), so names stay in rotation order and pruning removes the
/// oldest data.
fn backup_path(path: &Path, now: SystemTime, localtime: bool) -> PathBuf {
    let (stem, ext) = name_parts(path);
    let dir = path.parent().unwrap_or(Path::new(""));
    let newest = backups_by_stamp(path)
        .ok()
        .and_then(|mut backups| backups.pop())
        .map(|(stamp, _)| stamp);
    let mut t = newest
        .as_deref()
        .and_then(|stamp| parse_stamp(stamp, localtime))
        .map_or(now, |newest| now.max(newest + Duration::from_millis(1)));
    // Bounded: a stamp that cannot be read back (a hand-made name) must not
    // hold rotation; then a free name is what matters.
    for _ in 0..1000 {
        let stamp = format_stamp(t, localtime);
        let candidate = dir.join(format!("{stem}-{stamp}{ext}"));
        if newest.as_ref().is_none_or(|n| stamp > *n) && !candidate.exists() {
            return candidate;
        }
        t += Duration::from_millis(1);
    }
    loop {
        let candidate = dir.join(format!("{stem}-{}{ext}", format_stamp(t, localtime)));
        if !candidate.exists() {
            return candidate;
        }
        t += Duration::from_millis(1);
    }
}

/// The time a backup stamp names (the inverse of [`format_stamp`]).
fn parse_stamp(stamp: &str, localtime: bool) -> Option<SystemTime> {
    let field = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<i32>().ok();
    // SAFETY: `tm` is plain old data.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = field(0..4)? - 1900;
    tm.tm_mon = field(5..7)? - 1;
    tm.tm_mday = field(8..10)?;
    tm.tm_hour = field(11..13)?;
    tm.tm_min = field(14..16)?;
    tm.tm_sec = field(17..19)?;
    tm.tm_isdst = -1;
    let millis = u64::try_from(field(20..23)?).ok()?;
    // SAFETY: `tm` is a valid, initialised struct; both only read and
    // normalise it.
    let secs = unsafe {
        if localtime {
            libc::mktime(&mut tm)
        } else {
            libc::timegm(&mut tm)
        }
    };
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
}

/// Backups of `path`, oldest first.
fn list_backups(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(backups_by_stamp(path)?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

/// Backups of `path` with their stamps, oldest first.
fn backups_by_stamp(path: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let (stem, ext) = name_parts(path);
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let prefix = format!("{stem}-");
    let mut backups: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stamp) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(ext.as_str()))
        else {
            continue;
        };
        let looks_like_stamp = stamp.len() == STAMP_LEN
            && stamp.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 | 13 | 16 => b == b'-',
                10 => b == b'T',
                19 => b == b'.',
                _ => b.is_ascii_digit(),
            });
        if looks_like_stamp {
            backups.push((stamp.to_string(), entry.path()));
        }
    }
    backups.sort();
    Ok(backups)
}

fn prune_backups(path: &Path, rotation: &Rotation) -> std::io::Result<()> {
    let mut backups = list_backups(path)?;
    if let Some(max_age) = rotation.max_age {
        let now = SystemTime::now();
        backups.retain(|b| {
            let old = std::fs::metadata(b)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > max_age);
            if old {
                let _ = std::fs::remove_file(b);
            }
            !old
        });
    }
    if rotation.max_backups > 0 && backups.len() > rotation.max_backups {
        let excess = backups.len() - rotation.max_backups;
        for b in &backups[..excess] {
            std::fs::remove_file(b)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use serde_json::json;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.to_string(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn logs(n: usize, body: &str) -> Payload {
        Payload::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("host.name", any_value::Value::StringValue("box".into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "oomscope".into(),
                    ..Default::default()
                }),
                log_records: (0..n)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        severity_number: 17,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(body.to_string())),
                        }),
                        attributes: vec![
                            kv("process.pid", any_value::Value::IntValue(42)),
                            kv("empty", any_value::Value::StringValue(String::new())),
                            kv("zero", any_value::Value::IntValue(0)),
                            kv("raw", any_value::Value::BytesValue(vec![0xff, 0])),
                        ],
                        trace_id: vec![0x01; 16],
                        span_id: vec![0x02; 8],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[test]
    fn logs_json_follows_the_otlp_rules() {
        let line = otlp_json::encode(&logs(1, "hello"));
        let v: serde_json::Value = serde_json::from_slice(&line).expect("json");
        let expected = json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "box"}}]},
            "scopeLogs": [{
                "scope": {"name": "oomscope"},
                "logRecords": [{
                    "timeUnixNano": "1700000000000000000",
                    "severityNumber": 17,
                    "body": {"stringValue": "hello"},
                    "attributes": [
                        {"key": "process.pid", "value": {"intValue": "42"}},
                        {"key": "empty", "value": {"stringValue": ""}},
                        {"key": "zero", "value": {"intValue": "0"}},
                        {"key": "raw", "value": {"bytesValue": "/wA="}}
                    ],
                    "traceId": "01010101010101010101010101010101",
                    "spanId": "0202020202020202"
                }]
            }]
        }]});
        assert_eq!(v, expected);
        // And it reads back as the same request.
        let back: ExportLogsServiceRequest = serde_json::from_slice(&line).expect("decode");
        assert_eq!(Payload::Logs(back.resource_logs), logs(1, "hello"));
    }

    #[test]
    fn metrics_json_follows_the_otlp_rules() {
        let payload = Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "g".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![
                                NumberDataPoint {
                                    value: Some(number_data_point::Value::AsDouble(0.0)),
                                    ..Default::default()
                                },
                                NumberDataPoint {
                                    value: Some(number_data_point::Value::AsDouble(f64::NAN)),
                                    ..Default::default()
                                },
                                NumberDataPoint {
                                    value: Some(number_data_point::Value::AsInt(-5)),
                                    time_unix_nano: u64::MAX,
                                    ..Default::default()
                                },
                            ],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "s".into(),
                        unit: "By".into(),
                        data: Some(Data::Sum(Sum {
                            data_points: vec![],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "h".into(),
                        data: Some(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                count: 3,
                                sum: Some(0.0),
                                max: Some(f64::INFINITY),
                                bucket_counts: vec![1, 0, 2],
                                explicit_bounds: vec![1.0, 2.5],
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let line = otlp_json::encode(&payload);
        let v: serde_json::Value = serde_json::from_slice(&line).expect("json");
        let expected = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "g", "gauge": {"dataPoints": [
                {"asDouble": 0.0},
                {"asDouble": "NaN"},
                {"asInt": "-5", "timeUnixNano": "18446744073709551615"}
            ]}},
            {"name": "s", "unit": "By", "sum": {"aggregationTemporality": 2, "isMonotonic": true}},
            {"name": "h", "histogram": {"aggregationTemporality": 1, "dataPoints": [{
                "count": "3", "sum": 0.0, "max": "Infinity",
                "bucketCounts": ["1", "0", "2"], "explicitBounds": [1.0, 2.5]
            }]}}
        ]}]}]});
        assert_eq!(v, expected);
    }

    fn rotation(max_bytes: u64, max_backups: usize) -> Rotation {
        Rotation {
            max_bytes,
            max_backups,
            max_age: None,
            localtime: false,
        }
    }

    fn read_lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    #[tokio::test]
    async fn writes_each_request_through_as_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/dir/out.json");
        let client = FileClient::new(path.clone(), rotation(MIB, 10));
        client
            .export(&std::sync::Arc::new(logs(2, "a")))
            .await
            .expect("export");
        client
            .export(&std::sync::Arc::new(logs(1, "b")))
            .await
            .expect("export");
        // On disk (in the page cache) as soon as each export succeeded:
        // acknowledged data must survive a kill -9 of the agent.
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 2);
        let records = |v: &serde_json::Value| {
            v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                .as_array()
                .map_or(0, Vec::len)
        };
        assert_eq!((records(&lines[0]), records(&lines[1])), (2, 1));
        // Appends after a restart.
        let again = FileClient::new(path.clone(), rotation(MIB, 10));
        again
            .export(&std::sync::Arc::new(logs(1, "c")))
            .await
            .expect("export");
        again.shutdown().await;
        assert_eq!(read_lines(&path).len(), 3);
    }

    #[tokio::test]
    async fn rotates_at_the_size_limit_and_prunes_backups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("oom.log");
        let one_line = otlp_json::encode(&logs(1, "x")).len() as u64 + 1;
        // Room for exactly two lines per file.
        let client = FileClient::new(path.clone(), rotation(one_line * 2, 2));
        for _ in 0..2 {
            client
                .export(&std::sync::Arc::new(logs(1, "x")))
                .await
                .expect("export");
        }
        assert!(
            list_backups(&path).expect("list").is_empty(),
            "two lines fit"
        );
        client
            .export(&std::sync::Arc::new(logs(1, "x")))
            .await
            .expect("export");
        let backups = list_backups(&path).expect("list");
        assert_eq!(backups.len(), 1, "the third line rotates");
        assert_eq!(read_lines(&backups[0]).len(), 2);
        let name = backups[0]
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            name.starts_with("oom-")
                && name.ends_with(".log")
                && name.len() == "oom-".len() + STAMP_LEN + ".log".len(),
            "{name}"
        );
        for _ in 0..6 {
            client
                .export(&std::sync::Arc::new(logs(1, "x")))
                .await
                .expect("export");
        }
        client.shutdown().await;
        // 9 lines: 4 full files rotated, 2 kept; the active file holds 1.
        let backups = list_backups(&path).expect("list");
        assert_eq!(backups.len(), 2, "pruned to max_backups: {backups:?}");
        assert_eq!(read_lines(&path).len(), 1);
        for b in &backups {
            assert_eq!(read_lines(b).len(), 2);
            assert!(std::fs::metadata(b).map(|m| m.len()).unwrap_or(0) <= one_line * 2);
        }
    }

    #[tokio::test]
    async fn io_errors_are_retryable_and_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be: open fails.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).expect("mkdir");
        let client = FileClient::new(path.clone(), rotation(MIB, 1));
        let err = client
            .export(&std::sync::Arc::new(logs(1, "a")))
            .await
            .expect_err("fails");
        assert_eq!(err.kind, super::super::helper::ExportErrorKind::Retryable);
        assert!(
            err.message.contains(&path.display().to_string()),
            "{}",
            err.message
        );
    }

    /// A write that fails part-way (ENOSPC mid-line) must not leave a
    /// fragment that the next line continues: what is still buffered is not
    /// written, and the file is cut back to its last complete line.
    #[test]
    fn a_failed_write_leaves_no_fragment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.json");
        let mut w = FileWriter::new(path.clone(), rotation(MIB, 1));
        w.write_line(b"{\"a\":1}\n").expect("write");
        // The failed write: a part of the line reached the file, the rest
        // still sits in the buffer.
        let mut raw = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        raw.write_all(b"{\"frag").expect("write");
        w.file
            .as_mut()
            .expect("open")
            .write_all(b"ment\":2}\n")
            .expect("buffered");
        w.discard_after_error();
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"a\":1}\n{\"frag",
            "the buffer was written after the error"
        );
        w.write_line(b"{\"b\":3}\n").expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"a\":1}\n{\"b\":3}\n"
        );
    }

    /// A file that cannot take data (`/dev/full`: ENOSPC) gives a
    /// retryable error, also on the next attempt.
    #[tokio::test]
    async fn a_full_disk_is_a_retryable_error() {
        let client = FileClient::new(PathBuf::from("/dev/full"), rotation(MIB, 1));
        for _ in 0..2 {
            let err = client
                .export(&std::sync::Arc::new(logs(1, "a")))
                .await
                .expect_err("fails");
            assert_eq!(err.kind, super::super::helper::ExportErrorKind::Retryable);
        }
    }

    /// The output is created 0600 in a directory created 0700, whatever the
    /// umask; a rotation gives the new file the old one's mode.
    #[test]
    fn output_files_are_private_and_rotation_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new/out.json");
        let mut w = FileWriter::new(path.clone(), rotation(1, 0));
        w.write_line(b"{\"a\":1}\n").expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("new")), 0o700);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        w.write_line(b"{\"b\":2}\n").expect("write (rotates)");
        assert_eq!(
            mode(&path),
            0o640,
            "the operator's mode is kept across rotation"
        );
    }

    /// A symbolic link planted at the output path is not written through:
    /// the export fails naming it, and what it points to is unchanged.
    #[tokio::test]
    async fn a_link_at_the_output_path_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "precious\n").expect("write");
        let path = dir.path().join("out.json");
        std::os::unix::fs::symlink(&outside, &path).expect("symlink");
        let client = FileClient::new(path, rotation(MIB, 1));
        let err = client
            .export(&std::sync::Arc::new(logs(1, "a")))
            .await
            .expect_err("refused");
        assert!(
            err.message.contains("is a symbolic link"),
            "{}",
            err.message
        );
        assert_eq!(
            std::fs::read_to_string(&outside).expect("read"),
            "precious\n"
        );
    }

    /// `sending_queue.storage` works for the file exporter too.
    #[tokio::test]
    async fn a_persistent_queue_feeds_the_file() {
        use crate::config::ComponentId;
        use crate::extensions::file_storage::{FileStorage, FileStorageConfig};
        use crate::extensions::Extensions;
        use crate::pipeline::{Batch, BatchNotifier, DeliveryStatus, Finalizers};
        use crate::telemetry::Telemetry;
        use tokio_util::sync::CancellationToken;

        let dir = tempfile::tempdir().expect("tempdir");
        let storage_id = ComponentId::new("file_storage", Some("q"));
        let storage = FileStorage::open(
            &FileStorageConfig {
                directory: dir.path().join("storage"),
                ..FileStorageConfig::default()
            },
            &storage_id,
        )
        .expect("storage");
        let ctx = BuildContext {
            id: ComponentId::new("file", None),
            telemetry: Telemetry::noop(),
            extensions: Arc::new(Extensions {
                storages: [(storage_id.clone(), storage)].into_iter().collect(),
                ..Extensions::default()
            }),
            shutdown: CancellationToken::new(),
        };
        let path = dir.path().join("out.json");
        let cfg = FileExporterConfig {
            path: path.display().to_string(),
            sending_queue: QueueConfig {
                storage: Some(storage_id),
                ..FileExporterConfig::default().sending_queue
            },
            ..FileExporterConfig::default()
        };
        let (consumer, handle) = build(&cfg, &ctx).await.expect("build");
        let (finalizer, status) = BatchNotifier::new_pair();
        let batch = Batch::new(logs(1, "queued")).with_finalizers(Finalizers::new(finalizer));
        consumer.consume(batch).await.expect("consume");
        let settled = tokio::time::timeout(Duration::from_secs(30), status).await;
        assert!(
            matches!(settled, Ok(Ok(DeliveryStatus::Delivered))),
            "{settled:?}"
        );
        let written = tokio::time::timeout(Duration::from_secs(30), async {
            while read_lines(&path).is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(written.is_ok(), "nothing written to {}", path.display());
        drop(consumer);
        let joined = tokio::time::timeout(Duration::from_secs(30), handle).await;
        assert!(matches!(joined, Ok(Ok(()))), "{joined:?}");
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: FileExporterConfig =
            serde_json::from_value(json!({"path": "/tmp/x.json"})).expect("valid");
        assert!(c.validate().is_ok());
        assert_eq!(c.rotation, RotationConfig::default());
        assert_eq!(c.flush_interval, GoDuration::from_secs(1));
        assert!(!c.retry_on_failure.enabled);
        assert!(c.sending_queue.enabled);
        assert_eq!(
            FileExporterConfig::default()
                .validate()
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("path: must be non-empty")
        );
        let proto = FileExporterConfig {
            format: "proto".into(),
            ..c.clone()
        };
        assert!(proto
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("\"proto\" is not supported"));
        assert!(serde_json::from_value::<FileExporterConfig>(
            json!({"path": "x", "rotation": {"max_mb": 1}})
        )
        .is_err());
    }

    #[test]
    fn backup_names_follow_lumberjack() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_478_284_200_123);
        assert_eq!(format_stamp(t, false), "2016-11-04T18-30-00.123");
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("server.log");
        let first = backup_path(&p, t, false);
        assert_eq!(first, dir.path().join("server-2016-11-04T18-30-00.123.log"));
        std::fs::write(&first, "").expect("write");
        assert_eq!(
            backup_path(&p, t, false),
            dir.path().join("server-2016-11-04T18-30-00.124.log")
        );
    }

    /// Rotations faster than one per millisecond: once the oldest backup is
    /// pruned, its name is free again, but a new backup must not take it
    /// (it would sort oldest, and the next prune would delete the newest
    /// data).
    #[test]
    fn a_pruned_name_is_not_reused_by_a_newer_backup() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_478_284_200_123);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("server.log");
        let first = backup_path(&p, t, false);
        std::fs::write(&first, "oldest").expect("write");
        let second = backup_path(&p, t, false);
        std::fs::write(&second, "newer").expect("write");
        std::fs::remove_file(&first).expect("prune the oldest");
        let third = backup_path(&p, t, false);
        assert!(third > second, "{third:?} must sort after {second:?}");
        std::fs::write(&third, "newest").expect("write");
        assert_eq!(list_backups(&p).expect("list"), [second, third]);
    }

    /// A clock that stepped back (or a backup from the future) does not
    /// make a new backup sort before the newest one.
    #[test]
    fn a_new_backup_sorts_after_one_stamped_later_than_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_478_284_200_123);
        let later = now + Duration::from_secs(3600);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("server.log");
        for localtime in [false, true] {
            let future = dir
                .path()
                .join(format!("server-{}.log", format_stamp(later, localtime)));
            std::fs::write(&future, "from the future").expect("write");
            assert_eq!(
                parse_stamp(&format_stamp(later, localtime), localtime),
                Some(later)
            );
            let next = backup_path(&p, now, localtime);
            assert!(next > future, "{next:?} must sort after {future:?}");
            std::fs::remove_file(&future).expect("remove");
        }
    }
}
