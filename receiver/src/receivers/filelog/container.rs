//! Container runtime log formats: CRI (containerd, CRI-O) and docker
//! `json-file`. Lines are decoded before multiline grouping and pattern
//! matching, so an application's own lines (a Java OOM and its `\tat`
//! frames) are grouped as if the application had written the file itself.
//!
//! Both runtimes split long lines: CRI marks pieces `P` (partial) until an
//! `F` (full) piece ends the line; docker writes pieces whose `log` does not
//! end with `\n`. Pieces are joined per stream, up to `max_log_size`.
//!
//! The Kubernetes and docker path layouts also name the pod and container:
//! they become `k8s.*` and `container.id` attributes. Layouts are matched on
//! the path's last components, so a copy of the tree under another root
//! (a host mount in a container, a test directory) is recognised too.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::config::LogFormat;
use super::reader::Line;
use crate::pipeline::data::kv_str;

/// The stream a container wrote a line to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// The format a file was found to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Cri,
    Docker,
}

/// One decoded runtime line.
struct Piece {
    message: String,
    time_unix_nano: u64,
    stream: Stream,
    /// The last piece of the application's line.
    last: bool,
}

/// Pieces of a line not complete yet.
#[derive(Debug)]
struct Pending {
    text: String,
    time_unix_nano: u64,
    /// Offset where the first piece starts: a checkpoint must not pass it
    /// while the line is incomplete.
    start_offset: u64,
    end_offset: u64,
    truncated: bool,
    since: Instant,
}

/// Decodes one file's lines (state: the format, unfinished pieces).
#[derive(Debug)]
pub struct Decoder {
    format: LogFormat,
    kind: Option<Kind>,
    max_size: usize,
    /// Per stream (stdout, stderr): their pieces may interleave.
    pending: [Option<Pending>; 2],
    /// End offset of the last raw line: where the next one starts.
    last_end: u64,
    identity: Vec<KeyValue>,
    path: PathBuf,
    warned: bool,
}

impl Decoder {
    pub fn new(format: LogFormat, max_size: usize) -> Self {
        let kind = match format {
            LogFormat::Auto => None,
            LogFormat::Plain => Some(Kind::Plain),
            LogFormat::Cri => Some(Kind::Cri),
            LogFormat::Docker => Some(Kind::Docker),
        };
        Decoder {
            format,
            kind,
            max_size: max_size.max(1),
            pending: [None, None],
            last_end: 0,
            identity: Vec::new(),
            path: PathBuf::new(),
            warned: false,
        }
    }

    /// The file was opened under `path` at `offset`: its identity
    /// attributes, and with `auto`, its format when the layout tells it.
    pub fn attach(&mut self, path: &Path, offset: u64) {
        self.path = path.to_path_buf();
        self.last_end = offset;
        let (identity, kind) = identity_from_path(path);
        self.identity = identity;
        if self.format == LogFormat::Auto && self.kind.is_none() {
            self.kind = kind;
        }
    }

    /// Lines are known to be taken as they are (format `plain`, or `auto`
    /// decided so): nothing to decode, so lines may be skipped unread.
    pub fn is_plain(&self) -> bool {
        self.kind == Some(Kind::Plain)
    }

    /// The file's format is known (not `auto` still waiting for a line).
    pub fn is_decided(&self) -> bool {
        self.kind.is_some()
    }

