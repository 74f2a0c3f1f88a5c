//! The `bearertokenauth` extension, with the keys of the collector-contrib's
//! `extension/bearertokenauthextension`: `header` (default `Authorization`),
//! `scheme` (default `Bearer`), `token`, `tokens`, `filename`. As a server
//! authenticator it accepts a request whose header is `<scheme> <token>` for
//! any configured token; as a client authenticator it sends the first one.
//! `filename` takes precedence over `token`/`tokens` (as in the collector);
//! the file holds one token per line, is polled every
//! [`FILE_POLL_INTERVAL`] and read again when it changes, without restart.
//! A token file that cannot be read at start fails the start; one that
//! becomes unreadable (or a symbolic link) later leaves the extension
//! without credentials: requests it checks get 401, exports it signs are
//! retried, until the file is readable again.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{token_file, ClientAuthenticator, Refused, ServerAuthenticator};
use crate::component::{
    ComponentConfig, ExtensionConfig, ExtensionFactory, Factory, Stability, StartFuture,
};
use crate::config::{from_node, ComponentId, ConfigError, Node, ValidationError};
use crate::extensions::Extensions;

/// How often `filename` is looked at for a change.
pub const FILE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// `bearertokenauth` configuration.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BearerTokenAuthConfig {
    /// The header that carries the token.
    pub header: String,
    /// Written before the token, with a space; empty for none.
    pub scheme: String,
    /// One static token.
    pub token: Option<String>,
    /// Several static tokens (any is accepted; a client sends the first).
    pub tokens: Vec<String>,
    /// A file with one token per line, re-read when it changes.
    pub filename: Option<PathBuf>,
}

impl Default for BearerTokenAuthConfig {
    fn default() -> Self {
        BearerTokenAuthConfig {
            header: "Authorization".to_string(),
            scheme: "Bearer".to_string(),
            token: None,
            tokens: Vec::new(),
            filename: None,
        }
    }
}

// By hand: tokens must never reach a log line through `{:?}`.
impl std::fmt::Debug for BearerTokenAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerTokenAuthConfig")
            .field("header", &self.header)
            .field("scheme", &self.scheme)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field("filename", &self.filename)
            .finish()
    }
}

impl ComponentConfig for BearerTokenAuthConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        let has_token = self.token.as_deref().is_some_and(|t| !t.is_empty());
        if !has_token && self.tokens.is_empty() && self.filename.is_none() {
            return Err(ValidationError::whole(
                "no bearer token provided: set token, tokens or filename",
            ));
        }
        if has_token && !self.tokens.is_empty() {
            return Err(ValidationError::at(
                "tokens",
                "either tokens or token should be provided, not both",
            ));
        }
        HeaderName::from_bytes(self.header.as_bytes()).map_err(|_| {
            ValidationError::at("header", format!("{:?} is not a header name", self.header))
        })?;
        if !self.scheme.is_empty() && !token_file::valid_token(&self.scheme) {
            return Err(ValidationError::at(
                "scheme",
                "must be visible ASCII without control characters",
            ));
        }
        if let Some(t) = self.token.as_deref().filter(|t| !t.is_empty()) {
            if !token_file::valid_token(t) {
                return Err(ValidationError::at(
                    "token",
                    "must be visible ASCII (spaces allowed), at most 4096 bytes",
                ));
            }
        }
        if let Some(n) = self.tokens.iter().position(|t| !token_file::valid_token(t)) {
            return Err(ValidationError::at(
                format!("tokens::{n}"),
                "must be visible ASCII (spaces allowed), at most 4096 bytes",
            ));
        }
        Ok(())
    }
}

/// Makes `bearertokenauth` extensions.
pub struct BearerTokenAuthExtensionFactory;

impl Factory for BearerTokenAuthExtensionFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["bearertokenauth"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "checks or sends a bearer token (static or from a file re-read on change), as the collector's bearertokenauth"
    }
}

impl ExtensionFactory for BearerTokenAuthExtensionFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExtensionConfig>, ConfigError> {
        Ok(Box::new(from_node::<BearerTokenAuthConfig>(node)?))
    }
}

