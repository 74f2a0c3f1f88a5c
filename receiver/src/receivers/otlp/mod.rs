//! The `otlp` receiver: OTLP logs and metrics over gRPC (port 4317) and
//! HTTP (port 4318, protobuf or JSON), as the collector's `otlpreceiver`.
//!
//! Data is handed on unchanged (internal data is the OTLP model). Traces are
//! not accepted: gRPC answers UNIMPLEMENTED, HTTP 404. Back-pressure from the
//! pipeline reaches the sender as a retryable error with a retry hint
//! (gRPC UNAVAILABLE with `google.rpc.RetryInfo`, HTTP 503 with `Retry-After`).

pub mod cors;
mod decode;
mod export_service;
mod grpc;
mod http;
mod sanitize;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::ReceiverOutputs;
use crate::component::Reference;
use crate::component::{
    BuildContext, ComponentConfig, Factory, ReceiverConfig, ReceiverFactory, Stability, StartFuture,
};
use crate::config::{
    from_node, some_when_present, ComponentId, ConfigError, GoDuration, Node, ValidationError,
};
use crate::extensions::auth::{AuthConfig, ServerAuth};
use crate::pipeline::{Batch, ConsumeError, DynConsumer, Payload, Signal};
use crate::server::ConnectionLimits;
use crate::telemetry::ReceiverMetrics;

/// The collector's error when no protocol is configured.
const NO_PROTOCOL_ERROR: &str = "must specify at least one protocol when using the OTLP receiver";

/// How long a request may wait for a full pipeline to take its data before
/// the sender is told to retry later.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry hint sent with a refusal when the pipeline gives none.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long in-flight requests may take to finish once shutdown begins. The
/// service's shutdown gives receivers a share of `service.shutdown_timeout`
/// (see `pipeline::topology::receiver_grace`) and aborts the receiver after
/// it, which closes its pipeline outputs at once.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Open connections per protocol; further clients are accepted and closed at
/// once (rather than left waiting in the listen backlog).
const MAX_CONNECTIONS: usize = 1024;
/// Time a new connection has to send its first bytes (TLS: to finish its
/// handshake) before it is closed.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight for this long is closed (HTTP/2
/// pings do not count as activity).
const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Time an HTTP client has to send a request body; slower clients are told
/// to retry later.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `max_inflight_bytes`: request bytes held at once per protocol.
const DEFAULT_MAX_INFLIGHT_BYTES: u64 = 64 * MIB;
/// HTTP/2 pings (both protocols), so half-open connections are detected.
const HTTP2_KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// HTTP/2 streams per connection unless configured.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;

const MIB: u64 = 1024 * 1024;
/// Largest accepted `max_recv_msg_size_mib` (gRPC frames carry a u32 length).
const MAX_RECV_MSG_SIZE_MIB_LIMIT: u64 = 2047;

/// An OTLP/HTTP request body taken as the server takes it: `Content-Type`
/// and `Content-Encoding` understood, decompressed within `limit` bytes,
/// decoded, and invalid items dropped. Returns the payload handed to the
/// pipeline and the number of items dropped, or the message the client would
/// get (with a 4xx status). For the fuzz targets (`fuzz/`); the server calls
/// the same functions one by one, answering each failure with its own status.
#[doc(hidden)]
pub fn decode_http_body(
    signal: Signal,
    content_type: &str,
    content_encoding: Option<&str>,
    body: bytes::Bytes,
    limit: usize,
) -> Result<(Payload, u64), String> {
    let encoding = decode::Encoding::from_content_type(content_type)
        .ok_or_else(|| format!("unsupported Content-Type {content_type:?}"))?;
    let compression = decode::Compression::from_content_encoding(content_encoding)?;
    let mut payload =
        decode::decode_body(signal, encoding, compression, body, limit, &mut |_| true).map_err(
            |e| match e {
                decode::DecompressError::TooLarge => {
                    format!("decompressed request body is larger than {limit} bytes")
                }
                decode::DecompressError::Corrupt(message) => message,
                // Never: nothing is refused a reservation here.
                decode::DecompressError::Busy => "the in-flight budget is used up".to_owned(),
            },
        )?;
    let dropped = sanitize::drop_invalid(&mut payload).map_or(0, |d| d.items);
    Ok((payload, dropped))
}