    /// An unfinished (partial) container line is held.
    pub fn is_holding(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    /// `k8s.*` and `container.id` attributes from the file's path.
    pub fn identity(&self) -> &[KeyValue] {
        &self.identity
    }

    /// Decodes one raw line; complete application lines go to `out`.
    pub fn push(&mut self, line: Line, out: &mut Vec<Line>) {
        let start_offset = self.last_end;
        self.last_end = line.end_offset;
        let kind = match self.kind {
            Some(k) => k,
            None if line.text.trim().is_empty() => Kind::Plain,
            None => {
                let k = detect(&line.text);
                self.kind = Some(k);
                k
            }
        };
        let piece = match kind {
            Kind::Plain => None,
            // A CRI line cut at max_log_size keeps its prefix; a cut JSON
            // line cannot be decoded.
            Kind::Cri => parse_cri(&line.text),
            Kind::Docker if !line.truncated => parse_docker(&line.text),
            Kind::Docker => None,
        };
        let Some(piece) = piece else {
            if kind != Kind::Plain {
                self.warn_undecodable(kind, &line);
            }
            out.push(self.bounded_by_pending(line));
            return;
        };
        let slot = piece.stream.index();
        let pending = self.pending[slot].get_or_insert_with(|| Pending {
            text: String::new(),
            time_unix_nano: piece.time_unix_nano,
            start_offset,
            end_offset: 0,
            truncated: false,
            since: Instant::now(),
        });
        pending.end_offset = line.end_offset;
        pending.since = Instant::now();
        if !push_bounded(&mut pending.text, &piece.message, self.max_size) || line.truncated {
            pending.truncated = true;
        }
        if piece.last {
            if let Some(p) = self.pending[slot].take() {
                let line = finished(p, piece.stream);
                out.push(self.bounded_by_pending(line));
            }
        }
    }

    /// Emits unfinished lines that waited `period` (the writer stopped
    /// mid-line); all of them when `period` is zero.
    pub fn flush_due(&mut self, period: Duration, out: &mut Vec<Line>) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let slot = stream.index();
            if self.pending[slot]
                .as_ref()
                .is_some_and(|p| period.is_zero() || p.since.elapsed() >= period)
            {
                if let Some(p) = self.pending[slot].take() {
                    let line = finished(p, stream);
                    out.push(self.bounded_by_pending(line));
                }
            }
        }
    }

    /// A complete line may follow pieces of the other stream's unfinished
    /// line: its offset must not pass their start (they would be lost on a
    /// restart).
    fn bounded_by_pending(&self, mut line: Line) -> Line {
        if let Some(start) = self.pending.iter().flatten().map(|p| p.start_offset).min() {
            line.end_offset = line.end_offset.min(start);
        }
        line
    }

    fn warn_undecodable(&mut self, kind: Kind, line: &Line) {
        let format = match kind {
            Kind::Cri => "CRI",
            Kind::Docker => "docker json-file",
            Kind::Plain => "plain",
        };
        if self.warned {
            tracing::debug!(path = %self.path.display(), offset = line.end_offset, "line is not in the {format} format; kept as it is");
        } else {
            self.warned = true;
            tracing::warn!(path = %self.path.display(), offset = line.end_offset, truncated = line.truncated, "line is not in the {format} format; kept as it is (warned once per file)");
        }
    }
}

fn finished(p: Pending, stream: Stream) -> Line {
    Line {
        text: p.text,
        end_offset: p.end_offset,
        truncated: p.truncated,
        time_unix_nano: p.time_unix_nano,
        stream: Some(stream),
    }
}

/// Appends `s` to `text` up to `max` bytes (on a char boundary); false
/// when something was cut.
fn push_bounded(text: &mut String, s: &str, max: usize) -> bool {
    let room = max.saturating_sub(text.len());
    if s.len() <= room {
        text.push_str(s);
        return true;
    }
    let mut cut = room;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    text.push_str(&s[..cut]);
    false
}

fn detect(line: &str) -> Kind {
    if parse_docker(line).is_some() {
        Kind::Docker
    } else if parse_cri(line).is_some() {
        Kind::Cri
    } else {
        Kind::Plain
    }
}

fn parse_time(s: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos()).ok()
}

/// `<RFC3339Nano time> <stdout|stderr> <tags> <message>`; the first tag
/// (`:`-separated) is `P` or `F`.
fn parse_cri(line: &str) -> Option<Piece> {
    let mut parts = line.splitn(4, ' ');
    let time_unix_nano = parse_time(parts.next()?)?;
    let stream = Stream::parse(parts.next()?)?;
    let last = match parts.next()?.split(':').next()? {
        "F" => true,
        "P" => false,
        _ => return None,
    };
    Some(Piece {
        message: parts.next().unwrap_or("").to_string(),
        time_unix_nano,
        stream,
        last,
    })
}

