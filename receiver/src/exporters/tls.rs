//! Client TLS settings shared by the OTLP exporters: the subset of the
//! collector's `configtls.ClientConfig` that an agent needs.
//!
//! Both exporters verify the server with one rustls [`ServerCertVerifier`]
//! built here (trust roots from `ca_file` or the system store, an optional
//! server name override, or no verification at all), so gRPC and HTTP behave
//! the same way for the same `tls` block.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ValidationError;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

/// `tls` of an OTLP exporter.
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
    /// system trust store, as in the collector.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the server (mutual TLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name to send as SNI and to verify the server certificate against,
    /// instead of the endpoint's host.
    pub server_name_override: Option<String>,
}

impl TlsClientConfig {
    /// Errors name keys inside the `tls` section.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ValidationError::at(
                if self.cert_file.is_some() {
                    "cert_file"
                } else {
                    "key_file"
                },
                "for auth via TLS, provide both cert_file and key_file, or neither",
            ));
        }
        if let Some(name) = &self.server_name_override {
            ServerName::try_from(name.as_str()).map_err(|e| {
                ValidationError::at("server_name_override", format!("{name:?} is invalid: {e}"))
            })?;
        }
        Ok(())
    }

    /// Reads the files named in the config and builds what a TLS client needs.
    pub fn load(&self) -> anyhow::Result<ClientTls> {
        self.validate()
            .map_err(|e| anyhow::Error::new(e.within("tls")))?;
        let provider = Arc::new(crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            Arc::new(NoServerVerification {
                provider: provider.clone(),
            })
        } else {
            let roots = match &self.ca_file {
                Some(path) => roots_from_pem_file(path)?,
                None => system_roots()?,
            };
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
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(ClientIdentity::load(cert, key)?),
            _ => None,
        };
        Ok(ClientTls {
            provider,
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
    /// Verifies the server certificate (includes `server_name_override`).
    pub verifier: Arc<dyn ServerCertVerifier>,
    /// The client certificate for mutual TLS.
    pub identity: Option<ClientIdentity>,
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
    /// A rustls client config (TLS 1.2 and 1.3) offering the given ALPN protocols.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone());
        let mut config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "tls: the client certificate {} and key {} do not make a usable identity: {e}",
                        id.cert_file.display(),
                        id.key_file.display()
                    )
                })?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// A client certificate chain and its key, with the PEM text they came from
/// (tonic takes PEM).
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl ClientIdentity {
    fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Self> {
        let cert_pem = read_file(cert_file, "cert_file")?;
        let chain = certs_from_pem(&cert_pem, cert_file, "cert_file")?;
        let key_pem = read_file(key_file, "key_file")?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            anyhow::anyhow!(
                "tls::key_file {}: no usable PEM private key: {e}",
                key_file.display()
            )
        })?;
        Ok(ClientIdentity {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            cert_pem,
            key_pem,
            chain,
            key,
        })
    }
}

fn read_file(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("tls::{key}: cannot read {}: {e}", path.display()))
}

fn certs_from_pem(
    pem: &[u8],
    path: &Path,
    key: &str,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tls::{key} {}: bad PEM: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls::{key} {}: no PEM certificate found", path.display());
    }
    Ok(certs)
}

fn roots_from_pem_file(path: &Path) -> anyhow::Result<RootCertStore> {
    let pem = read_file(path, "ca_file")?;
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(&pem, path, "ca_file")? {
        roots.add(cert).map_err(|e| {
            anyhow::anyhow!(
                "tls::ca_file {}: unusable CA certificate: {e}",
                path.display()
            )
        })?;
    }
    Ok(roots)
}

fn system_roots() -> anyhow::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        anyhow::bail!(
            "tls: no CA certificates found in the system trust store ({}); set tls::ca_file, or tls::insecure for plain text",
            if errors.is_empty() { "it is empty".to_owned() } else { errors.join("; ") }
        );
    }
    Ok(roots)
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

/// Test material: a CA, a server certificate for `localhost`/127.0.0.1 and a
/// client certificate, all written as PEM files in a temporary directory.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod testing {
    use std::path::PathBuf;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    pub struct TestPki {
        /// Keeps the files alive.
        pub _dir: tempfile::TempDir,
        pub ca_file: PathBuf,
        pub server_cert_pem: String,
        pub server_key_pem: String,
        pub ca_pem: String,
        pub client_cert_file: PathBuf,
        pub client_key_file: PathBuf,
    }

    pub fn make_pki() -> TestPki {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "oomscope test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("server cert");

        let client_key = KeyPair::generate().expect("client key");
        let mut client_params =
            CertificateParams::new(vec!["oomscope-client".to_owned()]).expect("client params");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params
            .signed_by(&client_key, &issuer)
            .expect("client cert");

        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write ca");
        let client_cert_file = dir.path().join("client.pem");
        std::fs::write(&client_cert_file, client_cert.pem()).expect("write client cert");
        let client_key_file = dir.path().join("client-key.pem");
        std::fs::write(&client_key_file, client_key.serialize_pem()).expect("write client key");
        TestPki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            _dir: dir,
            ca_file,
            client_cert_file,
            client_key_file,
        }
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
        let pki = testing::make_pki();
        let c = TlsClientConfig {
            ca_file: Some(pki.ca_file.clone()),
            cert_file: Some(pki.client_cert_file.clone()),
            key_file: Some(pki.client_key_file.clone()),
            ..Default::default()
        };
        let tls = c.load().unwrap();
        assert!(tls.identity.is_some());
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
}
