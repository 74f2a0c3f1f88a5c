//! The `otlp_grpc` exporter (old name `otlp`): OTLP over gRPC, like the
//! collector's `otlpexporter`.
//!
//! One lazily connected tonic [`Channel`] serves both signals, and a second
//! one carries urgent requests (OOM kills) alone: on the shared connection,
//! an HTTP/2 stream of one record waits behind the bytes of the bulk
//! requests queued ahead of it in the same TCP stream (`bench/kill_storm.sh`
//! measured 9 ms at the median under 50,000 records/s). Every request
//! carries the configured headers as metadata, is compressed (gzip by
//! default), and its outcome is classified as the OTLP specification and the
//! collector's `shouldRetry` do: CANCELLED, DEADLINE_EXCEEDED, ABORTED,
//! OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable, RESOURCE_EXHAUSTED
//! only when the server sent `google.rpc.RetryInfo`, anything else is
//! permanent. A `RetryInfo.retry_delay` becomes the error's `retry_after`.
//! A status tonic made locally from a transport failure (it carries the
//! hyper/h2/io error as its source) is retryable whatever its code.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tonic::client::Grpc;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

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

/// The largest request we send: a bigger one is refused before it goes out
/// (permanently: resending cannot make it smaller). Servers usually accept 4 MiB.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// The largest response we read (responses are tiny `Export*ServiceResponse`s).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Connect timeout when the exporter has no `timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// `compression` of the OTLP exporters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl TryFrom<String> for Compression {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            // The collector treats an empty value as no compression.
            "none" | "" => Ok(Compression::None),
            // configgrpc offers snappy, but tonic (the gRPC library) has a
            // closed set of message encodings (gzip, deflate, zstd) with no
            // way to register another.
            "snappy" => Err(
                "compression \"snappy\" is not supported by the otlp (gRPC) exporter: its gRPC \
                 library (tonic) can only compress messages with gzip or zstd; use zstd or gzip, \
                 or the otlphttp exporter, which sends snappy"
                    .to_string(),
            ),
            // Refused by the collector's configgrpc too.
            "zlib" | "deflate" | "lz4" | "x-snappy-framed" => Err(format!(
                "compression {s:?} is not supported by gRPC exporters \
                 (supported: gzip, zstd, none; the otlphttp exporter sends {s})"
            )),
            _ => Err(format!(
                "unknown compression {s:?} (valid values: gzip, zstd, none)"
            )),
        }
    }
}

/// `keepalive` of the gRPC client (HTTP/2 PING frames).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveConfig {
    /// Interval between pings; 0 disables keepalive.
    pub time: GoDuration,
    /// How long to wait for a ping's answer before the connection is closed.
    pub timeout: GoDuration,
    /// Ping also while no request is in flight.
    pub permit_without_stream: bool,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            time: GoDuration::from_secs(30),
            timeout: GoDuration::from_secs(10),
            permit_without_stream: false,
        }
    }
}

/// `otlp_grpc` / `otlp`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpGrpcExporterConfig {
    /// `host:port` (also `http://host:port` for plain text, `https://host:port`
    /// for TLS). Required.
    pub endpoint: String,
    /// TLS is on unless `tls.insecure: true` or the endpoint says `http://`.
    pub tls: TlsClientConfig,
    /// Sent as gRPC metadata with every request (for example an API key).
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default), `zstd` or `none`.
    pub compression: Compression,
    /// Per attempt (default 5s); 0 for none.
    pub timeout: GoDuration,
    /// HTTP/2 keepalive pings; unset for none.
    pub keepalive: Option<KeepaliveConfig>,
    /// Retry with exponential backoff on retryable failures.
    pub retry_on_failure: RetryConfig,
    /// The bounded (optionally persistent) queue in front of the client.
    pub sending_queue: QueueConfig,
    /// `authenticator`: the extension that adds credentials to each call.
    pub auth: Option<AuthConfig>,
}

impl Default for OtlpGrpcExporterConfig {
    fn default() -> Self {
        OtlpGrpcExporterConfig {
            endpoint: String::new(),
            tls: TlsClientConfig::default(),
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            timeout: GoDuration::from_secs(5),
            keepalive: None,
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
            auth: None,
        }
    }
}

/// Where and how to connect, from `endpoint` and `tls.insecure`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GrpcTarget {
    /// `http://host:port` or `https://host:port`.
    uri: String,
    tls: bool,
}

impl ComponentConfig for OtlpGrpcExporterConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        self.target()
            .map_err(|e| ValidationError::at("endpoint", e))?;
        self.tls.validate().map_err(|e| e.within("tls"))?;
        grpc_metadata(&self.headers).map_err(|e| ValidationError::at("headers", e))?;
        self.retry_on_failure
            .validate()
            .map_err(|e| e.within("retry_on_failure"))?;
        self.sending_queue
            .validate()
            .map_err(|e| e.within("sending_queue"))?;
        if let Some(k) = &self.keepalive {
            if !k.time.is_zero() && k.timeout.is_zero() {
                return Err(ValidationError::at(
                    "keepalive::timeout",
                    "must be greater than zero",
                ));
            }
        }
        Ok(())
    }

    fn references(&self) -> Vec<Reference> {
        let mut refs = self.sending_queue.references();
        refs.extend(self.auth.as_ref().map(AuthConfig::client_reference));
        refs
    }
}

