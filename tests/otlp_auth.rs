//! Authentication (issue 15) with real clients, over plaintext loopback:
//! - the OpenTelemetry Python SDK (gRPC and HTTP) with a bearer token is
//!   accepted; without it, or with a wrong one, it gets UNAUTHENTICATED /
//!   401, counted in `oomscope_receiver_unauthenticated_requests`;
//! - otelcol-contrib's `otlphttp` exporter with `headers: {Authorization:
//!   "Bearer ..."}` likewise;
//! - an Authorization header of 1 MB (HTTP/1.1 and gRPC) is refused and the
//!   agent keeps serving;
//! - oomscope's own exporters with `bearertokenauth`, `basicauth`
//!   (client_auth) and `headers_setter` deliver to an oomscope receiver that
//!   requires the credentials; a wrong token is refused; token files are
//!   read again on change without restart (both sides), and a token file
//!   replaced by a symbolic link is refused (every request gets 401);
//! - an unreadable token file and a malformed htpasswd stop the start with an
//!   error naming the file.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::free_port;
use common::oomscope::{own_metric, wait_for_own_metric, Oomscope};
use common::otlp::{logs_request, send_logs_grpc, FileContents};
use common::python::{run_python, run_python_ok};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;

/// Only there so a broken peer fails the test instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(60);
const SDK_SEND: &str = include_str!("peers/sdk_send.py");
const UNAUTHENTICATED: &str = "oomscope_receiver_unauthenticated_requests_total";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn bodies(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} record {i}")).collect()
}

/// The refusals counted for `receiver`'s `transport`.
fn refusals(metrics: u16, receiver: &str, transport: &str) -> f64 {
    own_metric(
        metrics,
        UNAUTHENTICATED,
        &[("receiver", receiver), ("transport", transport)],
    )
    .unwrap_or(0.0)
}

/// A gRPC export of `bodies` with `authorization` metadata (none if None).
async fn grpc_export(
    port: u16,
    authorization: Option<&str>,
    bodies: &[String],
) -> Result<(), tonic::Status> {
    let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect");
    let mut request = tonic::Request::new(logs_request(bodies));
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ascii metadata"));
    }
    client.export(request).await.map(|_| ())
}

/// Polls `probe` until it returns true; panics with `what` after [`TIMEOUT`].
async fn wait_until<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !probe().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One raw HTTP/1.1 POST with an Authorization header of `len` bytes; the
/// status line, or None when the server closed without one.
fn post_with_huge_authorization(port: u16, len: usize) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n{{}}",
        "a".repeat(len)
    );
    // The server may answer and close before reading everything.
    let _ = s.write_all(head.as_bytes());
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().map(str::to_owned)
}

/// The head of the answer to a small OTLP/JSON POST with `authorization`
/// (none if None).
fn post_head(port: u16, authorization: Option<&str>) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n{auth}\r\n{{}}"
    );
    s.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn agent_config(grpc: u16, http: u16, metrics: u16, token_file: &Path, out: &Path) -> String {
    format!(
        r#"
extensions:
  bearertokenauth/in:
    filename: "{token}"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}", auth: {{ authenticator: bearertokenauth/in }} }}
      http: {{ endpoint: "127.0.0.1:{http}", auth: {{ authenticator: bearertokenauth/in }} }}
processors:
  batch: {{ timeout: 100ms }}
exporters:
  file:
    path: "{out}"
    flush_interval: 100ms
service:
  extensions: [bearertokenauth/in]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], processors: [batch], exporters: [file] }}
    metrics: {{ receivers: [otlp], processors: [batch], exporters: [file] }}
