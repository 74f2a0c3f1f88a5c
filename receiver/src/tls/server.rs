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
        PemSource::pick(
            "ca_file",
            self.ca_file.as_ref(),
            "ca_pem",
            self.ca_pem.as_ref(),
        )?;
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
        let sources = self
            .sources()
            .map_err(|e| anyhow::Error::new(e.within("tls")))?;
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
        let e = TlsServerConfig::default()
            .validate()
            .unwrap_err()
            .to_string();
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
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
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
            let e = format!(
                "{:#}",
                ServerTls::load(&config, &[b"h2"], "test").unwrap_err()
            );
            assert!(e.contains(key), "{e}");
            assert!(e.contains(&file.display().to_string()), "{e}");
        }
        // Unreadable (a directory).
        let config = TlsServerConfig {
            cert_file: Some(dir.path().to_owned()),
            key_file: Some(good.key.clone()),
            ..Default::default()
        };
        let e = format!(
            "{:#}",
            ServerTls::load(&config, &[b"h2"], "test").unwrap_err()
        );
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

    /// A TLS echo server on 127.0.0.1 through the servers' accept path.
    struct EchoServer {
        addr: std::net::SocketAddr,
        stop: tokio_util::sync::CancellationToken,
    }

    impl Drop for EchoServer {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    async fn echo_server(config: &TlsServerConfig) -> EchoServer {
        use futures::StreamExt as _;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let tls = ServerTls::load(config, &[b"h2"], "test").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let acceptor = crate::server::Acceptor::new(
            listener,
            crate::server::ConnectionLimits::with_max_connections(16),
            stop.clone(),
        );
        let mut incoming = Box::pin(crate::tls::incoming::tls_incoming(
            acceptor,
            tls,
            crate::test_support::WAIT,
        ));
        tokio::spawn(async move {
            while let Some(Ok(mut conn)) = incoming.next().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4];
                    if conn.read_exact(&mut buf).await.is_ok() {
                        let _ = conn.write_all(&buf).await;
                        let _ = conn.flush().await;
                    }
                });
            }
        });
        EchoServer { addr, stop }
    }

    /// A TLS client that trusts `ca_file`, offers `versions` and, when
    /// given, the client certificate: completes a round trip and returns the
    /// server's certificate and the negotiated suite, or why it failed (a
    /// refused client certificate shows in TLS 1.3 only after the client's
    /// handshake, hence the round trip).
    async fn talk(
        addr: std::net::SocketAddr,
        ca_file: &std::path::Path,
        versions: &[&'static rustls::SupportedProtocolVersion],
        client: Option<&testing::CertFiles>,
    ) -> Result<(Vec<u8>, rustls::CipherSuite), String> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let c = crate::tls::TlsClientConfig {
            ca_file: Some(ca_file.to_owned()),
            cert_file: client.map(|c| c.cert.clone()),
            key_file: client.map(|c| c.key.clone()),
            ..Default::default()
        };
        let loaded = c.load().unwrap();
        let mut config = loaded.rustls_config(&[b"h2"]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Only the versions asked for.
        let verifier = Arc::clone(&loaded.verifier);
        let resolver = Arc::clone(&config.client_auth_cert_resolver);
        config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(resolver);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(b"ping").await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let (_, session) = stream.get_ref();
        let cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        let suite = session.negotiated_cipher_suite().unwrap().suite();
        Ok((cert, suite))
    }

    fn der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject as _;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    const BOTH: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

    fn server_config(pki: &testing::TestPki) -> TlsServerConfig {
        let files = pki.server_files();
        TlsServerConfig {
            cert_file: Some(files.cert),
            key_file: Some(files.key),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn min_and_max_version_are_enforced() {
        let pki = testing::make_pki();
        let server = echo_server(&server_config(&pki)).await;
        talk(server.addr, &pki.ca_file, TLS12, None).await.unwrap();
        talk(server.addr, &pki.ca_file, TLS13, None).await.unwrap();

        let only13 = echo_server(&TlsServerConfig {
            min_version: Some("1.3".into()),
            ..server_config(&pki)
        })
        .await;
        let refused = talk(only13.addr, &pki.ca_file, TLS12, None).await;
        assert!(refused.is_err(), "TLS 1.2 accepted with min_version 1.3");
        talk(only13.addr, &pki.ca_file, BOTH, None).await.unwrap();

        let only12 = echo_server(&TlsServerConfig {
            max_version: Some("1.2".into()),
            ..server_config(&pki)
        })
        .await;
        assert!(talk(only12.addr, &pki.ca_file, TLS13, None).await.is_err());
        talk(only12.addr, &pki.ca_file, BOTH, None).await.unwrap();
    }

    #[tokio::test]
    async fn cipher_suites_limit_what_is_negotiated() {
        let pki = testing::make_pki();
        let server = echo_server(&TlsServerConfig {
            cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".into()],
            max_version: Some("1.2".into()),
            ..server_config(&pki)
        })
        .await;
        let (_, suite) = talk(server.addr, &pki.ca_file, BOTH, None).await.unwrap();
        assert_eq!(
            suite,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        );
    }

    #[tokio::test]
    async fn mutual_tls_refuses_missing_expired_and_foreign_client_certificates() {
        let pki = testing::make_pki();
        let server = echo_server(&TlsServerConfig {
            client_ca_file: Some(pki.ca_file.clone()),
            ..server_config(&pki)
        })
        .await;
        let good = pki.client("good", false, false);
        let expired = pki.client("expired-client", true, false);
        let foreign = pki.client("foreign-client", false, true);
        for versions in [TLS12, TLS13] {
            talk(server.addr, &pki.ca_file, versions, Some(&good))
                .await
                .unwrap();
            for (what, client) in [
                ("no certificate", None),
                ("an expired certificate", Some(&expired)),
                ("another CA's certificate", Some(&foreign)),
            ] {
                let r = talk(server.addr, &pki.ca_file, versions, client).await;
                assert!(r.is_err(), "{what} accepted over {versions:?}");
            }
        }
    }

    #[tokio::test]
    async fn clients_refuse_expired_and_foreign_server_certificates() {
        let pki = testing::make_pki();
        for files in [pki.expired_server(), pki.foreign_server()] {
            let server = echo_server(&TlsServerConfig {
                cert_file: Some(files.cert.clone()),
                key_file: Some(files.key.clone()),
                ..Default::default()
            })
            .await;
            let r = talk(server.addr, &pki.ca_file, BOTH, None).await;
            let e = r.unwrap_err();
            assert!(
                e.contains("expired")
                    || e.contains("UnknownIssuer")
                    || e.contains("invalid peer certificate"),
                "{e}"
            );
        }
    }

    /// New connections get rotated certificate files once reload_interval
    /// has passed; a broken file keeps the last good certificate.
    #[tokio::test]
    async fn reload_interval_serves_rotated_certificates() {
        let pki = testing::make_pki();
        let files = pki.server_files();
        let server = echo_server(&TlsServerConfig {
            cert_file: Some(files.cert.clone()),
            key_file: Some(files.key.clone()),
            reload_interval: Some(GoDuration::from_millis(50)),
            ..Default::default()
        })
        .await;
        let (first, _) = talk(server.addr, &pki.ca_file, BOTH, None).await.unwrap();
        assert_eq!(first, der(&files.cert_pem));

        let rotated = pki.another_server("rotated", "rotated server");
        // Replace as deployment tools do: write aside, rename over.
        let (new_key, new_cert) = (
            files.key.with_extension("key-new"),
            files.cert.with_extension("crt-new"),
        );
        std::fs::copy(&rotated.key, &new_key).unwrap();
        std::fs::copy(&rotated.cert, &new_cert).unwrap();
        std::fs::rename(&new_key, &files.key).unwrap();
        std::fs::rename(&new_cert, &files.cert).unwrap();
        let want = der(&rotated.cert_pem);
        let deadline = tokio::time::Instant::now() + crate::test_support::WAIT;
        loop {
            let (seen, _) = talk(server.addr, &pki.ca_file, BOTH, None).await.unwrap();
            if seen == want {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the rotated certificate was never served"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A broken file: the last good certificate stays in use.
        std::fs::write(&files.cert, "garbage").unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        let (seen, _) = talk(server.addr, &pki.ca_file, BOTH, None).await.unwrap();
        assert_eq!(seen, want);
    }

    /// With client_ca_file_reload, a replaced client CA file takes effect
    /// for new connections.
    #[tokio::test]
    async fn client_ca_file_reload_follows_the_file() {
        let pki = testing::make_pki();
        let client_ca = pki._dir.path().join("client-ca.pem");
        std::fs::copy(&pki.ca_file, &client_ca).unwrap();
        let server = echo_server(&TlsServerConfig {
            client_ca_file: Some(client_ca.clone()),
            client_ca_file_reload: true,
            ..server_config(&pki)
        })
        .await;
        let foreign = pki.client("newco", false, true);
        assert!(talk(server.addr, &pki.ca_file, TLS13, Some(&foreign))
            .await
            .is_err());
        let tmp = client_ca.with_extension("new");
        std::fs::copy(pki._dir.path().join("newco-ca.crt"), &tmp).unwrap();
        std::fs::rename(&tmp, &client_ca).unwrap();
        let deadline = tokio::time::Instant::now() + crate::test_support::WAIT;
        while talk(server.addr, &pki.ca_file, TLS13, Some(&foreign))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the new client CA was never used"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
