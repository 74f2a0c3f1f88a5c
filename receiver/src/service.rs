//! The running agent: own telemetry, extensions, pipelines, signals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, MetricReader, MetricsLevel, TelemetryConfig};
use crate::extensions::Extensions;
use crate::pipeline::topology::Topology;
use crate::self_protection;
use crate::server::{Acceptor, ConnectionLimits};
use crate::telemetry::Telemetry;

/// Runs the agent until `stop` resolves (SIGINT/SIGTERM in `main`), then
/// drains and flushes within `service.shutdown_timeout`.
pub async fn run(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if let Some(adj) = config.service.oom_score_adj {
        match self_protection::set_oom_score_adj(adj) {
            Ok(()) => tracing::info!(oom_score_adj = adj, "lowered own OOM score"),
            Err(e) => {
                tracing::warn!(oom_score_adj = adj, error = %e, "could not set own oom_score_adj; the agent is not protected from the OOM killer")
            }
        }
    }

    let background = CancellationToken::new();
    let telemetry = start_telemetry(&config.service.telemetry, &background).await?;

    let mut extensions = Extensions::default();
    let mut extension_tasks: Vec<JoinHandle<()>> = Vec::new();
    for id in &config.service.extensions {
        let Some(cfg) = config.extensions.get(id) else {
            anyhow::bail!("extension {id} is not configured");
        };
        if let Some(task) = cfg
            .start(id, &mut extensions, background.clone())
            .await
            .with_context(|| format!("failed to start extension {id}"))?
        {
            extension_tasks.push(task);
        }
    }
    let extensions = Arc::new(extensions);

    let topology =
        Topology::start(&config, Arc::clone(&telemetry), Arc::clone(&extensions)).await?;
    if config.service.drop_capabilities {
        drop_start_up_capabilities(&config).await;
    }
    extensions.health.set_ready(true);
    tracing::info!(
        pipelines = config.service.pipelines.len(),
        "everything is ready; begin running and processing data"
    );
    let code_pages = tokio::spawn({
        let background = background.clone();
        async move {
            release_start_up_code();
            // Again once the first scrapes, exports and reads have run.
            tokio::select! {
                () = background.cancelled() => {}
                () = tokio::time::sleep(crate::code_pages::RELEASE_AGAIN_AFTER) => release_start_up_code(),
            }
        }
    });

    stop.await;
    tracing::info!("received shutdown request; draining pipelines");
    extensions.health.set_ready(false);
    topology
        .shutdown(config.service.shutdown_timeout.get())
        .await;
    background.cancel();
    code_pages.abort();
    for t in extension_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    telemetry.shutdown();
    tracing::info!("shutdown complete");
    Ok(())
}

/// See [`crate::code_pages`] (reads of the agent's own `/proc/self/maps`
/// and `pagemap`: under a millisecond).
fn release_start_up_code() {
    match crate::code_pages::release_start_up_code() {
        Ok(r) => tracing::debug!(
            resident_before_kib = r.resident_before / 1024,
            resident_after_kib = r.resident_after / 1024,
            "gave back the page mappings of start-up code and data"
        ),
        Err(e) => {
            tracing::debug!(error = %e, "could not give back the page mappings of start-up code")
        }
    }
}

/// Gives up every capability the configured receivers do not need while
/// running (eBPF is loaded and attached, tracefs mounted, the OOM score
/// set by now). A failure is a warning: the agent works on, with more.
async fn drop_start_up_capabilities(config: &Config) {
    let receiver_types: Vec<String> = config
        .service
        .pipelines
        .values()
        .flat_map(|p| &p.receivers)
        .map(|id| id.type_name.clone())
        .collect();
    let keep = crate::privileges::runtime_mask(&receiver_types);
    match tokio::task::spawn_blocking(move || crate::privileges::drop_all_but(keep)).await {
        Ok(Ok(d)) if d.dropped != 0 => tracing::info!(
            kept = ?crate::privileges::mask_names(d.kept),
            dropped = d.dropped.count_ones(),
            threads = d.threads,
            "gave up the capabilities only start-up needed"
        ),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not give up start-up capabilities; running with them")
        }
        Err(e) => tracing::warn!(error = %e, "could not give up start-up capabilities"),
    }
}

