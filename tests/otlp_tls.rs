//! TLS on the agent's endpoints against real peers, with certificates made
//! here (rcgen): a CA, a server certificate for localhost/127.0.0.1, a
//! client certificate, an expired one and ones from another CA.
//! - the OpenTelemetry Python SDK (gRPC and HTTP) and otelcol-contrib's
//!   `otlphttp` exporter send over mutual TLS and are accepted;
//! - Python's ssl module (OpenSSL) is refused without a client certificate,
//!   with an expired one or another CA's, and with TLS 1.2 where
//!   `min_version: "1.3"`; it refuses an expired or foreign server
//!   certificate itself;
//! - rotated certificate files are served to new connections without a
//!   restart (`reload_interval`);
//! - malformed or unreadable certificate and key files stop the start with
//!   an error naming the key and the file, never a panic;
//! - the live events API over TLS and on a Unix socket with its mode and
//!   group, with `oomscope events` connecting to both.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::free_port;
use common::oomscope::Oomscope;
use common::otlp::FileContents;
use common::python::{run_python, run_python_ok};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Only there so a broken peer fails the test instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(60);
const SDK_SEND: &str = include_str!("peers/sdk_send.py");
const TLS_PROBE: &str = include_str!("peers/tls_probe.py");

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// PEM files of one certificate and its key.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

/// The test's certificates, as files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    server: Pair,
    client: Pair,
    expired_client: Pair,
    foreign_client: Pair,
    expired_server: Pair,
    foreign_server: Pair,
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("ca cert");
    (cert.pem(), Issuer::new(params, key))
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, issuer) = new_ca("oomscope test CA");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).expect("write ca");
        let (_, other) = new_ca("another CA");
        Pki {
            server: leaf(dir.path(), "server", &issuer, true, false),
            client: leaf(dir.path(), "client", &issuer, false, false),
            expired_client: leaf(dir.path(), "expired-client", &issuer, false, true),
            foreign_client: leaf(dir.path(), "foreign-client", &other, false, false),
            expired_server: leaf(dir.path(), "expired-server", &issuer, true, true),
            foreign_server: leaf(dir.path(), "foreign-server", &other, true, false),
            ca,
            issuer,
            dir,
        }
    }

    /// Another server certificate of the CA, written as `name`.
    fn another_server(&self, name: &str) -> Pair {
        leaf(self.dir.path(), name, &self.issuer, true, false)
    }
}

fn leaf(
    dir: &Path,
    name: &str,
    issuer: &Issuer<'static, KeyPair>,
    server: bool,
    expired: bool,
) -> Pair {
    let key = KeyPair::generate().expect("key");
    let names = if server {
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
    } else {
        vec!["oomscope-test-client".to_owned()]
    };
    let mut params = CertificateParams::new(names).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, issuer).expect("sign");
    let pair = Pair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pair.cert, cert.pem()).expect("write cert");
    std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
    pair
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A server `tls:` block (flow style) with `extra` keys.
fn tls(server: &Pair, extra: &str) -> String {
    format!(
        r#"{{ cert_file: "{}", key_file: "{}"{extra} }}"#,
        p(&server.cert),
        p(&server.key)
    )
}

