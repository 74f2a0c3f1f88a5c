//! Authentication as in the collector (`configauth`): the `auth:
//! {authenticator: ID}` key of OTLP receiver protocols and OTLP exporters
//! names an extension that checks incoming requests (server side:
//! `bearertokenauth`, `basicauth` with `htpasswd`) or adds credentials to
//! outgoing ones (client side: `bearertokenauth`, `basicauth` with
//! `client_auth`, `headers_setter`).
//!
//! Refused requests get HTTP 401 with `WWW-Authenticate`, or gRPC
//! UNAUTHENTICATED, before their body is read, and are counted in
//! `oomscope_receiver_unauthenticated_requests`. Credentials are compared in
//! constant time and never logged; only why a request was refused is.

pub mod basicauth;
pub mod bearertokenauth;
mod grpc;
pub mod headers_setter;
mod token_file;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;

pub use grpc::GrpcServerAuth;

use crate::component::{Kind, Reference};
use crate::config::ComponentId;
use crate::telemetry::ReceiverMetrics;

/// Extension types that can authenticate a server's clients.
pub const SERVER_TYPES: &[&str] = &["bearertokenauth", "basicauth"];
/// Extension types that can add credentials to an exporter's requests.
pub const CLIENT_TYPES: &[&str] = &["bearertokenauth", "basicauth", "headers_setter"];

/// Longest credential header value looked at; longer ones are refused
/// unread (hyper already bounds the whole request head).
pub const MAX_CREDENTIALS_LEN: usize = 8 * 1024;

/// `auth:` of a receiver protocol or an exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The id of the authenticator extension (`bearertokenauth/in`).
    pub authenticator: ComponentId,
}

impl AuthConfig {
    /// The reference a receiver protocol makes at `key` (`protocols::http::auth`).
    pub fn server_reference(&self, key: &str) -> Reference {
        Reference {
            key: format!("{key}::authenticator"),
            id: self.authenticator.clone(),
            kind: Kind::Extension,
            type_names: SERVER_TYPES,
            purpose:
                "a receiver authenticates its clients with a bearertokenauth or basicauth extension",
        }
    }

    /// The reference an exporter makes at `auth`.
    pub fn client_reference(&self) -> Reference {
        Reference {
            key: "auth::authenticator".to_string(),
            id: self.authenticator.clone(),
            kind: Kind::Extension,
            type_names: CLIENT_TYPES,
            purpose: "an exporter adds credentials with a bearertokenauth, basicauth or headers_setter extension",
        }
    }
}

/// Why a request was refused; never carries a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No credential header.
    Missing,
    /// A header longer than [`MAX_CREDENTIALS_LEN`].
    TooLong,
    /// Not of the expected scheme or form.
    Malformed,
    /// Well-formed, but not a known credential.
    Wrong,
    /// The authenticator has no valid credentials to compare with (an
    /// unreadable token file): every request is refused until it has.
    NoCredentials,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Missing => "no credentials",
            Refused::TooLong => "credentials too long",
            Refused::Malformed => "malformed credentials",
            Refused::Wrong => "wrong credentials",
            Refused::NoCredentials => "the authenticator has no valid credentials",
        }
    }
}

/// A server-side authenticator.
#[derive(Clone)]
pub enum ServerAuthenticator {
    Bearer(Arc<bearertokenauth::BearerTokens>),
    Basic(Arc<basicauth::Htpasswd>),
}

impl ServerAuthenticator {
    /// Checks a request's headers.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Refused> {
        match self {
            ServerAuthenticator::Bearer(b) => b.check(headers),
            ServerAuthenticator::Basic(b) => b.check(headers).await,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401.
    pub fn challenge(&self) -> HeaderValue {
        match self {
            ServerAuthenticator::Bearer(b) => b.challenge(),
            ServerAuthenticator::Basic(_) => {
                HeaderValue::from_static("Basic realm=\"oomscope\", charset=\"UTF-8\"")
            }
        }
    }
}

/// A client-side authenticator: adds (or removes) headers of each request.
#[derive(Clone)]
pub enum ClientAuthenticator {
    Bearer(Arc<bearertokenauth::BearerTokens>),
    /// The whole `Authorization: Basic ...` value.
    Basic(HeaderValue),
    Headers(Arc<headers_setter::HeadersSetter>),
}

impl ClientAuthenticator {
    /// Sets the credentials in `headers`; fails when there are none to send
    /// (an unreadable token file): the export is then retried later.
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<(), String> {
        match self {
            ClientAuthenticator::Bearer(b) => b.apply(headers),
            ClientAuthenticator::Basic(value) => {
                headers.insert(header::AUTHORIZATION, value.clone());
                Ok(())
            }
            ClientAuthenticator::Headers(h) => {
                h.apply(headers);
                Ok(())
            }
        }
    }
}

/// One started authenticator extension, as its users see it: what it can
/// do on each side, or why it cannot.
struct Registered {
    type_name: &'static str,
    server: Result<ServerAuthenticator, &'static str>,
    client: Result<ClientAuthenticator, &'static str>,
}

/// The started authenticator extensions.
#[derive(Default)]
pub struct Authenticators {
    by_id: BTreeMap<ComponentId, Registered>,
}

impl Authenticators {
    /// Registers extension `id`; the `Err` of a side says why it cannot act
    /// on that side ("it has no htpasswd").
    pub fn register(
        &mut self,
        id: &ComponentId,
        type_name: &'static str,
        server: Result<ServerAuthenticator, &'static str>,
        client: Result<ClientAuthenticator, &'static str>,
    ) {
        self.by_id.insert(
            id.clone(),
            Registered {
                type_name,
                server,
                client,
            },
        );
    }