impl ExtensionConfig for BearerTokenAuthConfig {
    fn start<'a>(
        &'a self,
        id: &'a ComponentId,
        host: &'a mut Extensions,
        shutdown: CancellationToken,
    ) -> StartFuture<'a, Option<JoinHandle<()>>> {
        Box::pin(async move {
            // Taken before the first read, so that a change during it is
            // read again.
            let seen = self.filename.as_deref().and_then(token_file::version);
            let tokens = Arc::new(
                BearerTokens::new(self).map_err(|e| anyhow::anyhow!("extension {id}: {e}"))?,
            );
            host.auth.register(
                id,
                "bearertokenauth",
                Ok(ServerAuthenticator::Bearer(Arc::clone(&tokens))),
                Ok(ClientAuthenticator::Bearer(Arc::clone(&tokens))),
            );
            let watcher = self.filename.clone().map(|path| {
                let id = id.clone();
                tokio::spawn(watch(id, path, seen, tokens, shutdown))
            });
            Ok(watcher)
        })
    }
}

/// The tokens as they are compared and sent.
struct Current {
    /// `<scheme> <token>` of every token.
    expected: Vec<Vec<u8>>,
    /// What a client sends: the first one.
    send: HeaderValue,
}

/// The live state of one `bearertokenauth` extension.
pub struct BearerTokens {
    header: HeaderName,
    scheme: String,
    /// The tokens, or why there are none (an unreadable file).
    current: RwLock<Result<Arc<Current>, String>>,
}

impl BearerTokens {
    /// Reads `filename` if set; an unreadable file is an error naming it.
    pub fn new(c: &BearerTokenAuthConfig) -> Result<Self, String> {
        c.validate().map_err(|e| e.to_string())?;
        let header = HeaderName::from_bytes(c.header.as_bytes())
            .map_err(|_| format!("{:?} is not a header name", c.header))?;
        let tokens = match &c.filename {
            Some(path) => token_file::read_tokens(path)?,
            None => match c.token.as_deref().filter(|t| !t.is_empty()) {
                Some(t) => vec![t.to_string()],
                None => c.tokens.clone(),
            },
        };
        let me = BearerTokens {
            header,
            scheme: c.scheme.clone(),
            current: RwLock::new(Err(String::new())),
        };
        me.set(Ok(tokens))?;
        Ok(me)
    }

    /// Replaces the tokens (or records why there are none).
    fn set(&self, tokens: Result<Vec<String>, String>) -> Result<(), String> {
        let current = tokens.and_then(|tokens| {
            let expected: Vec<Vec<u8>> = tokens
                .iter()
                .map(|t| {
                    if self.scheme.is_empty() {
                        t.clone().into_bytes()
                    } else {
                        format!("{} {t}", self.scheme).into_bytes()
                    }
                })
                .collect();
            let first = expected.first().ok_or("no token")?;
            let mut send = HeaderValue::from_bytes(first)
                .map_err(|_| "a token is not a valid header value".to_string())?;
            send.set_sensitive(true);
            Ok(Arc::new(Current { expected, send }))
        });
        let result = current.as_ref().map(|_| ()).map_err(Clone::clone);
        if let Ok(mut slot) = self.current.write() {
            *slot = current;
        }
        result
    }

    fn current(&self) -> Result<Arc<Current>, String> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(_) => Err("the token state is poisoned".to_string()),
        }
    }

    /// Server side: the request's header must be one of the tokens.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let given = super::credential(headers, &self.header)?;
        let current = self.current().map_err(|_| Refused::NoCredentials)?;
        if super::matches_any(given, current.expected.iter().map(Vec::as_slice)) {
            Ok(())
        } else {
            Err(Refused::Wrong)
        }
    }

    /// The challenge of a 401: the scheme.
    pub fn challenge(&self) -> HeaderValue {
        let scheme = if self.scheme.is_empty() {
            "Bearer"
        } else {
            &self.scheme
        };
        HeaderValue::from_str(&format!("{scheme} realm=\"oomscope\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"oomscope\""))
    }

    /// Client side: sets the header to the first token.
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<(), String> {
        let current = self.current()?;
        headers.insert(self.header.clone(), current.send.clone());
        Ok(())
    }
}

/// Polls the token file and reads it again when it changed, until shutdown.
async fn watch(
    id: ComponentId,
    path: PathBuf,
    mut seen: Option<token_file::Version>,
    tokens: Arc<BearerTokens>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(FILE_POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = token_file::version(&path);
        if now == seen {
            continue;
        }
        seen = now;
        let read_path = path.clone();
        let read = tokio::task::spawn_blocking(move || token_file::read_tokens(&read_path))
            .await
            .unwrap_or_else(|e| Err(format!("reading the token file failed: {e}")));
        match tokens.set(read) {
            Ok(()) => {
                tracing::info!(extension = %id, file = %path.display(), "token file read again after a change")
            }
            Err(e) => {
                tracing::warn!(extension = %id, error = %e, "token file changed and cannot be used: requests are refused (server) or held back (client) until it can")
            }
        }
    }
}