/// An agent whose OTLP receiver serves both protocols with `server`'s
/// certificate (`extra`: more `tls` keys) into the file `out`; ready, with
/// its gRPC and HTTP ports.
fn start_tls_receiver(server: &Pair, extra: &str, out: &Path) -> (Oomscope, u16, u16) {
    let (grpc, http) = (free_port(), free_port());
    let config = common::otlp::otlp_to_file_config(
        &[
            format!(
                r#"grpc: {{ endpoint: "127.0.0.1:{grpc}", tls: {} }}"#,
                tls(server, extra)
            ),
            format!(
                r#"http: {{ endpoint: "127.0.0.1:{http}", tls: {} }}"#,
                tls(server, extra)
            ),
        ],
        out,
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    agent.wait_ready(addr(http), TIMEOUT);
    (agent, grpc, http)
}

/// What `tls_probe.py` saw.
#[derive(Debug)]
struct Probe {
    ok: bool,
    error: String,
    version: String,
    cert_sha256: String,
}

async fn probe(port: u16, ca: &Path, extra: &[&str]) -> Probe {
    let port = port.to_string();
    let ca = p(ca);
    let mut args = vec!["127.0.0.1", port.as_str(), ca.as_str()];
    args.extend_from_slice(extra);
    let output = run_python_ok(TLS_PROBE, &args, TIMEOUT).await;
    let v: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("tls_probe.py prints JSON");
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Probe {
        ok: v["ok"].as_bool().unwrap_or(false),
        error: s("error"),
        version: s("version"),
        cert_sha256: s("cert_sha256"),
    }
}

fn sha256_of_pem(path: &Path) -> String {
    // The DER inside the PEM, hashed like tls_probe.py hashes the peer's.
    let pem = std::fs::read_to_string(path).expect("read pem");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let output = std::process::Command::new(common::venv_python())
        .arg("-c")
        .arg("import base64,hashlib,sys; print(hashlib.sha256(base64.b64decode(sys.argv[1])).hexdigest())")
        .arg(b64)
        .output()
        .expect("python3");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_and_otelcol_send_over_mutual_tls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let mtls = format!(r#", client_ca_file: "{}""#, p(&pki.ca));
    let (mut agent, grpc, http) = start_tls_receiver(&pki.server, &mtls, &out);

    const N: usize = 20;
    let n = N.to_string();
    let (ca, cert, key) = (p(&pki.ca), p(&pki.client.cert), p(&pki.client.key));
    let grpc_endpoint = format!("127.0.0.1:{grpc}");
    let http_endpoint = format!("https://127.0.0.1:{http}");
    for (protocol, endpoint, tag) in [
        ("grpc", &grpc_endpoint, "tls-grpc"),
        ("http", &http_endpoint, "tls-http"),
    ] {
        let sent = run_python(
            SDK_SEND,
            &[protocol, endpoint, &n, tag, &ca, &cert, &key],
            TIMEOUT,
        )
        .await;
        assert!(
            sent.status.success(),
            "the SDK over {protocol} failed:\n{}\n{}\nagent:\n{}",
            String::from_utf8_lossy(&sent.stdout),
            String::from_utf8_lossy(&sent.stderr),
            agent.output()
        );
    }

    // otelcol-contrib: filelog -> otlphttp over mutual TLS.
    let lines: Vec<String> = (0..N)
        .map(|i| format!("otelcol tls line {i} java.lang.OutOfMemoryError: Java heap space"))
        .collect();
    let endpoint = format!("endpoint: \"https://127.0.0.1:{http}\"");
    let tls = format!(
        "tls: {{ ca_file: \"{ca}\", cert_file: \"{cert}\", key_file: \"{key}\", min_version: \"1.3\" }}"
    );
    let (mut otelcol, _) =
        common::start_otelcol_filelog_to_otlphttp(dir.path(), "app", &lines, &[&endpoint, &tls]);

    let got = FileContents::wait_for(&out, TIMEOUT, |c| {
        let count = |prefix: &str| {
            c.log_bodies
                .iter()
                .filter(|b| b.starts_with(prefix))
                .count()
        };
        count("interop tls-grpc record ") >= N
            && count("interop tls-http record ") >= N
            && count("otelcol tls line ") >= N
    });
    let _ = otelcol.kill().await;
    for (i, line) in lines.iter().enumerate() {
        for want in [
            format!("interop tls-grpc record {i}"),
            format!("interop tls-http record {i}"),
            line.clone(),
        ] {
            assert!(got.log_bodies.contains(&want), "missing {want:?}");
        }
    }
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// TLS and a bearer token together, as a backend behind a bank's proxy
/// would be set up: the Python SDK (gRPC and HTTP) and otelcol-contrib's
/// otlphttp exporter (that build has no auth extensions: the header is
/// configured) are accepted with the token over TLS, and the SDK without
/// it is refused.
#[tokio::test(flavor = "multi_thread")]
async fn sdk_and_otelcol_send_over_tls_with_a_bearer_token() {
    const TOKEN: &str = "s3cr3t-0f-the-t3st";
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (grpc, http) = (free_port(), free_port());
    let config = format!(
        r#"
extensions:
  bearertokenauth: {{ token: "{TOKEN}" }}
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}", tls: {tls}, auth: {{ authenticator: bearertokenauth }} }}
      http: {{ endpoint: "127.0.0.1:{http}", tls: {tls}, auth: {{ authenticator: bearertokenauth }} }}
exporters:
  file: {{ path: "{out}", flush_interval: 100ms }}
service:
  extensions: [bearertokenauth]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [file] }}
    metrics: {{ receivers: [otlp], exporters: [file] }}
"#,
        tls = tls(&pki.server, ""),
        out = out.display()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    agent.wait_ready(addr(http), TIMEOUT);

    const N: usize = 10;
    let n = N.to_string();
    let ca = p(&pki.ca);
    let script = common::python::with_otlp_headers_argument(SDK_SEND);
    let grpc_endpoint = format!("127.0.0.1:{grpc}");
    let http_endpoint = format!("https://127.0.0.1:{http}");
    let with_token = format!("authorization=Bearer%20{TOKEN}");
    for (protocol, endpoint, tag) in [
        ("grpc", &grpc_endpoint, "tls-token-grpc"),
        ("http", &http_endpoint, "tls-token-http"),
    ] {
        let sent = run_python(
            &script,
            &[&with_token, protocol, endpoint, &n, tag, &ca],
            TIMEOUT,
        )
        .await;
        assert!(
            sent.status.success(),
            "the SDK over {protocol} with the token failed:\n{}\n{}\nagent:\n{}",
            String::from_utf8_lossy(&sent.stdout),
            String::from_utf8_lossy(&sent.stderr),
            agent.output()
        );
        let refused = run_python(
            &script,
            &[
                "authorization=Bearer%20wrong",
                protocol,
                endpoint,
                "1",
                "tls-no-token",
                &ca,
            ],
            TIMEOUT,
        )
        .await;
        assert!(
            !refused.status.success(),
            "the SDK over {protocol} with a wrong token was accepted"
        );
    }

    let lines: Vec<String> = (0..N)
        .map(|i| format!("otelcol tls token line {i} java.lang.OutOfMemoryError: Java heap space"))
        .collect();
    let endpoint = format!("endpoint: \"https://127.0.0.1:{http}\"");
    let header = format!("headers: {{ Authorization: \"Bearer {TOKEN}\" }}");
    let tls = format!("tls: {{ ca_file: \"{ca}\" }}");
    let (mut otelcol, _) = common::start_otelcol_filelog_to_otlphttp(
        dir.path(),
        "app",
        &lines,
        &[&endpoint, &header, &tls],
    );
    let got = FileContents::wait_for(&out, TIMEOUT, |c| {
        let count = |prefix: &str| {
            c.log_bodies
                .iter()
                .filter(|b| b.starts_with(prefix))
                .count()
        };
        count("interop tls-token-grpc record ") >= N
            && count("interop tls-token-http record ") >= N
            && count("otelcol tls token line ") >= N
    });
    let _ = otelcol.kill().await;
    assert!(
        !got.log_bodies.iter().any(|b| b.contains("tls-no-token")),
        "a record sent with a wrong token arrived"
    );
    assert!(!agent.output().contains(TOKEN), "the token is never logged");
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_certificates_and_old_versions_are_refused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (strict, expired, foreign) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{strict}", tls: {strict_tls} }}
  otlp/expired:
    protocols:
      http: {{ endpoint: "127.0.0.1:{expired}", tls: {expired_tls} }}
  otlp/foreign:
    protocols:
      http: {{ endpoint: "127.0.0.1:{foreign}", tls: {foreign_tls} }}
exporters:
  file: {{ path: "{out}" }}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp, otlp/expired, otlp/foreign], exporters: [file] }}
