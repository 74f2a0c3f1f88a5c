//! The `headers_setter` extension, with the keys of the collector-contrib's
//! `extension/headerssetterextension`: a client authenticator that sets
//! headers of an exporter's requests. `headers: [{key, value, action}]`,
//! `action` one of `insert` (only when absent), `update` (only when
//! present), `upsert` (default) and `delete`.
//!
//! `from_context` (a value taken from the metadata of the request that
//! brought the data in) is refused at config time: oomscope's pipelines do
//! not carry client metadata from receivers to exporters. So is
//! `default_value`, which only serves `from_context`.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::ClientAuthenticator;
use crate::component::{
    ComponentConfig, ExtensionConfig, ExtensionFactory, Factory, Stability, StartFuture,
};
use crate::config::{from_node, ComponentId, ConfigError, Node, ValidationError};
use crate::extensions::Extensions;

/// `headers_setter` configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSetterConfig {
    pub headers: Vec<HeaderConfig>,
}

/// What to do with one header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Insert,
    Update,
    #[default]
    Upsert,
    Delete,
}

/// One entry of `headers`.
#[derive(Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderConfig {
    pub key: String,
    pub action: Action,
    pub value: Option<String>,
    /// Refused (see the module docs); accepted by the decoder to say why.
    pub from_context: Option<String>,
    /// Refused with `from_context`.
    pub default_value: Option<String>,
}

// By hand: header values are often credentials.
impl std::fmt::Debug for HeaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderConfig")
            .field("key", &self.key)
            .field("action", &self.action)
            .field("value", &self.value.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

impl ComponentConfig for HeadersSetterConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.headers.is_empty() {
            return Err(ValidationError::at(
                "headers",
                "must name at least one header",
            ));
        }
        for (n, h) in self.headers.iter().enumerate() {
            let at = |key: &str| format!("headers::{n}::{key}");
            if h.key.is_empty() {
                return Err(ValidationError::at(at("key"), "must not be empty"));
            }
            HeaderName::from_bytes(h.key.as_bytes()).map_err(|_| {
                ValidationError::at(at("key"), format!("{:?} is not a header name", h.key))
            })?;
            if h.from_context.is_some() || h.default_value.is_some() {
                return Err(ValidationError::at(
                    at(if h.from_context.is_some() {
                        "from_context"
                    } else {
                        "default_value"
                    }),
                    "is not supported: oomscope does not carry request metadata from receivers \
                     to exporters; set value",
                ));
            }
            match (h.action, &h.value) {
                (Action::Delete, _) => {}
                (_, None) => {
                    return Err(ValidationError::at(
                        at("value"),
                        "must be set (unless action is delete)",
                    ))
                }
                (_, Some(v)) => {
                    HeaderValue::from_str(v).map_err(|_| {
                        ValidationError::at(
                            at("value"),
                            "must be visible ASCII without control characters",
                        )
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// Makes `headers_setter` extensions.
pub struct HeadersSetterExtensionFactory;

impl Factory for HeadersSetterExtensionFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["headers_setter"]
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn description(&self) -> &'static str {
        "sets headers of exporters' requests (static values), as the collector's headers_setter"
    }
}

impl ExtensionFactory for HeadersSetterExtensionFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExtensionConfig>, ConfigError> {
        Ok(Box::new(from_node::<HeadersSetterConfig>(node)?))
    }
}

impl ExtensionConfig for HeadersSetterConfig {
    fn start<'a>(
        &'a self,
        id: &'a ComponentId,
        host: &'a mut Extensions,
        _shutdown: CancellationToken,
    ) -> StartFuture<'a, Option<JoinHandle<()>>> {
        Box::pin(async move {
            let setter =
                HeadersSetter::new(self).map_err(|e| anyhow::anyhow!("extension {id}: {e}"))?;
            host.auth.register(
                id,
                "headers_setter",
                Err("only sets headers of outgoing requests"),
                Ok(ClientAuthenticator::Headers(Arc::new(setter))),
            );
            Ok(None)
        })
    }
}

/// The headers to set, in order.
pub struct HeadersSetter {
    rules: Vec<(HeaderName, Action, Option<HeaderValue>)>,
}

impl HeadersSetter {
    pub fn new(c: &HeadersSetterConfig) -> Result<Self, ValidationError> {
        c.validate()?;
        let mut rules = Vec::with_capacity(c.headers.len());
        for h in &c.headers {
            let name = HeaderName::from_bytes(h.key.as_bytes())
                .map_err(|_| ValidationError::at("headers", "invalid header name"))?;
            let value = match &h.value {
                Some(v) if h.action != Action::Delete => {
                    let mut v = HeaderValue::from_str(v)
                        .map_err(|_| ValidationError::at("headers", "invalid header value"))?;
                    v.set_sensitive(true);
                    Some(v)
                }
                _ => None,
            };
            rules.push((name, h.action, value));
        }
        Ok(HeadersSetter { rules })
    }

    /// Applies every rule to an outgoing request's headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, action, value) in &self.rules {
            let present = headers.contains_key(name);
            match (action, value) {
                (Action::Delete, _) => {
                    headers.remove(name);
                }
                (Action::Insert, Some(v)) if !present => {
                    headers.insert(name.clone(), v.clone());
                }
                (Action::Update, Some(v)) if present => {
                    headers.insert(name.clone(), v.clone());
                }
                (Action::Upsert, Some(v)) => {
                    headers.insert(name.clone(), v.clone());
                }
                _ => {}
            }
        }
    }
}