/// Makes `otlp_grpc` exporters.
pub struct OtlpGrpcExporterFactory;

impl Factory for OtlpGrpcExporterFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["otlp_grpc", "otlp"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "sends OTLP over gRPC (the collector's `otlp` exporter)"
    }
}

impl ExporterFactory for OtlpGrpcExporterFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExporterConfig>, ConfigError> {
        Ok(Box::new(from_node::<OtlpGrpcExporterConfig>(node)?))
    }
}

impl ExporterConfig for OtlpGrpcExporterConfig {
    fn build<'a>(
        &'a self,
        ctx: &'a BuildContext,
    ) -> StartFuture<'a, (DynConsumer, JoinHandle<()>)> {
        Box::pin(build(self, ctx))
    }
}

impl OtlpGrpcExporterConfig {
    fn target(&self) -> Result<GrpcTarget, String> {
        let endpoint = self.endpoint.trim();
        if endpoint.is_empty() {
            return Err("requires a non-empty \"endpoint\"".into());
        }
        // As in the collector: `https://` forces TLS, `http://` turns it off,
        // and a bare `host:port` uses TLS unless `tls.insecure` is set.
        let (authority, tls) = if let Some(rest) = endpoint.strip_prefix("https://") {
            (rest, true)
        } else if let Some(rest) = endpoint.strip_prefix("http://") {
            (rest, false)
        } else if let Some((scheme, _)) = endpoint.split_once("://") {
            return Err(format!(
                "endpoint {endpoint:?}: unsupported scheme {scheme:?} (use host:port, http:// or https://)"
            ));
        } else {
            (endpoint, !self.tls.insecure)
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.is_empty() || authority.contains('/') {
            return Err(format!(
                "endpoint {endpoint:?} must be host:port, without a path"
            ));
        }
        let parsed: http::uri::Authority = authority
            .parse()
            .map_err(|e| format!("endpoint {endpoint:?} is not a valid host:port: {e}"))?;
        if parsed.host().is_empty() || authority.contains('@') {
            return Err(format!("endpoint {endpoint:?} is not a valid host:port"));
        }
        let scheme = if tls { "https" } else { "http" };
        Ok(GrpcTarget {
            uri: format!("{scheme}://{authority}"),
            tls,
        })
    }

    fn timeout_opt(&self) -> Option<Duration> {
        (!self.timeout.is_zero()).then(|| self.timeout.get())
    }
}

/// `headers` as gRPC metadata; an invalid name or value is a config error.
fn grpc_metadata(headers: &BTreeMap<String, String>) -> Result<MetadataMap, String> {
    let mut metadata = MetadataMap::new();
    for (name, value) in headers {
        let key = AsciiMetadataKey::from_bytes(name.as_bytes())
            .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
        if name.to_ascii_lowercase().ends_with("-bin") {
            return Err(format!(
                "headers: {name:?}: binary metadata (a name ending in -bin) is not supported"
            ));
        }
        let value = AsciiMetadataValue::try_from(value.as_str()).map_err(|_| {
            format!(
                "headers: the value of {name:?} must be visible ASCII without control characters"
            )
        })?;
        metadata.insert(key, value);
    }
    Ok(metadata)
}

/// Builds the exporter: the gRPC client behind the shared exporter helper.
pub async fn build(
    c: &OtlpGrpcExporterConfig,
    ctx: &BuildContext,
) -> anyhow::Result<(DynConsumer, JoinHandle<()>)> {
    let mut client = OtlpGrpcClient::new(c).map_err(|e| {
        e.context(format!(
            "exporter {}: cannot set up the gRPC client",
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

/// One OTLP/gRPC connection (established lazily, re-established by tonic
/// after failures) with a client per signal.
pub struct OtlpGrpcClient {
    /// One channel for both signals; requests are encoded by
    /// [`RequestCodec`] straight from the shared payload, or copied from the
    /// sending queue's encoding.
    grpc: Grpc<Channel>,
    /// The same for urgent requests, on a connection of their own (made at
    /// the first of them).
    urgent: Grpc<Channel>,
    metadata: MetadataMap,
    timeout: Option<Duration>,
    /// For messages.
    uri: String,
    /// Adds credentials to each call (`auth`).
    pub auth: Option<ClientAuthenticator>,
}

impl OtlpGrpcClient {
    /// Must be called within a tokio runtime. Reads the TLS files; does not
    /// connect.
    pub fn new(c: &OtlpGrpcExporterConfig) -> anyhow::Result<Self> {
        c.validate().map_err(anyhow::Error::new)?;
        let target = c.target().map_err(anyhow::Error::msg)?;
        let metadata = grpc_metadata(&c.headers).map_err(anyhow::Error::msg)?;
        let timeout = c.timeout_opt();

        // With TLS, our own connector does the handshake (the versions,
        // suites and reloaded client certificate of `tls`); tonic dials a
        // plain `http://` endpoint through it.
        let plain_uri = match target.uri.strip_prefix("https://") {
            Some(authority) => format!("http://{authority}"),
            None => target.uri.clone(),
        };
        let mut endpoint = Endpoint::from_shared(plain_uri)
            .map_err(|e| anyhow::anyhow!("endpoint {:?}: {e}", c.endpoint))?
            .connect_timeout(timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
            .tcp_nodelay(true);
        if let Some(k) = &c.keepalive {
            if !k.time.is_zero() {
                endpoint = endpoint
                    .http2_keep_alive_interval(k.time.get())
                    .keep_alive_timeout(k.timeout.get())
                    .keep_alive_while_idle(k.permit_without_stream);
            }
        }
        // The TLS files are read once; both channels dial with the result.
        let tls = if target.tls {
            // Requests still say `https` (`:scheme`), as the server expects.
            let origin = target
                .uri
                .parse::<http::Uri>()
                .map_err(|e| anyhow::anyhow!("endpoint {:?}: {e}", c.endpoint))?;
            Some((origin, c.tls.load()?.dialer()?))
        } else {
            None
        };
        // The connection of urgent requests acknowledges what it receives
        // at once: a server that writes its answer in pieces without
        // TCP_NODELAY would otherwise hold an OOM record's answer for up
        // to 40 ms (`tls::tcp`).
        // Its tasks (dial, connection, request bodies) run on the urgent
        // lane, where the urgent exports themselves run (`urgent_lane`).
        let connect = |urgent: bool| {
            let endpoint = if urgent {
                endpoint.clone().executor(crate::urgent_lane::LaneExecutor)
            } else {
                endpoint.clone()
            };
            match &tls {
                None if urgent => {
                    endpoint.connect_with_connector_lazy(crate::tls::tcp::connector(true))
                }
                None => endpoint.connect_lazy(),
                Some((origin, dialer)) => endpoint
                    .origin(origin.clone())
                    .connect_with_connector_lazy(dialer.connector(urgent)),
            }
        };
        let encoding = match c.compression {
            Compression::Gzip => Some(CompressionEncoding::Gzip),
            Compression::Zstd => Some(CompressionEncoding::Zstd),
            Compression::None => None,
        };
        let client = |channel: Channel| {
            let grpc = Grpc::new(channel)
                .max_encoding_message_size(MAX_REQUEST_BYTES)
                .max_decoding_message_size(MAX_RESPONSE_BYTES)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd);
            match encoding {
                Some(encoding) => grpc.send_compressed(encoding),
                None => grpc,
            }
        };
        Ok(OtlpGrpcClient {
            grpc: client(connect(false)),
            urgent: client(connect(true)),
            metadata,
            timeout,
            uri: target.uri,
            auth: None,
        })
    }

    fn request(&self, body: RequestBody) -> Result<tonic::Request<RequestBody>, Status> {
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = match &self.auth {
            None => self.metadata.clone(),
            Some(auth) => {
                let mut headers = self.metadata.clone().into_headers();
                auth.apply(&mut headers)
                    .map_err(|e| Status::unavailable(format!("no credentials: {e}")))?;
                MetadataMap::from_headers(headers)
            }
        };
        if let Some(timeout) = self.timeout {
            // Sent as `grpc-timeout` so the server can give up too. The
            // attempt itself is bounded by the exporter helper's timeout.
            request.set_timeout(timeout);
        }
        Ok(request)
    }

    /// One unary `Export` call on `path`, answered by a `R` response.
    async fn unary<R>(
        &self,
        path: &'static str,
        body: RequestBody,
        urgent: bool,
    ) -> Result<tonic::Response<R>, Status>
    where
        R: Message + Default + Send + 'static,
    {
        let request = self.request(body)?;
        let mut grpc = if urgent {
            self.urgent.clone()
        } else {
            self.grpc.clone()
        };
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
        grpc.unary(
            request,
            PathAndQuery::from_static(path),
            RequestCodec::<R>::default(),
        )
        .await
    }

    async fn call<F, R>(&self, signal: &str, call: F) -> Result<R, ExportError>
    where
        F: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        call.await
            .map(tonic::Response::into_inner)
            .map_err(|status| classify_status(&status, signal, &self.uri))
    }
}

#[async_trait]
impl ExportClient for OtlpGrpcClient {
    async fn export(&self, payload: &Arc<Payload>) -> Result<ExportResponse, ExportError> {
        // The OTLP specification: empty envelopes SHOULD NOT be sent.
        if payload.is_empty() {
            return Ok(ExportResponse::default());
        }
        // An oversized request is refused before any I/O, and permanently.
        let size = encoded_len(payload);
        if size > MAX_REQUEST_BYTES {
            return Err(ExportError::permanent(format!(
                "request of {size} bytes is larger than the {MAX_REQUEST_BYTES}-byte limit; not sent"
            )));
        }
        self.send(
            payload.signal(),
            RequestBody::Shared(Arc::clone(payload)),
            false,
        )
        .await
    }

    fn sends_protobuf(&self) -> bool {
        true
    }

    /// Its urgent connection's tasks run on the lane.
    fn uses_urgent_lane(&self) -> bool {
        true
    }

    async fn export_encoded(
        &self,
        request: &EncodedRequest,
    ) -> Result<ExportResponse, ExportError> {
        if request.item_count() == 0 {
            return Ok(ExportResponse::default());
        }
        let body = request.body();
        if body.len() > MAX_REQUEST_BYTES {
            return Err(ExportError::permanent(format!(
                "request of {} bytes is larger than the {MAX_REQUEST_BYTES}-byte limit; not sent",
                body.len()
            )));
        }
        self.send(
            request.signal(),
            RequestBody::Encoded(body),
            request.is_urgent(),
        )
        .await
    }
}

impl OtlpGrpcClient {
    /// One `Export` call of `signal`'s service.
    async fn send(
        &self,
        signal: Signal,
        body: RequestBody,
        urgent: bool,
    ) -> Result<ExportResponse, ExportError> {
        match signal {
            Signal::Logs => {
                let call = self.unary::<ExportLogsServiceResponse>(LOGS_EXPORT_PATH, body, urgent);
                let response = self.call("logs", call).await?;
                Ok(match response.partial_success {
                    Some(p) => partial(p.rejected_log_records, p.error_message),
                    None => ExportResponse::default(),
                })
            }
            Signal::Metrics => {
                let call =
                    self.unary::<ExportMetricsServiceResponse>(METRICS_EXPORT_PATH, body, urgent);
                let response = self.call("metrics", call).await?;
                Ok(match response.partial_success {
                    Some(p) => partial(p.rejected_data_points, p.error_message),
                    None => ExportResponse::default(),
                })
            }
        }
    }
}

const LOGS_EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const METRICS_EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// A request body that is the shared pipeline payload itself: encoded as an
/// `Export{Logs,Metrics}ServiceRequest` without copying the data first (the
/// generated client would need an owned request, that is a deep copy of
/// every record, on every attempt).
enum RequestBody {
    Shared(Arc<Payload>),
    /// The request's protobuf, encoded once by the sending queue
    /// ([`EncodedRequest`]): copied into the call as it is.
    Encoded(Bytes),
}

/// Field 1 of both `ExportLogsServiceRequest` (`resource_logs`) and
/// `ExportMetricsServiceRequest` (`resource_metrics`).
const RESOURCES_FIELD: u32 = 1;

fn encoded_len(payload: &Payload) -> usize {
    use prost::encoding::message;
    match payload {
        Payload::Logs(rl) => rl
            .iter()
            .map(|r| message::encoded_len(RESOURCES_FIELD, r))
            .sum(),
        Payload::Metrics(rm) => rm
            .iter()
            .map(|r| message::encoded_len(RESOURCES_FIELD, r))
            .sum(),
    }
}

/// Encodes [`RequestBody`] requests, decodes `R` responses with prost.
struct RequestCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for RequestCodec<R> {
    fn default() -> Self {
        RequestCodec(PhantomData)
    }
}

impl<R: Message + Default + Send + 'static> Codec for RequestCodec<R> {
    type Encode = RequestBody;
    type Decode = R;
    type Encoder = RequestEncoder;
    type Decoder = ResponseDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        RequestEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ResponseDecoder(PhantomData)
    }
}

struct RequestEncoder;

impl Encoder for RequestEncoder {
    type Item = RequestBody;
    type Error = Status;

    fn encode(&mut self, item: RequestBody, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut as _;
        use prost::encoding::message;
        match item {
            RequestBody::Shared(payload) => match payload.as_ref() {
                Payload::Logs(rl) => rl
                    .iter()
                    .for_each(|r| message::encode(RESOURCES_FIELD, r, dst)),
                Payload::Metrics(rm) => rm
                    .iter()
                    .for_each(|r| message::encode(RESOURCES_FIELD, r, dst)),
            },
            RequestBody::Encoded(body) => dst.put_slice(&body),
        }
        Ok(())
    }
}

struct ResponseDecoder<R>(PhantomData<fn() -> R>);

impl<R: Message + Default> Decoder for ResponseDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable response: {e}")))
    }
}

fn partial(rejected: i64, message: String) -> ExportResponse {
    ExportResponse {
        rejected: u64::try_from(rejected).unwrap_or(0),
        message,
    }
}

/// The OTLP/gRPC retry rules (specification, "Failures"; collector `shouldRetry`)
/// for a status a server sent.
///
/// A status that carries a `source()` was not sent by a server: tonic made it
/// here from a transport error (hyper, h2 or I/O: connection reset, EOF,
/// broken pipe, GOAWAY, RST_STREAM), mapping it to codes such as UNKNOWN or
/// INTERNAL that the rules call permanent. The connection failed, not the
/// request: retryable, so that a backend restart mid-call loses nothing.
fn classify_status(status: &Status, signal: &str, uri: &str) -> ExportError {
    let retry_info = status.get_details_retry_info();
    let local_transport_failure = std::error::Error::source(status).is_some();
    let kind = match status.code() {
        _ if local_transport_failure => ExportErrorKind::Retryable,
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportErrorKind::Retryable,
        // The server is throttling only if it says when to come back;
        // otherwise (for example a message over its size limit) retrying
        // cannot help.
        Code::ResourceExhausted if retry_info.is_some() => ExportErrorKind::Retryable,
        _ => ExportErrorKind::Permanent,
    };
    let mut message = format!(
        "exporting {signal} to {uri} failed: gRPC status {:?}: {}",
        status.code(),
        status.message()
    );
    // Transport errors (connection refused, TLS failures) hide their cause
    // in the source chain.
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ExportError {
        kind,
        retry_after: match kind {
            ExportErrorKind::Retryable => retry_info.and_then(|r| r.retry_delay),
            ExportErrorKind::Permanent => None,
        },
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
        LogsService, LogsServiceServer,
    };
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
        MetricsService, MetricsServiceServer,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use tokio_util::sync::CancellationToken;
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
    use tonic_types::ErrorDetails;

    use super::*;

    /// What the test server answers.
    #[derive(Clone, Debug)]
    enum Reply {
        Ok,
        Partial(i64, &'static str),
        Fail(Code),
        FailWithRetryInfo(Code, Duration),
    }

    #[derive(Default)]
    struct Seen {
        bodies: Vec<usize>,
        /// The client's address of each logs request's connection.
        peers: Vec<Option<SocketAddr>>,
        metadata: Vec<MetadataMap>,
        metric_names: Vec<String>,
    }

    #[derive(Clone)]
    struct TestServer {
        reply: Arc<Mutex<Reply>>,
        seen: Arc<Mutex<Seen>>,
    }

    impl TestServer {
        fn answer<T>(&self, ok: T) -> Result<tonic::Response<T>, Status> {
            let reply = self.reply.lock().unwrap().clone();
            match reply {
                Reply::Ok | Reply::Partial(..) => Ok(tonic::Response::new(ok)),
                Reply::Fail(code) => Err(Status::new(code, "told to fail")),
                Reply::FailWithRetryInfo(code, delay) => Err(Status::with_error_details(
                    code,
                    "slow down",
                    ErrorDetails::with_retry_info(Some(delay)),
                )),
            }
        }
    }

    #[tonic::async_trait]
    impl LogsService for TestServer {
        async fn export(
            &self,
            request: tonic::Request<ExportLogsServiceRequest>,
        ) -> Result<tonic::Response<ExportLogsServiceResponse>, Status> {
            {
                let mut seen = self.seen.lock().unwrap();
                seen.metadata.push(request.metadata().clone());
                seen.peers.push(request.remote_addr());
                seen.bodies.push(request.get_ref().resource_logs.len());
            }
            let partial_success = match self.reply.lock().unwrap().clone() {
                Reply::Partial(n, msg) => Some(ExportLogsPartialSuccess {
                    rejected_log_records: n,
                    error_message: msg.into(),
                }),
                _ => None,
            };
            self.answer(ExportLogsServiceResponse { partial_success })
        }
    }

    #[tonic::async_trait]
    impl MetricsService for TestServer {
        async fn export(
            &self,
            request: tonic::Request<ExportMetricsServiceRequest>,
        ) -> Result<tonic::Response<ExportMetricsServiceResponse>, Status> {
            {
                let mut seen = self.seen.lock().unwrap();
                seen.metadata.push(request.metadata().clone());
                for rm in &request.get_ref().resource_metrics {
                    for sm in &rm.scope_metrics {
                        seen.metric_names
                            .extend(sm.metrics.iter().map(|m| m.name.clone()));
                    }
                }
            }
            self.answer(ExportMetricsServiceResponse::default())
        }
    }

    struct Running {
        addr: SocketAddr,
        server: TestServer,
        stop: CancellationToken,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    impl Running {
        fn set(&self, reply: Reply) {
            *self.server.reply.lock().unwrap() = reply;
        }
    }

    async fn start_server(tls: Option<ServerTlsConfig>) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = TestServer {
            reply: Arc::new(Mutex::new(Reply::Ok)),
            seen: Arc::default(),
        };
        let stop = CancellationToken::new();
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        // Only gzip is accepted: a zstd or other encoding would be refused.
        let router = builder
            .add_service(
                LogsServiceServer::new(server.clone()).accept_compressed(CompressionEncoding::Gzip),
            )
            .add_service(
                MetricsServiceServer::new(server.clone())
                    .accept_compressed(CompressionEncoding::Gzip),
            );
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(incoming, stopped.cancelled_owned())
                .await;
        });
        Running { addr, server, stop }
    }

