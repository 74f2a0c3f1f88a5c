//! The `status` extension: a status page on the node, at the collector's
//! zpages port (`127.0.0.1:55679` by default).
//!
//! - `GET /`: one self-contained HTML page (inline style, inline SVG charts
//!   drawn here, a few lines of inline script that refresh it every 5 s;
//!   no external asset, complete without script): system memory and PSI
//!   now and over the last hour, the latest incidents (victim, cgroup,
//!   lead-up chart and facts, runtime messages), the cgroups nearest their
//!   limits, the largest processes.
//! - `GET /api/status.json`: the same data as JSON (see
//!   `docs/status-page.md`).
//!
//! Both are built from the gRPC API's `Snapshot` and `ListIncidents`
//! answers (`model`), taken in process from the incident hub (each of its
//! locks is held only to copy its part), off the async threads, and kept for
//! [`CACHE_FOR`] so that many clients cost one build. HTTP/1 only, one
//! request per connection, at most 64 connections, each closed after
//! [`CONNECTION_LIFETIME`] whatever it does: a client that never reads
//! holds one slot for that long, and blocks nothing else.

pub mod model;
pub mod page;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
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
use crate::incidents::IncidentHub;
use crate::server::{Acceptor, ConnectionLimits};

/// The JSON path.
pub const JSON_PATH: &str = "/api/status.json";
/// How long a built page (or JSON) is served again.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// A connection is closed this long after it was accepted, whatever it is
/// doing (a client that never reads the answer included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Bound on an answer, above what the model's bounds allow (the unit test
/// `the_largest_answer_is_bounded` builds the worst case); past it
/// incidents are left out, oldest first.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

const CONNECTION_LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 64,
    first_bytes_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(10),
};

/// `status` configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// `host:port` to listen on (the collector's zpages port by default).
    pub endpoint: String,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            endpoint: "127.0.0.1:55679".to_string(),
        }
    }
}

impl ComponentConfig for StatusConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.endpoint.trim().is_empty() {
            return Err(ValidationError::at("endpoint", "must not be empty"));
        }
        Ok(())
    }
}

/// Makes `status` extensions.
pub struct StatusExtensionFactory;

impl Factory for StatusExtensionFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["status"]
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn description(&self) -> &'static str {
        "serves a status page (memory, pressure, cgroups, incidents) and its JSON over HTTP"
    }
}

impl ExtensionFactory for StatusExtensionFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExtensionConfig>, ConfigError> {
        Ok(Box::new(from_node::<StatusConfig>(node)?))
    }
}

impl ExtensionConfig for StatusConfig {
    fn start<'a>(
        &'a self,
        _id: &'a ComponentId,
        host: &'a mut Extensions,
        shutdown: CancellationToken,
    ) -> StartFuture<'a, Option<JoinHandle<()>>> {
        let hub = Arc::clone(&host.incidents);
        Box::pin(async move { start(self, hub, shutdown).await.map(Some) })
    }
}

/// Binds `cfg.endpoint` and serves until `shutdown` is cancelled.
pub async fn start(
    cfg: &StatusConfig,
    hub: Arc<IncidentHub>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(&cfg.endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("status: cannot listen on {}: {e}", cfg.endpoint))?;
    let local = listener.local_addr().ok();
    tracing::info!(endpoint = ?local, "status page listening");
    let loopback = local.is_some_and(|a| a.ip().is_loopback());
    Ok(tokio::spawn(serve(
        listener,
        Arc::new(Pages::new(hub, loopback)),
        shutdown,
        CONNECTION_LIMITS,
        CONNECTION_LIFETIME,
    )))
}

/// What one build makes: the page and the JSON.
struct Built {
    at: Instant,
    html: Bytes,
    json: Bytes,
}

/// The hub and the last build.
struct Pages {
    hub: Arc<IncidentHub>,
    cache: Mutex<Option<Arc<Built>>>,
    /// Bound to loopback: only requests for `localhost` or an IP address
    /// are answered (see [`host_allowed`]).
    loopback: bool,
}

impl Pages {
    fn new(hub: Arc<IncidentHub>, loopback: bool) -> Self {
        Pages {
            hub,
            cache: Mutex::new(None),
            loopback,
        }
    }

