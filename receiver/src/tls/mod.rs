//! TLS for every endpoint, with the collector's `configtls` keys: one module
//! for the servers (OTLP gRPC and HTTP receivers, the OOM events API) and the
//! clients (the OTLP exporters, `oomscope events`), all on rustls.
//!
//! - this file: what servers and clients share: `min_version`/`max_version`,
//!   `cipher_suites` (Go's names, as the collector takes them), PEM from a
//!   file or inline, trust roots (with `include_system_ca_certs_pool`);
//! - `server`: [`TlsServerConfig`] and [`ServerTls`], which re-reads the
//!   certificate, key and client CA (`reload_interval`,
//!   `client_ca_file_reload`) so new connections get new files without a
//!   restart;
//! - `client`: [`TlsClientConfig`] and [`ClientTls`] (`insecure`,
//!   `insecure_skip_verify`, `server_name_override`, a reloaded client
//!   certificate);
//! - `incoming`: TLS handshakes of accepted connections, each in its own
//!   task and bounded in time, for tonic and hyper;
//! - `tcp`: the TCP connections the gRPC clients dial, plain or under TLS
//!   (with an acknowledge-at-once option for urgent requests).

pub mod client;
pub(crate) mod incoming;
pub mod server;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testing;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, SupportedProtocolVersion};
use serde::Deserialize;

use crate::config::ValidationError;

pub use client::{ClientTls, TlsClientConfig, TlsDialer};
pub use server::{ServerTls, TlsServerConfig};

/// Inline PEM text (`cert_pem`, `key_pem`, `ca_pem`). Its `Debug` does not
/// show the text: a key must not reach a log.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct InlinePem(pub String);

impl fmt::Debug for InlinePem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InlinePem({} bytes)", self.0.len())
    }
}

/// A TLS protocol version as the collector spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Version {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl Version {
    fn parse(key: &str, text: &str) -> Result<Version, ValidationError> {
        match text.trim() {
            "1.0" => Ok(Version::V1_0),
            "1.1" => Ok(Version::V1_1),
            "1.2" => Ok(Version::V1_2),
            "1.3" => Ok(Version::V1_3),
            other => Err(ValidationError::at(
                key,
                format!("unsupported TLS version {other:?}: expected \"1.0\", \"1.1\", \"1.2\" or \"1.3\""),
            )),
        }
    }
}

