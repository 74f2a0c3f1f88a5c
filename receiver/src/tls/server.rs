//! Server TLS: the collector's `configtls.ServerConfig` keys, and
//! [`ServerTls`], which hands each new connection the current rustls config
//! and builds a new one from the files when they are due to be re-read.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use tokio::time::Instant;

use super::{certified_key, root_store, InlinePem, PemSource, Protocol};
use crate::config::{GoDuration, ValidationError};

/// How often, at most, `client_ca_file_reload` looks at the file.
const CLIENT_CA_CHECK_PERIOD: Duration = Duration::from_secs(1);

/// `tls` of a server (OTLP receiver protocols, the OOM events API).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsServerConfig {
    /// PEM certificate chain of the server.
    pub cert_file: Option<PathBuf>,
    /// The same, inline.
    pub cert_pem: Option<InlinePem>,
    /// PEM private key of the server.
    pub key_file: Option<PathBuf>,
    /// The same, inline.
    pub key_pem: Option<InlinePem>,
    /// Accepted for the collector's sake; a server does not use it (as in
    /// the collector's code): `client_ca_file` asks for client certificates.
    pub ca_file: Option<PathBuf>,
    /// The same, inline.
    pub ca_pem: Option<InlinePem>,
    /// PEM CA certificates; when set, clients must present a certificate
    /// signed by one of them (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// Re-read `client_ca_file` when it changes.
    pub client_ca_file_reload: bool,
    /// Trust the system's CA certificates for client certificates too.
    pub include_system_ca_certs_pool: bool,
    /// Lowest TLS version accepted ("1.2" unless set).
    pub min_version: Option<String>,
    /// Highest TLS version accepted ("1.3" unless set).
    pub max_version: Option<String>,
    /// Go names of the suites offered; empty for the safe defaults.
    pub cipher_suites: Vec<String>,
    /// Re-read the certificate, key and client CA this often (on the next
    /// handshake after it elapsed); unset or 0 for never.
    pub reload_interval: Option<GoDuration>,
}

/// The files (or inline PEM) a server config names.
struct Sources {
    cert: PemSource,
    key: PemSource,
    client_ca: Option<PemSource>,
}

impl TlsServerConfig {
    fn protocol(&self) -> Protocol {
        Protocol {
            min_version: self.min_version.clone(),
            max_version: self.max_version.clone(),
            cipher_suites: self.cipher_suites.clone(),
        }
    }

    fn sources(&self) -> Result<Sources, ValidationError> {
        let cert = PemSource::pick(
            "cert_file",
            self.cert_file.as_ref(),
            "cert_pem",
            self.cert_pem.as_ref(),
        )?;
        let key = PemSource::pick(
            "key_file",
            self.key_file.as_ref(),
            "key_pem",
            self.key_pem.as_ref(),
        )?;
        PemSource::pick("ca_file", self.ca_file.as_ref(), "ca_pem", self.ca_pem.as_ref())?;
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(ValidationError::at(
                    "key_file",
                    "a server needs both a certificate and a key: set key_file (or key_pem)",
                ))
            }
            (None, _) => {
                return Err(ValidationError::at(
                    "cert_file",
                    "a server needs both a certificate and a key: set cert_file (or cert_pem) and key_file (or key_pem)",
                ))
            }
        };
        let client_ca = self.client_ca_file.as_ref().map(|path| PemSource::File {
            key: "client_ca_file",
            path: path.clone(),
        });
        Ok(Sources {
            cert,
            key,
            client_ca,
        })
    }

    /// Errors name keys inside the `tls` section.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.sources()?;
        self.protocol().validate()?;
        if self.client_ca_file_reload && self.client_ca_file.is_none() {
            return Err(ValidationError::at(
                "client_ca_file_reload",
                "needs client_ca_file",
            ));
        }
        Ok(())
    }

    fn reload_interval(&self) -> Option<Duration> {
        self.reload_interval
            .map(GoDuration::get)
            .filter(|d| !d.is_zero())
    }

    /// Reads the files and builds a rustls config offering `alpn`.
    fn build(&self, alpn: &[&[u8]]) -> anyhow::Result<rustls::ServerConfig> {
        let sources = self.sources().map_err(|e| anyhow::Error::new(e.within("tls")))?;
        let protocol = self.protocol();
        let within = |e: ValidationError| anyhow::Error::new(e.within("tls"));
        let versions = protocol.versions().map_err(within)?;
        let provider = Arc::new(protocol.provider().map_err(within)?);
        let certified = certified_key(&sources.cert, &sources.key, &provider)?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|e| anyhow::anyhow!("tls: {e}"))?;
        let builder = match &sources.client_ca {
            Some(ca) => {
                let roots = root_store(Some(ca), self.include_system_ca_certs_pool)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "tls::{}: cannot verify clients with it: {e}",
                                ca.describe()
                            )
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SingleCert(certified)));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Always the one certificate.
#[derive(Debug)]
struct SingleCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for SingleCert {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// What identifies a version of a file: a replaced or rewritten file differs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        ino: meta.ino(),
    })
}

/// A server's TLS: the current rustls config, rebuilt from the files when
/// `reload_interval` has elapsed (or the client CA file changed, with
/// `client_ca_file_reload`). A rebuild that fails keeps the last good config
/// and says why; new connections get the new config, open ones keep theirs.
pub struct ServerTls {
    config: TlsServerConfig,
    alpn: Vec<Vec<u8>>,
    /// Names the server in messages (`receiver otlp, protocols::http::tls`).
    context: String,
    state: Mutex<ReloadState>,
}