/// Config of the `otlp` receiver.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    /// Transports to serve. A protocol is enabled by being present; an empty
    /// value (`grpc:`) enables it with defaults.
    pub protocols: ProtocolsConfig,
}

/// `protocols:` of the `otlp` receiver.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolsConfig {
    /// OTLP/gRPC server; off unless present (`grpc:` alone enables it with
    /// defaults).
    #[serde(deserialize_with = "some_when_present")]
    pub grpc: Option<GrpcServerConfig>,
    /// OTLP/HTTP server; off unless present.
    #[serde(deserialize_with = "some_when_present")]
    pub http: Option<HttpServerConfig>,
}

/// `protocols.grpc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcServerConfig {
    /// `host:port` to listen on; an empty host (`:4317`) means every
    /// interface.
    pub endpoint: String,
    /// Largest accepted message, in MiB, after decompression; 0 means the
    /// gRPC default of 4.
    pub max_recv_msg_size_mib: u64,
    /// Bytes of decoded requests held at once (waiting for the pipeline);
    /// beyond it calls get UNAVAILABLE with a retry hint. 0 means the
    /// default of 64 MiB.
    pub max_inflight_bytes: u64,
    /// Concurrent streams per HTTP/2 connection (default 100).
    pub max_concurrent_streams: Option<u32>,
    /// HTTP/2 keepalive of the server.
    pub keepalive: Option<GrpcKeepaliveConfig>,
    /// Serve TLS instead of plaintext.
    pub tls: Option<TlsServerConfig>,
    /// `authenticator`: the extension that checks each call's credentials.
    pub auth: Option<AuthConfig>,
    /// The collector's request-metadata propagation; only `false` (see
    /// [`INCLUDE_METADATA_ERROR`]).
    pub include_metadata: bool,
}

/// Why `include_metadata: true` is refused.
pub const INCLUDE_METADATA_ERROR: &str = "include_metadata: true is not supported: this agent \
    keeps no request metadata after the receiver (no processor here reads it: batch \
    metadata_keys and resource from_context are refused too); remove the key or set it to false";

impl Default for GrpcServerConfig {
    fn default() -> Self {
        GrpcServerConfig {
            endpoint: "127.0.0.1:4317".to_string(),
            max_recv_msg_size_mib: 4,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            max_concurrent_streams: None,
            keepalive: None,
            tls: None,
            auth: None,
            include_metadata: false,
        }
    }
}

impl GrpcServerConfig {
    /// The message size limit in bytes.
    fn max_recv_msg_size(&self) -> usize {
        let mib = if self.max_recv_msg_size_mib == 0 {
            4
        } else {
            self.max_recv_msg_size_mib
        };
        usize::try_from(mib.saturating_mul(MIB)).unwrap_or(usize::MAX)
    }

    fn max_inflight_bytes(&self) -> u32 {
        inflight_budget(self.max_inflight_bytes)
    }
}

/// A `max_inflight_bytes` value as semaphore permits (validated to fit).
fn inflight_budget(configured: u64) -> u32 {
    let bytes = if configured == 0 {
        DEFAULT_MAX_INFLIGHT_BYTES
    } else {
        configured
    };
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// `protocols.grpc.keepalive`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcKeepaliveConfig {
    /// Keepalive of the server side of each connection.
    pub server_parameters: Option<GrpcKeepaliveServerParameters>,
}

/// `protocols.grpc.keepalive.server_parameters`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcKeepaliveServerParameters {
    /// Idle time after which the server pings the client (default 60s;
    /// 0 means the default, as in grpc-go).
    pub time: Option<GoDuration>,
    /// How long to wait for the ping's answer before closing (default 20s;
    /// 0 means the default).
    pub timeout: Option<GoDuration>,
    /// Age after which a connection is asked to close (default and 0: none).
    pub max_connection_age: Option<GoDuration>,
    /// Extra time a connection asked to close gets before it is closed
    /// (default and 0: none).
    pub max_connection_age_grace: Option<GoDuration>,
}