"#,
        strict_tls = tls(
            &pki.server,
            &format!(r#", client_ca_file: "{}", min_version: "1.3""#, p(&pki.ca))
        ),
        expired_tls = tls(&pki.expired_server, ""),
        foreign_tls = tls(&pki.foreign_server, ""),
        out = out.display(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    for port in [strict, expired, foreign] {
        agent.wait_ready(addr(port), TIMEOUT);
    }
    let (cert, key) = (p(&pki.client.cert), p(&pki.client.key));
    let good = probe(strict, &pki.ca, &["--cert", &cert, "--key", &key]).await;
    assert!(good.ok, "a valid client certificate is accepted: {good:?}");
    assert_eq!(good.version, "TLSv1.3");

    let tls12 = probe(
        strict,
        &pki.ca,
        &["--cert", &cert, "--key", &key, "--max-version", "1.2"],
    )
    .await;
    assert!(!tls12.ok, "TLS 1.2 refused with min_version 1.3: {tls12:?}");

    let none = probe(strict, &pki.ca, &[]).await;
    assert!(!none.ok, "mTLS without a client certificate: {none:?}");
    for (what, pair) in [
        ("an expired client certificate", &pki.expired_client),
        ("another CA's client certificate", &pki.foreign_client),
    ] {
        let (c, k) = (p(&pair.cert), p(&pair.key));
        let r = probe(strict, &pki.ca, &["--cert", &c, "--key", &k]).await;
        assert!(!r.ok, "{what} accepted: {r:?}");
    }

    // The client refuses an expired or foreign server certificate.
    let r = probe(expired, &pki.ca, &[]).await;
    assert!(!r.ok && r.error.contains("expired"), "{r:?}");
    let r = probe(foreign, &pki.ca, &[]).await;
    assert!(
        !r.ok && r.error.contains("CERTIFICATE_VERIFY_FAILED"),
        "{r:?}"
    );

    // The SDK without a client certificate does not get its data in.
    let endpoint = format!("https://127.0.0.1:{strict}");
    let output = run_python(
        SDK_SEND,
        &["http", &endpoint, "1", "no-client-cert", &p(&pki.ca)],
        TIMEOUT,
    )
    .await;
    assert!(
        !output.status.success(),
        "the SDK export without a client certificate succeeded"
    );

    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
    assert!(
        !FileContents::read(&out)
            .log_bodies
            .iter()
            .any(|b| b.contains("no-client-cert")),
        "data of a refused client was written"
    );
}

/// New connections get the rotated certificate once `reload_interval` has
/// passed, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn rotated_certificate_files_are_served_without_restart() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let http = free_port();
    let config = common::otlp::otlp_to_file_config(
        &[format!(
            r#"http: {{ endpoint: "127.0.0.1:{http}", tls: {} }}"#,
            tls(&pki.server, r#", reload_interval: 200ms"#)
        )],
        &out,
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(http), TIMEOUT);
    let pid = agent.pid();
    let first = probe(http, &pki.ca, &[]).await;
    assert!(first.ok, "{first:?}");
    assert_eq!(first.cert_sha256, sha256_of_pem(&pki.server.cert));

    // Rotate as deployment tools do: new files beside, renamed over.
    let rotated = pki.another_server("rotated");
    std::fs::rename(&rotated.key, &pki.server.key).expect("rotate key");
    std::fs::rename(&rotated.cert, &pki.server.cert).expect("rotate cert");
    let want = sha256_of_pem(&pki.server.cert);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let seen = probe(http, &pki.ca, &[]).await;
        assert!(seen.ok, "{seen:?}");
        if seen.cert_sha256 == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was not served within {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(agent.pid(), pid);
    assert!(
        agent.try_status().is_none(),
        "the agent restarted or exited"
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// Waits for the agent to exit (it must, on a start error).
fn exit_output(mut agent: Oomscope) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = agent.try_status() {
            return (status, agent.output());
        }
        assert!(
            Instant::now() < deadline,
            "the agent kept running: {}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_certificate_and_key_files_stop_the_start_with_a_clear_error() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\n@@@ not base64 @@@\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let missing = dir.path().join("missing.pem");
    let cases: [(&str, &Path, &Path, &Path); 5] = [
        ("cert_file", &garbage, &pki.server.key, &garbage),
        ("key_file", &pki.server.cert, &garbage, &garbage),
        ("key_file", &pki.server.cert, &empty, &empty),
        ("cert_file", &missing, &pki.server.key, &missing),
        // A directory cannot be read as a file.
        ("key_file", &pki.server.cert, dir.path(), dir.path()),
    ];
    for (key, cert_file, key_file, named) in cases {
        let http = free_port();
        let config = common::otlp::otlp_to_file_config(
            &[format!(
                r#"http: {{ endpoint: "127.0.0.1:{http}", tls: {{ cert_file: "{}", key_file: "{}" }} }}"#,
                p(cert_file),
                p(key_file)
            )],
            &dir.path().join("out.jsonl"),
        );
        let (status, output) = exit_output(Oomscope::start(&config, &[]));
        assert!(!status.success(), "{key}: started anyway: {output}");
        assert!(!output.contains("panicked"), "{key}: {output}");
        assert!(
            output.contains(&format!("tls::{key}")) && output.contains(&p(named)),
            "{key} {}: the error names neither: {output}",
            p(named)
        );
    }

    // Config errors `validate` finds: an unknown cipher suite, a bad version.
    for (tls_extra, needle) in [
        (r#", cipher_suites: [TLS_NOT_A_SUITE]"#, "TLS_NOT_A_SUITE"),
        (r#", min_version: "1.9""#, "min_version"),
    ] {
        let config = common::otlp::otlp_to_file_config(
            &[format!(
                r#"http: {{ endpoint: "127.0.0.1:1", tls: {} }}"#,
                tls(&pki.server, tls_extra)
            )],
            &dir.path().join("out.jsonl"),
        );
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).expect("write");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_oomscope"))
            .arg("validate")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run validate");
        let text = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{text}");
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

/// `oomscope events` until it says it is connected (stderr); panics with
/// what it said otherwise.
async fn events_connects(args: &[&str]) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .arg("events")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start oomscope events");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut said = Vec::new();
    let connected = tokio::time::timeout(TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("connected to the agent at") {
                return true;
            }
            said.push(line);
        }
        false
    })
    .await;
    let _ = child.kill().await;
    assert!(
        matches!(connected, Ok(true)),
        "oomscope events {args:?} did not connect: {said:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_api_over_tls_and_on_a_unix_socket_with_mode_and_group() {
    const TEST: &str = "events_api_over_tls_and_on_a_unix_socket_with_mode_and_group";
    if !common::is_root() {
        common::skip(TEST, "the oom receiver reads /dev/kmsg, which needs root");
        return;
    }
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let port = free_port();
    let socket = dir.path().join("run/events.sock");
    let (mtls_cert, mtls_key) = (p(&pki.client.cert), p(&pki.client.key));
    let config = format!(
        r#"
receivers:
  oom:
    mode: kmsg
    events: {{ endpoint: "127.0.0.1:{port}", tls: {tls} }}
  oom/unix:
    mode: kmsg
    events: {{ endpoint: "unix:{socket}", unix_socket_mode: "0640", unix_socket_group: daemon }}
exporters:
  file: {{ path: "{out}" }}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [oom, oom/unix], exporters: [file] }}
"#,
        tls = tls(
            &pki.server,
            &format!(r#", client_ca_file: "{}""#, p(&pki.ca))
        ),
        socket = socket.display(),
        out = out.display(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(port), TIMEOUT);
    agent.wait_for_output("serving live OOM events", TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no socket: {}", agent.output());
        std::thread::sleep(Duration::from_millis(20));
    }

    let endpoint = format!("https://127.0.0.1:{port}");
    let ca = p(&pki.ca);
    events_connects(&[
        "--endpoint",
        &endpoint,
        "--tls-ca-file",
        &ca,
        "--tls-cert-file",
        &mtls_cert,
        "--tls-key-file",
        &mtls_key,
    ])
    .await;

    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(&socket).expect("socket metadata");
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    let daemon_gid = std::process::Command::new("getent")
        .args(["group", "daemon"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split(':')
                .nth(2)
                .and_then(|g| g.trim().parse::<u32>().ok())
        })
        .expect("group daemon exists");
    assert_eq!(meta.gid(), daemon_gid);
    let unix_endpoint = format!("unix:{}", socket.display());
    events_connects(&["--endpoint", &unix_endpoint]).await;

    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// oomscope's own `otlp` and `otlphttp` exporters to an oomscope receiver
/// over mutual TLS with `min_version`, `cipher_suites` and a client
/// certificate; an exporter held to TLS 1.2 is refused by a receiver that
/// asks for 1.3, and says why.
#[tokio::test(flavor = "multi_thread")]
async fn exporters_send_over_mutual_tls_and_respect_versions() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("backend.jsonl");
    let mtls = format!(r#", client_ca_file: "{}", min_version: "1.3""#, p(&pki.ca));
    let (mut backend, b_grpc, b_http) = start_tls_receiver(&pki.server, &mtls, &out);

    let (a_good, a_old) = (free_port(), free_port());
    let client_tls = |extra: &str| {
        format!(
            r#"{{ ca_file: "{}", cert_file: "{}", key_file: "{}", reload_interval: 1m{extra} }}"#,
            p(&pki.ca),
            p(&pki.client.cert),
            p(&pki.client.key)
        )
    };
    let retry = "retry_on_failure: { initial_interval: 100ms, max_interval: 200ms }";
    let forwarder_config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{a_good}" }}
  otlp/old:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{a_old}" }}
exporters:
  otlp:
    endpoint: "127.0.0.1:{b_grpc}"
    tls: {grpc_tls}
    {retry}
  otlphttp:
    endpoint: "https://localhost:{b_http}"
    tls: {http_tls}
    {retry}
  otlp/old:
    endpoint: "127.0.0.1:{b_grpc}"
    tls: {old_tls}
    {retry}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp, otlphttp] }}
    logs/old: {{ receivers: [otlp/old], exporters: [otlp/old] }}
"#,
        grpc_tls = client_tls(r#", min_version: "1.3", cipher_suites: [TLS_AES_256_GCM_SHA384]"#),
        http_tls = client_tls(r#", server_name_override: localhost"#),
        old_tls = client_tls(r#", max_version: "1.2""#),
    );
    let mut forwarder = Oomscope::start(&forwarder_config, &[]);
    forwarder.wait_ready(addr(a_good), TIMEOUT);
    forwarder.wait_ready(addr(a_old), TIMEOUT);

    let bodies: Vec<String> = (0..10).map(|i| format!("forwarded over tls {i}")).collect();
    common::otlp::send_logs_grpc(&format!("http://127.0.0.1:{a_good}"), &bodies, 5, TIMEOUT).await;
    let old = vec!["sent with tls 1.2".to_owned()];
    common::otlp::send_logs_grpc(&format!("http://127.0.0.1:{a_old}"), &old, 1, TIMEOUT).await;

    // Each body arrives twice: through the gRPC and the HTTP exporter.
    FileContents::wait_for(&out, TIMEOUT, |c| {
        bodies
            .iter()
            .all(|b| c.log_bodies.iter().filter(|x| *x == b).count() >= 2)
    });
    // The receiver refuses the handshake; the exporter says so and retries.
    forwarder.wait_for_output("exporter=otlp/old", TIMEOUT);
    forwarder.wait_for_output("received fatal alert: ProtocolVersion", TIMEOUT);
    assert!(
        !FileContents::read(&out).log_bodies.contains(&old[0]),
        "a TLS 1.2 exporter got through a min_version 1.3 receiver"
    );
    forwarder.stop(TIMEOUT);
    let (status, clean) = backend.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", backend.output());
}