/// Go's cipher suite names (`crypto/tls`, which the collector's
/// `cipher_suites` takes) with the rustls suite each is, where rustls has it.
/// rustls offers only AEAD suites with forward secrecy; the others are
/// named here so that the error can say why they are refused.
const CIPHER_SUITES: &[(&str, Option<rustls::CipherSuite>)] = {
    use rustls::CipherSuite as S;
    &[
        ("TLS_AES_128_GCM_SHA256", Some(S::TLS13_AES_128_GCM_SHA256)),
        ("TLS_AES_256_GCM_SHA384", Some(S::TLS13_AES_256_GCM_SHA384)),
        (
            "TLS_CHACHA20_POLY1305_SHA256",
            Some(S::TLS13_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Some(S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            Some(S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            Some(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            Some(S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Some(S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            Some(S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None),
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None),
        ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None),
        ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", None),
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", None),
        ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", None),
        ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", None),
        ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", None),
        ("TLS_RSA_WITH_RC4_128_SHA", None),
        ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", None),
        ("TLS_RSA_WITH_AES_128_CBC_SHA", None),
        ("TLS_RSA_WITH_AES_256_CBC_SHA", None),
        ("TLS_RSA_WITH_AES_128_CBC_SHA256", None),
        ("TLS_RSA_WITH_AES_128_GCM_SHA256", None),
        ("TLS_RSA_WITH_AES_256_GCM_SHA384", None),
    ]
};

/// The names `cipher_suites` accepts (for messages and docs).
pub fn supported_cipher_suite_names() -> Vec<&'static str> {
    CIPHER_SUITES
        .iter()
        .filter(|(_, suite)| suite.is_some())
        .map(|(name, _)| *name)
        .collect()
}

fn is_tls13(suite: rustls::CipherSuite) -> bool {
    matches!(
        suite,
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
            | rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    )
}

/// The keys servers and clients share: protocol versions and cipher suites.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Vec<String>,
}

impl Protocol {
    /// The rustls versions allowed. rustls has TLS 1.2 and 1.3 only: a
    /// `min_version` of "1.0" or "1.1" allows 1.2 and up (stricter than
    /// asked, never looser); a `max_version` below 1.2 leaves nothing and is
    /// an error.
    pub fn versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, ValidationError> {
        let min = match &self.min_version {
            Some(v) if !v.trim().is_empty() => Version::parse("min_version", v)?,
            _ => Version::V1_2,
        };
        let max = match &self.max_version {
            Some(v) if !v.trim().is_empty() => Version::parse("max_version", v)?,
            _ => Version::V1_3,
        };
        if min > max {
            return Err(ValidationError::at(
                "min_version",
                "min_version cannot be greater than max_version",
            ));
        }
        if max < Version::V1_2 {
            return Err(ValidationError::at(
                "max_version",
                "TLS 1.0 and 1.1 are not supported (rustls offers 1.2 and 1.3): max_version must be \"1.2\" or \"1.3\"",
            ));
        }
        let mut versions = Vec::with_capacity(2);
        if min <= Version::V1_2 {
            versions.push(&rustls::version::TLS12);
        }
        if max >= Version::V1_3 {
            versions.push(&rustls::version::TLS13);
        }
        Ok(versions)
    }

    /// The crypto provider with the suites `cipher_suites` allows. An empty
    /// list keeps rustls's defaults. TLS 1.3 suites are restricted only when
    /// the list names one (Go ignores the list for TLS 1.3 altogether).
    pub fn provider(&self) -> Result<CryptoProvider, ValidationError> {
        let mut provider = crypto::ring::default_provider();
        let versions = self.versions()?;
        if self.cipher_suites.is_empty() {
            return Ok(provider);
        }
        let mut wanted = Vec::with_capacity(self.cipher_suites.len());
        for name in &self.cipher_suites {
            match CIPHER_SUITES.iter().find(|(known, _)| known == name) {
                Some((_, Some(suite))) => wanted.push(*suite),
                Some((_, None)) => {
                    return Err(ValidationError::at(
                        "cipher_suites",
                        format!(
                            "{name} is not offered (only AEAD suites with forward secrecy are); supported: {}",
                            supported_cipher_suite_names().join(", ")
                        ),
                    ))
                }
                None => {
                    return Err(ValidationError::at(
                        "cipher_suites",
                        format!(
                            "invalid TLS cipher suite: {name:?}; supported: {}",
                            supported_cipher_suite_names().join(", ")
                        ),
                    ))
                }
            }
        }
        let restrict13 = wanted.iter().any(|s| is_tls13(*s));
        provider.cipher_suites.retain(|s| {
            let suite = s.suite();
            if is_tls13(suite) && !restrict13 {
                true
            } else {
                wanted.contains(&suite)
            }
        });
        let usable = versions
            .iter()
            .any(|v| provider.cipher_suites.iter().any(|s| s.version() == *v));
        if !usable {
            return Err(ValidationError::at(
                "cipher_suites",
                "none of the listed suites is usable with the TLS versions min_version/max_version allow",
            ));
        }
        Ok(provider)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        self.provider().map(drop)
    }
}

/// Where PEM text comes from: `<x>_file` or `<x>_pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PemSource {
    File { key: &'static str, path: PathBuf },
    Inline { key: &'static str, text: String },
}

impl PemSource {
    /// `file` or `pem`; both set is an error naming the two keys.
    pub fn pick(
        file_key: &'static str,
        file: Option<&PathBuf>,
        pem_key: &'static str,
        pem: Option<&InlinePem>,
    ) -> Result<Option<PemSource>, ValidationError> {
        match (file, pem) {
            (Some(_), Some(_)) => Err(ValidationError::at(
                pem_key,
                format!("provide either {file_key} or {pem_key}, but not both"),
            )),
            (Some(path), None) => Ok(Some(PemSource::File {
                key: file_key,
                path: path.clone(),
            })),
            (None, Some(text)) => Ok(Some(PemSource::Inline {
                key: pem_key,
                text: text.0.clone(),
            })),
            (None, None) => Ok(None),
        }
    }

    /// The key and, for a file, its path: what an error names.
    pub fn describe(&self) -> String {
        match self {
            PemSource::File { key, path } => format!("{key} {}", path.display()),
            PemSource::Inline { key, .. } => (*key).to_owned(),
        }
    }

    pub fn read(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            PemSource::File { key, path } => std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("tls::{key}: cannot read {}: {e}", path.display())),
            PemSource::Inline { text, .. } => Ok(text.as_bytes().to_vec()),
        }
    }

    /// Every certificate in it; none, or bad PEM, is an error.
    pub fn certificates(&self) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let pem = self.read()?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("tls::{}: bad PEM: {e}", self.describe()))?;
        if certs.is_empty() {
            anyhow::bail!("tls::{}: no PEM certificate found", self.describe());
        }
        Ok(certs)
    }

    /// The first private key in it.
    pub fn private_key(&self) -> anyhow::Result<PrivateKeyDer<'static>> {
        let pem = self.read()?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            anyhow::anyhow!("tls::{}: no usable PEM private key: {e}", self.describe())
        })
    }
}

