//! Test material: a CA, server certificates for `localhost`/127.0.0.1 (a
//! valid one, an expired one, one from another CA) and a client
//! certificate, written as PEM files in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub struct TestPki {
    /// Keeps the files alive.
    pub _dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and key written to files.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
}

fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, name);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    (ca_cert, Issuer::new(ca_params, ca_key))
}

fn server_cert(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    expired: bool,
) -> (String, String) {
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, issuer).expect("server cert");
    (cert.pem(), key.serialize_pem())
}

pub fn make_pki() -> TestPki {
    let (ca_cert, issuer) = ca("oomscope test CA");
    let (server_cert_pem, server_key_pem) = server_cert(&issuer, "oomscope test server", false);

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
        server_cert_pem,
        server_key_pem,
        _dir: dir,
        ca_file,
        client_cert_file,
        client_key_file,
        issuer,
    }
}

impl TestPki {
    fn write(&self, name: &str, cert_pem: String, key_pem: &str) -> CertFiles {
        let cert = self._dir.path().join(format!("{name}.crt"));
        let key = self._dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, &cert_pem).expect("write cert");
        std::fs::write(&key, key_pem).expect("write key");
        CertFiles {
            cert,
            key,
            cert_pem,
        }
    }

    /// The valid server certificate as files.
    pub fn server_files(&self) -> CertFiles {
        self.write("server", self.server_cert_pem.clone(), &self.server_key_pem)
    }

    /// Another valid server certificate of the same CA (common name `cn`).
    pub fn another_server(&self, name: &str, cn: &str) -> CertFiles {
        let (cert, key) = server_cert(&self.issuer, cn, false);
        self.write(name, cert, &key)
    }

    /// An expired server certificate of the same CA.
    pub fn expired_server(&self) -> CertFiles {
        let (cert, key) = server_cert(&self.issuer, "expired", true);
        self.write("expired", cert, &key)
    }

    /// A server certificate of another CA.
    pub fn foreign_server(&self) -> CertFiles {
        let (_, other) = ca("another CA");
        let (cert, key) = server_cert(&other, "foreign", false);
        self.write("foreign", cert, &key)
    }

    /// A client certificate: of this CA (`expired` or not), or of another
    /// CA (`foreign`), whose CA is written to `<name>-ca.crt`.
    pub fn client(&self, name: &str, expired: bool, foreign: bool) -> CertFiles {
        let other;
        let issuer = if foreign {
            let (other_cert, other_issuer) = ca("another client CA");
            std::fs::write(
                self._dir.path().join(format!("{name}-ca.crt")),
                other_cert.pem(),
            )
            .expect("write ca");
            other = other_issuer;
            &other
        } else {
            &self.issuer
        };
        let key = KeyPair::generate().expect("client key");
        let mut params =
            CertificateParams::new(vec!["oomscope-client".to_owned()]).expect("client params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, issuer).expect("client cert");
        self.write(name, cert.pem(), &key.serialize_pem())
    }
}