    fn get(
        &self,
        id: &ComponentId,
        asked_by: &ComponentId,
        key: &str,
    ) -> anyhow::Result<&Registered> {
        self.by_id.get(id).ok_or_else(|| {
            anyhow::anyhow!(
                "{asked_by}: {key}::authenticator {id} is not a started authenticator extension \
                 (configure it under extensions and list it in service::extensions)"
            )
        })
    }

    /// The server side of `id`, for component `asked_by` at `key`.
    pub fn server(
        &self,
        id: &ComponentId,
        asked_by: &ComponentId,
        key: &str,
    ) -> anyhow::Result<ServerAuthenticator> {
        let r = self.get(id, asked_by, key)?;
        r.server.clone().map_err(|why| {
            anyhow::anyhow!(
                "{asked_by}: {key}::authenticator {id} cannot authenticate a server's clients: \
                 this {} extension {why}",
                r.type_name
            )
        })
    }

    /// The client side of `id`, for exporter `asked_by`.
    pub fn client(
        &self,
        id: &ComponentId,
        asked_by: &ComponentId,
    ) -> anyhow::Result<ClientAuthenticator> {
        let r = self.get(id, asked_by, "auth")?;
        r.client.clone().map_err(|why| {
            anyhow::anyhow!(
                "{asked_by}: auth::authenticator {id} cannot add credentials to an exporter's \
                 requests: this {} extension {why}",
                r.type_name
            )
        })
    }
}

/// A receiver protocol's authenticator with its counters.
#[derive(Clone)]
pub struct ServerAuth {
    authenticator: ServerAuthenticator,
    receiver: ComponentId,
    metrics: ReceiverMetrics,
}

impl ServerAuth {
    /// The authenticator `auth` names (None without `auth`), for receiver
    /// `receiver`'s protocol at `key` (`protocols::http`).
    pub fn resolve(
        auth: Option<&AuthConfig>,
        extensions: &crate::extensions::Extensions,
        receiver: &ComponentId,
        key: &str,
        metrics: &ReceiverMetrics,
    ) -> anyhow::Result<Option<ServerAuth>> {
        let Some(auth) = auth else {
            return Ok(None);
        };
        let authenticator =
            extensions
                .auth
                .server(&auth.authenticator, receiver, &format!("{key}::auth"))?;
        Ok(Some(ServerAuth {
            authenticator,
            receiver: receiver.clone(),
            metrics: metrics.clone(),
        }))
    }

    /// Checks a request; a refusal is counted and logged (without the
    /// credential).
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let result = self.authenticator.check(headers).await;
        if let Err(refused) = result {
            self.metrics.unauthenticated(refused.as_str());
            tracing::debug!(receiver = %self.receiver, reason = refused.as_str(), "request refused: unauthenticated");
        }
        result
    }

    /// [`ServerAuth::check`] for an HTTP request: the 401 to answer with.
    pub async fn check_http(&self, headers: &HeaderMap) -> Result<(), Response<Full<Bytes>>> {
        self.check(headers).await.map_err(|refused| {
            let mut response = Response::new(Full::new(Bytes::from(format!(
                "unauthenticated: {}",
                refused.as_str()
            ))));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, self.authenticator.challenge());
            response
        })
    }
}

/// The client authenticator an exporter's `auth` names (None without it).
pub fn resolve_client(
    auth: Option<&AuthConfig>,
    extensions: &crate::extensions::Extensions,
    exporter: &ComponentId,
) -> anyhow::Result<Option<ClientAuthenticator>> {
    auth.map(|a| extensions.auth.client(&a.authenticator, exporter))
        .transpose()
}

/// The value of `name` in `headers`, bounded: [`Refused::Missing`] when
/// absent, [`Refused::TooLong`] past [`MAX_CREDENTIALS_LEN`].
fn credential<'h>(headers: &'h HeaderMap, name: &header::HeaderName) -> Result<&'h [u8], Refused> {
    let value = headers.get(name).ok_or(Refused::Missing)?;
    if value.len() > MAX_CREDENTIALS_LEN {
        return Err(Refused::TooLong);
    }
    Ok(value.as_bytes())
}

/// Whether `given` equals one of `known`, in time independent of where they
/// differ (lengths may show).
fn matches_any<'a>(given: &[u8], known: impl IntoIterator<Item = &'a [u8]>) -> bool {
    use subtle::ConstantTimeEq as _;
    let mut found = subtle::Choice::from(0);
    for k in known {
        found |= given.ct_eq(k);
    }
    found.into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
