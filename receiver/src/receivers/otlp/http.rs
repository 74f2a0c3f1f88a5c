//! OTLP/HTTP on hyper: `POST` of protobuf or JSON export requests to the
//! logs and metrics paths, HTTP/1.1 or HTTP/2 (h2c).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::decode::{self, Compression, DecompressError, Encoding};
use super::ServerLimits;
use super::{
    HttpServerConfig, Intake, Rejection, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_RETRY_DELAY,
    HTTP2_KEEPALIVE_TIME, HTTP2_KEEPALIVE_TIMEOUT, SHUTDOWN_GRACE,
};
use crate::extensions::auth::ServerAuth;
use crate::pipeline::{Payload, Signal};
use crate::server::Acceptor;
use crate::telemetry::ReceiverMetrics;
use crate::tls::incoming::handshake;
use crate::tls::ServerTls;

/// Time a client has to send a request's headers (also bounds idle
/// keep-alive connections, since hyper waits for the next head under it).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

type ResponseBody = Full<Bytes>;

struct Routes {
    logs: String,
    metrics: String,
    traces: String,
}

struct State {
    routes: Routes,
    max_body_size: usize,
    intake: Arc<Intake>,
    metrics: ReceiverMetrics,
    /// Request body bytes held at once (permits are bytes).
    inflight: Arc<Semaphore>,
    inflight_budget: u32,
    body_read_timeout: Duration,
    /// Checks each request's credentials before anything else.
    auth: Option<ServerAuth>,
    /// Answers preflights (before `auth`) and marks allowed origins.
    cors: Option<super::cors::Cors>,
}

/// A future that serves `listener` until `stop`, then lets open requests
/// finish for up to [`SHUTDOWN_GRACE`] and closes the remaining connections
/// (dropping the future closes them at once).
pub(super) fn server(
    cfg: &HttpServerConfig,
    listener: TcpListener,
    limits: ServerLimits,
    tls: Option<Arc<ServerTls>>,
    intake: Arc<Intake>,
    (metrics, auth): (ReceiverMetrics, Option<ServerAuth>),
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let handshake_timeout = limits.connections.first_bytes_timeout;
    let inflight_budget = cfg.max_inflight_bytes();
    let state = Arc::new(State {
        routes: Routes {
            logs: super::normalize_path(&cfg.logs_url_path),
            metrics: super::normalize_path(&cfg.metrics_url_path),
            traces: super::normalize_path(&cfg.traces_url_path),
        },
        max_body_size: cfg.max_body_size(),
        intake,
        metrics,
        inflight: Arc::new(Semaphore::new(inflight_budget as usize)),
        inflight_budget,
        body_read_timeout: limits.body_read_timeout,
        auth,
        cors: cfg.cors.as_ref().and_then(super::cors::Cors::new),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEPALIVE_TIME)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(DEFAULT_MAX_CONCURRENT_STREAMS);
    let builder = Arc::new(builder);
    let mut acceptor = Acceptor::new(listener, limits.connections, stop.clone());

    async move {
        let mut connections = JoinSet::new();
        while let Some(conn) = acceptor.accept().await {
            while connections.try_join_next().is_some() {}
            let builder = Arc::clone(&builder);
            let state = Arc::clone(&state);
            let stop = stop.clone();
            let activity = conn.activity();
            let tls = tls.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    // In flight until the response is produced: an idle
                    // connection (no request) is closed after a while.
                    let in_flight = activity.request();
                    async move {
                        let response = handle(&state, req).await;
                        drop(in_flight);
                        Ok::<_, Infallible>(response)
                    }
                });
                match tls {
                    Some(tls) => {
                        // Its own task: a slow handshake holds up no one else.
                        if let Some(conn) = handshake(conn, &tls, handshake_timeout).await {
                            serve_connection(&builder, conn, service, &stop).await;
                        }
                    }
                    None => serve_connection(&builder, conn, service, &stop).await,
                }
            });
        }
        // Stopped: the listener is closed when the acceptor is dropped.
        drop(acceptor);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = connections.len(),
                "OTLP/HTTP requests still running {}s after shutdown began; closing their connections",
                SHUTDOWN_GRACE.as_secs()
            );
            connections.shutdown().await;
        }
    }
}

