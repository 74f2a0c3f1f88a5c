//! Client TLS: the collector's `configtls.ClientConfig` keys, for the OTLP
//! exporters and `oomscope events`.
//!
//! Every client verifies the server with one rustls [`ServerCertVerifier`]
//! built here (trust roots from `ca_file`/`ca_pem` and, or else, the system
//! store; an optional server name override; or no verification at all), so
//! gRPC and HTTP behave the same way for the same `tls` block. The client
//! certificate is re-read every `reload_interval`.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{GoDuration, ValidationError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use tokio::time::Instant;

use super::{certified_key, root_store, InlinePem, PemSource, Protocol};

/// `tls` of a client (the OTLP exporters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// gRPC only: talk plain text (h2c) instead of TLS. For HTTP the URL
    /// scheme (`http://` or `https://`) decides, as in the collector.
    pub insecure: bool,
    /// Accept any server certificate (chain and name are not checked; the
    /// handshake signature still is). For testing only.
    pub insecure_skip_verify: bool,
    /// PEM file of the CA certificates that verify the server. Replaces the
    /// system trust store unless `include_system_ca_certs_pool`.
    pub ca_file: Option<PathBuf>,
    /// The same, inline.
    pub ca_pem: Option<InlinePem>,
    /// Trust the system's CA certificates besides `ca_file`/`ca_pem`.
    pub include_system_ca_certs_pool: bool,
    /// PEM certificate chain presented to the server (mutual TLS); needs a key.
    pub cert_file: Option<PathBuf>,
    /// The same, inline.
    pub cert_pem: Option<InlinePem>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
    /// The same, inline.
    pub key_pem: Option<InlinePem>,
    /// The name to send as SNI and to verify the server certificate against,
    /// instead of the endpoint's host.
    pub server_name_override: Option<String>,
    /// Lowest TLS version ("1.2" unless set).
    pub min_version: Option<String>,
    /// Highest TLS version ("1.3" unless set).
    pub max_version: Option<String>,
    /// Go names of the suites offered; empty for the safe defaults.
    pub cipher_suites: Vec<String>,
    /// Re-read the client certificate and key this often; unset or 0 for never.
    pub reload_interval: Option<GoDuration>,
}

impl TlsClientConfig {
    fn protocol(&self) -> Protocol {
        Protocol {
            min_version: self.min_version.clone(),
            max_version: self.max_version.clone(),
            cipher_suites: self.cipher_suites.clone(),
        }
    }

    fn identity_sources(&self) -> Result<Option<(PemSource, PemSource)>, ValidationError> {
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
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (cert, _) => Err(ValidationError::at(
                if cert.is_some() {
                    "cert_file"
                } else {
                    "key_file"
                },
                "for auth via TLS, provide both cert_file and key_file, or neither",
            )),
        }
    }

    fn ca_source(&self) -> Result<Option<PemSource>, ValidationError> {
        PemSource::pick(
            "ca_file",
            self.ca_file.as_ref(),
            "ca_pem",
            self.ca_pem.as_ref(),
        )
    }

    /// Errors name keys inside the `tls` section.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.identity_sources()?;
        self.ca_source()?;
        self.protocol().validate()?;
        if let Some(name) = &self.server_name_override {
            ServerName::try_from(name.as_str()).map_err(|e| {
                ValidationError::at("server_name_override", format!("{name:?} is invalid: {e}"))
            })?;
        }
        Ok(())
    }

    /// Reads the files named in the config and builds what a TLS client needs.
    pub fn load(&self) -> anyhow::Result<ClientTls> {
        let within = |e: ValidationError| anyhow::Error::new(e.within("tls"));
        self.validate().map_err(within)?;
        let protocol = self.protocol();
        let versions = protocol.versions().map_err(within)?;
        let provider = Arc::new(protocol.provider().map_err(within)?);
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            Arc::new(NoServerVerification {
                provider: provider.clone(),
            })
        } else {
            let ca = self.ca_source().map_err(within)?;
            let roots = root_store(ca.as_ref(), self.include_system_ca_certs_pool)?;
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| anyhow::anyhow!("tls: cannot build the certificate verifier: {e}"))?
        };
        let verifier: Arc<dyn ServerCertVerifier> = match &self.server_name_override {
            Some(name) if !self.insecure_skip_verify => {
                let name = ServerName::try_from(name.clone()).map_err(|e| {
                    anyhow::anyhow!("tls::server_name_override {name:?} is invalid: {e}")
                })?;
                Arc::new(ServerNameOverride {
                    inner: verifier,
                    name,
                })
            }
            _ => verifier,
        };
        let identity = match self.identity_sources().map_err(within)? {
            Some((cert, key)) => Some(Arc::new(ReloadingIdentity::load(
                cert,
                key,
                Arc::clone(&provider),
                self.reload_interval
                    .map(GoDuration::get)
                    .filter(|d| !d.is_zero()),
            )?)),
            None => None,
        };
        Ok(ClientTls {
            provider,
            versions,
            verifier,
            identity,
            server_name: self.server_name_override.clone(),
        })
    }
}