    fn config(endpoint: String) -> OtlpGrpcExporterConfig {
        OtlpGrpcExporterConfig {
            endpoint,
            // Only a bound on a local exchange; generous for a loaded machine.
            timeout: GoDuration::from_secs(60),
            ..Default::default()
        }
    }

    fn plain_config(addr: SocketAddr) -> OtlpGrpcExporterConfig {
        let mut c = config(addr.to_string());
        c.tls.insecure = true;
        c
    }

    fn logs() -> Payload {
        Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("oom".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn metrics() -> Payload {
        Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "system.memory.usage".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            value: Some(number_data_point::Value::AsInt(5)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[test]
    fn config_validation() {
        assert!(OtlpGrpcExporterConfig::default()
            .validate()
            .unwrap_err()
            .to_string()
            .contains("endpoint"));
        let ok = |e: &str| config(e.into()).target();
        assert_eq!(
            ok("collector:4317").unwrap(),
            GrpcTarget {
                uri: "https://collector:4317".into(),
                tls: true
            }
        );
        assert!(!ok("http://collector:4317").unwrap().tls);
        assert!(ok("https://collector:4317/").unwrap().tls);
        assert!(ok("[::1]:4317").is_ok());
        let mut insecure = config("collector:4317".into());
        insecure.tls.insecure = true;
        assert_eq!(insecure.target().unwrap().uri, "http://collector:4317");
        // https forces TLS even with insecure.
        insecure.endpoint = "https://collector:4317".into();
        assert!(insecure.target().unwrap().tls);
        assert!(ok("collector:4317/v1/logs").unwrap_err().contains("path"));
        assert!(ok("unix:///tmp/sock").unwrap_err().contains("scheme"));
        assert!(ok("bad host:1").is_err());

        let mut c = config("collector:4317".into());
        c.headers.insert("bad header".into(), "x".into());
        assert!(c.validate().unwrap_err().to_string().contains("bad header"));
        c.headers.clear();
        c.headers.insert("api-key".into(), "line\nbreak".into());
        assert!(c.validate().unwrap_err().to_string().contains("api-key"));
        c.headers.clear();
        c.headers.insert("Api-Key".into(), "secret".into());
        c.validate().unwrap();
    }

    #[test]
    fn config_from_collector_keys() {
        let c: OtlpGrpcExporterConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "collector:4317",
            "compression": "zstd",
            "timeout": "10s",
            "headers": {"x-api-key": "k"},
            "tls": {"insecure": true},
            "retry_on_failure": {"enabled": false},
            "sending_queue": {"queue_size": 10},
        }))
        .unwrap();
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.timeout, GoDuration::from_secs(10));
        assert!(c.tls.insecure);
        c.validate().unwrap();
        let d = OtlpGrpcExporterConfig::default();
        assert_eq!(
            (d.compression, d.timeout),
            (Compression::Gzip, GoDuration::from_secs(5))
        );
        let err = serde_json::from_value::<OtlpGrpcExporterConfig>(
            serde_json::json!({"endpoint": "x:1", "compression": "snappy"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("use zstd or gzip"), "{err}");
        let err = serde_json::from_value::<OtlpGrpcExporterConfig>(
            serde_json::json!({"endpoint": "x:1", "compression": "lz4"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("otlphttp exporter sends lz4"), "{err}");
    }

    #[tokio::test]
    async fn urgent_requests_go_on_a_connection_of_their_own() {
        let running = start_server(None).await;
        let mut c = plain_config(running.addr);
        c.headers.insert("X-Api-Key".into(), "secret".into());
        let client = OtlpGrpcClient::new(&c).unwrap();
        let bulk = EncodedRequest::encode(&logs());
        let urgent = EncodedRequest::encode(&logs()).marked_urgent(true);
        for request in [&bulk, &urgent, &bulk, &urgent] {
            assert_eq!(
                client.export_encoded(request).await.unwrap(),
                ExportResponse::default()
            );
        }
        let seen = running.server.seen.lock().unwrap();
        let peers: Vec<SocketAddr> = seen.peers.iter().map(|p| p.unwrap()).collect();
        assert_eq!(peers.len(), 4);
        assert_eq!(peers[0], peers[2], "bulk requests share a connection");
        assert_eq!(peers[1], peers[3], "urgent requests share theirs");
        assert_ne!(
            peers[0], peers[1],
            "urgent requests go apart from bulk ones"
        );
        for md in &seen.metadata {
            assert_eq!(md.get("x-api-key").unwrap(), "secret");
            assert_eq!(md.get("grpc-encoding").unwrap(), "gzip");
        }
    }

    /// The urgent connection's tasks live on the urgent lane, not on the
    /// runtime that built the client: with that runtime gone, urgent
    /// requests still go (and bulk ones, whose tasks went with it, do not:
    /// the control that shows where each connection's tasks ran).
    #[tokio::test]
    async fn the_urgent_connection_runs_on_the_urgent_lane() {
        let running = start_server(None).await;
        let c = plain_config(running.addr);
        let client = std::thread::spawn(move || {
            let builder = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // Both channels spawn their buffer workers here, at creation.
            let client = builder.block_on(async { OtlpGrpcClient::new(&c).unwrap() });
            drop(builder);
            client
        })
        .join()
        .unwrap();
        let urgent = EncodedRequest::encode(&logs()).marked_urgent(true);
        assert_eq!(
            client.export_encoded(&urgent).await.unwrap(),
            ExportResponse::default()
        );
        let bulk = EncodedRequest::encode(&logs());
        assert!(
            client.export_encoded(&bulk).await.is_err(),
            "bulk requests went with the builder's runtime"
        );
        assert_eq!(running.server.seen.lock().unwrap().peers.len(), 1);
    }

    #[tokio::test]
    async fn ok_partial_success_and_headers() {
        let running = start_server(None).await;
        let mut c = plain_config(running.addr);
        c.headers.insert("X-Api-Key".into(), "secret".into());
        let client = OtlpGrpcClient::new(&c).unwrap();

        assert_eq!(
            client.export(&std::sync::Arc::new(logs())).await.unwrap(),
            ExportResponse::default()
        );
        assert_eq!(
            client
                .export(&std::sync::Arc::new(metrics()))
                .await
                .unwrap(),
            ExportResponse::default()
        );
        {
            let seen = running.server.seen.lock().unwrap();
            assert_eq!(seen.bodies, vec![1]);
            assert_eq!(seen.metric_names, vec!["system.memory.usage".to_owned()]);
            for md in &seen.metadata {
                assert_eq!(md.get("x-api-key").unwrap(), "secret");
                assert_eq!(md.get("grpc-encoding").unwrap(), "gzip");
                assert!(md.get("grpc-timeout").is_some());
            }
        }

        running.set(Reply::Partial(3, "bad records"));
        assert_eq!(
            client.export(&std::sync::Arc::new(logs())).await.unwrap(),
            ExportResponse {
                rejected: 3,
                message: "bad records".into()
            }
        );

        // Nothing is sent for an empty payload.
        client
            .export(&std::sync::Arc::new(Payload::Logs(vec![])))
            .await
            .unwrap();
        assert_eq!(running.server.seen.lock().unwrap().bodies.len(), 2);
    }

    #[tokio::test]
    async fn status_classification() {
        let running = start_server(None).await;
        let client = OtlpGrpcClient::new(&plain_config(running.addr)).unwrap();

        running.set(Reply::Fail(Code::Unavailable));
        let err = client
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Retryable);
        assert_eq!(err.retry_after, None);
        assert!(err.message.contains("Unavailable"), "{}", err.message);
        assert!(err.message.contains("told to fail"), "{}", err.message);

        running.set(Reply::FailWithRetryInfo(
            Code::Unavailable,
            Duration::from_secs(7),
        ));
        let err = client
            .export(&std::sync::Arc::new(metrics()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Retryable);
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)));

        running.set(Reply::Fail(Code::ResourceExhausted));
        let err = client
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Permanent);

        running.set(Reply::FailWithRetryInfo(
            Code::ResourceExhausted,
            Duration::from_millis(1500),
        ));
        let err = client
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Retryable);
        assert_eq!(err.retry_after, Some(Duration::from_millis(1500)));

