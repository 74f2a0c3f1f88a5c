//! OTLP/HTTP bodies: content types, bounded decompression, protobuf and
//! JSON decoding, and response encoding.

use std::io::Read;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum, Summary,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::Deserialize;

use super::sanitize::Dropped;
use crate::pipeline::{Payload, Signal};

/// Largest zstd window accepted (2^24 = 16 MiB): the decoder allocates the
/// window the frame asks for, so this bounds its memory.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// How a body is encoded (`Content-Type`), and how responses are.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// `None` for a type OTLP does not define; parameters such as
    /// `; charset=utf-8` are ignored.
    pub(super) fn from_content_type(value: &str) -> Option<Self> {
        let media_type = value.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if media_type.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    pub(super) fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `Content-Encoding` of a request body.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
    Zstd,
    /// `deflate` and `zlib`: zlib-wrapped deflate, as the collector reads both.
    Zlib,
    /// `snappy`: the block format, or the framing format when the body
    /// starts with its stream identifier (the collector's confighttp detects
    /// it the same way: its clients once sent framed bodies under this name).
    Snappy,
    /// `x-snappy-framed`: the snappy framing format.
    SnappyFramed,
    /// `lz4`: the LZ4 frame format.
    Lz4,
}

/// The first chunk of every snappy framed stream (the stream identifier).
const SNAPPY_FRAMING_HEADER: &[u8] = b"\xff\x06\x00\x00sNaPpY";

impl Compression {
    pub(super) fn from_content_encoding(value: Option<&str>) -> Result<Self, String> {
        let value = value.unwrap_or("").trim();
        match value.to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Compression::None),
            "gzip" | "x-gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "deflate" | "zlib" => Ok(Compression::Zlib),
            "snappy" => Ok(Compression::Snappy),
            "x-snappy-framed" => Ok(Compression::SnappyFramed),
            "lz4" => Ok(Compression::Lz4),
            _ => Err(format!(
                "unsupported Content-Encoding {value:?} (supported: gzip, zstd, deflate, zlib, \
                 snappy, x-snappy-framed, lz4, identity)"
            )),
        }
    }
}

#[derive(Debug, PartialEq)]
pub(super) enum DecompressError {
    TooLarge,
    Corrupt(String),
    /// The in-flight budget cannot hold the decompressed bytes now.
    Busy,
}

/// Bytes decompressed per step: the output's share of the in-flight budget
/// is taken a step ahead of the bytes written.
const DECOMPRESS_STEP: usize = 1 << 20;

/// Decompresses `body`, reading at most `limit + 1` bytes of output so a
/// small compressed body cannot inflate without bound. Before the output
/// grows, `reserve(n)` must grant room for `n` bytes of it (the receiver's
/// in-flight budget): a body of a few KiB may inflate to the whole limit, so
/// the compressed size that was reserved for it says nothing about the
/// memory it takes, and many such bodies at once would hold many limits.
pub(super) fn decompress(
    compression: Compression,
    body: Bytes,
    limit: usize,
    reserve: &mut dyn FnMut(usize) -> bool,
) -> Result<Bytes, DecompressError> {
    let corrupt =
        |e: std::io::Error| DecompressError::Corrupt(format!("cannot decompress the body: {e}"));
    match compression {
        Compression::None if body.len() > limit => Err(DecompressError::TooLarge),
        Compression::None => Ok(body),
        Compression::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(&body[..]), limit, reserve)
                .map(Inflated::into_bytes)
        }
        Compression::Zlib => {
            read_bounded(flate2::read::ZlibDecoder::new(&body[..]), limit, reserve)
                .map(Inflated::into_bytes)
        }
        Compression::Snappy if body.starts_with(SNAPPY_FRAMING_HEADER) => {
            read_bounded(snap::read::FrameDecoder::new(&body[..]), limit, reserve)
                .map(Inflated::into_bytes)
        }
        Compression::Snappy => {
            // A block says its decoded length up front: checked against the
            // limit (and reserved) before anything is inflated.
            let len = snap::raw::decompress_len(&body).map_err(|e| {
                DecompressError::Corrupt(format!("cannot decompress the body: {e}"))
            })?;
            if len > limit {
                return Err(DecompressError::TooLarge);
            }
            if !reserve(len) {
                return Err(DecompressError::Busy);
            }
            snap::raw::Decoder::new()
                .decompress_vec(&body)
                .map(Bytes::from)
                .map_err(|e| DecompressError::Corrupt(format!("cannot decompress the body: {e}")))
        }
        Compression::SnappyFramed => {
            read_bounded(snap::read::FrameDecoder::new(&body[..]), limit, reserve)
                .map(Inflated::into_bytes)
        }
        Compression::Lz4 => read_bounded(
            lz4_flex::frame::FrameDecoder::new(&body[..]),
            limit,
            reserve,
        )
        .map(Inflated::into_bytes),
        Compression::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(&body[..]).map_err(corrupt)?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(corrupt)?;
            // The decoder keeps the last window of output in a buffer of its
            // own, filled as the output grows: that is as much again, up to
            // the window (a burst of zstd bombs took twice what the output
            // reservations held).
            let window = 1usize << ZSTD_WINDOW_LOG_MAX;
            read_bounded(decoder, limit, &mut |n| {
                reserve(n.saturating_add(n.min(window)))
            })
            .map(Inflated::into_bytes)
        }
    }
}

