//! The `otlp` receiver: OTLP logs and metrics over gRPC (port 4317) and
//! HTTP (port 4318, protobuf or JSON), as the collector's `otlpreceiver`.
//!
//! Data is handed on unchanged (internal data is the OTLP model). Traces are
//! not accepted: gRPC answers UNIMPLEMENTED, HTTP 404. Back-pressure from the
//! pipeline reaches the sender as a retryable error with a retry hint
//! (gRPC UNAVAILABLE with `google.rpc.RetryInfo`, HTTP 503 with `Retry-After`).

mod decode;
mod grpc;
mod http;
mod listener;
mod sanitize;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Deserializer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ReceiverOutputs;
use crate::component::BuildContext;
use crate::config::{ComponentId, GoDuration};
use crate::pipeline::{Batch, ConsumeError, DynConsumer, Payload, Signal};
use crate::telemetry::ReceiverMetrics;

/// The collector's error when no protocol is configured.
const NO_PROTOCOL_ERROR: &str = "must specify at least one protocol when using the OTLP receiver";

/// How long a request may wait for a full pipeline to take its data before
/// the sender is told to retry later.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry hint sent with a refusal when the pipeline gives none.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long in-flight requests may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Open connections per protocol; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// TCP keepalive, so connections to vanished peers are closed.
const TCP_KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 4;
/// HTTP/2 pings (both protocols), so half-open connections are detected.
const HTTP2_KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// HTTP/2 streams per connection unless configured.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;

const MIB: u64 = 1024 * 1024;
/// Largest accepted `max_recv_msg_size_mib` (gRPC frames carry a u32 length).
const MAX_RECV_MSG_SIZE_MIB_LIMIT: u64 = 2047;

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
    /// OTLP/gRPC server; off unless present.
    #[serde(deserialize_with = "present_with_defaults")]
    pub grpc: Option<GrpcServerConfig>,
    /// OTLP/HTTP server; off unless present.
    #[serde(deserialize_with = "present_with_defaults")]
    pub http: Option<HttpServerConfig>,
}

/// A present key enables its section; `null` means "with defaults".
fn present_with_defaults<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(
        Option::<T>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

/// `protocols.grpc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcServerConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest accepted message, in MiB, after decompression; 0 means the
    /// gRPC default of 4.
    pub max_recv_msg_size_mib: u64,
    /// Concurrent streams per HTTP/2 connection (default 100).
    pub max_concurrent_streams: Option<u32>,
    /// HTTP/2 keepalive of the server.
    pub keepalive: Option<GrpcKeepaliveConfig>,
    /// Serve TLS instead of plaintext.
    pub tls: Option<TlsServerConfig>,
}

impl Default for GrpcServerConfig {
    fn default() -> Self {
        GrpcServerConfig {
            endpoint: "127.0.0.1:4317".to_string(),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: None,
            keepalive: None,
            tls: None,
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
    /// Idle time after which the server pings the client (default 60s).
    pub time: Option<GoDuration>,
    /// How long to wait for the ping's answer before closing (default 20s).
    pub timeout: Option<GoDuration>,
    /// Age after which a connection is asked to close (default: none).
    pub max_connection_age: Option<GoDuration>,
    /// Extra time a connection asked to close gets before it is closed.
    pub max_connection_age_grace: Option<GoDuration>,
}

/// `tls` of a server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsServerConfig {
    /// PEM certificate chain of the server.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the server.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, clients must present a certificate
    /// signed by one of them (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

/// `protocols.http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServerConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest accepted request body in bytes, both as sent and after
    /// decompression; 0 means the default of 20 MiB.
    pub max_request_body_size: u64,
    /// Path that takes logs.
    pub logs_url_path: String,
    /// Path that takes metrics.
    pub metrics_url_path: String,
    /// Path of traces; recognised so that it answers 404 "not supported".
    pub traces_url_path: String,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            endpoint: "127.0.0.1:4318".to_string(),
            max_request_body_size: 20 * MIB,
            logs_url_path: "/v1/logs".to_string(),
            metrics_url_path: "/v1/metrics".to_string(),
            traces_url_path: "/v1/traces".to_string(),
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
}

/// Paths are normalised to start with `/`, as in the collector.
fn normalize_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

fn validate_endpoint(key: &str, endpoint: &str) -> Result<(), String> {
    let port = endpoint
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(_))) if !host.is_empty() => Ok(()),
        _ => Err(format!(
            "{key}: endpoint {endpoint:?} must be host:port (for example 127.0.0.1:4317)"
        )),
    }
}