    /// The last build if fresh, else a new one (built off the async threads;
    /// two clients at once may both build, which is harmless).
    async fn get(self: &Arc<Self>) -> Option<Arc<Built>> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(b) = cache.as_ref().filter(|b| b.at.elapsed() < CACHE_FOR) {
                return Some(Arc::clone(b));
            }
        }
        let this = Arc::clone(self);
        let built = tokio::task::spawn_blocking(move || Arc::new(build(&this.hub)))
            .await
            .ok()?;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&built));
        Some(built)
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn build(hub: &IncidentHub) -> Built {
    let status = model::Status::collect(hub, now_unix_nano());
    let (html, json) = render_bounded(status, MAX_BODY);
    Built {
        at: Instant::now(),
        html: Bytes::from(html),
        json: Bytes::from(json),
    }
}

/// The page and the JSON of `status`, each at most `max` bytes: while
/// either is larger, the oldest incident is left out (the model's bounds
/// keep this from happening; this keeps the answer bounded should they
/// grow).
fn render_bounded(mut status: model::Status, max: usize) -> (String, String) {
    loop {
        let html = page::render(&status);
        let json = serde_json::to_string(&status).unwrap_or_else(|_| "{}".to_string());
        if (html.len() <= max && json.len() <= max) || status.incidents.is_empty() {
            if html.len() > max || json.len() > max {
                // Without incidents the rest is bounded far below `max`.
                tracing::warn!(
                    html = html.len(),
                    json = json.len(),
                    "status: page over its bound"
                );
            }
            return (html, json);
        }
        status.incidents.pop();
    }
}

/// The Content-Security-Policy of the page: nothing from elsewhere, only
/// its own inline style and script (by hash), fetches to itself.
fn content_security_policy() -> &'static str {
    static CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let hash = |s: &str| {
            let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(d.as_ref())
            )
        };
        format!(
            "default-src 'none'; style-src {}; script-src {}; connect-src 'self'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(page::STYLE),
            hash(page::SCRIPT)
        )
    });
    &CSP
}

async fn serve(
    listener: TcpListener,
    pages: Arc<Pages>,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
    lifetime: Duration,
) {
    let mut acceptor = Acceptor::new(listener, limits, shutdown.clone());
    while let Some(conn) = acceptor.accept().await {
        let pages = Arc::clone(&pages);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let peer = conn.peer();
            let activity = conn.activity();
            let service = service_fn(move |req| {
                let pages = Arc::clone(&pages);
                // In flight while answered: the idle timeout closes only
                // connections with no request.
                let in_flight = activity.request();
                async move {
                    let response = respond(&req, &pages).await;
                    drop(in_flight);
                    Ok::<_, Infallible>(response)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(CONNECTION_LIMITS.first_bytes_timeout)
                // One request per connection: with the lifetime below, no
                // connection lingers (the page's refresh opens a new one).
                .keep_alive(false);
            let connection = builder.serve_connection(TokioIo::new(conn), service);
            tokio::select! {
                result = tokio::time::timeout(lifetime, connection) => {
                    match result {
                        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "status: connection error"),
                        Err(_) => tracing::debug!(?peer, "status: connection closed at its lifetime"),
                        Ok(Ok(())) => {}
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// Whether a request naming `host` (its `Host` header) is answered. On a
/// loopback binding only `localhost` and IP addresses are: a web page the
/// user visits cannot then read the status through a name of its own that
/// it re-points at 127.0.0.1 (DNS rebinding). Elsewhere any name is.
fn host_allowed(host: Option<&HeaderValue>, loopback: bool) -> bool {
    if !loopback {
        return true;
    }
    let Some(host) = host else {
        // HTTP/1.0 without Host: no browser sends that.
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    // Without its port: `name:port`, `[v6]:port`, `[v6]`, `name`.
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(ip, _)| ip)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("localhost.")
        || name.parse::<std::net::IpAddr>().is_ok()
}

async fn respond<B>(req: &Request<B>, pages: &Arc<Pages>) -> Response<Full<Bytes>> {
    if !host_allowed(req.headers().get(header::HOST), pages.loopback) {
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "on a loopback address the status page answers only for localhost or an IP address\n",
        );
    }
    let path = req.uri().path();
    let json = match path {
        "/" | "/index.html" => false,
        JSON_PATH => true,
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let Some(built) = pages.get().await else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot build the page\n");
    };
    let (body, content_type) = if json {
        (built.json.clone(), "application/json")
    } else {
        (built.html.clone(), "text/html; charset=utf-8")
    };
    let mut resp = Response::new(Full::new(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !json {
        if let Ok(csp) = HeaderValue::from_str(content_security_policy()) {
            h.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