fn read_bounded(
    mut reader: impl Read,
    limit: usize,
    reserve: &mut dyn FnMut(usize) -> bool,
) -> Result<Inflated, DecompressError> {
    let corrupt =
        |e: std::io::Error| DecompressError::Corrupt(format!("cannot decompress the body: {e}"));
    // One byte past the limit tells "too large" from "exactly the limit".
    let cap = limit.saturating_add(1);
    // Room for what bodies usually inflate to, from the allocator; past
    // that, a mapping (below). A doubling Vec would copy the output at each
    // step and hold the old and the new copy together (a bomb of a few KiB
    // held twice the limit).
    let mut small = Vec::with_capacity(MAPPED_OUTPUT_FROM.min(cap));
    let mut mapped: Option<MappedBuffer> = None;
    loop {
        let len = mapped.as_ref().map_or(small.len(), MappedBuffer::len);
        let step = DECOMPRESS_STEP.min(cap - len);
        if !reserve(len + step) {
            return Err(DecompressError::Busy);
        }
        let read = match &mut mapped {
            None if small.len() + step <= small.capacity() => (&mut reader)
                .take(step as u64)
                .read_to_end(&mut small)
                .map_err(corrupt)?,
            None => {
                // Past what bodies usually inflate to: the rest goes to a
                // mapping of its own, the limit's size (untouched pages cost
                // no memory), given back to the OS the moment it is dropped.
                let mut buffer = MappedBuffer::new(cap).map_err(corrupt)?;
                buffer.extend_from_slice(&small);
                small = Vec::new();
                let read = buffer.read_from(&mut reader, step).map_err(corrupt)?;
                mapped = Some(buffer);
                read
            }
            Some(buffer) => buffer.read_from(&mut reader, step).map_err(corrupt)?,
        };
        let len = mapped.as_ref().map_or(small.len(), MappedBuffer::len);
        if len > limit {
            return Err(DecompressError::TooLarge);
        }
        if read < step {
            return Ok(match mapped {
                Some(buffer) => Inflated::Mapped(buffer),
                None => Inflated::Heap(small),
            });
        }
    }
}

/// What a body inflated to.
enum Inflated {
    /// Up to [`MAPPED_OUTPUT_FROM`] bytes, from the allocator.
    Heap(Vec<u8>),
    /// More, in a mapping of its own.
    Mapped(MappedBuffer),
}

impl Inflated {
    fn into_bytes(self) -> Bytes {
        match self {
            Inflated::Heap(v) => Bytes::from(v),
            Inflated::Mapped(m) => Bytes::from_owner(m),
        }
    }
}

/// Decompressed output larger than this goes to its own mapping
/// ([`MappedBuffer`]).
const MAPPED_OUTPUT_FROM: usize = 1 << 20;

