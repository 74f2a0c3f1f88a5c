//! The `otlp_http` exporter (old name `otlphttp`): OTLP over HTTP, like the
//! collector's `otlphttpexporter`.
//!
//! Each request is a POST of an `Export*ServiceRequest`, protobuf or OTLP JSON,
//! compressed by us (gzip by default) with `Content-Encoding` set. The answer
//! is classified as the OTLP specification and the collector do: 2xx is
//! success (its body may carry a partial success), 429, 502, 503 and 504 are
//! retryable (honouring `Retry-After` on 429 and 503), anything else is
//! permanent. Response bodies are read up to [`MAX_RESPONSE_BYTES`].

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use http::StatusCode;
use prost::Message;
use reqwest::Url;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::helper::{
    EncodedRequest, ExportClient, ExportError, ExportErrorKind, ExportResponse, ExporterSettings,
    QueueConfig, RetryConfig,
};
use super::tls::TlsClientConfig;
use crate::component::{
    BuildContext, ComponentConfig, ExporterConfig, ExporterFactory, Factory, Reference, Stability,
    StartFuture,
};
use crate::config::{from_node, ConfigError, GoDuration, Node, ValidationError};
use crate::extensions::auth::{self, AuthConfig, ClientAuthenticator};
use crate::pipeline::{DynConsumer, Payload, Signal};

/// The most of a response body we read (the collector reads 64 KiB too).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The most of an error body quoted in an error message.
const MAX_ERROR_EXCERPT: usize = 1024;
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `encoding` of the HTTP exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Proto,
    Json,
}

/// `compression` of the HTTP exporter: what confighttp offers
/// (`config/confighttp/compressor.go`). `zlib` and `deflate` are both the
/// zlib format (RFC 1950), sent with that name as `Content-Encoding`;
/// `snappy` is the snappy block format, `x-snappy-framed` the snappy framing
/// format, `lz4` the LZ4 frame format, as confighttp writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    Zlib,
    Deflate,
    Snappy,
    SnappyFramed,
    Lz4,
    None,
}

impl TryFrom<String> for Compression {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "zlib" => Ok(Compression::Zlib),
            "deflate" => Ok(Compression::Deflate),
            // The collector treats an empty value as no compression.
            "snappy" => Ok(Compression::Snappy),
            "x-snappy-framed" => Ok(Compression::SnappyFramed),
            "lz4" => Ok(Compression::Lz4),
            "none" | "" => Ok(Compression::None),
            _ => Err(format!(
                "unknown compression {s:?} (valid values: gzip, zstd, zlib, deflate, snappy, \
                 x-snappy-framed, lz4, none)"
            )),
        }
    }
}

impl Compression {
    /// The `Content-Encoding` it is sent with.
    fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Zlib => Some("zlib"),
            Compression::Deflate => Some("deflate"),
            Compression::Snappy => Some("snappy"),
            Compression::SnappyFramed => Some("x-snappy-framed"),
            Compression::Lz4 => Some("lz4"),
            Compression::None => None,
        }
    }
}

/// `otlp_http` / `otlphttp`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpHttpExporterConfig {
    /// Base URL; `/v1/logs` and `/v1/metrics` are appended. Required unless
    /// both `logs_endpoint` and `metrics_endpoint` are set.
    pub endpoint: String,
    /// Full URL for logs, used as is.
    pub logs_endpoint: Option<String>,
    /// Full URL for metrics, used as is.
    pub metrics_endpoint: Option<String>,
    /// `proto` (default) or `json`.
    pub encoding: Encoding,
    /// `gzip` (default), `zstd`, `zlib`, `deflate`, `snappy`,
    /// `x-snappy-framed`, `lz4` or `none`.
    pub compression: Compression,
    /// Sent with every request (for example an API key).
    pub headers: BTreeMap<String, String>,
    /// Per attempt (default 30s); 0 for none.
    pub timeout: GoDuration,
    /// Used for `https://` URLs (`insecure` has no effect here: the scheme decides).
    pub tls: TlsClientConfig,
    /// Retry with exponential backoff on retryable failures.
    pub retry_on_failure: RetryConfig,
    /// The bounded (optionally persistent) queue in front of the client.
    pub sending_queue: QueueConfig,
    /// `authenticator`: the extension that adds credentials to each request.
    pub auth: Option<AuthConfig>,
    /// An HTTP proxy (`http://host:port`, optionally with `user:password@`)
    /// every request goes through (CONNECT for `https://` endpoints); empty:
    /// the `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` environment, as in Go.
    pub proxy_url: String,
}

impl Default for OtlpHttpExporterConfig {
    fn default() -> Self {
        OtlpHttpExporterConfig {
            endpoint: String::new(),
            logs_endpoint: None,
            metrics_endpoint: None,
            encoding: Encoding::Proto,
            compression: Compression::Gzip,
            headers: BTreeMap::new(),
            timeout: GoDuration::from_secs(30),
            tls: TlsClientConfig::default(),
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
            auth: None,
            proxy_url: String::new(),
        }
    }
}

impl ComponentConfig for OtlpHttpExporterConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        self.signal_url(Signal::Logs)?;
        self.signal_url(Signal::Metrics)?;
        self.tls.validate().map_err(|e| e.within("tls"))?;
        http_headers(&self.headers).map_err(|e| ValidationError::at("headers", e))?;
        self.retry_on_failure
            .validate()
            .map_err(|e| e.within("retry_on_failure"))?;
        self.sending_queue
            .validate()
            .map_err(|e| e.within("sending_queue"))?;
        self.proxy()
            .map_err(|e| ValidationError::at("proxy_url", e))?;
        Ok(())
    }

    fn references(&self) -> Vec<Reference> {
        let mut refs = self.sending_queue.references();
        refs.extend(self.auth.as_ref().map(AuthConfig::client_reference));
        refs
    }
}