/// The agent's own metrics: one SDK meter provider whose readers are
/// `service.telemetry.metrics.readers` (a `pull` reader is a Prometheus
/// endpoint, where a port already taken is a warning, not fatal; a
/// `periodic` reader pushes OTLP), with the service resource.
async fn start_telemetry(
    cfg: &TelemetryConfig,
    background: &CancellationToken,
) -> anyhow::Result<Arc<Telemetry>> {
    if cfg.metrics.address.is_some() {
        if cfg.metrics.readers.is_some() {
            tracing::warn!(
                "service::telemetry::metrics::address is deprecated and ignored here: readers is set (as in the collector)"
            );
        } else {
            tracing::warn!(
                "service::telemetry::metrics::address is deprecated (as in the collector); use service::telemetry::metrics::readers with a pull prometheus exporter (host, port)"
            );
        }
    }
    if cfg.metrics.otlp.is_some() && cfg.metrics.readers.is_some() {
        tracing::warn!(
            "service::telemetry::metrics::otlp is ignored: readers is set (push with a periodic reader instead)"
        );
    }
    if cfg.metrics.level == MetricsLevel::None {
        tracing::info!(
            "internal metrics telemetry disabled (service::telemetry::metrics::level: none)"
        );
        return Ok(Telemetry::noop());
    }
    let mut builder = SdkMeterProvider::builder()
        .with_resource(service_resource(&cfg.resource))
        .with_view(crate::telemetry::own_series_limit);
    let mut endpoints = Vec::new();
    for reader in cfg.metrics.effective_readers() {
        match reader {
            MetricReader::Pull { pull } => {
                let registry = prometheus::Registry::new();
                let exporter = crate::telemetry::prometheus_reader(registry.clone())
                    .context("building the Prometheus exporter")?;
                builder = builder.with_reader(exporter);
                endpoints.push((pull.exporter.prometheus.bind_address(), registry));
            }
            MetricReader::Periodic { periodic } => {
                builder = builder.with_reader(periodic_reader(&periodic)?);
            }
        }
    }
    let telemetry = Telemetry::new(builder.build(), cfg.metrics.level);
    for (address, registry) in endpoints {
        serve_prometheus(&address, registry, background.clone()).await;
    }
    Ok(telemetry)
}

/// An OTLP push every `interval`, over gRPC, or HTTP with protobuf or JSON
/// bodies (opentelemetry-otlp's exporters; the HTTP one's blocking client
/// runs on the reader's own thread).
fn periodic_reader(
    periodic: &crate::config::PeriodicReader,
) -> anyhow::Result<opentelemetry_sdk::metrics::PeriodicReader<opentelemetry_otlp::MetricExporter>>
{
    use crate::config::OtlpProtocol;
    let otlp = &periodic.exporter.otlp;
    let exporter = match otlp.protocol {
        OtlpProtocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for header in &otlp.headers {
                let name = tonic::metadata::MetadataKey::from_bytes(
                    header.name.to_ascii_lowercase().as_bytes(),
                )
                .with_context(|| format!("header name {:?}", header.name))?;
                let value = header
                    .value
                    .parse()
                    .with_context(|| format!("value of header {:?}", header.name))?;
                metadata.insert(name, value);
            }
            let mut exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(otlp.endpoint_url())
                .with_metadata(metadata);
            if let Some(timeout) = otlp.timeout {
                exporter = exporter.with_timeout(timeout.0.get());
            }
            exporter.build()
        }
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            let protocol = if otlp.protocol == OtlpProtocol::HttpJson {
                opentelemetry_otlp::Protocol::HttpJson
            } else {
                opentelemetry_otlp::Protocol::HttpBinary
            };
            let headers = otlp
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            let mut exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(otlp.http_metrics_url())
                .with_headers(headers);
            if let Some(timeout) = otlp.timeout {
                exporter = exporter.with_timeout(timeout.0.get());
            }
            exporter.build()
        }
    }
    .context("building the OTLP exporter of own metrics")?;
    Ok(PeriodicReader::builder(exporter)
        .with_interval(periodic.interval.0.get())
        .build())
}