/// A loaded client TLS setup, ready for tonic or reqwest.
#[derive(Clone)]
pub struct ClientTls {
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    /// Verifies the server certificate (includes `server_name_override`).
    pub verifier: Arc<dyn ServerCertVerifier>,
    /// The client certificate for mutual TLS.
    identity: Option<Arc<ReloadingIdentity>>,
    /// `server_name_override`: also the SNI where the client lets us set it.
    pub server_name: Option<String>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_identity", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Whether a client certificate is configured.
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// A rustls client config (the allowed versions and suites) offering the
    /// given ALPN protocols.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| anyhow::anyhow!("tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone());
        let mut config = match &self.identity {
            Some(id) => {
                builder.with_client_cert_resolver(Arc::clone(id) as Arc<dyn ResolvesClientCert>)
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// What a gRPC client needs to dial with this setup (ALPN `h2`).
    pub fn dialer(&self) -> anyhow::Result<TlsDialer> {
        Ok(TlsDialer {
            config: Arc::new(self.rustls_config(&[b"h2"])?),
            server_name: self.server_name.clone(),
        })
    }
}

/// A TLS connection as tonic's connector hands it over.
pub type TlsIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<super::tcp::TcpStream>>;

/// A ready TLS client config and the name to verify the server as.
#[derive(Clone, Debug)]
pub struct TlsDialer {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl TlsDialer {
    /// A connector for tonic's `Endpoint::connect_with_connector`; with
    /// `quick_ack`, its connections acknowledge each read at once (see
    /// [`super::tcp`]).
    pub fn connector(
        &self,
        quick_ack: bool,
    ) -> impl tower::Service<
        http::Uri,
        Response = TlsIo,
        Error = std::io::Error,
        Future = impl std::future::Future<Output = std::io::Result<TlsIo>> + Send,
    > + Clone
           + Send
           + 'static {
        tcp_connector(
            Arc::clone(&self.config),
            self.server_name.clone(),
            quick_ack,
        )
    }
}

/// A connector for tonic (`Endpoint::connect_with_connector`): connects
/// over TCP to the URI's host and port and runs the TLS handshake with
/// `config`, verifying the server as `server_name` (`server_name_override`)
/// or the URI's host.
fn tcp_connector(
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
    quick_ack: bool,
) -> impl tower::Service<
    http::Uri,
    Response = TlsIo,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = std::io::Result<TlsIo>> + Send,
> + Clone
       + Send
       + 'static {
    let connector = tokio_rustls::TlsConnector::from(config);
    tower::service_fn(move |uri: http::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        async move {
            let invalid =
                |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
            let tcp = super::tcp::TcpStream::connect(&uri, 443, quick_ack).await?;
            let host = uri.host().unwrap_or_default();
            let name = server_name.unwrap_or_else(|| {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            });
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| invalid(format!("TLS server name {name:?}: {e}")))?;
            let tls = connector.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        }
    })
}

/// The client certificate and key, re-read every `reload_interval` (on the
/// next handshake after it elapsed). A re-read that fails keeps the last
/// good pair and says why.
#[derive(Debug)]
struct ReloadingIdentity {
    cert: PemSource,
    key: PemSource,
    provider: Arc<CryptoProvider>,
    interval: Option<Duration>,
    state: Mutex<(Arc<CertifiedKey>, Option<Instant>)>,
}