/// A byte buffer in an anonymous mapping of its own, unmapped when dropped.
///
/// Large decompressed bodies live here rather than in the allocator: freed
/// memory of the allocator stays in the per-thread caches of whichever
/// blocking thread decoded the body, so a burst of large bodies left an
/// idle agent holding hundreds of MiB it no longer used (and the
/// `memory_limiter` refusing data because of them); asking the allocator to
/// give it back costs milliseconds per body. A mapping is given back at
/// once, and its untouched pages never cost memory.
struct MappedBuffer {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone; `&self` only reads it.
unsafe impl Send for MappedBuffer {}
// SAFETY: as above.
unsafe impl Sync for MappedBuffer {}

impl MappedBuffer {
    fn new(cap: usize) -> std::io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self {
            ptr,
            cap: cap.max(1),
            len: 0,
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    fn spare(&mut self) -> &mut [u8] {
        // SAFETY: `len..cap` is inside the mapping, which `&mut self` owns.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len), self.cap - self.len)
        }
    }

    /// Appends `bytes`; the caller keeps within the capacity.
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.cap - self.len);
        self.spare()[..n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// Reads from `reader` until `max` bytes came (or fewer at its end, or
    /// the capacity is full); returns how many.
    fn read_from(&mut self, reader: &mut impl Read, max: usize) -> std::io::Result<usize> {
        let mut read = 0;
        while read < max {
            let want = (max - read).min(self.cap - self.len);
            if want == 0 {
                break;
            }
            match reader.read(&mut self.spare()[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    self.len += n;
                    read += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(read)
    }
}

impl AsRef<[u8]> for MappedBuffer {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `0..len` is inside the mapping and was written.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.cap);
        }
    }
}

/// OTLP/JSON requests. The envelope is our own so that absent or null
/// `resourceLogs`/`resourceMetrics` decode as empty (the generated types
/// require the field); everything inside uses opentelemetry-proto's serde,
/// which follows the OTLP JSON mapping (lowerCamelCase, hex ids, 64-bit
/// integers as strings or numbers, enums as integers, unknown fields ignored).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LogsJson {
    #[serde(deserialize_with = "null_as_empty")]
    resource_logs: Vec<ResourceLogs>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetricsJson {
    #[serde(deserialize_with = "null_as_empty")]
    resource_metrics: Vec<ResourceMetricsJson>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ResourceMetricsJson {
    resource: Option<Resource>,
    #[serde(deserialize_with = "null_as_empty")]
    scope_metrics: Vec<ScopeMetricsJson>,
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ScopeMetricsJson {
    scope: Option<InstrumentationScope>,
    #[serde(deserialize_with = "null_as_empty")]
    metrics: Vec<MetricJson>,
    schema_url: String,
}

/// A `Metric` read with each kind of data as a field of its own.
/// opentelemetry-proto flattens the data oneof into an `Option`, and serde
/// turns any error inside a flattened `Option` into `None`: a histogram with
/// one bad field vanished from a request that was then accepted. Here an
/// error in the data is an error of the request.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetricJson {
    name: String,
    description: String,
    unit: String,
    #[serde(deserialize_with = "null_as_empty")]
    metadata: Vec<KeyValue>,
    gauge: Option<Gauge>,
    sum: Option<Sum>,
    histogram: Option<Histogram>,
    exponential_histogram: Option<ExponentialHistogram>,
    summary: Option<Summary>,
}

impl From<ResourceMetricsJson> for ResourceMetrics {
    fn from(r: ResourceMetricsJson) -> Self {
        ResourceMetrics {
            resource: r.resource,
            scope_metrics: r
                .scope_metrics
                .into_iter()
                .map(|s| ScopeMetrics {
                    scope: s.scope,
                    metrics: s.metrics.into_iter().map(Metric::from).collect(),
                    schema_url: s.schema_url,
                })
                .collect(),
            schema_url: r.schema_url,
        }
    }
}

impl From<MetricJson> for Metric {
    fn from(m: MetricJson) -> Self {
        let data = m
            .gauge
            .map(Data::Gauge)
            .or(m.sum.map(Data::Sum))
            .or(m.histogram.map(Data::Histogram))
            .or(m.exponential_histogram.map(Data::ExponentialHistogram))
            .or(m.summary.map(Data::Summary));
        Metric {
            name: m.name,
            description: m.description,
            unit: m.unit,
            metadata: m.metadata,
            data,
        }
    }
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// An OTLP/JSON request. proto3 JSON lets a sender leave out any field at
/// its default value (Go's protojson and oomscope's own encoder do), but
/// opentelemetry-proto's serde requires a few: `KeyValue.key` (an empty
/// key), `ArrayValue.values` and `KeyValueList.values` (empty lists) and the
/// fields of `EntityRef`. A request missing one is read again with them
/// filled in; the common case is parsed once.
fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    match serde_json::from_slice::<T>(body) {
        Err(e) if e.is_data() && e.to_string().starts_with("missing field") => {
            let mut value: serde_json::Value = serde_json::from_slice(body)?;
            fill_required_defaults(&mut value, None);
            serde_json::from_value(value)
        }
        result => result,
    }
}

/// Adds the fields opentelemetry-proto's serde requires, at their default
/// value, wherever they are missing; `key` is the field `value` is held in.
fn fill_required_defaults(value: &mut serde_json::Value, key: Option<&str>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if matches!(key, Some("arrayValue" | "kvlistValue")) {
                map.entry("values")
                    .or_insert_with(|| Value::Array(Vec::new()));
            }
            let kvlist = key == Some("kvlistValue");
            for (field, child) in map.iter_mut() {
                // A kvlistValue's values are KeyValues, like attributes.
                let field = if kvlist && field == "values" {
                    "attributes"
                } else {
                    field.as_str()
                };
                fill_required_defaults(child, Some(field));
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Value::Object(map) = item {
                    match key {
                        Some("attributes" | "filteredAttributes" | "metadata") => {
                            map.entry("key")
                                .or_insert_with(|| Value::String(String::new()));
                        }
                        Some("entityRefs") => {
                            for text in ["schemaUrl", "type"] {
                                map.entry(text)
                                    .or_insert_with(|| Value::String(String::new()));
                            }
                            for list in ["idKeys", "descriptionKeys"] {
                                map.entry(list).or_insert_with(|| Value::Array(Vec::new()));
                            }
                        }
                        _ => {}
                    }
                }
                fill_required_defaults(item, None);
            }
        }
        _ => {}
    }
}