/// A certificate chain and its key, checked to belong together.
pub(crate) fn certified_key(
    cert: &PemSource,
    key: &PemSource,
    provider: &CryptoProvider,
) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
    let chain = cert.certificates()?;
    let private = key.private_key()?;
    let certified =
        rustls::sign::CertifiedKey::from_der(chain, private, provider).map_err(|e| {
            anyhow::anyhow!(
                "tls: the certificate ({}) and the key ({}) do not make a usable pair: {e}",
                cert.describe(),
                key.describe()
            )
        })?;
    Ok(Arc::new(certified))
}

/// Trust roots from `source`, plus the system's when `include_system` (the
/// collector's `include_system_ca_certs_pool`); with no source, the
/// system's alone.
pub(crate) fn root_store(
    source: Option<&PemSource>,
    include_system: bool,
) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if include_system || source.is_none() {
        roots = system_roots()?;
    }
    if let Some(source) = source {
        for cert in source.certificates()? {
            roots.add(cert).map_err(|e| {
                anyhow::anyhow!("tls::{}: unusable CA certificate: {e}", source.describe())
            })?;
        }
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
            "tls: no CA certificates found in the system trust store ({}); set tls::ca_file",
            if errors.is_empty() {
                "it is empty".to_owned()
            } else {
                errors.join("; ")
            }
        );
    }
    Ok(roots)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn protocol(min: &str, max: &str, suites: &[&str]) -> Protocol {
        Protocol {
            min_version: (!min.is_empty()).then(|| min.to_owned()),
            max_version: (!max.is_empty()).then(|| max.to_owned()),
            cipher_suites: suites.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn versions_default_to_1_2_and_up() {
        let v = protocol("", "", &[]).versions().unwrap();
        assert_eq!(v, [&rustls::version::TLS12, &rustls::version::TLS13]);
        assert_eq!(
            protocol("1.3", "", &[]).versions().unwrap(),
            [&rustls::version::TLS13]
        );
        assert_eq!(
            protocol("", "1.2", &[]).versions().unwrap(),
            [&rustls::version::TLS12]
        );
        // 1.0 and 1.1 as minimum: rustls's lowest, 1.2.
        assert_eq!(protocol("1.0", "", &[]).versions().unwrap().len(), 2);
        let e = protocol("1.3", "1.2", &[])
            .versions()
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_version"), "{e}");
        let e = protocol("", "1.1", &[]).versions().unwrap_err().to_string();
        assert!(e.contains("max_version"), "{e}");
        let e = protocol("1.4", "", &[]).versions().unwrap_err().to_string();
        assert!(e.contains("min_version") && e.contains("1.4"), "{e}");
    }

    #[test]
    fn cipher_suites_take_go_names_and_name_the_unknown_one() {
        let p = protocol("", "", &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
            .provider()
            .unwrap();
        let names: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        // TLS 1.2: only the listed one; TLS 1.3: all (none listed).
        assert!(names.contains(&rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
        assert!(!names.contains(&rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384));
        assert!(names.contains(&rustls::CipherSuite::TLS13_AES_256_GCM_SHA384));

        let p = protocol("", "", &["TLS_AES_128_GCM_SHA256"]).provider();
        let names: Vec<_> = p.unwrap().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(names, [rustls::CipherSuite::TLS13_AES_128_GCM_SHA256]);

        let e = protocol("", "", &["TLS_BOGUS"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cipher_suites") && e.contains("TLS_BOGUS"),
            "{e}"
        );
        let e = protocol("", "", &["TLS_RSA_WITH_AES_128_CBC_SHA"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not offered"), "{e}");
        let e = protocol("1.3", "", &["TLS_AES_128_GCM_SHA256x"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("TLS_AES_128_GCM_SHA256x"), "{e}");
        let e = protocol("", "1.2", &["TLS_AES_128_GCM_SHA256"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("usable"), "{e}");
    }

    /// `include_system_ca_certs_pool` adds the system's CAs to ca_file's.
    #[test]
    fn system_pool_is_added_when_asked() {
        let Ok(system) = root_store(None, false) else {
            eprintln!("SKIPPED: system_pool_is_added_when_asked: this host has no system CA store");
            return;
        };
        let pki = testing::make_pki();
        let source = PemSource::File {
            key: "ca_file",
            path: pki.ca_file.clone(),
        };
        assert_eq!(root_store(Some(&source), false).unwrap().len(), 1);
        assert_eq!(
            root_store(Some(&source), true).unwrap().len(),
            system.len() + 1
        );
    }
}
