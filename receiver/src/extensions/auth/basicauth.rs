//! The `basicauth` extension, with the keys of the collector-contrib's
//! `extension/basicauthextension`: `htpasswd: {file, inline}` makes it a
//! server authenticator (HTTP Basic), `client_auth: {username, password}` a
//! client one; setting both is an error, as in the collector.
//!
//! htpasswd entries (`user:hash`, one per line, `#` comments): bcrypt hashes
//! (`$2y$`, `$2b$`, `$2a$`: `htpasswd -B`) are verified with the `bcrypt`
//! crate; an entry whose hash has another scheme (`$apr1$` MD5, `{SHA}`,
//! `{SSHA}`, `$1$`, `$5$`, `$6$` crypt) is refused at start, naming the file
//! and line, as those hashes are weak or unsupported here; anything else is
//! a plain-text password (what the collector's example
//! `${env:USER}:${env:PASSWORD}` gives), compared in constant time. Entries
//! of `inline` replace entries of `file` for the same user. The file is read
//! once, at start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use http::{header, HeaderMap, HeaderValue};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ClientAuthenticator, Refused, ServerAuthenticator};
use crate::component::{
    ComponentConfig, ExtensionConfig, ExtensionFactory, Factory, Stability, StartFuture,
};
use crate::config::{from_node, ComponentId, ConfigError, Node, ValidationError};
use crate::extensions::Extensions;

/// Largest htpasswd file read.
const MAX_HTPASSWD_LEN: u64 = 1024 * 1024;
/// bcrypt verifications running at once (each takes tens of milliseconds of
/// CPU on a blocking thread); further requests wait.
const CONCURRENT_BCRYPT: usize = 2;

/// `basicauth` configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuthConfig {
    /// Server side: the accepted users.
    pub htpasswd: Option<HtpasswdConfig>,
    /// Client side: the credentials sent.
    pub client_auth: Option<ClientAuthConfig>,
}

/// `htpasswd`.
#[derive(Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HtpasswdConfig {
    /// Path of an htpasswd file.
    pub file: Option<PathBuf>,
    /// htpasswd content, inline; its users take precedence over the file's.
    pub inline: Option<String>,
}

// By hand: inline entries may hold plain-text passwords.
impl std::fmt::Debug for HtpasswdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HtpasswdConfig")
            .field("file", &self.file)
            .field("inline", &self.inline.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// `client_auth`.
#[derive(Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuthConfig {
    pub username: String,
    pub password: String,
}

// By hand: the password must never reach a log line through `{:?}`.
impl std::fmt::Debug for ClientAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthConfig")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

impl ComponentConfig for BasicAuthConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        match (&self.htpasswd, &self.client_auth) {
            (Some(_), Some(_)) => Err(ValidationError::whole(
                "either client_auth or htpasswd should be set, not both: \
                 configure one basicauth extension per side",
            )),
            (None, None) => Err(ValidationError::whole(
                "set htpasswd (to check clients) or client_auth (to send credentials)",
            )),
            (Some(h), None) if h.file.is_none() && h.inline.is_none() => {
                Err(ValidationError::at("htpasswd", "set file or inline"))
            }
            (None, Some(c)) if c.username.contains(':') => Err(ValidationError::at(
                "client_auth::username",
                "must not contain ':'",
            )),
            (None, Some(c)) if !is_header_text(&c.username) || !is_header_text(&c.password) => {
                Err(ValidationError::at(
                    "client_auth",
                    "username and password must be visible ASCII (spaces allowed)",
                ))
            }
            _ => Ok(()),
        }
    }
}

fn is_header_text(s: &str) -> bool {
    s.len() <= 1024 && s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// Makes `basicauth` extensions.
pub struct BasicAuthExtensionFactory;

impl Factory for BasicAuthExtensionFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["basicauth"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "HTTP Basic authentication: checks clients against htpasswd (bcrypt) or sends client_auth, as the collector's basicauth"
    }
}

impl ExtensionFactory for BasicAuthExtensionFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExtensionConfig>, ConfigError> {
        Ok(Box::new(from_node::<BasicAuthConfig>(node)?))
    }
}

impl ExtensionConfig for BasicAuthConfig {
    fn start<'a>(
        &'a self,
        id: &'a ComponentId,
        host: &'a mut Extensions,
        _shutdown: CancellationToken,
    ) -> StartFuture<'a, Option<JoinHandle<()>>> {
        Box::pin(async move {
            self.validate()
                .map_err(|e| anyhow::anyhow!("extension {id}: {e}"))?;
            let server = match &self.htpasswd {
                Some(h) => {
                    let h = h.clone();
                    let loaded = tokio::task::spawn_blocking(move || Htpasswd::load(&h))
                        .await
                        .map_err(|e| anyhow::anyhow!("extension {id}: {e}"))?
                        .map_err(|e| anyhow::anyhow!("extension {id}: {e}"))?;
                    Ok(ServerAuthenticator::Basic(Arc::new(loaded)))
                }
                None => Err("has no htpasswd"),
            };
            let client = match &self.client_auth {
                Some(c) => Ok(ClientAuthenticator::Basic(client_header(c)?)),
                None => Err("has no client_auth"),
            };
            host.auth.register(id, "basicauth", server, client);
            Ok(None)
        })
    }
}