impl OtlpHttpExporterConfig {
    /// `proxy_url` as a proxy for every request, `None` when empty.
    fn proxy(&self) -> Result<Option<reqwest::Proxy>, String> {
        if self.proxy_url.is_empty() {
            return Ok(None);
        }
        // The value is not quoted back: it may hold a password.
        let url = Url::parse(&self.proxy_url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "scheme {:?}: only http:// and https:// proxies are supported (host required)",
                url.scheme()
            ));
        }
        reqwest::Proxy::all(url)
            .map(Some)
            .map_err(|e| format!("invalid proxy: {}", error_chain(&e)))
    }
}

/// Makes `otlp_http` exporters.
pub struct OtlpHttpExporterFactory;

impl Factory for OtlpHttpExporterFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["otlp_http", "otlphttp"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "sends OTLP over HTTP, protobuf or JSON (the collector's `otlphttp` exporter)"
    }
}

impl ExporterFactory for OtlpHttpExporterFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExporterConfig>, ConfigError> {
        Ok(Box::new(from_node::<OtlpHttpExporterConfig>(node)?))
    }
}

impl ExporterConfig for OtlpHttpExporterConfig {
    fn build<'a>(
        &'a self,
        ctx: &'a BuildContext,
    ) -> StartFuture<'a, (DynConsumer, JoinHandle<()>)> {
        Box::pin(build(self, ctx))
    }
}

impl OtlpHttpExporterConfig {
    /// The URL a signal is sent to: its own `*_endpoint`, or `endpoint` plus
    /// `/v1/<signal>`.
    fn signal_url(&self, signal: Signal) -> Result<Url, ValidationError> {
        let (key, explicit) = match signal {
            Signal::Logs => ("logs_endpoint", self.logs_endpoint.as_deref()),
            Signal::Metrics => ("metrics_endpoint", self.metrics_endpoint.as_deref()),
        };
        let (key, url) = match explicit.map(str::trim).filter(|s| !s.is_empty()) {
            Some(url) => (key, url.to_owned()),
            None => {
                let base = self.endpoint.trim();
                if base.is_empty() {
                    return Err(ValidationError::at(
                        "endpoint",
                        format!(
                            "requires a non-empty \"endpoint\" (or both \"logs_endpoint\" and \"metrics_endpoint\"); {key} is not set"
                        ),
                    ));
                }
                let path = format!("v1/{}", signal.as_str());
                let url = if base.ends_with('/') {
                    format!("{base}{path}")
                } else {
                    format!("{base}/{path}")
                };
                ("endpoint", url)
            }
        };
        let parsed = Url::parse(&url)
            .map_err(|e| ValidationError::at(key, format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ValidationError::at(
                key,
                format!("{url:?} must be an http:// or https:// URL with a host"),
            ));
        }
        Ok(parsed)
    }

    fn timeout_opt(&self) -> Option<Duration> {
        (!self.timeout.is_zero()).then(|| self.timeout.get())
    }
}