impl OtlpReceiverConfig {
    pub fn validate(&self) -> Result<(), String> {
        let ProtocolsConfig { grpc, http } = &self.protocols;
        if grpc.is_none() && http.is_none() {
            return Err(NO_PROTOCOL_ERROR.to_string());
        }
        if let Some(g) = grpc {
            validate_endpoint("protocols::grpc", &g.endpoint)?;
            if g.max_recv_msg_size_mib > MAX_RECV_MSG_SIZE_MIB_LIMIT {
                return Err(format!(
                    "protocols::grpc: max_recv_msg_size_mib {} is above the limit of {MAX_RECV_MSG_SIZE_MIB_LIMIT}",
                    g.max_recv_msg_size_mib
                ));
            }
            if g.max_concurrent_streams == Some(0) {
                return Err(
                    "protocols::grpc: max_concurrent_streams must be greater than zero".to_string(),
                );
            }
            if let Some(tls) = &g.tls {
                if tls.cert_file.is_none() || tls.key_file.is_none() {
                    return Err(
                        "protocols::grpc::tls: cert_file and key_file must both be set".to_string(),
                    );
                }
            }
        }
        if let Some(h) = http {
            validate_endpoint("protocols::http", &h.endpoint)?;
            let paths = [
                ("logs_url_path", normalize_path(&h.logs_url_path)),
                ("metrics_url_path", normalize_path(&h.metrics_url_path)),
                ("traces_url_path", normalize_path(&h.traces_url_path)),
            ];
            for (i, (key_a, a)) in paths.iter().enumerate() {
                if let Some((key_b, _)) = paths[i + 1..].iter().find(|(_, b)| b == a) {
                    return Err(format!(
                        "protocols::http: {key_a} and {key_b} are both {a:?}"
                    ));
                }
            }
        }
        Ok(())
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
    start_on(c, ctx, outputs, Listeners { grpc, http }).await
}

async fn bind(id: &ComponentId, protocol: &str, endpoint: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(endpoint).await.with_context(|| {
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
}

async fn start_on(
    c: &OtlpReceiverConfig,
    ctx: BuildContext,
    outputs: ReceiverOutputs,
    listeners: Listeners,
) -> anyhow::Result<JoinHandle<()>> {
    let intake = Arc::new(Intake::new(ctx.id.clone(), outputs));
    // Servers stop on the service's shutdown, or when a later protocol
    // fails to start.
    let stop = ctx.shutdown.child_token();
    let mut servers = Vec::new();
    if let (Some(cfg), Some(listener)) = (&c.protocols.grpc, listeners.grpc) {
        let metrics = ctx.telemetry.receiver(&ctx.id, "grpc");
        match grpc::spawn(cfg, listener, Arc::clone(&intake), metrics, stop.clone()).await {
            Ok(task) => servers.push(task),
            Err(e) => {
                stop.cancel();
                return Err(e.context(format!("receiver {}: cannot start the gRPC server", ctx.id)));
            }
        }
    }
    if let (Some(cfg), Some(listener)) = (&c.protocols.http, listeners.http) {
        let metrics = ctx.telemetry.receiver(&ctx.id, "http");
        servers.push(http::spawn(
            cfg,
            listener,
            Arc::clone(&intake),
            metrics,
            stop.clone(),
        ));
    }
    Ok(tokio::spawn(async move {
        for server in servers {
            if let Err(e) = server.await {
                tracing::error!(receiver = %intake.id, error = %e, "OTLP server task failed");
            }
        }
        // Requests still running past the grace period lose their pipeline.
        intake.close();
    }))
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
}

impl Intake {
    fn new(id: ComponentId, outputs: ReceiverOutputs) -> Self {
        Intake {
            id,
            outputs: Mutex::new(Some(outputs)),
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

    /// Drops the pipeline heads.
    fn close(&self) {
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
        let outcome = match tokio::time::timeout(
            CONSUME_TIMEOUT,
            consumer.consume(Batch::new(payload)),
        )
        .await
        {
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