/// Serves one connection until it closes; on `stop`, lets its open requests
/// finish (graceful shutdown).
async fn serve_connection<IO, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: IO,
    service: S,
    stop: &CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<ResponseBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "OTLP/HTTP connection ended with an error");
    }
}

/// A response carrying a `google.rpc.Status` in the request's encoding, or
/// plain text when the encoding is not known.
fn error_response(
    status: StatusCode,
    code: Code,
    message: &str,
    encoding: Option<Encoding>,
) -> Response<ResponseBody> {
    let (content_type, body) = match encoding {
        Some(e) => (e.content_type(), decode::encode_status(code, message, e)),
        None => (
            "text/plain; charset=utf-8",
            Bytes::from(message.to_string()),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Answers one request: the export's response, or why it was refused.
async fn handle(state: &State, req: Request<Incoming>) -> Response<ResponseBody> {
    let Some(cors) = &state.cors else {
        return answer(state, req).await;
    };
    // A browser's preflight carries no credentials: answered before auth.
    if let Some(preflight) = cors.preflight(req.method(), req.headers()) {
        return preflight;
    }
    let request_headers = req.headers().clone();
    let mut response = answer(state, req).await;
    cors.decorate(&request_headers, &mut response);
    response
}

/// Checks credentials, then the export.
async fn answer(state: &State, req: Request<Incoming>) -> Response<ResponseBody> {
    if let Some(auth) = &state.auth {
        if let Err(unauthorized) = auth.check_http(req.headers()).await {
            return unauthorized;
        }
    }
    match export(state, req).await {
        Ok(response) => response,
        Err(refusal) => *refusal,
    }
}

/// A response that refuses a request: an error or a rejection (boxed, so
/// that the results of the steps of a request stay small).
type Refusal = Box<Response<ResponseBody>>;

/// Checks, reads, decodes and hands on one export request.
async fn export(state: &State, req: Request<Incoming>) -> Result<Response<ResponseBody>, Refusal> {
    let signal = route(&state.routes, &req)?;
    let encoding = request_encoding(&req)?;
    let refuse = Refusals { state, encoding };
    let compression = request_compression(&req, &refuse)?;

    // Refuse before reading the body when nothing would take the data.
    if let Err(rejection) = state.intake.consumer(signal) {
        return Err(refuse.rejection(&rejection));
    }

    // Both shares of the in-flight budget are held until the data is
    // handed on.
    let ReceivedBody {
        bytes,
        reserved,
        permit: _body_share,
    } = read_body(state, req, &refuse).await?;
    let (payload, _output_share) =
        decode_off_reactor(state, signal, compression, bytes, reserved, &refuse).await?;

    match state.intake.submit(payload, &state.metrics).await {
        Ok(dropped) => {
            let mut response = Response::new(Full::new(decode::encode_success(
                signal,
                encoding,
                dropped.as_ref(),
            )));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            );
            Ok(response)
        }
        Err(rejection) => Err(refuse.rejection(&rejection)),
    }
}

/// The signal of the request's path; refused for another path, or for a
/// method other than `POST`.
fn route(routes: &Routes, req: &Request<Incoming>) -> Result<Signal, Refusal> {
    let path = req.uri().path();
    let signal = if path == routes.logs {
        Signal::Logs
    } else if path == routes.metrics {
        Signal::Metrics
    } else if path == routes.traces {
        return Err(Box::new(error_response(
            StatusCode::NOT_FOUND,
            Code::Unimplemented,
            "traces are not supported by this receiver",
            None,
        )));
    } else {
        return Err(Box::new(error_response(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            &format!("unknown path {path}"),
            None,
        )));
    };

    if req.method() != Method::POST {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unimplemented,
            &format!("method {} is not allowed, use POST", req.method()),
            None,
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Err(Box::new(response));
    }
    Ok(signal)
}

/// The request's encoding, by its `Content-Type`.
fn request_encoding(req: &Request<Incoming>) -> Result<Encoding, Refusal> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    content_type
        .and_then(Encoding::from_content_type)
        .ok_or_else(|| {
            Box::new(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::InvalidArgument,
                &format!(
                    "unsupported Content-Type {:?} (use application/x-protobuf or application/json)",
                    content_type.unwrap_or("")
                ),
                None,
            ))
        })
}

