//! rotel as an OTLP backend for end-to-end tests, and a parser for what it
//! received.
//!
//! rotel-agent (pip `rotel==0.0.1a15`, binary `0.0.1-alpha10`) has no file
//! exporter: exporters are otlp, blackhole, datadog, clickhouse, aws-xray and
//! kafka. So rotel runs with `--exporter blackhole --debug-log logs
//! --debug-log metrics --debug-log-verbosity detailed`, which prints every
//! received record to stdout in the OpenTelemetry Collector debug exporter's
//! "detailed" text format; stdout goes to a file that [`parse_debug_output`]
//! reads back. `--log-format json` makes rotel's own log lines single-line
//! JSON objects, easy to tell from the dump. (`--log-file` is only used with
//! `--daemon`; `--debug-log` takes one value per flag.)
//!
//! The dump prints string values raw, so a value containing a newline spans
//! lines; the parser joins such continuation lines. A multi-line string that
//! itself contains a line looking like the dump's structure (e.g.
//! `     -> k: Str(v)` inside an attribute value) is ambiguous and cannot be
//! parsed back exactly; tests should avoid that.

use std::{
    fs::OpenOptions,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{free_port, rotel_agent_bin, signal, wait_for_port};

/// Generous; only there so that a broken peer fails instead of hanging.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running rotel-agent; killed on drop.
#[derive(Debug)]
pub struct Rotel {
    child: Option<Child>,
    grpc: SocketAddr,
    http: SocketAddr,
    output: PathBuf,
    dir: tempfile::TempDir,
    /// `--debug-log-verbosity`: `detailed` dumps every record (read back by
    /// [`Rotel::received`]), `basic` prints one line per batch with its
    /// count (read back by [`Rotel::log_count`]), cheap at any volume.
    verbosity: &'static str,
    /// A gateway's next hop: rotel forwards everything there over OTLP/gRPC
    /// instead of dumping it (see [`Rotel::start_gateway`]).
    forward_to: Option<SocketAddr>,
}

impl Rotel {
    /// Starts rotel on two free ports of 127.0.0.1 and waits until both accept
    /// connections.
    pub fn start() -> Self {
        Self::start_with("detailed")
    }

    /// Like [`Rotel::start`], for counting many records: only
    /// [`Rotel::log_count`] reads what it received.
    pub fn start_counting() -> Self {
        Self::start_with("basic")
    }

    /// rotel as a collector gateway: what it receives goes on to `backend`'s
    /// OTLP/gRPC endpoint (with a generous request timeout, so that a slow
    /// backend does not make rotel resend, and duplicate, a request).
    /// Nothing is dumped: read what arrived at the backend.
    pub fn start_gateway(backend: SocketAddr) -> Self {
        Self::start_inner("basic", Some(backend))
    }

    fn start_with(verbosity: &'static str) -> Self {
        Self::start_inner(verbosity, None)
    }

    fn start_inner(verbosity: &'static str, forward_to: Option<SocketAddr>) -> Self {
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dir = tempfile::tempdir().expect("tempdir");
        let output = dir.path().join("rotel.out");
        let mut rotel = Self {
            child: None,
            grpc,
            http,
            output,
            dir,
            verbosity,
            forward_to,
        };
        rotel.spawn();
        rotel
    }

    fn spawn(&mut self) {
        // Append: what arrived before a restart stays readable.
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.output)
            .expect("open rotel output file");
        let err = out.try_clone().expect("clone output file");
        let mut command = Command::new(rotel_agent_bin());
        command
            .arg("start")
            .args(["--otlp-grpc-endpoint", &self.grpc.to_string()])
            .args(["--otlp-http-endpoint", &self.http.to_string()]);
        match self.forward_to {
            Some(backend) => command
                .args(["--exporter", "otlp"])
                .args(["--otlp-exporter-endpoint", &format!("http://{backend}")])
                .args(["--otlp-exporter-protocol", "grpc"])
                .args(["--otlp-exporter-request-timeout", "60s"]),
            None => command
                .args(["--exporter", "blackhole"])
                .args(["--debug-log", "logs", "--debug-log", "metrics"])
                .args(["--debug-log-verbosity", self.verbosity]),
        };
        let child = command
            .args(["--log-format", "json"])
            // Not used in the foreground, but keep it out of the shared /tmp default.
            .arg("--pid-file")
            .arg(self.dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(self.dir.path().join("rotel.log"))
            // Flush small batches quickly so tests do not wait for 200 ms timers.
            .args(["--batch-timeout", "10ms"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn rotel-agent");
        self.child = Some(child);
        for addr in [self.grpc, self.http] {
            let child = self.child.as_mut().expect("just spawned");
            let ready = wait_for_port(addr, START_TIMEOUT, || match child.try_wait() {
                Ok(Some(status)) => Err(format!("rotel-agent exited: {status}")),
                Ok(None) => Ok(()),
                Err(e) => Err(format!("try_wait: {e}")),
            });
            if let Err(e) = ready {
                panic!("rotel not ready: {e}\noutput:\n{}", self.raw_output());
            }
        }
    }

    /// The OTLP/gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// `http://` URL of the OTLP/gRPC endpoint.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The OTLP/HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// `http://` base URL of the OTLP/HTTP endpoint (append `/v1/logs`, ...).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The pid of the running rotel-agent, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops rotel: SIGTERM, then SIGKILL after 5 s. Its ports stop accepting.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills rotel with SIGKILL (a gateway that crashes): what it holds in
    /// memory is gone, and its ports stop accepting.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether rotel is running (started and not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts rotel again on the same ports (after [`Rotel::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything rotel printed so far, across restarts.
    pub fn raw_output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// What rotel received so far, across restarts.
    pub fn received(&self) -> Received {
        parse_debug_output(&self.raw_output())
    }

    /// Waits until `done` holds for what rotel received, or `timeout`
    /// (then panics with rotel's output). Returns the last parse.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            if Instant::now() >= deadline {
                panic!(
                    "rotel did not receive the expected data within {timeout:?}; got {} log records, \
                     {} data points\noutput:\n{}",
                    received.logs.len(),
                    received.data_points.len(),
                    self.raw_output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Log records received so far, across restarts, from the one line per
    /// batch that [`Rotel::start_counting`]'s verbosity prints.
    pub fn log_count(&self) -> u64 {
        self.raw_output()
            .lines()
            .filter(|l| l.contains("Received logs."))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["logs"].as_u64())
            .sum()
    }

    /// Waits until [`Rotel::log_count`] reaches `n`, or `timeout`; returns
    /// the count then.
    pub fn wait_for_log_count(&self, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.log_count();
            if got >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until at least `n` log records arrived.
    pub fn wait_for_logs(&self, n: usize, timeout: Duration) -> Received {
        self.wait_for(timeout, |r| r.logs.len() >= n)
    }

    /// Waits until at least `n` data points arrived.
    pub fn wait_for_data_points(&self, n: usize, timeout: Duration) -> Received {
        self.wait_for(timeout, |r| r.data_points.len() >= n)
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An attribute or body value as the dump renders it: `Str(x)` has kind
/// `Str` and text `x`; `Int(42)` kind `Int`, text `42`; composite values
/// (`Map(...)`, `Slice(...)`, `Bytes([..])`) keep their inner rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// `Str`, `Int`, `Double`, `Bool`, `Bytes`, `Slice`, `Map`, or empty when
    /// the rendering has no `Kind(...)` shape.
    pub kind: String,
    /// The text inside the parentheses (or the whole rendering).
    pub text: String,
}

impl Value {
    fn parse(rendered: &str) -> Self {
        let kind_end = rendered.find('(').filter(|&i| {
            rendered.ends_with(')') && rendered[..i].chars().all(char::is_alphanumeric)
        });
        match kind_end {
            Some(i) => Self {
                kind: rendered[..i].to_owned(),
                text: rendered[i + 1..rendered.len() - 1].to_owned(),
            },
            None => Self {
                kind: String::new(),
                text: rendered.to_owned(),
            },
        }
    }
}

/// Key/value attributes in the order printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes(pub Vec<(String, Value)>);

impl Attributes {
    /// The value's text for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.value(key).map(|v| v.text.as_str())
    }

    /// The value for `key`, if present.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One received log record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRecord {
    /// Attributes of its resource.
    pub resource: Attributes,
    /// Instrumentation scope name (and version, space-separated, if any).
    pub scope: String,
    /// `SeverityText`.
    pub severity_text: String,
    /// `SeverityNumber` as printed, e.g. `SEVERITY_NUMBER_INFO(9)`.
    pub severity_number: String,
    /// `Timestamp` (ns since the epoch; 0 when unset).
    pub time_unix_nano: u64,
    /// The body; `None` when the record has none.
    pub body: Option<Value>,
    /// Record attributes.
    pub attributes: Attributes,
}

/// One received metric data point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataPoint {
    /// Attributes of its resource.
    pub resource: Attributes,
    /// Instrumentation scope name.
    pub scope: String,
    /// Metric name.
    pub metric: String,
    /// `Gauge`, `Sum`, `Histogram`, ...
    pub data_type: String,
    /// Metric unit.
    pub unit: String,
    /// Point attributes.
    pub attributes: Attributes,
    /// `Value` of a number point, as printed (`3`, `1.5`).
    pub value: Option<String>,
    /// `Count` of a histogram / summary point.
    pub count: Option<u64>,
    /// `Sum` of a histogram / summary point, as printed.
    pub sum: Option<String>,
}

/// Everything parsed from rotel's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Log records, in arrival order.
    pub logs: Vec<LogRecord>,
    /// Metric data points, in arrival order.
    pub data_points: Vec<DataPoint>,
}

impl Received {
    /// How many records have each of `lines` as their body.
    pub fn body_counts(&self, lines: &[String]) -> std::collections::BTreeMap<String, usize> {
        let mut counts: std::collections::BTreeMap<String, usize> =
            lines.iter().map(|l| (l.clone(), 0)).collect();
        for record in &self.logs {
            if let Some(body) = &record.body {
                if let Some(n) = counts.get_mut(&body.text) {
                    *n += 1;
                }
            }
        }
        counts
    }

    /// The bodies' texts of all log records (empty string for no body).
    pub fn log_bodies(&self) -> Vec<String> {
        self.logs
            .iter()
            .map(|log| {
                log.body
                    .as_ref()
                    .map(|b| b.text.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The data points of metric `name`.
    pub fn points_of(&self, name: &str) -> Vec<&DataPoint> {
        self.data_points
            .iter()
            .filter(|p| p.metric == name)
            .collect()
    }
}

/// Where an arrow (`     -> k: v`) line belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Resource,
    LogAttributes,
    Descriptor,
    PointAttributes,
}

/// A value being read that may continue on the next lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Body,
    Attribute,
}

const ARROW: &str = "     -> ";

/// Whether `line` is part of the dump's structure (so it ends a multi-line value).
fn is_structural(line: &str) -> bool {
    const PREFIXES: &[&str] = &[
        ARROW,
        "Resource SchemaURL:",
        "Resource attributes:",
        "ScopeLogs SchemaURL:",
        "ScopeMetrics SchemaURL:",
        "ScopeSpans SchemaURL:",
        "InstrumentationScope ",
        "ObservedTimestamp:",
        "Timestamp:",
        "StartTimestamp:",
        "SeverityText:",
        "SeverityNumber:",
        "Body:",
        "Attributes:",
        "    Trace ID",
        "    Span ID",
        "Flags:",
        "Descriptor:",
        "Data point attributes:",
        "Value:",
        "Count:",
        "Sum:",
        "Min:",
        "Max:",
        "ExplicitBounds #",
        "Buckets #",
        "Exemplars:",
    ];
    if PREFIXES.iter().any(|p| line.starts_with(p)) {
        return true;
    }
    if line.starts_with('{') && line.ends_with('}') {
        return true; // rotel's own JSON log line
    }
    header(line).is_some()
}

/// `ResourceLog #3` -> `Some("ResourceLog")`.
fn header(line: &str) -> Option<&str> {
    let (name, index) = line.split_once(" #")?;
    let is_header = !name.contains(' ')
        && !name.is_empty()
        && !index.is_empty()
        && index.chars().all(|c| c.is_ascii_digit());
    is_header.then_some(name)
}

/// Parses rotel's `--debug-log-verbosity detailed` output (logs and metrics;
/// other lines, e.g. rotel's own logs, are skipped). ANSI colour codes are
/// stripped first.
pub fn parse_debug_output(text: &str) -> Received {
    let mut parser = Parser::default();
    for line in strip_ansi(text).lines() {
        parser.line(line);
    }
    parser.finish()
}

/// Line-by-line state of [`parse_debug_output`].
#[derive(Debug)]
struct Parser {
    received: Received,
    resource: Attributes,
    scope: String,
    section: Section,
    /// The metric whose descriptor was read last (template for its points).
    metric: DataPoint,
    in_log: bool,
    in_point: bool,
    /// The last log record's `Flags:` line, its last, was read: rotel
    /// writes line by line, so a read can end inside a record.
    last_log_complete: bool,
    /// A value that may continue on the next lines, with its key and text so far.
    pending: Pending,
    pending_key: String,
    pending_text: String,
}

impl Default for Parser {
    fn default() -> Self {
        Self {
            received: Received::default(),
            resource: Attributes::default(),
            scope: String::new(),
            section: Section::None,
            metric: DataPoint::default(),
            in_log: false,
            in_point: false,
            last_log_complete: true,
            pending: Pending::None,
            pending_key: String::new(),
            pending_text: String::new(),
        }
    }
}

impl Parser {
    fn current_log(&mut self) -> Option<&mut LogRecord> {
        if self.in_log {
            self.received.logs.last_mut()
        } else {
            None
        }
    }

    fn current_point(&mut self) -> Option<&mut DataPoint> {
        if self.in_point {
            self.received.data_points.last_mut()
        } else {
            None
        }
    }

    /// Completes the pending value.
    fn flush(&mut self) {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        let value = Value::parse(&std::mem::take(&mut self.pending_text));
        let key = std::mem::take(&mut self.pending_key);
        match pending {
            Pending::None => {}
            Pending::Body => {
                if let Some(log) = self.current_log() {
                    log.body = Some(value);
                }
            }
            Pending::Attribute => match self.section {
                Section::Resource => self.resource.0.push((key, value)),
                Section::LogAttributes => {
                    if let Some(log) = self.current_log() {
                        log.attributes.0.push((key, value));
                    }
                }
                Section::PointAttributes => {
                    if let Some(point) = self.current_point() {
                        point.attributes.0.push((key, value));
                    }
                }
                Section::None | Section::Descriptor => {}
            },
        }
    }

    fn line(&mut self, line: &str) {
        // Continuation of a multi-line value. Between `Body:` and the next
        // field, arrow lines cannot occur, so they are part of the body too.
        if self.pending != Pending::None {
            let continues = match self.pending {
                Pending::Body => !is_structural(line) || line.starts_with(ARROW),
                _ => !is_structural(line),
            };
            if continues {
                self.pending_text.push('\n');
                self.pending_text.push_str(line);
                return;
            }
            self.flush();
        }

        if let Some(name) = header(line) {
            self.header(name);
            return;
        }

        if let Some(arrow) = line.strip_prefix(ARROW) {
            // `-> Description: ` has an empty value.
            let Some((key, rendered)) = arrow
                .split_once(": ")
                .or_else(|| arrow.strip_suffix(':').map(|k| (k, "")))
            else {
                return;
            };
            if self.section == Section::Descriptor {
                match key {
                    "Name" => self.metric.metric = rendered.to_owned(),
                    "DataType" => self.metric.data_type = rendered.to_owned(),
                    "Unit" => self.metric.unit = rendered.to_owned(),
                    _ => {}
                }
                return;
            }
            self.pending = Pending::Attribute;
            self.pending_key = key.to_owned();
            self.pending_text = rendered.to_owned();
            return;
        }

        let field = |prefix: &str| line.strip_prefix(prefix).map(str::trim);
        if line.starts_with("Resource attributes:") {
            self.section = Section::Resource;
        } else if let Some(rest) = field("InstrumentationScope ") {
            self.scope = rest.to_owned();
            self.section = Section::None;
        } else if line.starts_with("Attributes:") {
            self.section = Section::LogAttributes;
        } else if line.starts_with("Descriptor:") {
            self.section = Section::Descriptor;
        } else if line.starts_with("Data point attributes:") {
            self.section = Section::PointAttributes;
        } else if let Some(rest) = line.strip_prefix("Body: ") {
            if self.in_log {
                self.pending = Pending::Body;
                self.pending_text = rest.to_owned();
            }
        } else if let Some(rest) = field("SeverityText:") {
            if let Some(log) = self.current_log() {
                log.severity_text = rest.to_owned();
            }
        } else if let Some(rest) = field("SeverityNumber:") {
            if let Some(log) = self.current_log() {
                log.severity_number = rest.to_owned();
            }
        } else if let Some(rest) = field("Timestamp:") {
            if let Some(log) = self.current_log() {
                log.time_unix_nano = rest.parse().unwrap_or(0);
            }
        } else if let Some(rest) = field("Value:") {
            if let Some(point) = self.current_point() {
                point.value = Some(rest.to_owned());
            }
        } else if let Some(rest) = field("Count:") {
            if let Some(point) = self.current_point() {
                point.count = rest.parse().ok();
            }
        } else if line.starts_with("Flags:") {
            if self.in_log {
                self.last_log_complete = true;
            }
        } else if let Some(rest) = field("Sum:") {
            if let Some(point) = self.current_point() {
                point.sum = Some(rest.to_owned());
            }
        }
    }

    fn header(&mut self, name: &str) {
        self.section = Section::None;
        match name {
            "ResourceLog" | "ResourceLogs" | "ResourceMetrics" | "ResourceSpans" => {
                self.resource = Attributes::default();
                self.scope.clear();
                self.in_log = false;
                self.in_point = false;
            }
            "ScopeLogs" | "ScopeMetrics" | "ScopeSpans" => {
                self.in_log = false;
                self.in_point = false;
            }
            "LogRecord" => {
                self.received.logs.push(LogRecord {
                    resource: self.resource.clone(),
                    scope: self.scope.clone(),
                    ..LogRecord::default()
                });
                self.in_log = true;
                self.last_log_complete = false;
            }
            "Metric" => {
                self.metric = DataPoint {
                    resource: self.resource.clone(),
                    scope: self.scope.clone(),
                    ..DataPoint::default()
                };
                self.in_point = false;
            }
            n if n.ends_with("DataPoints") => {
                self.received.data_points.push(self.metric.clone());
                self.in_point = true;
            }
            // `Span #0`, `Exemplar #0`, ...: not recorded.
            _ => {
                self.in_log = false;
                self.in_point = false;
            }
        }
    }

    /// What was read; a log record still being written (no `Flags:` yet)
    /// is left for the next read.
    fn finish(mut self) -> Received {
        self.flush();
        if !self.last_log_complete {
            self.received.logs.pop();
        }
        self.received
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
