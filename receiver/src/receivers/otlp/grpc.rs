//! OTLP/gRPC: the `LogsService` and `MetricsService` of opentelemetry-proto
//! served by tonic, with our own codec ([`super::export_service`]).
//!
//! Size limits: tonic checks the frame's declared length against
//! `max_decoding_message_size` before reading it, and decompresses into a
//! buffer capped at the same limit (tonic `codec/decode.rs`), so a small
//! gzip/zstd frame cannot inflate past the limit; it answers
//! RESOURCE_EXHAUSTED. An oversized frame gets OUT_OF_RANGE from tonic,
//! which OTLP clients retry; [`out_of_range_to_resource_exhausted`] turns it
//! into the RESOURCE_EXHAUSTED that the OTLP spec prescribes (not retried).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::export_service::{Decoded, ExportHandler, ExportServer, Logs, Metrics};
use super::sanitize::Dropped;
use super::{
    GrpcKeepaliveServerParameters, GrpcServerConfig, Intake, Rejection,
    DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_RETRY_DELAY, HTTP2_KEEPALIVE_TIME,
    HTTP2_KEEPALIVE_TIMEOUT, SHUTDOWN_GRACE,
};
use crate::extensions::auth::{GrpcServerAuth, ServerAuth};
use crate::pipeline::Payload;
use crate::server::{Acceptor, ConnectionLimits, TrackRequestsLayer};
use crate::telemetry::ReceiverMetrics;
use crate::tls::incoming::tls_incoming;
use crate::tls::ServerTls;

/// Longest a single call may take (reading, decoding, waiting for the
/// pipeline), so stalled streams do not hold resources forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls served at once on one connection.
const CONCURRENCY_PER_CONNECTION: usize = 64;

/// The HTTP/2 keepalive of the server, with the collector's (grpc-go's)
/// reading of zero: a zero duration means "not set".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keepalive {
    interval: Duration,
    timeout: Duration,
    max_connection_age: Option<Duration>,
    max_connection_age_grace: Option<Duration>,
}

impl Keepalive {
    fn from_config(params: Option<&GrpcKeepaliveServerParameters>) -> Self {
        let set =
            |d: Option<crate::config::GoDuration>| d.map(|d| d.get()).filter(|d| !d.is_zero());
        Keepalive {
            interval: set(params.and_then(|k| k.time)).unwrap_or(HTTP2_KEEPALIVE_TIME),
            timeout: set(params.and_then(|k| k.timeout)).unwrap_or(HTTP2_KEEPALIVE_TIMEOUT),
            max_connection_age: set(params.and_then(|k| k.max_connection_age)),
            max_connection_age_grace: set(params.and_then(|k| k.max_connection_age_grace)),
        }
    }
}

/// Binds the services to `listener`; the returned future serves until
/// `stop`, then lets calls finish for up to [`SHUTDOWN_GRACE`].
pub(super) async fn server(
    cfg: &GrpcServerConfig,
    listener: TcpListener,
    limits: ConnectionLimits,
    intake: Arc<Intake>,
    (metrics, auth): (ReceiverMetrics, Option<ServerAuth>),
    stop: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let max_message_size = cfg.max_recv_msg_size();
    let inflight_budget = cfg.max_inflight_bytes();
    let tls = match &cfg.tls {
        Some(tls) => Some(ServerTls::load(
            tls,
            &[b"h2"],
            format!("receiver {}, protocols::grpc::tls", intake.id),
        )?),
        None => None,
    };
    let handler = Arc::new(Handler {
        intake,
        metrics,
        inflight: Arc::new(Semaphore::new(inflight_budget as usize)),
        inflight_budget,
    });
    let logs = ExportServer::<Logs, _>::new(Arc::clone(&handler), max_message_size);
    let metrics_service = ExportServer::<Metrics, _>::new(handler, max_message_size);

    let keepalive = Keepalive::from_config(
        cfg.keepalive
            .as_ref()
            .and_then(|k| k.server_parameters.as_ref()),
    );
    let mut server = Server::builder()
        .http2_keepalive_interval(Some(keepalive.interval))
        .http2_keepalive_timeout(Some(keepalive.timeout))
        .max_concurrent_streams(
            cfg.max_concurrent_streams
                .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS),
        )
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .timeout(REQUEST_TIMEOUT);
    if let Some(age) = keepalive.max_connection_age {
        server = server.max_connection_age(age);
    }
    if let Some(grace) = keepalive.max_connection_age_grace {
        server = server.max_connection_age_grace(grace);
    }
    let router = server
        .layer(TrackRequestsLayer)
        .layer(tower::util::MapResponseLayer::new(
            out_of_range_to_resource_exhausted,
        ))
        .add_service(GrpcServerAuth::new(logs, auth.clone()))
        .add_service(GrpcServerAuth::new(metrics_service, auth));

    let acceptor = Acceptor::new(listener, limits, stop.clone());
    let serve = match tls {
        // An unfinished handshake must not hold a connection slot.
        Some(tls) => {
            let incoming = tls_incoming(acceptor, tls, limits.first_bytes_timeout);
            router
                .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned())
                .boxed()
        }
        None => router
            .serve_with_incoming_shutdown(acceptor.into_stream(), stop.clone().cancelled_owned())
            .boxed(),
    };
    Ok(async move {
        tokio::pin!(serve);
        let result = tokio::select! {
            result = &mut serve => result,
            _ = stop.cancelled() => match tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("gRPC calls still running {}s after shutdown began; leaving them", SHUTDOWN_GRACE.as_secs());
                    Ok(())
                }
            },
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "OTLP gRPC server failed");
        }
    })
}