pub use crate::tls::TlsServerConfig;

/// `protocols.http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServerConfig {
    /// `host:port` to listen on; an empty host (`:4318`) means every
    /// interface.
    pub endpoint: String,
    /// Largest accepted request body in bytes, both as sent and after
    /// decompression; 0 means the default of 20 MiB.
    pub max_request_body_size: u64,
    /// Request body bytes held at once (counted by `Content-Length`, or as
    /// the body limit when it is absent); beyond it requests get 503 with
    /// `Retry-After`. 0 means the default of 64 MiB.
    pub max_inflight_bytes: u64,
    /// Path that takes logs.
    pub logs_url_path: String,
    /// Path that takes metrics.
    pub metrics_url_path: String,
    /// Path of traces; recognised so that it answers 404 "not supported".
    pub traces_url_path: String,
    /// `authenticator`: the extension that checks each request's credentials.
    pub auth: Option<AuthConfig>,
    /// Serve TLS (HTTPS) instead of plaintext.
    pub tls: Option<TlsServerConfig>,
    /// Only `false` (see [`INCLUDE_METADATA_ERROR`]).
    pub include_metadata: bool,
    /// Cross-origin requests from browsers (off unless `allowed_origins`
    /// names one).
    pub cors: Option<cors::CorsConfig>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            endpoint: "127.0.0.1:4318".to_string(),
            max_request_body_size: 20 * MIB,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            logs_url_path: "/v1/logs".to_string(),
            metrics_url_path: "/v1/metrics".to_string(),
            traces_url_path: "/v1/traces".to_string(),
            auth: None,
            tls: None,
            include_metadata: false,
            cors: None,
        }
    }
}

impl HttpServerConfig {
    fn max_body_size(&self) -> usize {
        let bytes = if self.max_request_body_size == 0 {
            20 * MIB
        } else {
            self.max_request_body_size
        };
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    fn max_inflight_bytes(&self) -> u32 {
        inflight_budget(self.max_inflight_bytes)
    }
}

/// Paths are normalised to start with `/`, as in the collector.
fn normalize_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

fn validate_endpoint(key: &str, endpoint: &str) -> Result<(), ValidationError> {
    // An empty host (`:4317`) listens on every interface, as in the collector.
    match endpoint.rsplit_once(':') {
        Some((_host, port)) if port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(ValidationError::at(
            format!("{key}::endpoint"),
            format!("{endpoint:?} must be host:port (for example 127.0.0.1:4317, or :4317 for every interface)"),
        )),
    }
}

/// The address to bind for `endpoint`: an empty host means every interface.
fn bind_address(endpoint: &str) -> String {
    match endpoint.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => endpoint.to_string(),
    }
}

fn validate_inflight(key: &str, bytes: u64) -> Result<(), ValidationError> {
    if bytes > u64::from(u32::MAX) {
        return Err(ValidationError::at(
            format!("{key}::max_inflight_bytes"),
            format!("{bytes} is above the limit of {}", u32::MAX),
        ));
    }
    Ok(())
}