/// `{"log":"...","stream":"stdout","time":"..."}`.
fn parse_docker(line: &str) -> Option<Piece> {
    #[derive(Deserialize)]
    struct Entry {
        log: String,
        stream: String,
        time: String,
    }
    if !line.starts_with('{') {
        return None;
    }
    let e: Entry = serde_json::from_str(line).ok()?;
    let stream = Stream::parse(&e.stream)?;
    let time_unix_nano = parse_time(&e.time).unwrap_or(0);
    let mut message = e.log;
    let last = message.ends_with('\n');
    if last {
        message.pop();
        if message.ends_with('\r') {
            message.pop();
        }
    }
    Some(Piece {
        message,
        time_unix_nano,
        stream,
        last,
    })
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Identity attributes and the format the path's layout implies:
/// - `.../pods/<namespace>_<pod>_<uid>/<container>/<restart>.log` (CRI)
/// - `.../containers/<pod>_<namespace>_<container>-<id>.log` (CRI)
/// - `.../containers/<id>/<id>-json.log` (docker)
///
/// Rotated names (`0.log.20240101-000000`, `<id>-json.log.1`) count too.
fn identity_from_path(path: &Path) -> (Vec<KeyValue>, Option<Kind>) {
    let names: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let n = names.len();
    let nth_last = |i: usize| n.checked_sub(i + 1).map(|j| names[j]);
    let (Some(file), Some(parent)) = (nth_last(0), nth_last(1)) else {
        return (Vec::new(), None);
    };
    // Kubelet: pods/<ns>_<pod>_<uid>/<container>/<restart>.log
    if let (Some(pod_dir), Some("pods")) = (nth_last(2), nth_last(3)) {
        let restart = file.split_once(".log").map(|(stem, _)| stem);
        let pod: Vec<&str> = pod_dir.split('_').collect();
        if let (Some(restart), [ns, pod, uid]) = (restart, pod.as_slice()) {
            if let Ok(restart) = restart.parse::<i64>() {
                if !ns.is_empty() && !pod.is_empty() && !uid.is_empty() && !parent.is_empty() {
                    let attrs = vec![
                        kv_str("k8s.namespace.name", ns),
                        kv_str("k8s.pod.name", pod),
                        kv_str("k8s.pod.uid", uid),
                        kv_str("k8s.container.name", parent),
                        KeyValue {
                            key: "k8s.container.restart_count".to_string(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(restart)),
                            }),
                            ..Default::default()
                        },
                    ];
                    return (attrs, Some(Kind::Cri));
                }
            }
        }
    }
    // Docker: containers/<id>/<id>-json.log
    if is_container_id(parent) && nth_last(2) == Some("containers") {
        let expected = format!("{parent}-json.log");
        if file.starts_with(&expected) {
            return (vec![kv_str("container.id", parent)], Some(Kind::Docker));
        }
    }
    // Kubelet symlinks: containers/<pod>_<ns>_<container>-<id>.log
    if parent == "containers" {
        if let Some(stem) = file.strip_suffix(".log") {
            let parts: Vec<&str> = stem.split('_').collect();
            if let [pod, ns, rest] = parts.as_slice() {
                if let Some((container, id)) = rest.rsplit_once('-') {
                    if is_container_id(id) && !pod.is_empty() && !ns.is_empty() {
                        let attrs = vec![
                            kv_str("k8s.namespace.name", ns),
                            kv_str("k8s.pod.name", pod),
                            kv_str("k8s.container.name", container),
                            kv_str("container.id", id),
                        ];
                        return (attrs, Some(Kind::Cri));
                    }
                }
            }
        }
    }
    (Vec::new(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str, end: u64) -> Line {
        Line {
            text: text.to_string(),
            end_offset: end,
            ..Default::default()
        }
    }

    fn decode(d: &mut Decoder, lines: &[&str]) -> Vec<Line> {
        let mut out = Vec::new();
        let mut end = 0;
        for l in lines {
            end += l.len() as u64 + 1;
            d.push(raw(l, end), &mut out);
        }
        out
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.to_string())
    }

    #[test]
    fn cri_partials_join_until_full() {
        let mut d = Decoder::new(LogFormat::Cri, 1000);
        let lines = [
            "2024-05-01T10:00:00.123456789Z stderr P first ",
            "2024-05-01T10:00:01Z stdout F other",
            "2024-05-01T10:00:02Z stderr P second ",
            "2024-05-01T10:00:03Z stderr F third",
        ];
        let out = decode(&mut d, &lines);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].text, "other");
        assert_eq!(out[0].stream, Some(Stream::Stdout));
        // The stdout line ends after stderr's first piece started: its offset
        // stays before that piece.
        assert_eq!(out[0].end_offset, 0);
        assert_eq!(out[1].text, "first second third");
        assert_eq!(out[1].stream, Some(Stream::Stderr));
        assert_eq!(out[1].time_unix_nano, 1_714_557_600_123_456_789);
        let file_len: usize = lines.iter().map(|l| l.len() + 1).sum();
        assert_eq!(out[1].end_offset, file_len as u64);
    }

    #[test]
    fn cri_partials_are_bounded_and_flushed() {
        let mut d = Decoder::new(LogFormat::Cri, 8);
        let mut out = decode(
            &mut d,
            &[
                "2024-05-01T10:00:00+02:00 stdout P 12345",
                "2024-05-01T10:00:00+02:00 stdout P 67890",
            ],
        );
        assert!(out.is_empty());
        d.flush_due(Duration::from_secs(3600), &mut out);
        assert!(out.is_empty());
        d.flush_due(Duration::ZERO, &mut out);
        assert_eq!(out[0].text, "12345678");
        assert!(out[0].truncated);
        assert_eq!(out[0].time_unix_nano, 1_714_550_400_000_000_000);
        let mut cut = raw("2024-05-01T10:00:00Z stdout F abc", 9);
        cut.truncated = true;
        d.push(cut, &mut out);
        assert_eq!(out[1].text, "abc");
        assert!(out[1].truncated);
    }

    #[test]
    fn docker_lines_decode_and_join() {
        let mut d = Decoder::new(LogFormat::Docker, 1000);
        let out = decode(
            &mut d,
            &[
                r#"{"log":"caf\u00e9 \"x\"\tat\\n\n","stream":"stdout","time":"2024-05-01T10:00:00.5Z"}"#,
                r#"{"log":"part one, ","stream":"stderr","time":"2024-05-01T10:00:01Z"}"#,
                r#"{"log":"part two\n","stream":"stderr","time":"2024-05-01T10:00:02Z"}"#,
                r#"{"log":"\n","stream":"stdout","time":"2024-05-01T10:00:03Z"}"#,
            ],
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].text, "café \"x\"\tat\\n");
        assert_eq!(out[0].time_unix_nano, 1_714_557_600_500_000_000);
        assert_eq!(out[1].text, "part one, part two");
        assert_eq!(out[1].stream, Some(Stream::Stderr));
        assert_eq!(out[1].time_unix_nano, 1_714_557_601_000_000_000);
        assert_eq!(out[2].text, "");
    }

    #[test]
    fn undecodable_lines_are_kept_as_they_are() {
        let mut d = Decoder::new(LogFormat::Docker, 1000);
        let out = decode(&mut d, &["{\"log\": broken", "plain text"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].text, "{\"log\": broken");
        assert_eq!(out[0].stream, None);
        assert_eq!(out[1].text, "plain text");
        let mut d = Decoder::new(LogFormat::Cri, 1000);
        let out = decode(
            &mut d,
            &["not-a-time stdout F x", "2024-05-01T10:00:00Z pipe F x"],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].time_unix_nano, 0);
    }

    #[test]
    fn auto_detects_from_the_first_line() {
        let mut d = Decoder::new(LogFormat::Auto, 1000);
        d.attach(Path::new("/tmp/x/app.log"), 0);
        let out = decode(&mut d, &["", "2024-05-01T10:00:00Z stdout F hi"]);
        assert_eq!(out[1].text, "hi");
        let mut d = Decoder::new(LogFormat::Auto, 1000);
        let out = decode(&mut d, &["plain 2024", "2024-05-01T10:00:00Z stdout F hi"]);
        assert_eq!(out[1].text, "2024-05-01T10:00:00Z stdout F hi");
        let mut d = Decoder::new(LogFormat::Plain, 1000);
        let out = decode(
            &mut d,
            &[r#"{"log":"x\n","stream":"stdout","time":"2024-05-01T10:00:00Z"}"#],
        );
        assert!(out[0].text.starts_with('{'));
    }

    #[test]
    fn identity_from_kubelet_and_docker_paths() {
        let (a, k) = identity_from_path(Path::new(
            "/tmp/t/var/log/pods/shop_cart-7d9f_0b5c-11/app/3.log",
        ));
        assert_eq!(k, Some(Kind::Cri));
        assert_eq!(attr(&a, "k8s.namespace.name"), Some(&s("shop")));
        assert_eq!(attr(&a, "k8s.pod.name"), Some(&s("cart-7d9f")));
        assert_eq!(attr(&a, "k8s.pod.uid"), Some(&s("0b5c-11")));
        assert_eq!(attr(&a, "k8s.container.name"), Some(&s("app")));
        assert_eq!(
            attr(&a, "k8s.container.restart_count"),
            Some(&any_value::Value::IntValue(3))
        );
        let id = "ab".repeat(32);
        let (a, k) = identity_from_path(&PathBuf::from(format!(
            "/var/log/containers/cart-7d9f_shop_app-side-{id}.log"
        )));
        assert_eq!(k, Some(Kind::Cri));
        assert_eq!(attr(&a, "k8s.container.name"), Some(&s("app-side")));
        assert_eq!(attr(&a, "k8s.namespace.name"), Some(&s("shop")));
        assert_eq!(attr(&a, "container.id"), Some(&s(&id)));
        let (a, k) = identity_from_path(&PathBuf::from(format!(
            "/srv/docker/containers/{id}/{id}-json.log.1"
        )));
        assert_eq!(k, Some(Kind::Docker));
        assert_eq!(attr(&a, "container.id"), Some(&s(&id)));
        for other in [
            "/var/log/syslog",
            "/var/log/pods/bad/app/0.log",
            "/var/log/containers/x.log",
            "app.log",
        ] {
            assert_eq!(identity_from_path(Path::new(other)), (Vec::new(), None));
        }
    }
}