/// The request body's compression, by its `Content-Encoding`.
fn request_compression(
    req: &Request<Incoming>,
    refuse: &Refusals<'_>,
) -> Result<Compression, Refusal> {
    let content_encoding = match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str())
    {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return Err(refuse.bad_request("Content-Encoding is not valid text")),
    };
    Compression::from_content_encoding(content_encoding)
        .map_err(|message| refuse.bad_request(&message))
}

/// The error responses to one request, in its encoding.
struct Refusals<'a> {
    state: &'a State,
    encoding: Encoding,
}

impl Refusals<'_> {
    fn bad_request(&self, message: &str) -> Refusal {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            message,
            Some(self.encoding),
        ))
    }

    fn too_large(&self, message: String) -> Refusal {
        Box::new(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::InvalidArgument,
            &message,
            Some(self.encoding),
        ))
    }

    /// The in-flight budget is spent.
    fn busy(&self) -> Refusal {
        let busy = Rejection::Busy {
            reason: format!(
                "receiver {} holds its limit of {} bytes of requests in flight",
                self.state.intake.id, self.state.inflight_budget
            ),
            retry_after: DEFAULT_RETRY_DELAY,
        };
        self.rejection(&busy)
    }

    fn rejection(&self, rejection: &Rejection) -> Refusal {
        Box::new(rejection_response(self.state, rejection, self.encoding))
    }
}

/// A request body read whole, with its share of the in-flight budget.
struct ReceivedBody {
    bytes: Bytes,
    /// Holds `reserved` bytes of the in-flight budget.
    permit: OwnedSemaphorePermit,
    reserved: u32,
}

/// Reads the request body, at most `max_body_size` bytes within the body
/// read timeout.
async fn read_body(
    state: &State,
    req: Request<Incoming>,
    refuse: &Refusals<'_>,
) -> Result<ReceivedBody, Refusal> {
    let limit = state.max_body_size;
    // Hold the body's bytes of the in-flight budget until the data is handed
    // on: by Content-Length when given, else as large as it may grow.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&d| d > limit as u64) {
        // Certain to exceed the limit: say so now rather than read it, or
        // wait for bytes a lying client never sends.
        tokio::spawn(discard(req.into_body(), limit, state.body_read_timeout));
        return Err(refuse.too_large(format!(
            "request body of {declared} bytes is larger than {limit} bytes"
        )));
    }
    let Some((permit, reserved)) = reserve_inflight(state, declared, limit) else {
        return Err(refuse.busy());
    };
    let read = tokio::time::timeout(
        state.body_read_timeout,
        Limited::new(req.into_body(), limit).collect(),
    )
    .await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(refuse.too_large(format!("request body is larger than {limit} bytes")));
        }
        Ok(Err(e)) => return Err(refuse.bad_request(&format!("cannot read the request body: {e}"))),
        Err(_) => {
            // 503 with Retry-After, not 408: OTLP clients retry only
            // 429/502/503/504, and a slow link deserves another try.
            let slow = Rejection::Busy {
                reason: format!(
                    "request body not received within {:?}",
                    state.body_read_timeout
                ),
                retry_after: DEFAULT_RETRY_DELAY,
            };
            let mut response = refuse.rejection(&slow);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(response);
        }
    };
    Ok(ReceivedBody {
        bytes,
        permit,
        reserved,
    })
}