impl ComponentConfig for OtlpReceiverConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        let ProtocolsConfig { grpc, http } = &self.protocols;
        if grpc.is_none() && http.is_none() {
            return Err(ValidationError::whole(NO_PROTOCOL_ERROR));
        }
        if let Some(g) = grpc {
            const KEY: &str = "protocols::grpc";
            validate_endpoint(KEY, &g.endpoint)?;
            if g.max_recv_msg_size_mib > MAX_RECV_MSG_SIZE_MIB_LIMIT {
                return Err(ValidationError::at(
                    format!("{KEY}::max_recv_msg_size_mib"),
                    format!(
                        "{} is above the limit of {MAX_RECV_MSG_SIZE_MIB_LIMIT}",
                        g.max_recv_msg_size_mib
                    ),
                ));
            }
            validate_inflight(KEY, g.max_inflight_bytes)?;
            if g.max_concurrent_streams == Some(0) {
                return Err(ValidationError::at(
                    format!("{KEY}::max_concurrent_streams"),
                    "must be greater than zero",
                ));
            }
            if let Some(tls) = &g.tls {
                tls.validate()
                    .map_err(|e| e.within(&format!("{KEY}::tls")))?;
            }
            if g.include_metadata {
                return Err(ValidationError::at(
                    format!("{KEY}::include_metadata"),
                    INCLUDE_METADATA_ERROR,
                ));
            }
        }
        if let Some(h) = http {
            const KEY: &str = "protocols::http";
            validate_endpoint(KEY, &h.endpoint)?;
            validate_inflight(KEY, h.max_inflight_bytes)?;
            if let Some(tls) = &h.tls {
                tls.validate()
                    .map_err(|e| e.within(&format!("{KEY}::tls")))?;
            }
            if h.include_metadata {
                return Err(ValidationError::at(
                    format!("{KEY}::include_metadata"),
                    INCLUDE_METADATA_ERROR,
                ));
            }
            if let Some(cors) = &h.cors {
                cors.validate()
                    .map_err(|e| e.within(&format!("{KEY}::cors")))?;
            }
            let paths = [
                ("logs_url_path", normalize_path(&h.logs_url_path)),
                ("metrics_url_path", normalize_path(&h.metrics_url_path)),
                ("traces_url_path", normalize_path(&h.traces_url_path)),
            ];
            for (i, (key_a, a)) in paths.iter().enumerate() {
                if let Some((key_b, _)) = paths[i + 1..].iter().find(|(_, b)| b == a) {
                    return Err(ValidationError::at(
                        format!("{KEY}::{key_b}"),
                        format!("{key_a} and {key_b} are both {a:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn references(&self) -> Vec<Reference> {
        let grpc = self.protocols.grpc.as_ref().and_then(|g| g.auth.as_ref());
        let http = self.protocols.http.as_ref().and_then(|h| h.auth.as_ref());
        [
            ("protocols::grpc::auth", grpc),
            ("protocols::http::auth", http),
        ]
        .into_iter()
        .filter_map(|(key, auth)| auth.map(|a| a.server_reference(key)))
        .collect()
    }
}

/// Makes `otlp` receivers.
pub struct OtlpReceiverFactory;

impl Factory for OtlpReceiverFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["otlp"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "serves OTLP over gRPC and HTTP (protobuf and JSON) for collectors and SDKs"
    }
}

impl ReceiverFactory for OtlpReceiverFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ReceiverConfig>, ConfigError> {
        Ok(Box::new(from_node::<OtlpReceiverConfig>(node)?))
    }
}

impl ReceiverConfig for OtlpReceiverConfig {
    fn start(
        &self,
        ctx: BuildContext,
        outputs: ReceiverOutputs,
    ) -> StartFuture<'_, JoinHandle<()>> {
        Box::pin(start(self, ctx, outputs))
    }
}

/// Binds every configured protocol (a port in use fails here, naming the
/// endpoint) and spawns the servers. The returned task ends once
/// `ctx.shutdown` is cancelled and in-flight requests are done (bounded by
/// [`SHUTDOWN_GRACE`]); the outputs are dropped then.
pub async fn start(
    c: &OtlpReceiverConfig,
    ctx: BuildContext,
    outputs: ReceiverOutputs,
) -> anyhow::Result<JoinHandle<()>> {
    c.validate()
        .map_err(|e| anyhow::anyhow!("receiver {}: {e}", ctx.id))?;
    let grpc = match &c.protocols.grpc {
        Some(g) => Some(bind(&ctx.id, "grpc", &g.endpoint).await?),
        None => None,
    };
    let http = match &c.protocols.http {
        Some(h) => Some(bind(&ctx.id, "http", &h.endpoint).await?),
        None => None,
    };
    let listeners = Listeners {
        grpc,
        http,
        limits: ServerLimits::default(),
    };
    start_on(c, ctx, outputs, listeners).await
}

async fn bind(id: &ComponentId, protocol: &str, endpoint: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(bind_address(endpoint))
        .await
        .with_context(|| {
            format!("receiver {id}: cannot listen on {protocol} endpoint {endpoint}")
        })?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(receiver = %id, %protocol, %addr, "OTLP receiver listening");
    }
    Ok(listener)
}