fn http_headers(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of {name:?} contains invalid characters"))?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Builds the exporter: the HTTP client behind the shared exporter helper.
pub async fn build(
    c: &OtlpHttpExporterConfig,
    ctx: &BuildContext,
) -> anyhow::Result<(DynConsumer, JoinHandle<()>)> {
    let mut client = OtlpHttpClient::new(c).map_err(|e| {
        e.context(format!(
            "exporter {}: cannot set up the HTTP client",
            ctx.id
        ))
    })?;
    client.auth = auth::resolve_client(c.auth.as_ref(), &ctx.extensions, &ctx.id)?;
    let settings = ExporterSettings {
        timeout: c.timeout_opt(),
        retry: c.retry_on_failure.clone(),
        queue: c.sending_queue.clone(),
    };
    super::helper::spawn(ctx, settings, Arc::new(client)).await
}

/// An OTLP/HTTP client (a pooled reqwest client) for both signals.
pub struct OtlpHttpClient {
    http: reqwest::Client,
    logs_url: Url,
    metrics_url: Url,
    headers: HeaderMap,
    encoding: Encoding,
    compression: Compression,
    timeout: Option<Duration>,
    cache: BodyCache,
    /// Bodies encoded so far (each request once, however often it is retried).
    bodies_encoded: AtomicU64,
    /// Adds credentials to each request (`auth`).
    pub auth: Option<ClientAuthenticator>,
}

impl OtlpHttpClient {
    /// Reads the TLS files if a URL is `https://`; does not connect.
    pub fn new(c: &OtlpHttpExporterConfig) -> anyhow::Result<Self> {
        c.validate().map_err(anyhow::Error::new)?;
        let logs_url = c.signal_url(Signal::Logs)?;
        let metrics_url = c.signal_url(Signal::Metrics)?;
        let mut headers = http_headers(&c.headers).map_err(anyhow::Error::msg)?;
        let content_type = match c.encoding {
            Encoding::Proto => PROTOBUF,
            Encoding::Json => JSON,
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        match c.compression.content_encoding() {
            Some(name) => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static(name));
            }
            None => {
                headers.remove(CONTENT_ENCODING);
            }
        }
        let timeout = c.timeout_opt();

        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("oomscope/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true);
        if let Some(timeout) = timeout {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(proxy) = c.proxy().map_err(anyhow::Error::msg)? {
            builder = builder.proxy(proxy);
        }
        if logs_url.scheme() == "https" || metrics_url.scheme() == "https" {
            let tls = c.tls.load()?;
            builder = builder.use_preconfigured_tls(tls.rustls_config(&[b"h2", b"http/1.1"])?);
        }
        let http = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {}", error_chain(&e)))?;
        Ok(OtlpHttpClient {
            http,
            logs_url,
            metrics_url,
            headers,
            encoding: c.encoding,
            compression: c.compression,
            timeout,
            cache: BodyCache::default(),
            bodies_encoded: AtomicU64::new(0),
            auth: None,
        })
    }

    /// The request body, encoded and compressed.
    fn body(&self, payload: &Payload) -> Result<Bytes, ExportError> {
        self.bodies_encoded.fetch_add(1, Ordering::Relaxed);
        let encoded = match (self.encoding, payload) {
            (Encoding::Proto, Payload::Logs(rl)) => super::helper::encode_resource_logs(&[], rl),
            (Encoding::Proto, Payload::Metrics(rm)) => encode_repeated_field(rm),
            (Encoding::Json, _) => super::otlp_json::encode(payload),
        };
        match self.compression {
            Compression::None => Ok(encoded),
            compression => compress(compression, &encoded),
        }
        .map(Bytes::from)
        .map_err(|e| ExportError::permanent(format!("cannot compress the request: {e}")))
    }
}

/// Bodies of requests that failed retryably, so that a retry sends the same
/// bytes without encoding and compressing the payload again.
///
/// Keyed by the payload's `Arc`: the exporter helper retries with the same
/// `Arc`. A `Weak` keeps the allocation, so its address cannot be reused by
/// another payload while the entry exists; an entry whose payload is gone
/// (delivered, given up) is dropped at the next lookup.
#[derive(Default)]
struct BodyCache {
    entries: Mutex<Vec<(Weak<Payload>, Bytes)>>,
}

/// Most bodies kept (requests being retried at once, at most `num_consumers`
/// in practice); the oldest goes first.
const MAX_CACHED_BODIES: usize = 64;

impl BodyCache {
    fn entries(&self) -> MutexGuard<'_, Vec<(Weak<Payload>, Bytes)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, payload: &Arc<Payload>) -> Option<Bytes> {
        let mut entries = self.entries();
        entries.retain(|(weak, _)| weak.strong_count() > 0);
        let key = Arc::downgrade(payload);
        entries
            .iter()
            .find(|(weak, _)| weak.ptr_eq(&key))
            .map(|(_, body)| body.clone())
    }

    fn keep(&self, payload: &Arc<Payload>, body: Bytes) {
        let key = Arc::downgrade(payload);
        let mut entries = self.entries();
        if entries.iter().any(|(weak, _)| weak.ptr_eq(&key)) {
            return;
        }
        if entries.len() >= MAX_CACHED_BODIES {
            entries.remove(0);
        }
        entries.push((key, body));
    }

    fn forget(&self, payload: &Arc<Payload>) {
        let key = Arc::downgrade(payload);
        self.entries().retain(|(weak, _)| !weak.ptr_eq(&key));
    }
}

/// Field 1 of `ExportLogsServiceRequest` / `ExportMetricsServiceRequest`
/// (`resource_logs` / `resource_metrics`): the whole request, encoded without
/// copying the data into a request struct.
fn encode_repeated_field<M: Message>(items: &[M]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(prost::encoding::message::encoded_len_repeated(1, items));
    prost::encoding::message::encode_repeated(1, items, &mut buf);
    buf
}

fn compress(compression: Compression, body: &[u8]) -> std::io::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4 + 64),
                flate2::Compression::default(),
            );
            encoder.write_all(body)?;
            encoder.finish()
        }
        Compression::Zstd => zstd::bulk::compress(body, zstd::DEFAULT_COMPRESSION_LEVEL),
        Compression::Zlib | Compression::Deflate => {
            let mut encoder = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(body.len() / 4 + 64),
                flate2::Compression::default(),
            );
            encoder.write_all(body)?;
            encoder.finish()
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(body)
            .map_err(std::io::Error::other),
        Compression::SnappyFramed => {
            let mut encoder =
                snap::write::FrameEncoder::new(Vec::with_capacity(body.len() / 2 + 64));
            encoder.write_all(body)?;
            encoder.into_inner().map_err(|e| e.into_error())
        }
        Compression::Lz4 => {
            let mut encoder =
                lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(body.len() / 2 + 64));
            encoder.write_all(body)?;
            encoder.finish().map_err(std::io::Error::other)
        }
    }
}

#[async_trait]
impl ExportClient for OtlpHttpClient {
    async fn export(&self, payload: &Arc<Payload>) -> Result<ExportResponse, ExportError> {
        // The OTLP specification: empty envelopes SHOULD NOT be sent.
        if payload.is_empty() {
            return Ok(ExportResponse::default());
        }
        let body = match self.cache.get(payload) {
            Some(body) => body,
            None => self.body(payload)?,
        };
        let result = self.send(payload.signal(), body.clone()).await;
        match &result {
            Err(e) if e.kind == ExportErrorKind::Retryable => self.cache.keep(payload, body),
            _ => self.cache.forget(payload),
        }
        result
    }

    fn sends_protobuf(&self) -> bool {
        self.encoding == Encoding::Proto
    }