/// Decompresses and decodes a body whose read holds `reserved` bytes of the
/// in-flight budget; the output's share of the budget comes with the data.
async fn decode_off_reactor(
    state: &State,
    signal: Signal,
    compression: Compression,
    body: Bytes,
    reserved: u32,
    refuse: &Refusals<'_>,
) -> Result<(Payload, OutputReservation), Refusal> {
    let (encoding, limit) = (refuse.encoding, state.max_body_size);
    // Decompressing and decoding take CPU time; keep them off the reactor.
    // The decompressed bytes take their own share of the in-flight budget,
    // held (with the body's) until the data is handed on.
    let mut output = OutputReservation::new(
        Arc::clone(&state.inflight),
        state.inflight_budget - reserved,
    );
    let decoded = tokio::task::spawn_blocking(move || {
        let decoded = decode::decode_body(signal, encoding, compression, body, limit, &mut |n| {
            output.grow(n)
        });
        decoded.map(|payload| (payload, output))
    })
    .await;
    match decoded {
        Ok(Ok(decoded)) => Ok(decoded),
        Ok(Err(DecompressError::TooLarge)) => Err(refuse.too_large(format!(
            "decompressed request body is larger than {limit} bytes"
        ))),
        Ok(Err(DecompressError::Busy)) => Err(refuse.busy()),
        Ok(Err(DecompressError::Corrupt(message))) => Err(refuse.bad_request(&message)),
        Err(e) => {
            tracing::error!(error = %e, "OTLP/HTTP decoding task failed");
            Err(Box::new(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Internal,
                "internal error while decoding the request",
                Some(encoding),
            )))
        }
    }
}

/// Reads and drops up to `max` bytes of a body answered without being read,
/// for at most `timeout`. A client that writes its whole body before it
/// reads the answer would otherwise have the connection reset under it
/// (closing a socket with unread data sends a reset) and never see the
/// answer. Nothing is kept, so this holds no budget.
async fn discard(mut body: Incoming, max: usize, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        let mut seen = 0usize;
        while seen <= max {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
                _ => return,
            }
        }
    })
    .await;
}

/// Takes `declared` bytes (or `limit` when unknown; at most the whole budget)
/// of the in-flight budget, and says how many; `None` when the budget is
/// spent.
fn reserve_inflight(
    state: &State,
    declared: Option<u64>,
    limit: usize,
) -> Option<(OwnedSemaphorePermit, u32)> {
    let wanted = declared.unwrap_or(limit as u64).min(limit as u64);
    let bytes = u32::try_from(wanted)
        .unwrap_or(u32::MAX)
        .min(state.inflight_budget);
    let permit = Arc::clone(&state.inflight)
        .try_acquire_many_owned(bytes)
        .ok()?;
    Some((permit, bytes))
}

/// The in-flight budget taken by a body's decompressed bytes, grown as they
/// are written. At most `cap` bytes are taken (the budget less the body's
/// own share), so that a request larger than the budget alone still
/// passes, as its body does.
struct OutputReservation {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    held_bytes: u32,
    cap: u32,
}

impl OutputReservation {
    fn new(budget: Arc<Semaphore>, cap: u32) -> Self {
        OutputReservation {
            budget,
            held: None,
            held_bytes: 0,
            cap,
        }
    }

    /// Room for `bytes` of output; `false` when the budget cannot give it now.
    fn grow(&mut self, bytes: usize) -> bool {
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.cap);
        if wanted <= self.held_bytes {
            return true;
        }
        match Arc::clone(&self.budget).try_acquire_many_owned(wanted - self.held_bytes) {
            Ok(more) => {
                match &mut self.held {
                    Some(held) => held.merge(more),
                    None => self.held = Some(more),
                }
                self.held_bytes = wanted;
                true
            }
            Err(_) => false,
        }
    }
}

fn rejection_response(
    state: &State,
    rejection: &Rejection,
    encoding: Encoding,
) -> Response<ResponseBody> {
    let message = rejection.message(&state.intake.id);
    match rejection {
        Rejection::NoPipeline(_) => error_response(
            StatusCode::NOT_FOUND,
            Code::Unimplemented,
            &message,
            Some(encoding),
        ),
        Rejection::Busy { retry_after, .. } => {
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                &message,
                Some(encoding),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(*retry_after)),
            );
            response
        }
        Rejection::Invalid(_) => error_response(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            &message,
            Some(encoding),
        ),
        Rejection::ShuttingDown => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            &message,
            Some(encoding),
        ),
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
fn retry_after_seconds(delay: Duration) -> u64 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    secs.max(1)
}