/// Bound sockets, one per configured protocol.
struct Listeners {
    grpc: Option<TcpListener>,
    http: Option<TcpListener>,
    /// Connection bounds of both (tests make them small).
    limits: ServerLimits,
}

/// Bounds of the OTLP servers: their connections (per protocol) and, for
/// HTTP, the time a request body may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ServerLimits {
    connections: ConnectionLimits,
    body_read_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            connections: ConnectionLimits {
                max_connections: MAX_CONNECTIONS,
                first_bytes_timeout: FIRST_BYTES_TIMEOUT,
                idle_timeout: CONNECTION_IDLE_TIMEOUT,
            },
            body_read_timeout: BODY_READ_TIMEOUT,
        }
    }
}

async fn start_on(
    c: &OtlpReceiverConfig,
    ctx: BuildContext,
    outputs: ReceiverOutputs,
    listeners: Listeners,
) -> anyhow::Result<JoinHandle<()>> {
    let grpc_metrics = ctx.telemetry.receiver(&ctx.id, "grpc");
    let http_metrics = ctx.telemetry.receiver(&ctx.id, "http");
    let grpc_auth = c.protocols.grpc.as_ref().and_then(|g| g.auth.as_ref());
    let grpc_auth = ServerAuth::resolve(
        grpc_auth,
        &ctx.extensions,
        &ctx.id,
        "protocols::grpc",
        &grpc_metrics,
    )?;
    let http_auth = c.protocols.http.as_ref().and_then(|h| h.auth.as_ref());
    let http_auth = ServerAuth::resolve(
        http_auth,
        &ctx.extensions,
        &ctx.id,
        "protocols::http",
        &http_metrics,
    )?;
    let intake = Arc::new(Intake::new(ctx.id.clone(), outputs));
    // Servers stop on the service's shutdown, or when a later protocol
    // fails to start.
    let stop = ctx.shutdown.child_token();
    // Children of the receiver task: aborted with it (dropping the set).
    let mut servers = JoinSet::new();
    if let (Some(cfg), Some(listener)) = (&c.protocols.grpc, listeners.grpc) {
        match grpc::server(
            cfg,
            listener,
            listeners.limits.connections,
            Arc::clone(&intake),
            (grpc_metrics, grpc_auth),
            stop.clone(),
        )
        .await
        {
            Ok(server) => {
                servers.spawn(server);
            }
            Err(e) => {
                stop.cancel();
                intake.close();
                return Err(e.context(format!("receiver {}: cannot start the gRPC server", ctx.id)));
            }
        }
    }
    if let (Some(cfg), Some(listener)) = (&c.protocols.http, listeners.http) {
        let tls = match &cfg.tls {
            Some(tls) => match crate::tls::ServerTls::load(
                tls,
                &[b"h2", b"http/1.1"],
                format!("receiver {}, protocols::http::tls", ctx.id),
            ) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    stop.cancel();
                    intake.close();
                    return Err(
                        e.context(format!("receiver {}: cannot start the HTTP server", ctx.id))
                    );
                }
            },
            None => None,
        };
        servers.spawn(http::server(
            cfg,
            listener,
            listeners.limits,
            tls,
            Arc::clone(&intake),
            (http_metrics, http_auth),
            stop.clone(),
        ));
    }
    Ok(tokio::spawn(async move {
        // However this task ends (servers done, or aborted by the service's
        // shutdown deadline), the pipeline heads are released.
        let _close = CloseOnDrop(Arc::clone(&intake));
        while let Some(result) = servers.join_next().await {
            if let Err(e) = result {
                tracing::error!(receiver = %intake.id, error = %e, "OTLP server task failed");
            }
        }
    }))
}