    /// The queue's encoding is the body; compressed on each attempt (a
    /// retry is rare, and the queue keeps holding the smaller encoding).
    async fn export_encoded(
        &self,
        request: &EncodedRequest,
    ) -> Result<ExportResponse, ExportError> {
        if request.item_count() == 0 {
            return Ok(ExportResponse::default());
        }
        if self.encoding != Encoding::Proto {
            let payload = request.decode().map_err(ExportError::permanent)?;
            return self.export(&Arc::new(payload)).await;
        }
        let body = match self.compression {
            Compression::None => request.body(),
            compression => compress(compression, &request.body())
                .map(Bytes::from)
                .map_err(|e| ExportError::permanent(format!("cannot compress the request: {e}")))?,
        };
        self.send(request.signal(), body).await
    }
}

impl OtlpHttpClient {
    /// One POST of a prepared body.
    async fn send(&self, signal: Signal, body: Bytes) -> Result<ExportResponse, ExportError> {
        let url = match signal {
            Signal::Logs => &self.logs_url,
            Signal::Metrics => &self.metrics_url,
        };
        let mut headers = self.headers.clone();
        if let Some(auth) = &self.auth {
            auth.apply(&mut headers).map_err(|e| {
                ExportError::retryable(format!("exporting {signal} to {url}: no credentials: {e}"))
            })?;
        }
        let mut request = self.http.post(url.clone()).headers(headers).body(body);
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        let mut response = request.send().await.map_err(|e| {
            let message = format!("exporting {signal} to {url} failed: {}", error_chain(&e));
            if e.is_builder() {
                ExportError::permanent(message)
            } else {
                // Connection refused or reset, TLS failure, timeout: the
                // server may be back later.
                ExportError::retryable(message)
            }
        })?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let retry_after = if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        let body = read_bounded(&mut response, MAX_RESPONSE_BYTES).await;

        if status.is_success() {
            let body = match body {
                Ok(body) => body,
                Err(e) => {
                    // The data was accepted; only the answer got lost.
                    tracing::warn!(%url, error = %e, "could not read the body of a successful OTLP/HTTP response");
                    return Ok(ExportResponse::default());
                }
            };
            return Ok(match partial_success(signal, &content_type, &body) {
                Ok(response) => response,
                Err(e) => {
                    // Resending accepted data would duplicate it, so this is
                    // not an error (the collector would retry here).
                    tracing::warn!(%url, error = %e, "could not decode a successful OTLP/HTTP response");
                    ExportResponse::default()
                }
            });
        }

        let kind = match status.as_u16() {
            429 | 502 | 503 | 504 => ExportErrorKind::Retryable,
            _ => ExportErrorKind::Permanent,
        };
        let detail = match body {
            Ok(body) => describe_error_body(&content_type, &body),
            Err(e) => format!("(body unreadable: {e})"),
        };
        let mut message = format!("exporting {signal} to {url} failed: HTTP status {status}");
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(&detail);
        }
        Err(ExportError {
            kind,
            retry_after: retry_after.filter(|_| kind == ExportErrorKind::Retryable),
            message,
        })
    }
}

/// Reads at most `limit` bytes of the body; the rest is left unread.
async fn read_bounded(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => return Err(error_chain(&e)),
        }
    }
    Ok(body)
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The partial success in a 2xx body (empty body: full success).
fn partial_success(
    signal: Signal,
    content_type: &str,
    body: &[u8],
) -> Result<ExportResponse, String> {
    if body.is_empty() {
        return Ok(ExportResponse::default());
    }
    if content_type.starts_with(JSON) {
        // Parsed by hand: the spec encodes the int64 counts as strings, and
        // servers send either form.
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let Some(partial) = value.get("partialSuccess").filter(|p| !p.is_null()) else {
            return Ok(ExportResponse::default());
        };
        let count_key = match signal {
            Signal::Logs => "rejectedLogRecords",
            Signal::Metrics => "rejectedDataPoints",
        };
        let rejected = match partial.get(count_key) {
            None | Some(serde_json::Value::Null) => 0,
            Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(serde_json::Value::String(s)) => s
                .parse::<i64>()
                .map_err(|_| format!("{count_key} {s:?} is not an integer"))?
                .max(0) as u64,
            Some(other) => return Err(format!("{count_key} {other} is not an integer")),
        };
        let message = partial
            .get("errorMessage")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_owned();
        return Ok(ExportResponse { rejected, message });
    }
    // Protobuf (the default, also for a missing Content-Type).
    let (rejected, message) = match signal {
        Signal::Logs => {
            use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
            let r = ExportLogsServiceResponse::decode(body).map_err(|e| e.to_string())?;
            r.partial_success
                .map(|p| (p.rejected_log_records, p.error_message))
                .unwrap_or_default()
        }
        Signal::Metrics => {
            use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
            let r = ExportMetricsServiceResponse::decode(body).map_err(|e| e.to_string())?;
            r.partial_success
                .map(|p| (p.rejected_data_points, p.error_message))
                .unwrap_or_default()
        }
    };
    Ok(ExportResponse {
        rejected: u64::try_from(rejected).unwrap_or(0),
        message,
    })
}