/// Decodes an export request of `signal`.
pub(super) fn decode_request(
    signal: Signal,
    encoding: Encoding,
    body: &[u8],
) -> Result<Payload, String> {
    // serde's derived structs also take a JSON array (fields by position),
    // so `[]` would pass as an empty request; an OTLP/JSON request is an
    // object.
    if encoding == Encoding::Json && body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(format!(
            "cannot decode the JSON {signal} request: it must be a JSON object"
        ));
    }
    match (signal, encoding) {
        (Signal::Logs, Encoding::Protobuf) => ExportLogsServiceRequest::decode(body)
            .map(|r| Payload::Logs(r.resource_logs))
            .map_err(|e| format!("cannot decode the protobuf logs request: {e}")),
        (Signal::Metrics, Encoding::Protobuf) => ExportMetricsServiceRequest::decode(body)
            .map(|r| Payload::Metrics(r.resource_metrics))
            .map_err(|e| format!("cannot decode the protobuf metrics request: {e}")),
        (Signal::Logs, Encoding::Json) => from_json::<LogsJson>(body)
            .map(|r| Payload::Logs(r.resource_logs))
            .map_err(|e| format!("cannot decode the JSON logs request: {e}")),
        (Signal::Metrics, Encoding::Json) => from_json::<MetricsJson>(body)
            .map(|r| {
                Payload::Metrics(
                    r.resource_metrics
                        .into_iter()
                        .map(ResourceMetrics::from)
                        .collect(),
                )
            })
            .map_err(|e| format!("cannot decode the JSON metrics request: {e}")),
    }
}

/// A request body as received: decompressed (bounded by `limit`, each step
/// of output granted by `reserve` first, see [`decompress`]), then decoded as
/// an export request of `signal`.
pub(super) fn decode_body(
    signal: Signal,
    encoding: Encoding,
    compression: Compression,
    body: Bytes,
    limit: usize,
    reserve: &mut dyn FnMut(usize) -> bool,
) -> Result<Payload, DecompressError> {
    let raw = decompress(compression, body, limit, reserve)?;
    decode_request(signal, encoding, &raw).map_err(DecompressError::Corrupt)
}

