//! The `health_check` extension: an HTTP endpoint that tells whether the
//! agent's pipelines are running, with the collector's answers:
//! `GET <path>` gives 200 `{"status":"Server available","upSince":...,"uptime":...}`
//! once every pipeline runs, 503 `{"status":"Server not available"}` before
//! that and during shutdown; any other path gives 404. HTTP/1 only, at most
//! 64 connections at once (more are closed at once).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::{
    ComponentConfig, ExtensionConfig, ExtensionFactory, Factory, Stability, StartFuture,
};
use crate::config::{from_node, ComponentId, ConfigError, Node, ValidationError};
use crate::extensions::Extensions;
use crate::server::{Acceptor, ConnectionLimits};

/// How long one connection may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more are closed at once (see
/// [`Acceptor`]).
const CONNECTION_LIMITS: ConnectionLimits = ConnectionLimits::with_max_connections(64);

/// `health_check` configuration, with the collector's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// The path that answers; others get 404.
    pub path: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: "127.0.0.1:13133".to_string(),
            path: "/".to_string(),
        }
    }
}

impl ComponentConfig for HealthCheckConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.endpoint.trim().is_empty() {
            return Err(ValidationError::at("endpoint", "must not be empty"));
        }
        if !self.path.starts_with('/') {
            return Err(ValidationError::at(
                "path",
                format!("{:?} must start with /", self.path),
            ));
        }
        Ok(())
    }
}

/// Makes `health_check` extensions.
pub struct HealthCheckExtensionFactory;

impl Factory for HealthCheckExtensionFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["health_check"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "serves the agent's health over HTTP, as the collector's health_check"
    }
}

impl ExtensionFactory for HealthCheckExtensionFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExtensionConfig>, ConfigError> {
        Ok(Box::new(from_node::<HealthCheckConfig>(node)?))
    }
}

impl ExtensionConfig for HealthCheckConfig {
    fn start<'a>(
        &'a self,
        _id: &'a ComponentId,
        host: &'a mut Extensions,
        shutdown: CancellationToken,
    ) -> StartFuture<'a, Option<JoinHandle<()>>> {
        let health = host.health.clone();
        Box::pin(async move { start(self, health, shutdown).await.map(Some) })
    }
}

/// Whether the agent is ready: set once every pipeline runs, cleared at
/// shutdown. Cheap to clone; every clone shares the state.
#[derive(Default, Clone)]
pub struct HealthState(Arc<HealthInner>);

#[derive(Default)]
struct HealthInner {
    ready: AtomicBool,
    /// Unix time in nanoseconds of the last change to ready.
    since_unix_nanos: AtomicI64,
}

impl std::fmt::Debug for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthState")
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl HealthState {
    pub fn set_ready(&self, ready: bool) {
        let was = self.0.ready.swap(ready, Ordering::AcqRel);
        if ready && !was {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            self.0.since_unix_nanos.store(now, Ordering::Release);
        }
    }

    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }

    fn up_since_nanos(&self) -> i64 {
        self.0.since_unix_nanos.load(Ordering::Acquire)
    }
}

/// Binds `cfg.endpoint` and serves until `shutdown` is cancelled.
pub async fn start(
    cfg: &HealthCheckConfig,
    state: HealthState,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(&cfg.endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("health_check: cannot listen on {}: {e}", cfg.endpoint))?;
    let local = listener.local_addr().ok();
    tracing::info!(endpoint = ?local, path = %cfg.path, "health_check listening");
    let path: Arc<str> = Arc::from(cfg.path.as_str());
    Ok(tokio::spawn(serve(
        listener,
        path,
        state,
        shutdown,
        CONNECTION_LIMITS,
    )))
}

/// The address `start` bound, for tests that listen on port 0.
#[cfg(test)]
async fn start_on_free_port(
    path: &str,
    state: HealthState,
    shutdown: CancellationToken,
) -> anyhow::Result<(std::net::SocketAddr, JoinHandle<()>)> {
    start_limited(path, state, shutdown, CONNECTION_LIMITS.max_connections).await
}

#[cfg(test)]
async fn start_limited(
    path: &str,
    state: HealthState,
    shutdown: CancellationToken,
    max_connections: usize,
) -> anyhow::Result<(std::net::SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let limits = ConnectionLimits {
        max_connections,
        ..CONNECTION_LIMITS
    };
    let task = tokio::spawn(serve(listener, Arc::from(path), state, shutdown, limits));
    Ok((addr, task))
}