/// A short description of an error body: the `google.rpc.Status` message
/// when it is one, else a bounded excerpt of the text.
fn describe_error_body(content_type: &str, body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    if content_type.starts_with(PROTOBUF) {
        if let Ok(status) = tonic_types::pb::Status::decode(body) {
            let mut text = format!("code {}: {}", status.code, status.message);
            if !status.details.is_empty() {
                let types: Vec<&str> = status.details.iter().map(|d| d.type_url.as_str()).collect();
                text.push_str(&format!(" (details: {})", types.join(", ")));
            }
            return excerpt(text.as_bytes());
        }
    } else if content_type.starts_with(JSON) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Some(message) = value.get("message").and_then(|m| m.as_str()) {
                return excerpt(message.as_bytes());
            }
        }
    }
    excerpt(body)
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_EXCERPT)]);
    let mut text: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .collect();
    if bytes.len() > MAX_ERROR_EXCERPT {
        text.push('…');
    }
    text.trim().to_owned()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::convert::Infallible;
    use std::io::Read;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    };
    use tokio::io::{AsyncRead, AsyncWrite};

    use super::*;

    #[derive(Clone)]
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn new(status: u16) -> Self {
            Reply {
                status,
                headers: Vec::new(),
                body: Vec::new(),
            }
        }

        fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
            self.headers.push((name, value.into()));
            self
        }

        fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
            self.headers.push(("content-type", content_type.into()));
            self.body = body.into();
            self
        }
    }

    /// One request as the server saw it, body decompressed.
    struct SeenRequest {
        path: String,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    struct State {
        reply: Mutex<Reply>,
        seen: Mutex<Vec<SeenRequest>>,
    }

    struct TestServer {
        addr: SocketAddr,
        state: Arc<State>,
        task: JoinHandle<()>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl TestServer {
        fn set(&self, reply: Reply) {
            *self.state.reply.lock().unwrap() = reply;
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }
    }

    async fn handle(
        request: http::Request<Incoming>,
        state: Arc<State>,
    ) -> Result<http::Response<Full<Bytes>>, Infallible> {
        let (parts, body) = request.into_parts();
        let raw = body.collect().await.unwrap().to_bytes();
        let body = match parts
            .headers
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap())
        {
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            Some("zstd") => zstd::decode_all(&raw[..]).unwrap(),
            Some("snappy") => snap::raw::Decoder::new().decompress_vec(&raw).unwrap(),
            Some("x-snappy-framed") => {
                let mut out = Vec::new();
                snap::read::FrameDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            Some("lz4") => {
                let mut out = Vec::new();
                lz4_flex::frame::FrameDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            Some("zlib" | "deflate") => {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            Some(other) => panic!("unexpected encoding {other}"),
            None => raw.to_vec(),
        };
        state.seen.lock().unwrap().push(SeenRequest {
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body,
        });
        let reply = state.reply.lock().unwrap().clone();
        let mut response = http::Response::new(Full::new(Bytes::from(reply.body)));
        *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
        for (name, value) in reply.headers {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_str(&value).unwrap());
        }
        Ok(response)
    }

    async fn serve_connection<IO>(io: IO, state: Arc<State>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(
                TokioIo::new(io),
                service_fn(move |r| handle(r, state.clone())),
            )
            .await;
    }

    async fn start_server(tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            reply: Mutex::new(Reply::new(200)),
            seen: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream, state).await;
                            }
                        }
                        None => serve_connection(stream, state).await,
                    }
                });
            }
        });
        TestServer { addr, state, task }
    }

    fn config(endpoint: String) -> OtlpHttpExporterConfig {
        OtlpHttpExporterConfig {
            endpoint,
            // Only a bound on a local exchange; generous for a loaded machine.
            timeout: GoDuration::from_secs(60),
            ..Default::default()
        }
    }

    fn int_attr(key: &str, value: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(value)),
            }),
            ..Default::default()
        }
    }

    fn log_records() -> Vec<ResourceLogs> {
        vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_001,
                    observed_time_unix_nano: 1_700_000_000_000_000_002,
                    severity_number: 17,
                    event_name: "linux.oom_kill".into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("oom".into())),
                    }),
                    attributes: vec![int_attr("process.pid", 4242)],
                    trace_id: vec![0xab; 16],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    fn metric_data() -> Vec<ResourceMetrics> {
        vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "oom.kills".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![NumberDataPoint {
                                start_time_unix_nano: 5,
                                time_unix_nano: 6,
                                value: Some(number_data_point::Value::AsInt(7)),
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "latency".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: 6,
                                count: 3,
                                bucket_counts: vec![1, 2],
                                explicit_bounds: vec![1.5],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    #[test]
    fn config_validation_and_urls() {
        let err = OtlpHttpExporterConfig::default()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("endpoint"), "{err}");

        let c = config("https://collector:4318".into());
        assert_eq!(
            c.signal_url(Signal::Logs).unwrap().as_str(),
            "https://collector:4318/v1/logs"
        );
        let c = config("http://collector:4318/otlp/".into());
        assert_eq!(
            c.signal_url(Signal::Metrics).unwrap().as_str(),
            "http://collector:4318/otlp/v1/metrics"
        );
        let c = OtlpHttpExporterConfig {
            logs_endpoint: Some("http://a:1/custom/logs".into()),
            metrics_endpoint: Some("http://b:2/m".into()),
            ..Default::default()
        };
        c.validate().unwrap();
        assert_eq!(
            c.signal_url(Signal::Logs).unwrap().as_str(),
            "http://a:1/custom/logs"
        );
        assert!(config("collector:4318".into()).validate().is_err());
        assert!(config("ftp://collector".into()).validate().is_err());

        let mut c = config("http://c:4318".into());
        c.headers.insert("bad header".into(), "v".into());
        assert!(c.validate().unwrap_err().to_string().contains("bad header"));

        let c: OtlpHttpExporterConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "https://collector:4318",
            "encoding": "json",
            "compression": "none",
            "timeout": "2s",
            "tls": {"ca_file": "/etc/ca.pem"},
        }))
        .unwrap();
        assert_eq!(c.encoding, Encoding::Json);
        assert_eq!(c.compression, Compression::None);
        let d = OtlpHttpExporterConfig::default();
        assert_eq!(
            (d.encoding, d.compression, d.timeout),
            (
                Encoding::Proto,
                Compression::Gzip,
                GoDuration::from_secs(30)
            )
        );
        assert!(serde_json::from_value::<OtlpHttpExporterConfig>(
            serde_json::json!({"endpoint": "http://x", "encoding": "xml"})
        )
        .is_err());
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[tokio::test]
    async fn protobuf_gzip_headers_and_paths() {
        let server = start_server(None).await;
        let mut c = config(format!("{}/prefix", server.url()));
        c.headers.insert("X-Api-Key".into(), "secret".into());
        let client = OtlpHttpClient::new(&c).unwrap();
        server.set(Reply::new(200).body(
            PROTOBUF,
            ExportLogsServiceResponse::default().encode_to_vec(),
        ));

        let ok = client
            .export(&std::sync::Arc::new(Payload::Logs(log_records())))
            .await
            .unwrap();
        assert_eq!(ok, ExportResponse::default());
        // An empty 200 is a success too.
        server.set(Reply::new(200));
        client
            .export(&std::sync::Arc::new(Payload::Metrics(metric_data())))
            .await
            .unwrap();

        let seen = server.state.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].path, "/prefix/v1/logs");
        assert_eq!(seen[1].path, "/prefix/v1/metrics");
        for request in seen.iter() {
            assert_eq!(request.headers["content-type"], PROTOBUF);
            assert_eq!(request.headers["content-encoding"], "gzip");
            assert_eq!(request.headers["x-api-key"], "secret");
        }
        let logs = ExportLogsServiceRequest::decode(&seen[0].body[..]).unwrap();
        assert_eq!(logs.resource_logs, log_records());
        let metrics = ExportMetricsServiceRequest::decode(&seen[1].body[..]).unwrap();
        assert_eq!(metrics.resource_metrics, metric_data());
    }

    /// `proxy_url`: the request reaches the proxy (here the test server) in
    /// absolute form for a host that does not resolve, so it went nowhere else.
    #[tokio::test]
    async fn requests_go_through_proxy_url() {
        let server = start_server(None).await;
        let c = OtlpHttpExporterConfig {
            proxy_url: server.url(),
            ..config("http://backend.invalid:4318".to_string())
        };
        assert!(c.validate().is_ok());
        let client = OtlpHttpClient::new(&c).unwrap();
        client
            .export(&std::sync::Arc::new(Payload::Metrics(metric_data())))
            .await
            .unwrap();
        let seen = server.state.seen.lock().unwrap();
        assert_eq!(seen[0].path, "/v1/metrics");
        assert_eq!(seen[0].headers["host"], "backend.invalid:4318");
        let bad = OtlpHttpExporterConfig {
            proxy_url: "socks5://127.0.0.1:1080".to_string(),
            ..config("http://x".to_string())
        };
        let err = bad
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("only http:// and https:// proxies"), "{err}");
    }

    /// `zlib`, `deflate`, `snappy`, `x-snappy-framed` and `lz4` as
    /// confighttp sends them, under the configured name.
    #[tokio::test]
    async fn zlib_deflate_snappy_and_lz4_bodies() {
        for (name, compression) in [
            ("zlib", Compression::Zlib),
            ("deflate", Compression::Deflate),
            ("snappy", Compression::Snappy),
            ("x-snappy-framed", Compression::SnappyFramed),
            ("lz4", Compression::Lz4),
        ] {
            let server = start_server(None).await;
            let c: OtlpHttpExporterConfig = serde_json::from_value(serde_json::json!({
                "endpoint": server.url(), "compression": name
            }))
            .expect("parses");
            assert_eq!(c.compression, compression);
            let client = OtlpHttpClient::new(&c).expect("client");
            client
                .export(&std::sync::Arc::new(Payload::Metrics(metric_data())))
                .await
                .expect("exported");
            let seen = server.state.seen.lock().expect("lock");
            assert_eq!(seen[0].headers["content-encoding"], name);
            let metrics = ExportMetricsServiceRequest::decode(&seen[0].body[..]).expect("decodes");
            assert_eq!(metrics.resource_metrics, metric_data());
        }
        let err = serde_json::from_value::<OtlpHttpExporterConfig>(serde_json::json!({
            "endpoint": "http://x", "compression": "br"
        }))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("snappy, x-snappy-framed, lz4, none"), "{err}");
    }

    #[tokio::test]
    async fn zstd_and_signal_endpoint_override() {
        let server = start_server(None).await;
        let c = OtlpHttpExporterConfig {
            endpoint: server.url(),
            metrics_endpoint: Some(format!("{}/custom/metrics", server.url())),
            compression: Compression::Zstd,
            ..Default::default()
        };
        let client = OtlpHttpClient::new(&c).unwrap();
        client
            .export(&std::sync::Arc::new(Payload::Metrics(metric_data())))
            .await
            .unwrap();
        let seen = server.state.seen.lock().unwrap();
        assert_eq!(seen[0].path, "/custom/metrics");
        assert_eq!(seen[0].headers["content-encoding"], "zstd");
        let metrics = ExportMetricsServiceRequest::decode(&seen[0].body[..]).unwrap();
        assert_eq!(metrics.resource_metrics, metric_data());
    }

    #[tokio::test]
    async fn partial_success_proto_and_json() {
        let server = start_server(None).await;
        let client = OtlpHttpClient::new(&config(server.url())).unwrap();
        server.set(
            Reply::new(200).body(
                PROTOBUF,
                ExportLogsServiceResponse {
                    partial_success: Some(ExportLogsPartialSuccess {
                        rejected_log_records: 4,
                        error_message: "too old".into(),
                    }),
                }
                .encode_to_vec(),
            ),
        );
        assert_eq!(
            client
                .export(&std::sync::Arc::new(Payload::Logs(log_records())))
                .await
                .unwrap(),
            ExportResponse {
                rejected: 4,
                message: "too old".into()
            }
        );
        // The spec's JSON form (int64 as a string) and the lenient number form.
        server.set(Reply::new(200).body(
            JSON,
            r#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"bad"}}"#,
        ));
        assert_eq!(
            client
                .export(&std::sync::Arc::new(Payload::Logs(log_records())))
                .await
                .unwrap(),
            ExportResponse {
                rejected: 2,
                message: "bad".into()
            }
        );
        server.set(Reply::new(200).body(
            "application/json; charset=utf-8",
            r#"{"partialSuccess":{"rejectedDataPoints":3}}"#,
        ));
        assert_eq!(
            client
                .export(&std::sync::Arc::new(Payload::Metrics(metric_data())))
                .await
                .unwrap()
                .rejected,
            3
        );
        server.set(Reply::new(200).body(JSON, "{}"));
        assert_eq!(
            client
                .export(&std::sync::Arc::new(Payload::Logs(log_records())))
                .await
                .unwrap(),
            ExportResponse::default()
        );
    }

    #[tokio::test]
    async fn status_classification() {
        let server = start_server(None).await;
        let client = OtlpHttpClient::new(&config(server.url())).unwrap();
        let logs = Payload::Logs(log_records());

        server.set(Reply::new(503).header("retry-after", "2"));
        let err = client
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Retryable);
        assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
        assert!(err.message.contains("503"), "{}", err.message);

        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
        server.set(Reply::new(429).header("retry-after", date));
        let err = client
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Retryable);
        let wait = err.retry_after.unwrap();
        // About an hour; generous bounds for a slow machine.
        assert!(wait > Duration::from_secs(3000) && wait <= Duration::from_secs(3600));

        for status in [502, 504] {
            // Retry-After only counts on 429 and 503.
            server.set(Reply::new(status).header("retry-after", "9"));
            let err = client
                .export(&std::sync::Arc::new(logs.clone()))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ExportErrorKind::Retryable, "{status}");
            assert_eq!(err.retry_after, None);
        }

        let status = tonic_types::pb::Status {
            code: 3,
            message: "field resource_logs is broken".into(),
            details: vec![],
        };
        server.set(Reply::new(400).body(PROTOBUF, status.encode_to_vec()));
        let err = client
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Permanent);
        assert!(
            err.message.contains("field resource_logs is broken"),
            "{}",
            err.message
        );

        server.set(Reply::new(400).body(JSON, r#"{"code":3,"message":"json says no"}"#));
        let err = client
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Permanent);
        assert!(err.message.contains("json says no"), "{}", err.message);

        for status in [401, 404, 413, 500] {
            server.set(Reply::new(status).body("text/plain", "nope"));
            let err = client
                .export(&std::sync::Arc::new(logs.clone()))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ExportErrorKind::Permanent, "{status}");
            assert!(err.message.contains("nope"), "{}", err.message);
        }

        // A huge error body is read only in part and quoted briefly.
        server.set(Reply::new(500).body("text/plain", vec![b'x'; 1024 * 1024]));
        let err = client
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap_err();
        assert!(
            err.message.len() < 2 * MAX_ERROR_EXCERPT,
            "{}",
            err.message.len()
        );
    }

    /// Checks the OTLP JSON rules: lowerCamelCase keys, 64-bit integers as
    /// strings, trace IDs in hex, enums as integers.
    #[tokio::test]
    async fn json_encoding_follows_the_spec() {
        let server = start_server(None).await;
        let mut c = config(server.url());
        c.encoding = Encoding::Json;
        c.compression = Compression::None;
        let client = OtlpHttpClient::new(&c).unwrap();
        client
            .export(&std::sync::Arc::new(Payload::Logs(log_records())))
            .await
            .unwrap();
        client
            .export(&std::sync::Arc::new(Payload::Metrics(metric_data())))
            .await
            .unwrap();
        let seen = server.state.seen.lock().unwrap();
        assert_eq!(seen[0].headers["content-type"], JSON);
        assert!(seen[0].headers.get("content-encoding").is_none());

        let logs: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        let record = &logs["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(record["timeUnixNano"], "1700000000000000001");
        assert_eq!(record["observedTimeUnixNano"], "1700000000000000002");
        assert_eq!(record["severityNumber"], 17);
        assert_eq!(record["eventName"], "linux.oom_kill");
        assert_eq!(record["body"]["stringValue"], "oom");
        assert_eq!(record["attributes"][0]["key"], "process.pid");
        assert_eq!(record["attributes"][0]["value"]["intValue"], "4242");
        assert_eq!(record["traceId"], "ab".repeat(16));
        assert_no_snake_case_keys(&logs);

        let metrics: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
        let m = &metrics["resourceMetrics"][0]["scopeMetrics"][0]["metrics"];
        let sum = &m[0]["sum"];
        assert_eq!(sum["aggregationTemporality"], 2);
        assert_eq!(sum["isMonotonic"], true);
        assert_eq!(sum["dataPoints"][0]["asInt"], "7");
        assert_eq!(sum["dataPoints"][0]["startTimeUnixNano"], "5");
        let hist = &m[1]["histogram"]["dataPoints"][0];
        assert_eq!(hist["count"], "3");
        assert_eq!(hist["bucketCounts"], serde_json::json!(["1", "2"]));
        assert_eq!(hist["explicitBounds"], serde_json::json!([1.5]));
        assert_no_snake_case_keys(&metrics);
        assert!(!String::from_utf8_lossy(&seen[1].body).contains("null"));
        assert!(hist.get("sum").is_none());

        // And a spec-following decoder reads back what was sent.
        let back: ExportLogsServiceRequest = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(back.resource_logs, log_records());
    }

    /// serde_json alone writes NaN as `null`; OTLP JSON wants `"NaN"`.
    #[tokio::test]
    async fn json_keeps_nan_and_infinities() {
        let server = start_server(None).await;
        let mut c = config(server.url());
        c.encoding = Encoding::Json;
        let client = OtlpHttpClient::new(&c).unwrap();
        let point = |v: f64| NumberDataPoint {
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        };
        let payload = Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "ratio".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![point(f64::NAN), point(f64::NEG_INFINITY)],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        client.export(&Arc::new(payload)).await.unwrap();
        let seen = server.state.seen.lock().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        let points =
            &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"];
        assert_eq!(points[0]["asDouble"], "NaN");
        assert_eq!(points[1]["asDouble"], "-Infinity");
    }

    /// Retries of one request send the body encoded and compressed once.
    #[tokio::test]
    async fn a_retried_request_is_encoded_once() {
        let server = start_server(None).await;
        let client = OtlpHttpClient::new(&config(server.url())).unwrap();
        let payload = Arc::new(Payload::Logs(log_records()));
        server.set(Reply::new(503));
        for _ in 0..3 {
            let err = client.export(&payload).await.unwrap_err();
            assert_eq!(err.kind, ExportErrorKind::Retryable);
        }
        server.set(Reply::new(200));
        client.export(&payload).await.unwrap();
        assert_eq!(client.bodies_encoded.load(Ordering::Relaxed), 1);
        {
            let seen = server.state.seen.lock().unwrap();
            assert_eq!(seen.len(), 4);
            assert!(seen.iter().all(|r| r.body == seen[0].body));
            let sent = ExportLogsServiceRequest::decode(&seen[0].body[..]).unwrap();
            assert_eq!(sent.resource_logs, log_records());
        }
        // Delivered: forgotten. Another payload (even an equal one) is encoded anew.
        assert!(client.cache.entries().is_empty());
        client
            .export(&Arc::new(Payload::Logs(log_records())))
            .await
            .unwrap();
        assert_eq!(client.bodies_encoded.load(Ordering::Relaxed), 2);
    }

    fn assert_no_snake_case_keys(value: &serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    assert!(!key.contains('_'), "key {key:?} is not lowerCamelCase");
                    assert_no_snake_case_keys(v);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(assert_no_snake_case_keys),
            _ => {}
        }
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        // Held for the whole test: nothing else can listen there meanwhile.
        let (_refusing, addr) = crate::test_support::refused_addr();
        let client = OtlpHttpClient::new(&config(format!("http://{addr}"))).unwrap();
        let err = client
            .export(&std::sync::Arc::new(Payload::Logs(log_records())))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Retryable, "{}", err.message);
    }

    fn server_tls(
        pki: &super::super::tls::testing::TestPki,
        mutual: bool,
    ) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mutual {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
                .unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            )
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(builder.with_single_cert(chain, key).unwrap())
    }

    #[tokio::test]
    async fn tls_with_ca_file_and_mutual_tls() {
        let pki = super::super::tls::testing::make_pki();
        let logs = Payload::Logs(log_records());

        let server = start_server(Some(server_tls(&pki, false))).await;
        let mut c = config(format!("https://localhost:{}", server.addr.port()));
        c.tls.ca_file = Some(pki.ca_file.clone());
        OtlpHttpClient::new(&c)
            .unwrap()
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap();

        // Connect by IP, verify the certificate as localhost.
        let mut by_ip = c.clone();
        by_ip.endpoint = format!("https://{}", server.addr);
        by_ip.tls.server_name_override = Some("localhost".into());
        OtlpHttpClient::new(&by_ip)
            .unwrap()
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap();
        // A wrong override fails verification.
        by_ip.tls.server_name_override = Some("elsewhere.example".into());
        let err = OtlpHttpClient::new(&by_ip)
            .unwrap()
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Retryable, "{}", err.message);
        // insecure_skip_verify accepts an unknown issuer.
        let mut skip = c.clone();
        skip.tls.ca_file = None;
        skip.tls.insecure_skip_verify = true;
        OtlpHttpClient::new(&skip)
            .unwrap()
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap();
        drop(server);

        let server = start_server(Some(server_tls(&pki, true))).await;
        let mut c = config(format!("https://localhost:{}", server.addr.port()));
        c.tls.ca_file = Some(pki.ca_file.clone());
        assert!(OtlpHttpClient::new(&c)
            .unwrap()
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .is_err());
        c.tls.cert_file = Some(pki.client_cert_file.clone());
        c.tls.key_file = Some(pki.client_key_file.clone());
        OtlpHttpClient::new(&c)
            .unwrap()
            .export(&std::sync::Arc::new(logs.clone()))
            .await
            .unwrap();
        assert_eq!(server.state.seen.lock().unwrap().len(), 1);
    }
}