        for code in [Code::InvalidArgument, Code::Unauthenticated, Code::Internal] {
            running.set(Reply::Fail(code));
            let err = client
                .export(&std::sync::Arc::new(logs()))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ExportErrorKind::Permanent, "{code:?}");
        }
        for code in [Code::Aborted, Code::DataLoss, Code::OutOfRange] {
            running.set(Reply::Fail(code));
            let err = client
                .export(&std::sync::Arc::new(logs()))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ExportErrorKind::Retryable, "{code:?}");
        }

        // The connection recovers after failures.
        running.set(Reply::Ok);
        client.export(&std::sync::Arc::new(logs())).await.unwrap();
    }

    #[tokio::test]
    async fn unsupported_compression_at_server_is_permanent() {
        let running = start_server(None).await;
        let mut c = plain_config(running.addr);
        c.compression = Compression::Zstd;
        let err = OtlpGrpcClient::new(&c)
            .unwrap()
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap_err();
        // The server accepts only gzip: UNIMPLEMENTED, permanent.
        assert_eq!(err.kind, ExportErrorKind::Permanent, "{}", err.message);
        c.compression = Compression::None;
        OtlpGrpcClient::new(&c)
            .unwrap()
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        // Held for the whole test: nothing else can listen there meanwhile.
        let (_refusing, addr) = crate::test_support::refused_addr();
        let client = OtlpGrpcClient::new(&plain_config(addr)).unwrap();
        let err = client
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Retryable, "{}", err.message);
    }

    /// How [`misbehaving_server`] fails a request.
    #[derive(Clone, Copy, Debug)]
    enum Misbehaviour {
        /// Closes the connection once the request arrived (a backend restart).
        DropConnection,
        /// Resets the stream with INTERNAL_ERROR (hyper's answer to a failed
        /// service), without a gRPC status.
        ResetStream,
    }

    /// An HTTP/2 server that accepts connections and fails every request
    /// below the gRPC layer.
    async fn misbehaving_server(how: Misbehaviour) -> (SocketAddr, CancellationToken) {
        use http_body_util::Full;
        use hyper::body::Incoming;
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap().0,
                };
                tokio::spawn(async move {
                    let got_request = Arc::new(tokio::sync::Notify::new());
                    let notify = Arc::clone(&got_request);
                    let service = hyper::service::service_fn(move |_: http::Request<Incoming>| {
                        let notify = Arc::clone(&notify);
                        async move {
                            match how {
                                Misbehaviour::ResetStream => {
                                    Err(std::io::Error::other("told to fail"))
                                }
                                Misbehaviour::DropConnection => {
                                    notify.notify_one();
                                    std::future::pending::<
                                        Result<http::Response<Full<bytes::Bytes>>, std::io::Error>,
                                    >()
                                    .await
                                }
                            }
                        }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service);
                    // Dropping the connection closes the socket mid-request.
                    tokio::select! {
                        _ = conn => {}
                        _ = got_request.notified() => {}
                    }
                });
            }
        });
        (addr, stop)
    }

    #[tokio::test]
    async fn transport_failures_mid_request_are_retryable() {
        for how in [Misbehaviour::ResetStream, Misbehaviour::DropConnection] {
            let (addr, stop) = misbehaving_server(how).await;
            let client = OtlpGrpcClient::new(&plain_config(addr)).unwrap();
            let err = tokio::time::timeout(
                Duration::from_secs(60),
                client.export(&std::sync::Arc::new(logs())),
            )
            .await
            .unwrap()
            .unwrap_err();
            assert_eq!(
                err.kind,
                ExportErrorKind::Retryable,
                "{how:?}: {}",
                err.message
            );
            stop.cancel();
        }
    }

    /// A status a real server sent keeps the specification's classification,
    /// even with a code that a transport failure also maps to.
    #[test]
    fn sent_statuses_keep_the_spec_classification() {
        for code in [Code::Unknown, Code::Internal] {
            let err = classify_status(&Status::new(code, "boom"), "logs", "http://x:1");
            assert_eq!(err.kind, ExportErrorKind::Permanent, "{code:?}");
        }
        let mut local = Status::new(Code::Internal, "h2 protocol error");
        local.set_source(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        let err = classify_status(&local, "logs", "http://x:1");
        assert_eq!(err.kind, ExportErrorKind::Retryable);
        assert!(err.message.contains("reset"), "{}", err.message);
    }

    #[tokio::test]
    async fn tls_with_ca_file_and_mutual_tls() {
        let pki = super::super::tls::testing::make_pki();
        let identity = Identity::from_pem(&pki.server_cert_pem, &pki.server_key_pem);

        // Server-side TLS only.
        let running = start_server(Some(ServerTlsConfig::new().identity(identity.clone()))).await;
        let mut c = config(format!("localhost:{}", running.addr.port()));
        c.tls.ca_file = Some(pki.ca_file.clone());
        OtlpGrpcClient::new(&c)
            .unwrap()
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap();

        // Trusting another CA only, the server is refused.
        let other_pki = super::super::tls::testing::make_pki();
        let mut untrusted = c.clone();
        untrusted.tls.ca_file = Some(other_pki.ca_file.clone());
        let err = OtlpGrpcClient::new(&untrusted)
            .unwrap()
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ExportErrorKind::Retryable, "{}", err.message);
        untrusted.tls.ca_file = None;
        // insecure_skip_verify accepts it.
        untrusted.tls.insecure_skip_verify = true;
        OtlpGrpcClient::new(&untrusted)
            .unwrap()
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap();
        // Plain text to a TLS server fails.
        let mut plain = c.clone();
        plain.tls.insecure = true;
        assert!(OtlpGrpcClient::new(&plain)
            .unwrap()
            .export(&std::sync::Arc::new(logs()))
            .await
            .is_err());
        // server_name_override: connect by IP, verify as localhost.
        let mut by_ip = c.clone();
        by_ip.endpoint = format!("https://{}", running.addr);
        by_ip.tls.server_name_override = Some("localhost".into());
        OtlpGrpcClient::new(&by_ip)
            .unwrap()
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap();
        drop(running);

        // Mutual TLS: the server requires a client certificate from the CA.
        let running = start_server(Some(
            ServerTlsConfig::new()
                .identity(identity)
                .client_ca_root(Certificate::from_pem(&pki.ca_pem)),
        ))
        .await;
        let mut c = config(format!("https://localhost:{}", running.addr.port()));
        c.tls.ca_file = Some(pki.ca_file.clone());
        assert!(OtlpGrpcClient::new(&c)
            .unwrap()
            .export(&std::sync::Arc::new(logs()))
            .await
            .is_err());
        c.tls.cert_file = Some(pki.client_cert_file.clone());
        c.tls.key_file = Some(pki.client_key_file.clone());
        OtlpGrpcClient::new(&c)
            .unwrap()
            .export(&std::sync::Arc::new(logs()))
            .await
            .unwrap();
    }
}