/// The resource of the own metrics, as the collector builds it:
/// `service.name`, `service.version` and a random `service.instance.id`
/// (each removed by a `null` in `telemetry.resource`), then the configured
/// attributes.
fn service_resource(configured: &crate::config::TelemetryResource) -> opentelemetry_sdk::Resource {
    let mut attributes: std::collections::BTreeMap<String, String> = [
        ("service.name", "oomscope".to_string()),
        ("service.version", env!("CARGO_PKG_VERSION").to_string()),
        ("service.instance.id", random_instance_id()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (key, value) in &configured.0 {
        match value {
            Some(v) => attributes.insert(key.clone(), v.clone()),
            None => attributes.remove(key),
        };
    }
    opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(
            attributes
                .into_iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k, v)),
        )
        .build()
}

/// A random UUID (v4) from the kernel, as the collector's default instance
/// id; a time-and-pid id when the kernel's is unreadable.
fn random_instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| s.len() == 36)
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{:x}-{}", nanos, std::process::id())
        })
}

async fn serve_prometheus(address: &str, registry: prometheus::Registry, stop: CancellationToken) {
    let listener = match address.parse::<SocketAddr>() {
        Ok(addr) => TcpListener::bind(addr).await,
        Err(_) => TcpListener::bind(address).await,
    };
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(address, error = %e, "cannot serve own metrics on this address; going on without them");
            return;
        }
    };
    tracing::info!(address, "serving own metrics at /metrics");
    let registry = Arc::new(registry);
    // The servers' shared acceptor: a connection cap (beyond it, connections
    // are closed at once), backoff on accept errors, and timeouts for silent
    // and idle connections.
    let mut acceptor = Acceptor::new(listener, PROMETHEUS_CONNECTION_LIMITS, stop.clone());
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(PROMETHEUS_HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Some(conn) = acceptor.accept().await {
            while connections.try_join_next().is_some() {}
            let registry = Arc::clone(&registry);
            let builder = Arc::clone(&builder);
            let stop = stop.clone();
            let activity = conn.activity();
            connections.spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let _in_flight = activity.request();
                    let response = metrics_response(&req, &registry);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let serve = builder.serve_connection(TokioIo::new(conn), svc);
                tokio::pin!(serve);
                tokio::select! {
                    _ = serve.as_mut() => {}
                    () = stop.cancelled() => {
                        serve.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(PROMETHEUS_SHUTDOWN_GRACE, serve).await;
                    }
                }
            });
        }
        // Scrapes in progress get a short grace (each connection task
        // bounds itself); dropping the set then closes what is left.
        let _ = tokio::time::timeout(PROMETHEUS_SHUTDOWN_GRACE * 2, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
    });
}

/// Bounds of the own-metrics endpoint: scrapers are few.
const PROMETHEUS_CONNECTION_LIMITS: ConnectionLimits = ConnectionLimits::with_max_connections(64);
/// Time a scraper has to send a request's headers (also bounds idle
/// HTTP/1 keep-alive connections).
const PROMETHEUS_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a scrape in progress gets to finish at shutdown.
const PROMETHEUS_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

fn metrics_response<B>(req: &Request<B>, registry: &prometheus::Registry) -> Response<Full<Bytes>> {
    use prometheus::Encoder as _;
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; own metrics are at /metrics\n",
        );
    }
    let encoder = prometheus::TextEncoder::new();
    let mut buf = Vec::with_capacity(16 * 1024);
    if let Err(e) = encoder.encode(&registry.gather(), &mut buf) {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding metrics: {e}\n"),
        );
    }
    Response::builder()
        .header(http::header::CONTENT_TYPE, encoder.format_type())
        .body(Full::new(Bytes::from(buf)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r
}