async fn serve(
    listener: TcpListener,
    path: Arc<str>,
    state: HealthState,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
) {
    let mut acceptor = Acceptor::new(listener, limits, shutdown.clone());
    while let Some(conn) = acceptor.accept().await {
        let path = Arc::clone(&path);
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let peer = conn.peer();
            let activity = conn.activity();
            let service = service_fn(move |req| {
                // In flight while answered: the idle timeout closes only
                // connections with no request.
                let _in_flight = activity.request();
                let response = respond(&req, &path, &state);
                async move { Ok::<_, Infallible>(response) }
            });
            // HTTP/1 only: probes (kubelet, load balancers, curl) speak it,
            // and HTTP/2 would let one connection multiplex many requests.
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(conn), service);
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(?peer, error = %e, "health_check: connection error");
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn respond(req: &Request<Incoming>, path: &str, state: &HealthState) -> Response<Full<Bytes>> {
    if req.uri().path() != path {
        return json(
            StatusCode::NOT_FOUND,
            r#"{"status":"Not found"}"#.to_string(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"status":"Method not allowed"}"#.to_string(),
        );
    }
    if !state.is_ready() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"Server not available"}"#.to_string(),
        );
    }
    let since = state.up_since_nanos();
    let up_since = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(since))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let uptime = Duration::from_nanos(
        u64::try_from(now.saturating_sub(u128::try_from(since).unwrap_or(0))).unwrap_or(u64::MAX),
    );
    let body = serde_json::json!({
        "status": "Server available",
        "upSince": up_since,
        "uptime": format!("{uptime:?}"),
    });
    json(StatusCode::OK, body.to_string())
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 request over a fresh connection; returns (status, body).
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        tokio::time::timeout(crate::test_support::WAIT, s.read_to_end(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn answers_200_503_and_404_like_the_collector() {
        let state = HealthState::default();
        let shutdown = CancellationToken::new();
        let (addr, task) = start_on_free_port("/health", state.clone(), shutdown.clone())
            .await
            .expect("start");

        let (status, body) = get(addr, "/health").await;
        assert_eq!(
            (status, body.as_str()),
            (503, r#"{"status":"Server not available"}"#)
        );

        state.set_ready(true);
        let (status, body) = get(addr, "/health").await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["status"], "Server available");
        let up_since = v["upSince"].as_str().unwrap_or_default();
        // RFC 3339 in UTC, e.g. 2026-05-20T10:11:12.123456789Z
        assert!(
            up_since.len() >= 20 && up_since.as_bytes()[10] == b'T' && up_since.ends_with('Z'),
            "{up_since}"
        );

        let (status, _) = get(addr, "/other").await;
        assert_eq!(status, 404);

        state.set_ready(false);
        assert_eq!(get(addr, "/health").await.0, 503);

        shutdown.cancel();
        tokio::time::timeout(crate::test_support::WAIT, task)
            .await
            .expect("stops on shutdown")
            .expect("join");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "listener closed"
        );
    }

    #[tokio::test]
    async fn start_binds_the_endpoint_and_names_it_on_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = taken.local_addr().expect("addr").to_string();
        let cfg = HealthCheckConfig {
            endpoint: endpoint.clone(),
            path: "/".to_string(),
        };
        let err = start(&cfg, HealthState::default(), CancellationToken::new())
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(&endpoint), "{err}");
        drop(taken);

        let free = HealthCheckConfig {
            endpoint: "127.0.0.1:0".to_string(),
            path: "/".to_string(),
        };
        let shutdown = CancellationToken::new();
        let task = start(&free, HealthState::default(), shutdown.clone())
            .await
            .expect("start");
        shutdown.cancel();
        task.await.expect("join");
    }

    #[tokio::test]
    async fn speaks_http1_only() {
        let shutdown = CancellationToken::new();
        let (addr, _task) = start_on_free_port("/", HealthState::default(), shutdown.clone())
            .await
            .expect("start");
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The HTTP/2 connection preface (prior knowledge), then an empty SETTINGS frame.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(crate::test_support::WAIT, s.read_to_end(&mut buf)).await;
        assert!(
            buf.is_empty() || buf.starts_with(b"HTTP/1.1 "),
            "answered HTTP/2: {buf:?}"
        );
        shutdown.cancel();
    }

    /// Beyond the cap, connections are closed at once (by the shared
    /// acceptor) instead of waiting; once the open ones close, requests are
    /// served again.
    #[tokio::test]
    async fn connections_beyond_the_cap_are_refused_until_one_closes() {
        let wait = crate::test_support::WAIT;
        let shutdown = CancellationToken::new();
        let (addr, _task) = start_limited("/", HealthState::default(), shutdown.clone(), 1)
            .await
            .expect("start");
        // Holds the only slot (sends nothing). Connections are accepted in
        // order, so it has the slot before the next one is looked at.
        let holder = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Refused: the connect fails with the reset, or reads see the close.
        if let Ok(mut refused) = tokio::net::TcpStream::connect(addr).await {
            let _ = refused
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            let r = tokio::time::timeout(wait, refused.read_to_end(&mut buf))
                .await
                .expect("refused promptly, not left waiting");
            assert!(
                matches!(r, Ok(0) | Err(_)),
                "served beyond the cap: {r:?} {buf:?}"
            );
        }
        drop(holder);
        // The server frees the slot once it sees the close.
        let status = tokio::time::timeout(wait, async {
            loop {
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    let req = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
                    let mut buf = Vec::new();
                    if s.write_all(req).await.is_ok()
                        && s.read_to_end(&mut buf).await.is_ok()
                        && !buf.is_empty()
                    {
                        return buf;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("served again once the slot is free");
        assert!(status.starts_with(b"HTTP/1.1 503"), "{status:?}");
        shutdown.cancel();
    }

    #[test]
    fn defaults_and_validation() {
        let c = HealthCheckConfig::default();
        assert_eq!(
            (c.endpoint.as_str(), c.path.as_str()),
            ("127.0.0.1:13133", "/")
        );
        assert!(c.validate().is_ok());
        let bad = HealthCheckConfig {
            path: "health".to_string(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