impl ReloadingIdentity {
    fn load(
        cert: PemSource,
        key: PemSource,
        provider: Arc<CryptoProvider>,
        interval: Option<Duration>,
    ) -> anyhow::Result<Self> {
        let current = certified_key(&cert, &key, &provider)?;
        let next = interval.map(|d| Instant::now() + d);
        Ok(ReloadingIdentity {
            cert,
            key,
            provider,
            interval,
            state: Mutex::new((current, next)),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if state.1.is_some_and(|at| now >= at) {
            state.1 = self.interval.map(|d| now + d);
            match certified_key(&self.cert, &self.key, &self.provider) {
                Ok(key) => state.0 = key,
                Err(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "cannot re-read the TLS client certificate; keeping the previous one"
                ),
            }
        }
        Arc::clone(&state.0)
    }
}

impl ResolvesClientCert for ReloadingIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies the server certificate against a fixed name instead of the
/// endpoint's host (`server_name_override`).
#[derive(Debug)]
struct ServerNameOverride {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ServerNameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate chain and name is accepted, like
/// Go's `InsecureSkipVerify`; the handshake signature is still checked.
#[derive(Debug)]
struct NoServerVerification {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cert_without_key_is_rejected() {
        let c = TlsClientConfig {
            cert_file: Some("/x.pem".into()),
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("both cert_file and key_file"));
    }

    #[test]
    fn read_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope-ca.pem");
        let c = TlsClientConfig {
            ca_file: Some(missing.clone()),
            ..Default::default()
        };
        let err = c.load().unwrap_err().to_string();
        assert!(err.contains("ca_file"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem").unwrap();
        let c = TlsClientConfig {
            ca_file: Some(garbage.clone()),
            ..Default::default()
        };
        let err = c.load().unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn loads_ca_and_client_identity() {
        let pki = crate::tls::testing::make_pki();
        let c = TlsClientConfig {
            ca_file: Some(pki.ca_file.clone()),
            cert_file: Some(pki.client_cert_file.clone()),
            key_file: Some(pki.client_key_file.clone()),
            ..Default::default()
        };
        let tls = c.load().unwrap();
        assert!(tls.has_identity());
        tls.rustls_config(&[b"h2"]).unwrap();

        // A key that does not parse names its file.
        let c = TlsClientConfig {
            key_file: Some(pki.ca_file.clone()),
            ..c
        };
        let err = c.load().unwrap_err().to_string();
        assert!(err.contains("key_file"), "{err}");
    }

    #[test]
    fn bad_server_name_override_is_rejected() {
        let c = TlsClientConfig {
            server_name_override: Some("not a name!".into()),
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }

    /// The client certificate is re-read once reload_interval has passed;
    /// a file that no longer loads keeps the last good one.
    #[tokio::test]
    async fn client_certificate_is_reloaded() {
        let pki = crate::tls::testing::make_pki();
        let cert = pki._dir.path().join("rotating.crt");
        let key = pki._dir.path().join("rotating.key");
        std::fs::copy(&pki.client_cert_file, &cert).unwrap();
        std::fs::copy(&pki.client_key_file, &key).unwrap();
        let c = TlsClientConfig {
            ca_file: Some(pki.ca_file.clone()),
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            reload_interval: Some(GoDuration::from_millis(20)),
            ..Default::default()
        };
        let tls = c.load().unwrap();
        let identity = tls.identity.clone().unwrap();
        let first = identity.current().cert[0].clone();
        let next = pki.client("next", false, false);
        std::fs::copy(&next.key, &key).unwrap();
        std::fs::copy(&next.cert, &cert).unwrap();
        let deadline = Instant::now() + crate::test_support::WAIT;
        while identity.current().cert[0] == first {
            assert!(
                Instant::now() < deadline,
                "the new client certificate was never used"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = identity.current().cert[0].clone();
        std::fs::write(&cert, "broken").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(identity.current().cert[0], second);
    }
}