/// `Authorization: Basic base64(username:password)`, marked sensitive.
fn client_header(c: &ClientAuthConfig) -> anyhow::Result<HeaderValue> {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| anyhow::anyhow!("client_auth: cannot form the Authorization header"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// How one user's password is checked.
enum Hash {
    Bcrypt(String),
    Plain(Vec<u8>),
}

/// The users of an htpasswd configuration.
pub struct Htpasswd {
    users: BTreeMap<String, Hash>,
    /// A bcrypt hash checked for unknown users, so that the time taken does
    /// not tell which users exist (None when no entry is bcrypt).
    decoy: Option<String>,
    bcrypt_slots: Arc<Semaphore>,
}

impl Htpasswd {
    /// Reads the file (if any) and the inline content; errors name the file
    /// (or `htpasswd::inline`) and line, never a hash.
    pub fn load(c: &HtpasswdConfig) -> Result<Self, String> {
        let mut users = BTreeMap::new();
        if let Some(path) = &c.file {
            let text = read_file(path)?;
            parse_into(
                &text,
                &format!("htpasswd file {}", path.display()),
                &mut users,
            )?;
        }
        if let Some(inline) = &c.inline {
            parse_into(inline, "htpasswd::inline", &mut users)?;
        }
        if users.is_empty() {
            return Err("htpasswd holds no user".to_string());
        }
        let decoy = users.values().find_map(|h| match h {
            Hash::Bcrypt(hash) => Some(decoy_like(hash)),
            Hash::Plain(_) => None,
        });
        Ok(Htpasswd {
            users,
            decoy,
            bcrypt_slots: Arc::new(Semaphore::new(CONCURRENT_BCRYPT)),
        })
    }

    /// Checks `Authorization: Basic ...`.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let given = super::credential(headers, &header::AUTHORIZATION)?;
        let (scheme, encoded) = split_scheme(given).ok_or(Refused::Malformed)?;
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return Err(Refused::Malformed);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| Refused::Malformed)?;
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or(Refused::Malformed)?;
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let user = std::str::from_utf8(user).map_err(|_| Refused::Wrong)?;
        let ok = match self.users.get(user) {
            Some(Hash::Plain(expected)) => super::matches_any(password, [expected.as_slice()]),
            Some(Hash::Bcrypt(hash)) => self.bcrypt(password, hash.clone()).await,
            None => {
                if let Some(decoy) = &self.decoy {
                    self.bcrypt(password, decoy.clone()).await;
                }
                false
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Refused::Wrong)
        }
    }

    /// bcrypt off the reactor, at most [`CONCURRENT_BCRYPT`] at once.
    async fn bcrypt(&self, password: &[u8], hash: String) -> bool {
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let password = password.to_vec();
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
    }
}

/// `scheme` and the rest of `Scheme rest`.
fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|&b| b == b' ')?;
    let rest = &value[space + 1..];
    let rest = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    Some((&value[..space], rest))
}

/// A valid bcrypt hash of the same cost as `like`, of a password no client
/// knows.
fn decoy_like(like: &str) -> String {
    let cost = like
        .parse::<bcrypt::HashParts>()
        .map(|p| p.get_cost())
        .unwrap_or(bcrypt::DEFAULT_COST);
    bcrypt::hash("oomscope decoy: no such user", cost).unwrap_or_default()
}

fn read_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let shown = path.display();
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read htpasswd file {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_HTPASSWD_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read htpasswd file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_HTPASSWD_LEN {
        return Err(format!(
            "htpasswd file {shown} is larger than {MAX_HTPASSWD_LEN} bytes"
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("htpasswd file {shown} is not UTF-8 text"))
}

/// Adds the entries of `text` (from `source`) to `users`.
fn parse_into(text: &str, source: &str, users: &mut BTreeMap<String, Hash>) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{source} line {}", n + 1);
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("{at}: expected user:hash"));
        };
        if user.is_empty() {
            return Err(format!("{at}: the user name is empty"));
        }
        let parsed = if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            hash.parse::<bcrypt::HashParts>()
                .map_err(|_| format!("{at}: user {user:?} has a malformed bcrypt hash"))?;
            Hash::Bcrypt(hash.to_string())
        } else if hash.starts_with('$') || hash.starts_with('{') {
            let scheme: String = hash
                .chars()
                .take_while(|c| *c != '}')
                .skip(1)
                .take_while(|c| *c != '$')
                .take(16)
                .collect();
            return Err(format!(
                "{at}: user {user:?} has a password hash of scheme {scheme:?}, which is not \
                 supported: use bcrypt (htpasswd -B)"
            ));
        } else {
            Hash::Plain(hash.as_bytes().to_vec())
        };
        users.insert(user.to_string(), parsed);
    }
    Ok(())
}