/// The success response of `signal`: an `Export*ServiceResponse` with
/// `partial_success` unset.
/// The success response; `partial_success` is set only when items were
/// dropped (the spec: unset on full success).
pub(super) fn encode_success(
    signal: Signal,
    encoding: Encoding,
    dropped: Option<&Dropped>,
) -> Bytes {
    let rejected = dropped.map(|d| {
        (
            i64::try_from(d.items).unwrap_or(i64::MAX),
            d.message.clone(),
        )
    });
    match encoding {
        Encoding::Protobuf => Bytes::from(match signal {
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: rejected.map(|(n, m)| ExportLogsPartialSuccess {
                    rejected_log_records: n,
                    error_message: m,
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: rejected.map(|(n, m)| ExportMetricsPartialSuccess {
                    rejected_data_points: n,
                    error_message: m,
                }),
            }
            .encode_to_vec(),
        }),
        Encoding::Json => match (signal, rejected) {
            // An unset message field is absent in OTLP/JSON.
            (_, None) => Bytes::from_static(b"{}"),
            // int64 is a string in OTLP/JSON.
            (Signal::Logs, Some((n, m))) => Bytes::from(
                serde_json::json!({"partialSuccess": {"rejectedLogRecords": n.to_string(), "errorMessage": m}}).to_string(),
            ),
            (Signal::Metrics, Some((n, m))) => Bytes::from(
                serde_json::json!({"partialSuccess": {"rejectedDataPoints": n.to_string(), "errorMessage": m}}).to_string(),
            ),
        },
    }
}

/// A `google.rpc.Status` with `code` and `message`, in `encoding`.
pub(super) fn encode_status(code: tonic::Code, message: &str, encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Protobuf => Bytes::from(
            tonic_types::Status {
                code: code as i32,
                message: message.to_string(),
                details: Vec::new(),
            }
            .encode_to_vec(),
        ),
        Encoding::Json => {
            Bytes::from(serde_json::json!({ "code": code as i32, "message": message }).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = enc.write_all(data);
        Bytes::from(enc.finish().unwrap_or_default())
    }

    #[test]
    fn content_types_with_parameters() {
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("Application/X-Protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
        assert_eq!(Encoding::from_content_type(""), None);
    }

    #[test]
    fn content_encodings() {
        assert_eq!(
            Compression::from_content_encoding(None),
            Ok(Compression::None)
        );
        assert_eq!(
            Compression::from_content_encoding(Some("GZIP")),
            Ok(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_content_encoding(Some("zstd")),
            Ok(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_content_encoding(Some("deflate")),
            Ok(Compression::Zlib)
        );
        assert_eq!(
            Compression::from_content_encoding(Some("snappy")),
            Ok(Compression::Snappy)
        );
        assert_eq!(
            Compression::from_content_encoding(Some("x-snappy-framed")),
            Ok(Compression::SnappyFramed)
        );
        assert_eq!(
            Compression::from_content_encoding(Some("lz4")),
            Ok(Compression::Lz4)
        );
        assert!(Compression::from_content_encoding(Some("br")).is_err());
    }

    /// snappy (block and framed) and lz4 inflate within the limit, and a
    /// bomb (a few KiB that would inflate far past it) is refused, not
    /// inflated: the block format by its stated length before decoding,
    /// the streamed formats one step past the limit.
    #[test]
    fn snappy_and_lz4_are_bounded() {
        use std::io::Write as _;
        let data = vec![b'a'; 10_000];
        let block = snap::raw::Encoder::new()
            .compress_vec(&data)
            .unwrap_or_else(|e| panic!("{e}"));
        let framed = {
            let mut w = snap::write::FrameEncoder::new(Vec::new());
            w.write_all(&data).unwrap_or_else(|e| panic!("{e}"));
            w.into_inner().unwrap_or_else(|e| panic!("{e}"))
        };
        let lz4 = {
            let mut w = lz4_flex::frame::FrameEncoder::new(Vec::new());
            w.write_all(&data).unwrap_or_else(|e| panic!("{e}"));
            w.finish().unwrap_or_else(|e| panic!("{e}"))
        };
        for (compression, body) in [
            (Compression::Snappy, &block),
            (Compression::Snappy, &framed),
            (Compression::SnappyFramed, &framed),
            (Compression::Lz4, &lz4),
        ] {
            let body = Bytes::from(body.clone());
            assert_eq!(
                decompress(compression, body.clone(), 10_000, &mut unbounded).map(|b| b.to_vec()),
                Ok(data.clone()),
                "{compression:?}"
            );
            assert_eq!(
                decompress(compression, body, 9_999, &mut unbounded).map(|b| b.len()),
                Err(DecompressError::TooLarge),
                "{compression:?}"
            );
        }

        // Bombs: 64 MiB of zeros against a 1 MiB limit; the output never
        // grows past the limit (what `reserve` was asked for says so).
        let zeros = vec![0u8; 64 << 20];
        let limit = 1 << 20;
        let bombs = [
            (
                Compression::Snappy,
                snap::raw::Encoder::new()
                    .compress_vec(&zeros)
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            (Compression::SnappyFramed, {
                let mut w = snap::write::FrameEncoder::new(Vec::new());
                w.write_all(&zeros).unwrap_or_else(|e| panic!("{e}"));
                w.into_inner().unwrap_or_else(|e| panic!("{e}"))
            }),
            (Compression::Lz4, {
                let mut w = lz4_flex::frame::FrameEncoder::new(Vec::new());
                w.write_all(&zeros).unwrap_or_else(|e| panic!("{e}"));
                w.finish().unwrap_or_else(|e| panic!("{e}"))
            }),
        ];
        drop(zeros);
        for (compression, bomb) in bombs {
            assert!(bomb.len() < 4 << 20, "{compression:?}: {}", bomb.len());
            let mut most = 0;
            let result = decompress(compression, Bytes::from(bomb), limit, &mut |n| {
                most = most.max(n);
                true
            });
            assert_eq!(
                result.map(|b| b.len()),
                Err(DecompressError::TooLarge),
                "{compression:?}"
            );
            assert!(most <= limit + 1, "{compression:?} reserved {most}");
        }
        // A block that claims more than the limit is refused before decoding.
        let mut claims = Vec::new();
        let mut n = 1u64 << 40;
        while n >= 0x80 {
            claims.push((n as u8) | 0x80);
            n >>= 7;
        }
        claims.push(n as u8);
        let mut asked = false;
        let refused = decompress(Compression::Snappy, Bytes::from(claims), limit, &mut |_| {
            asked = true;
            true
        });
        assert!(refused.is_err());
        assert!(!asked, "nothing reserved for a block over the limit");
    }

    fn unbounded(_: usize) -> bool {
        true
    }

    #[test]
    fn decompression_is_bounded() {
        let data = vec![b'a'; 10_000];
        let compressed = gzip(&data);
        assert_eq!(
            decompress(
                Compression::Gzip,
                compressed.clone(),
                10_000,
                &mut unbounded
            )
            .map(|b| b.len()),
            Ok(10_000)
        );
        assert_eq!(
            decompress(Compression::Gzip, compressed, 9_999, &mut unbounded),
            Err(DecompressError::TooLarge)
        );
        let zstd_compressed = zstd::encode_all(&data[..], 3).unwrap_or_default();
        assert_eq!(
            decompress(
                Compression::Zstd,
                Bytes::from(zstd_compressed),
                9_999,
                &mut unbounded
            ),
            Err(DecompressError::TooLarge)
        );
        assert!(matches!(
            decompress(
                Compression::Gzip,
                Bytes::from_static(b"not gzip"),
                100,
                &mut unbounded
            ),
            Err(DecompressError::Corrupt(_))
        ));
    }

    /// The output is reserved before it is written, a step at a time: a
    /// bomb that would inflate past what the budget grants is refused as
    /// busy with at most a step more than granted written (48 bombs of a few
    /// KiB at once inflated to 20 MiB each held 486 MiB; tests/otlp_adversarial.rs).
    #[test]
    fn decompressed_output_is_reserved_before_it_is_written() {
        let data = vec![0u8; 5 * DECOMPRESS_STEP + 17];
        let limit = 20 * DECOMPRESS_STEP;
        for (compression, body) in [
            (Compression::Gzip, gzip(&data)),
            (
                Compression::Zstd,
                Bytes::from(zstd::encode_all(&data[..], 3).unwrap_or_default()),
            ),
        ] {
            // zstd's window is as much again as the output.
            let per_step = match compression {
                Compression::Zstd => 2 * DECOMPRESS_STEP,
                _ => DECOMPRESS_STEP,
            };
            let mut asked = Vec::new();
            let mut grant_three_steps = |n: usize| {
                asked.push(n);
                n <= 3 * per_step
            };
            assert_eq!(
                decompress(compression, body.clone(), limit, &mut grant_three_steps),
                Err(DecompressError::Busy),
                "{compression:?}"
            );
            assert_eq!(asked, [1, 2, 3, 4].map(|k| k * per_step), "{compression:?}");
            let mut total = 0;
            let out = decompress(compression, body, limit, &mut |n| {
                total = n;
                true
            });
            assert_eq!(out.map(|b| b.len()), Ok(data.len()), "{compression:?}");
            assert_eq!(total, 6 * per_step, "{compression:?}: reserved");
        }
        // Output past the first step is not copied into ever larger
        // buffers on its way to the limit: it moves once, into a mapping of
        // its own (given back to the OS when dropped, not kept by the
        // allocator); what inflates to less stays in the allocator.
        let inflated = read_bounded(
            flate2::read::MultiGzDecoder::new(&gzip(&data)[..]),
            limit,
            &mut unbounded,
        );
        assert!(
            matches!(&inflated, Ok(Inflated::Mapped(m)) if m.as_ref() == data.as_slice()),
            "a large output is in a mapping"
        );
        let inflated = read_bounded(
            flate2::read::MultiGzDecoder::new(&gzip(b"small")[..]),
            limit,
            &mut unbounded,
        );
        assert!(matches!(&inflated, Ok(Inflated::Heap(v)) if v == b"small"));
        // Uncompressed bodies are reserved by their length before they are read.
        assert_eq!(
            decompress(
                Compression::None,
                Bytes::from_static(b"abc"),
                3,
                &mut |_| false
            ),
            Ok(Bytes::from_static(b"abc"))
        );
    }

    /// A mapped buffer is a mapping of its own, unmapped when dropped.
    #[test]
    fn a_mapped_buffer_is_given_back_when_dropped() {
        // Larger than any arena the allocator reserves, so that nothing else
        // of this process is mapped over the whole range after the drop.
        let size = (3 << 30) + 3 * 4096;
        let mut buffer = MappedBuffer::new(size).expect("map");
        buffer.extend_from_slice(b"abc");
        assert_eq!(buffer.as_ref(), b"abc");
        let start = buffer.as_ref().as_ptr();
        // mincore fails with ENOMEM when any page of the range is unmapped.
        let mapped = || {
            let mut residency = vec![0u8; size.div_ceil(4096)];
            // SAFETY: `residency` has a byte per page of the range; the range
            // is only inspected, not touched.
            unsafe { libc::mincore(start.cast_mut().cast(), size, residency.as_mut_ptr()) == 0 }
        };
        assert!(mapped(), "the buffer is not mapped");
        drop(buffer);
        assert!(!mapped(), "the buffer is still mapped after the drop");
    }

    /// An OTLP/JSON request is an object; serde's derive would take `[]`
    /// (fields by position) as an empty request.
    #[test]
    fn json_requests_must_be_objects() {
        for body in [&b"[]"[..], b" [[]]", b"null", b"1", b"\"x\"", b""] {
            let r = decode_request(Signal::Logs, Encoding::Json, body);
            assert!(r.is_err(), "{:?}: {r:?}", String::from_utf8_lossy(body));
        }
        assert_eq!(
            decode_request(Signal::Metrics, Encoding::Json, b" \n {}"),
            Ok(Payload::Metrics(Vec::new()))
        );
    }

    /// Found by the `otlp_http` fuzz target: serde_json's default float
    /// parser read some doubles one unit in the last place off, so a value
    /// written by the file exporter came back changed.
    #[test]
    fn json_doubles_decode_exactly() {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
        for value in [7.670458539527698e-90, 750.000000000291, f64::MAX, 5e-324] {
            let body = format!(
                r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"m","gauge":{{"dataPoints":[{{"asDouble":{value:?}}}]}}}}]}}]}}]}}"#
            );
            let decoded = decode_request(Signal::Metrics, Encoding::Json, body.as_bytes());
            let Ok(Payload::Metrics(rm)) = decoded else {
                panic!("{body} does not decode: {decoded:?}");
            };
            let data = &rm[0].scope_metrics[0].metrics[0].data;
            let Some(Data::Gauge(gauge)) = data else {
                panic!("not a gauge: {data:?}");
            };
            assert_eq!(
                gauge.data_points[0].value,
                Some(number_data_point::Value::AsDouble(value)),
                "{body}"
            );
        }
    }

    /// Found by the `otlp_http` fuzz target: OTLP/JSON that leaves out
    /// fields at their default value (as proto3 JSON allows, and as the file
    /// exporter writes it) was refused when the field was an attribute's
    /// empty key or an empty array or key/value list.
    #[test]
    fn json_fields_at_their_default_may_be_left_out() {
        use opentelemetry_proto::tonic::common::v1::{
            any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList,
        };
        let body =
            br#"{"resourceLogs":[{"resource":{"attributes":[{"value":{"stringValue":"no key"}}]},
            "scopeLogs":[{"logRecords":[{"attributes":[
                {"key":"empty.array","value":{"arrayValue":{}}},
                {"key":"empty.kvlist","value":{"kvlistValue":{}}},
                {"key":"kvlist","value":{"kvlistValue":{"values":[{"value":{"intValue":"1"}}]}}}
            ]}]}]}]}"#;
        let decoded = decode_request(Signal::Logs, Encoding::Json, body);
        let Ok(Payload::Logs(rl)) = decoded else {
            panic!("does not decode: {decoded:?}");
        };
        let kv = |key: &str, value: Value| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        let resource = rl[0].resource.as_ref().expect("resource");
        assert_eq!(
            resource.attributes,
            [kv("", Value::StringValue("no key".into()))]
        );
        assert_eq!(
            rl[0].scope_logs[0].log_records[0].attributes,
            [
                kv("empty.array", Value::ArrayValue(ArrayValue::default())),
                kv("empty.kvlist", Value::KvlistValue(KeyValueList::default())),
                kv(
                    "kvlist",
                    Value::KvlistValue(KeyValueList {
                        values: vec![kv("", Value::IntValue(1))]
                    })
                ),
            ]
        );
        // Still an error when the JSON itself is wrong.
        assert!(decode_request(Signal::Logs, Encoding::Json, br#"{"resourceLogs":[{"#).is_err());
    }

    /// Found by the `otlp_http` fuzz target: a histogram whose data did not
    /// decode (here a bound written as a string) was dropped from the metric
    /// and the request accepted; it is refused now, with the reason.
    #[test]
    fn json_metric_data_that_does_not_decode_is_an_error() {
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"latency",
            "histogram":{"aggregationTemporality":2,"dataPoints":[{"count":"1",
            "bucketCounts":["0","1"],"explicitBounds":["five"]}]}}]}]}]}"#;
        let decoded = decode_request(Signal::Metrics, Encoding::Json, body);
        assert!(
            matches!(&decoded, Err(message) if message.contains("line")),
            "{decoded:?}"
        );
        // The same histogram with a number decodes, with its data.
        let body = String::from_utf8_lossy(body).replace(r#"["five"]"#, "[5.0]");
        let Ok(Payload::Metrics(rm)) =
            decode_request(Signal::Metrics, Encoding::Json, body.as_bytes())
        else {
            panic!("does not decode");
        };
        let data = &rm[0].scope_metrics[0].metrics[0].data;
        assert!(
            matches!(data, Some(Data::Histogram(h)) if h.data_points[0].explicit_bounds == [5.0]),
            "{data:?}"
        );
    }

    #[test]
    fn empty_json_requests_decode() {
        for body in [
            &b"{}"[..],
            br#"{"resourceLogs":null}"#,
            br#"{"resourceLogs":[]}"#,
        ] {
            assert_eq!(
                decode_request(Signal::Logs, Encoding::Json, body),
                Ok(Payload::Logs(Vec::new()))
            );
        }
        assert_eq!(
            decode_request(Signal::Metrics, Encoding::Json, b"{}"),
            Ok(Payload::Metrics(Vec::new()))
        );
    }
}