"#,
        token = token_file.display(),
        out = out.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_and_otelcol_need_the_bearer_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "sdk-token-1\n").expect("write token");
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let mut agent = Oomscope::start(&agent_config(grpc, http, metrics, &token_file, &out), &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    agent.wait_ready(addr(http), TIMEOUT);
    agent.wait_ready(addr(metrics), TIMEOUT);

    let script = common::python::with_otlp_headers_argument(SDK_SEND);
    let good = "authorization=Bearer%20sdk-token-1";
    let grpc_endpoint = format!("127.0.0.1:{grpc}");
    let http_endpoint = format!("http://127.0.0.1:{http}");
    const N: usize = 20;
    let n = N.to_string();
    run_python_ok(
        &script,
        &[good, "grpc", &grpc_endpoint, &n, "auth-grpc"],
        TIMEOUT,
    )
    .await;
    run_python_ok(
        &script,
        &[good, "http", &http_endpoint, &n, "auth-http"],
        TIMEOUT,
    )
    .await;
    let got = FileContents::wait_for(&out, TIMEOUT, |c| c.log_bodies.len() >= 2 * N);
    for tag in ["auth-grpc", "auth-http"] {
        let mine = got
            .log_bodies
            .iter()
            .filter(|b| b.starts_with(&format!("interop {tag} record ")))
            .count();
        assert_eq!(mine, N, "{tag}: {:?}", got.log_bodies);
    }
    assert_eq!(refusals(metrics, "otlp", "grpc"), 0.0);
    assert_eq!(refusals(metrics, "otlp", "http"), 0.0);

    // Without a token and with a wrong one: refused, and counted.
    for (headers, tag) in [
        ("x-other=1", "none"),
        ("authorization=Bearer%20sdk-token-2", "wrong"),
    ] {
        for (protocol, endpoint) in [("grpc", &grpc_endpoint), ("http", &http_endpoint)] {
            let before = refusals(metrics, "otlp", protocol);
            let output = run_python(
                &script,
                &[headers, protocol, endpoint, "3", &format!("refused-{tag}")],
                TIMEOUT,
            )
            .await;
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                !output.status.success(),
                "{protocol} {tag} was accepted: {said}"
            );
            let expected = if protocol == "grpc" {
                "UNAUTHENTICATED"
            } else {
                "401"
            };
            assert!(said.contains(expected), "{protocol} {tag}: {said}");
            wait_for_own_metric(
                metrics,
                UNAUTHENTICATED,
                &[("receiver", "otlp"), ("transport", protocol)],
                before + 1.0,
                TIMEOUT,
            );
        }
    }
    let reasons = own_metric(metrics, UNAUTHENTICATED, &[("reason", "no credentials")]);
    assert!(reasons.unwrap_or(0.0) >= 2.0, "{reasons:?}");

    // otelcol-contrib's otlphttp exporter (no auth extension in that build:
    // a static header), with the right token, then with a wrong one.
    let lines: Vec<String> = (0..30).map(|i| format!("otelcol auth line {i}")).collect();
    for (token, tag) in [("sdk-token-1", "right"), ("not-the-token", "wrong")] {
        let endpoint = format!("endpoint: \"http://127.0.0.1:{http}\"");
        let header = format!("headers: {{ Authorization: \"Bearer {token}\" }}");
        let before = refusals(metrics, "otlp", "http");
        let (mut otelcol, output) = common::start_otelcol_filelog_to_otlphttp(
            dir.path(),
            tag,
            &lines,
            &[&endpoint, &header, "retry_on_failure: { enabled: false }"],
        );
        if tag == "right" {
            let got = FileContents::wait_for(&out, TIMEOUT, |c| {
                c.log_bodies
                    .iter()
                    .filter(|b| b.starts_with("otelcol auth line"))
                    .count()
                    >= 30
            });
            let n = got
                .log_bodies
                .iter()
                .filter(|b| b.starts_with("otelcol auth line"))
                .count();
            assert_eq!(n, 30);
            assert_eq!(refusals(metrics, "otlp", "http"), before);
        } else {
            wait_for_own_metric(
                metrics,
                UNAUTHENTICATED,
                &[
                    ("receiver", "otlp"),
                    ("transport", "http"),
                    ("reason", "wrong credentials"),
                ],
                1.0,
                TIMEOUT,
            );
            let deadline = Instant::now() + TIMEOUT;
            let said = loop {
                let said = std::fs::read_to_string(&output).unwrap_or_default();
                if said.contains("401") || Instant::now() > deadline {
                    break said;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert!(said.contains("401"), "otelcol said:\n{said}");
        }
        let _ = otelcol.kill().await;
    }
    // Still only the 30 lines sent with the right token.
    let all = FileContents::read(&out);
    assert_eq!(
        all.log_bodies
            .iter()
            .filter(|b| b.starts_with("otelcol auth line"))
            .count(),
        30
    );

    // The 401 names the scheme to use.
    let head = post_head(http, Some("Bearer wrong"));
    assert!(
        head.starts_with("http/1.1 401")
            && head.contains("www-authenticate: bearer realm=\"oomscope\""),
        "{head}"
    );
    assert!(post_head(http, Some("Bearer sdk-token-1")).starts_with("http/1.1 200"));

    // Bounded: a 1 MB Authorization header gets 431 from the HTTP/1 parser
    // (or the connection is closed), a 100 kB one 401; a 1 MB gRPC metadata
    // value is refused; the agent keeps serving.
    let status = post_with_huge_authorization(http, 1024 * 1024);
    eprintln!("a 1 MB Authorization header got: {status:?}");
    assert!(
        status
            .as_deref()
            .is_none_or(|s| s.contains(" 431 ") || s.contains(" 401 ")),
        "{status:?}"
    );
    let status = post_with_huge_authorization(http, 100 * 1024);
    assert!(
        status.as_deref().is_some_and(|s| s.contains(" 401 ")),
        "{status:?}"
    );
    let huge = format!("Bearer {}", "a".repeat(1024 * 1024));
    assert!(grpc_export(grpc, Some(&huge), &bodies("huge", 1))
        .await
        .is_err());
    grpc_export(grpc, Some("Bearer sdk-token-1"), &bodies("after-huge", 1))
        .await
        .expect("served after the huge headers");
    assert!(agent.try_status().is_none(), "{}", agent.output());
    let output = agent.output();
    assert!(
        !output.contains("sdk-token-1") && !output.contains("sdk-token-2"),
        "a token was logged:\n{output}"
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn oomscope_exporters_authenticate_to_an_oomscope_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    // Receiving agent: three receivers, each requiring other credentials,
    // each writing to its own file.
    std::fs::write(path("server.token"), "rotate-1\n").expect("token");
    let hash = bcrypt::hash("basic-pw", 4).expect("bcrypt");
    std::fs::write(path("htpasswd"), format!("# users\nsender:{hash}\n")).expect("htpasswd");
    let (bearer_port, basic_port, header_port, metrics) =
        (free_port(), free_port(), free_port(), free_port());
    let receiving = format!(
        r#"
extensions:
  bearertokenauth/in:
    filename: "{server_token}"
  basicauth/in:
    htpasswd: {{ file: "{htpasswd}" }}
  bearertokenauth/apikey:
    header: X-Api-Key
    scheme: ""
    tokens: [key-1, key-2]
receivers:
  otlp/bearer:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{bearer_port}", auth: {{ authenticator: bearertokenauth/in }} }}
  otlp/basic:
    protocols:
      http: {{ endpoint: "127.0.0.1:{basic_port}", auth: {{ authenticator: basicauth/in }} }}
  otlp/header:
    protocols:
      http: {{ endpoint: "127.0.0.1:{header_port}", auth: {{ authenticator: bearertokenauth/apikey }} }}
exporters:
  file/bearer: {{ path: "{bearer_out}", flush_interval: 100ms }}
  file/basic: {{ path: "{basic_out}", flush_interval: 100ms }}
  file/header: {{ path: "{header_out}", flush_interval: 100ms }}
service:
  extensions: [bearertokenauth/in, basicauth/in, bearertokenauth/apikey]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  oom_score_adj: null
  pipelines:
    logs/bearer: {{ receivers: [otlp/bearer], exporters: [file/bearer] }}
    logs/basic: {{ receivers: [otlp/basic], exporters: [file/basic] }}
    logs/header: {{ receivers: [otlp/header], exporters: [file/header] }}
"#,
        server_token = path("server.token").display(),
        htpasswd = path("htpasswd").display(),
        bearer_out = path("bearer.jsonl").display(),
        basic_out = path("basic.jsonl").display(),
        header_out = path("header.jsonl").display(),
    );
    let mut server = Oomscope::start(&receiving, &[]);
    for port in [bearer_port, basic_port, header_port, metrics] {
        server.wait_ready(addr(port), TIMEOUT);
    }

    // Sending agent: one OTLP receiver fanned out to four exporters.
    std::fs::write(path("client.token"), "rotate-1\n").expect("token");
    let in_port = free_port();
    let sending = format!(
        r#"
extensions:
  bearertokenauth/out:
    filename: "{client_token}"
  bearertokenauth/wrong:
    token: not-rotate-1
  basicauth/out:
    client_auth: {{ username: sender, password: basic-pw }}
  headers_setter:
    headers:
      - {{ key: X-Api-Key, value: key-2 }}
exporters:
  otlp/bearer:
    endpoint: "127.0.0.1:{bearer_port}"
    tls: {{ insecure: true }}
    auth: {{ authenticator: bearertokenauth/out }}
    retry_on_failure: {{ enabled: false }}
  otlp/wrong:
    endpoint: "127.0.0.1:{bearer_port}"
    tls: {{ insecure: true }}
    auth: {{ authenticator: bearertokenauth/wrong }}
    retry_on_failure: {{ enabled: false }}
  otlphttp/basic:
    endpoint: "http://127.0.0.1:{basic_port}"
    auth: {{ authenticator: basicauth/out }}
  otlphttp/header:
    endpoint: "http://127.0.0.1:{header_port}"
    auth: {{ authenticator: headers_setter }}
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{in_port}" }}
service:
  extensions: [bearertokenauth/out, bearertokenauth/wrong, basicauth/out, headers_setter]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp/bearer, otlp/wrong, otlphttp/basic, otlphttp/header] }}
"#,
        client_token = path("client.token").display(),
    );
    let mut client = Oomscope::start(&sending, &[]);
    client.wait_ready(addr(in_port), TIMEOUT);

    const N: usize = 25;
    let first = bodies("first", N);
    send_logs_grpc(&format!("http://127.0.0.1:{in_port}"), &first, 5, TIMEOUT).await;
    let count = |file: &str, tag: &str| {
        FileContents::read(&path(file))
            .log_bodies
            .iter()
            .filter(|b| b.starts_with(&format!("{tag} record ")))
            .count()
    };
    for file in ["bearer.jsonl", "basic.jsonl", "header.jsonl"] {
        FileContents::wait_for(&path(file), TIMEOUT, |c| c.log_bodies.len() >= N);
    }
    // The wrong token's copies were refused: only one copy per record.
    wait_for_own_metric(
        metrics,
        UNAUTHENTICATED,
        &[("receiver", "otlp/bearer"), ("reason", "wrong credentials")],
        1.0,
        TIMEOUT,
    );
    assert_eq!(count("bearer.jsonl", "first"), N);
    assert_eq!(refusals(metrics, "otlp/basic", "http"), 0.0);
    let head = post_head(basic_port, None);
    assert!(
        head.starts_with("http/1.1 401")
            && head.contains("www-authenticate: basic realm=\"oomscope\""),
        "{head}"
    );
    // "sender:wrong", then "sender:basic-pw".
    assert!(post_head(basic_port, Some("Basic c2VuZGVyOndyb25n")).starts_with("http/1.1 401"));
    assert!(post_head(basic_port, Some("Basic c2VuZGVyOmJhc2ljLXB3")).starts_with("http/1.1 200"));
    assert_eq!(refusals(metrics, "otlp/header", "http"), 0.0);

    // The server's token file replaced (rename, as Kubernetes and editors
    // do): the new token is required without restart.
    std::fs::write(path("server.token.new"), "rotate-2\n").expect("token");
    std::fs::rename(path("server.token.new"), path("server.token")).expect("rename");
    wait_until("the server refuses the old token", || async {
        grpc_export(
            bearer_port,
            Some("Bearer rotate-1"),
            &bodies("probe-old", 1),
        )
        .await
        .is_err_and(|s| s.code() == tonic::Code::Unauthenticated)
    })
    .await;
    grpc_export(
        bearer_port,
        Some("Bearer rotate-2"),
        &bodies("probe-new", 1),
    )
    .await
    .expect("the new token is accepted");

    // The client's token file replaced too: its exports are accepted again.
    std::fs::write(path("client.token.new"), "rotate-2\n").expect("token");
    std::fs::rename(path("client.token.new"), path("client.token")).expect("rename");
    let mut round = 0;
    wait_until("the sending agent uses the new token", || {
        round += 1;
        let tag = format!("second-{round}");
        let bearer_file = path("bearer.jsonl");
        async move {
            send_logs_grpc(
                &format!("http://127.0.0.1:{in_port}"),
                &bodies(&tag, 1),
                1,
                TIMEOUT,
            )
            .await;
            // Give the export its time: wait until this round's record
            // either arrived or was counted as refused.
            let before = refusals(metrics, "otlp/bearer", "grpc");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let arrived = FileContents::read(&bearer_file)
                    .log_bodies
                    .iter()
                    .any(|b| b.starts_with(&format!("{tag} record ")));
                if arrived {
                    return true;
                }
                if refusals(metrics, "otlp/bearer", "grpc") > before || Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;

    // The token file replaced by a symbolic link (to a file holding the
    // current token): refused, so no token is valid until it is a regular
    // file again; the agent keeps running and says why.
    std::fs::write(path("elsewhere"), "rotate-2\n").expect("token");
    std::fs::remove_file(path("server.token")).expect("remove");
    std::os::unix::fs::symlink(path("elsewhere"), path("server.token")).expect("symlink");
    wait_until("a symlinked token file leaves no valid token", || async {
        grpc_export(
            bearer_port,
            Some("Bearer rotate-2"),
            &bodies("probe-link", 1),
        )
        .await
        .is_err_and(|s| s.code() == tonic::Code::Unauthenticated)
    })
    .await;
    server.wait_for_output("symbolic link", TIMEOUT);
    std::fs::remove_file(path("server.token")).expect("remove link");
    std::fs::write(path("server.token"), "rotate-3\n").expect("token");
    wait_until("a regular token file again is used", || async {
        grpc_export(
            bearer_port,
            Some("Bearer rotate-3"),
            &bodies("probe-back", 1),
        )
        .await
        .is_ok()
    })
    .await;

    for agent in [&mut client, &mut server] {
        let output = agent.output();
        for secret in ["rotate-1", "rotate-2", "rotate-3", "basic-pw", "key-2"] {
            assert!(!output.contains(secret), "{secret} logged:\n{output}");
        }
        let (status, clean) = agent.stop(TIMEOUT);
        assert!(clean && status.success(), "{}", agent.output());
    }
}

/// Starts oomscope on `config` and waits for it to exit; its output.
fn failed_start(config: &str) -> String {
    let mut agent = Oomscope::start(config, &[]);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = agent.try_status() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running:\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = agent.output();
    assert!(!status.success(), "started:\n{output}");
    assert!(!output.contains("panicked"), "{output}");
    output
}

#[test]
fn unreadable_token_file_and_malformed_htpasswd_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = |extension: &str| {
        format!(
            r#"
extensions:
  {extension}
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{port}", auth: {{ authenticator: auth }} }}
exporters:
  debug:
service:
  extensions: [auth]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [debug] }}
"#
        )
    };
    let config = |type_name: &str, body: &str| {
        config(&format!("{type_name}:\n    {body}"))
            .replace(
                "authenticator: auth",
                &format!("authenticator: {type_name}"),
            )
            .replace("extensions: [auth]", &format!("extensions: [{type_name}]"))
    };

    let missing = dir.path().join("missing.token");
    let output = failed_start(&config(
        "bearertokenauth",
        &format!("filename: \"{}\"", missing.display()),
    ));
    assert!(output.contains(&missing.display().to_string()), "{output}");

    let directory = dir.path().join("a-directory");
    std::fs::create_dir(&directory).expect("mkdir");
    let output = failed_start(&config(
        "bearertokenauth",
        &format!("filename: \"{}\"", directory.display()),
    ));
    assert!(
        output.contains(&directory.display().to_string()) && output.contains("not a regular file"),
        "{output}"
    );

    let target = dir.path().join("target.token");
    std::fs::write(&target, "t").expect("token");
    let link = dir.path().join("link.token");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let output = failed_start(&config(
        "bearertokenauth",
        &format!("filename: \"{}\"", link.display()),
    ));
    assert!(
        output.contains(&link.display().to_string()) && output.contains("symbolic link"),
        "{output}"
    );

    let htpasswd = dir.path().join("users.htpasswd");
    std::fs::write(&htpasswd, "alice:$apr1$salt$hashhashhashhashhash\n").expect("htpasswd");
    let output = failed_start(&config(
        "basicauth",
        &format!("htpasswd: {{ file: \"{}\" }}", htpasswd.display()),
    ));
    assert!(
        output.contains(&htpasswd.display().to_string())
            && output.contains("line 1")
            && !output.contains("hashhash"),
        "{output}"
    );

    // A receiver naming a client-only authenticator: a config error naming
    // both.
    let output = failed_start(&config(
        "headers_setter",
        "headers: [{ key: X-A, value: b }]",
    ));
    assert!(
        output.contains("receivers::otlp::protocols::http::auth::authenticator")
            && output.contains("headers_setter"),
        "{output}"
    );
}