struct ReloadState {
    current: Arc<rustls::ServerConfig>,
    next_reload: Option<Instant>,
    client_ca: Option<FileStamp>,
    next_client_ca_check: Instant,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files now: a missing or malformed file is an error here,
    /// at start, naming the key and the file.
    pub fn load(
        config: &TlsServerConfig,
        alpn: &[&[u8]],
        context: impl Into<String>,
    ) -> anyhow::Result<Arc<ServerTls>> {
        let context = context.into();
        let current = config
            .build(alpn)
            .map_err(|e| e.context(format!("{context}: cannot set up TLS")))?;
        if config.ca_file.is_some() || config.ca_pem.is_some() {
            tracing::warn!(
                server = %context,
                "tls::ca_file/ca_pem has no effect on a server (as in the collector); set tls::client_ca_file to require client certificates"
            );
        }
        let now = Instant::now();
        Ok(Arc::new(ServerTls {
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            state: Mutex::new(ReloadState {
                current: Arc::new(current),
                next_reload: config.reload_interval().map(|d| now + d),
                client_ca: config.client_ca_file.as_deref().and_then(stamp),
                next_client_ca_check: now + CLIENT_CA_CHECK_PERIOD,
            }),
            config: config.clone(),
            context,
        }))
    }

    /// The config for a new connection (re-read first when due).
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut due = state.next_reload.is_some_and(|at| now >= at);
        if due {
            state.next_reload = self.config.reload_interval().map(|d| now + d);
        }
        if self.config.client_ca_file_reload && now >= state.next_client_ca_check {
            state.next_client_ca_check = now + CLIENT_CA_CHECK_PERIOD;
            let seen = self.config.client_ca_file.as_deref().and_then(stamp);
            if seen != state.client_ca {
                state.client_ca = seen;
                due = true;
            }
        }
        if due {
            let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
            match self.config.build(&alpn) {
                Ok(config) => {
                    tracing::debug!(server = %self.context, "TLS certificates re-read");
                    state.current = Arc::new(config);
                }
                Err(e) => tracing::warn!(
                    server = %self.context,
                    error = %format!("{e:#}"),
                    "cannot re-read the TLS certificates; keeping the previous ones"
                ),
            }
        }
        Arc::clone(&state.current)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tls::testing;

    #[test]
    fn a_server_needs_cert_and_key_once_each() {
        let e = TlsServerConfig::default().validate().unwrap_err().to_string();
        assert!(e.contains("cert_file"), "{e}");
        let e = TlsServerConfig {
            cert_file: Some("/c.pem".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("key_file"), "{e}");
        let e = TlsServerConfig {
            cert_file: Some("/c.pem".into()),
            cert_pem: Some(InlinePem("x".into())),
            key_file: Some("/k.pem".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("cert_pem") && e.contains("not both"), "{e}");
    }

    #[test]
    fn bad_files_are_start_errors_naming_key_and_file() {
        let pki = testing::make_pki();
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let good = pki.server_files();
        let cases = [
            (
                TlsServerConfig {
                    cert_file: Some(missing.clone()),
                    key_file: Some(good.key.clone()),
                    ..Default::default()
                },
                "cert_file",
                missing.clone(),
            ),
            (
                TlsServerConfig {
                    cert_file: Some(garbage.clone()),
                    key_file: Some(good.key.clone()),
                    ..Default::default()
                },
                "cert_file",
                garbage.clone(),
            ),
            (
                TlsServerConfig {
                    cert_file: Some(good.cert.clone()),
                    key_file: Some(garbage.clone()),
                    ..Default::default()
                },
                "key_file",
                garbage.clone(),
            ),
            (
                TlsServerConfig {
                    cert_file: Some(good.cert.clone()),
                    key_file: Some(good.key.clone()),
                    client_ca_file: Some(missing.clone()),
                    ..Default::default()
                },
                "client_ca_file",
                missing.clone(),
            ),
            (
                // A key that is not the certificate's.
                TlsServerConfig {
                    cert_file: Some(good.cert.clone()),
                    key_file: Some(pki.client_key_file.clone()),
                    ..Default::default()
                },
                "key_file",
                pki.client_key_file.clone(),
            ),
        ];
        for (config, key, file) in cases {
            let e = format!("{:#}", ServerTls::load(&config, &[b"h2"], "test").unwrap_err());
            assert!(e.contains(key), "{e}");
            assert!(e.contains(&file.display().to_string()), "{e}");
        }
        // Unreadable (a directory).
        let config = TlsServerConfig {
            cert_file: Some(dir.path().to_owned()),
            key_file: Some(good.key.clone()),
            ..Default::default()
        };
        let e = format!("{:#}", ServerTls::load(&config, &[b"h2"], "test").unwrap_err());
        assert!(e.contains("cert_file") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn inline_pem_works_and_is_not_printed() {
        let pki = testing::make_pki();
        let config = TlsServerConfig {
            cert_pem: Some(InlinePem(pki.server_cert_pem.clone())),
            key_pem: Some(InlinePem(pki.server_key_pem.clone())),
            ..Default::default()
        };
        ServerTls::load(&config, &[b"h2"], "test").unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }
}