/// Rewrites tonic's OUT_OF_RANGE for an oversized message into
/// RESOURCE_EXHAUSTED. Our handlers never return OUT_OF_RANGE, so every such
/// status comes from tonic's decoder; errors travel in the headers
/// (trailers-only response).
fn out_of_range_to_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let out_of_range = (Code::OutOfRange as i32).to_string();
    if response
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == out_of_range.as_bytes())
    {
        response.headers_mut().insert(
            "grpc-status",
            http::HeaderValue::from(Code::ResourceExhausted as i32),
        );
    }
    response
}

struct Handler {
    intake: Arc<Intake>,
    metrics: ReceiverMetrics,
    /// Decoded request bytes held at once (permits are bytes).
    inflight: Arc<Semaphore>,
    inflight_budget: u32,
}

impl Handler {
    /// Hands a decoded request of `encoded_len` bytes on, holding that many
    /// bytes of the in-flight budget meanwhile; a spent budget is UNAVAILABLE
    /// with a retry hint.
    async fn submit(
        &self,
        payload: Payload,
        encoded_len: usize,
    ) -> Result<Option<Dropped>, Status> {
        let bytes = u32::try_from(encoded_len)
            .unwrap_or(u32::MAX)
            .min(self.inflight_budget);
        let Ok(_permit) = self.inflight.try_acquire_many(bytes) else {
            let signal = payload.signal();
            self.metrics.refused(signal, payload.item_count());
            let busy = Rejection::Busy {
                reason: format!(
                    "receiver {} holds its limit of {} bytes of requests in flight",
                    self.intake.id, self.inflight_budget
                ),
                retry_after: DEFAULT_RETRY_DELAY,
            };
            return Err(to_status(&busy, &self.intake.id));
        };
        self.intake
            .submit(payload, &self.metrics)
            .await
            .map_err(|r| to_status(&r, &self.intake.id))
    }
}

fn to_status(rejection: &Rejection, id: &crate::config::ComponentId) -> Status {
    let message = rejection.message(id);
    match rejection {
        Rejection::NoPipeline(_) => Status::unimplemented(message),
        Rejection::Busy { retry_after, .. } => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(*retry_after)),
        ),
        Rejection::Invalid(_) => Status::invalid_argument(message),
        Rejection::ShuttingDown => Status::unavailable(message),
    }
}

impl ExportHandler for Handler {
    async fn export_logs(
        &self,
        request: Decoded<ExportLogsServiceRequest>,
    ) -> Result<ExportLogsServiceResponse, Status> {
        let resource_logs = request.message.resource_logs;
        let dropped = self
            .submit(Payload::Logs(resource_logs), request.encoded_len)
            .await?;
        Ok(ExportLogsServiceResponse {
            partial_success: dropped.map(|d| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(d.items).unwrap_or(i64::MAX),
                error_message: d.message,
            }),
        })
    }

    async fn export_metrics(
        &self,
        request: Decoded<ExportMetricsServiceRequest>,
    ) -> Result<ExportMetricsServiceResponse, Status> {
        let resource_metrics = request.message.resource_metrics;
        let dropped = self
            .submit(Payload::Metrics(resource_metrics), request.encoded_len)
            .await?;
        Ok(ExportMetricsServiceResponse {
            partial_success: dropped.map(|d| ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(d.items).unwrap_or(i64::MAX),
                error_message: d.message,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GoDuration;

    /// Zero keepalive durations mean "not set" (grpc-go): a zero ping
    /// timeout would close every connection at its first ping, a zero
    /// max_connection_age would send GOAWAY at once.
    #[test]
    fn zero_keepalive_durations_are_unset() {
        let zero = Some(GoDuration::from_secs(0));
        let params = GrpcKeepaliveServerParameters {
            time: zero,
            timeout: zero,
            max_connection_age: zero,
            max_connection_age_grace: zero,
        };
        assert_eq!(
            Keepalive::from_config(Some(&params)),
            Keepalive {
                interval: HTTP2_KEEPALIVE_TIME,
                timeout: HTTP2_KEEPALIVE_TIMEOUT,
                max_connection_age: None,
                max_connection_age_grace: None,
            }
        );
        let params = GrpcKeepaliveServerParameters {
            time: Some(GoDuration::from_secs(7)),
            timeout: Some(GoDuration::from_secs(3)),
            max_connection_age: Some(GoDuration::from_secs(60)),
            max_connection_age_grace: None,
        };
        let k = Keepalive::from_config(Some(&params));
        assert_eq!(
            (k.interval, k.timeout, k.max_connection_age),
            (
                Duration::from_secs(7),
                Duration::from_secs(3),
                Some(Duration::from_secs(60))
            )
        );
        assert_eq!(Keepalive::from_config(None).max_connection_age, None);
    }
}