/// Closes the intake when dropped.
struct CloseOnDrop(Arc<Intake>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Why data was not taken, in protocol-neutral terms.
#[derive(Debug, Clone, PartialEq)]
enum Rejection {
    /// This receiver is in no pipeline of the signal.
    NoPipeline(Signal),
    /// The pipeline is full or refused for now: retry after the delay.
    Busy {
        reason: String,
        retry_after: Duration,
    },
    /// The pipeline refused the data for good.
    Invalid(String),
    /// The receiver or the pipeline is shutting down.
    ShuttingDown,
}

impl Rejection {
    fn message(&self, id: &ComponentId) -> String {
        match self {
            Rejection::NoPipeline(signal) => {
                format!("receiver {id} is not in any {signal} pipeline; {signal} are not accepted")
            }
            Rejection::Busy { reason, .. } => format!("{reason}; retry later"),
            Rejection::Invalid(reason) => reason.clone(),
            Rejection::ShuttingDown => "the receiver is shutting down".to_string(),
        }
    }
}

/// Where both servers hand their data: the pipeline heads, released at
/// shutdown.
struct Intake {
    id: ComponentId,
    /// `None` once closed.
    outputs: Mutex<Option<ReceiverOutputs>>,
    /// Cancelled on close: requests still waiting for the pipeline give up
    /// (and drop their reference to it) at once.
    closed: CancellationToken,
}

impl Intake {
    fn new(id: ComponentId, outputs: ReceiverOutputs) -> Self {
        Intake {
            id,
            outputs: Mutex::new(Some(outputs)),
            closed: CancellationToken::new(),
        }
    }

    fn consumer(&self, signal: Signal) -> Result<DynConsumer, Rejection> {
        let guard = self.outputs.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = guard.as_ref().ok_or(Rejection::ShuttingDown)?;
        let consumer = match signal {
            Signal::Logs => outputs.logs.as_ref(),
            Signal::Metrics => outputs.metrics.as_ref(),
        };
        consumer.cloned().ok_or(Rejection::NoPipeline(signal))
    }

    /// Drops the pipeline heads, and makes requests still waiting for them
    /// give up.
    fn close(&self) {
        self.closed.cancel();
        let taken = self
            .outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(taken);
    }

    /// Hands `payload` to the pipeline of its signal and counts the outcome.
    /// Invalid items are dropped first; what was dropped is returned, for the
    /// response's `partial_success`.
    async fn submit(
        &self,
        mut payload: Payload,
        metrics: &ReceiverMetrics,
    ) -> Result<Option<sanitize::Dropped>, Rejection> {
        let signal = payload.signal();
        let dropped = sanitize::drop_invalid(&mut payload);
        if let Some(d) = &dropped {
            metrics.refused(signal, usize::try_from(d.items).unwrap_or(usize::MAX));
        }
        let items = payload.item_count();
        let consumer = match self.consumer(signal) {
            Ok(c) => c,
            Err(r) => {
                metrics.refused(signal, items);
                return Err(r);
            }
        };
        // An export without items carries nothing to deliver.
        if items == 0 {
            return Ok(dropped);
        }
        let consumed = tokio::select! {
            biased;
            () = self.closed.cancelled() => None,
            consumed = tokio::time::timeout(CONSUME_TIMEOUT, consumer.consume(Batch::new(payload))) => Some(consumed),
        };
        // Release the pipeline head before answering: once closed, this
        // receiver must not keep the pipeline's input open.
        drop(consumer);
        let Some(consumed) = consumed else {
            metrics.refused(signal, items);
            return Err(Rejection::ShuttingDown);
        };
        let outcome = match consumed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(ConsumeError::Refused {
                reason,
                retry_after,
            })) => Err(Rejection::Busy {
                reason,
                retry_after: retry_after.unwrap_or(DEFAULT_RETRY_DELAY),
            }),
            Ok(Err(ConsumeError::Permanent(reason))) => Err(Rejection::Invalid(reason)),
            Ok(Err(ConsumeError::Shutdown)) => Err(Rejection::ShuttingDown),
            Err(_elapsed) => Err(Rejection::Busy {
                reason: format!(
                    "the pipeline did not take the data within {}s",
                    CONSUME_TIMEOUT.as_secs()
                ),
                retry_after: DEFAULT_RETRY_DELAY,
            }),
        };
        match &outcome {
            Ok(()) => metrics.accepted(signal, items),
            Err(_) => metrics.refused(signal, items),
        }
        outcome.map(|()| dropped)
    }
}

#[cfg(test)]
mod tests;
