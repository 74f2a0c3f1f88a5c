use std::time::Duration;

use http::{header, HeaderMap, HeaderValue};
use tokio_util::sync::CancellationToken;

use super::basicauth::{BasicAuthConfig, ClientAuthConfig, Htpasswd, HtpasswdConfig};
use super::bearertokenauth::{BearerTokenAuthConfig, BearerTokens};
use super::headers_setter::{HeadersSetter, HeadersSetterConfig};
use super::*;
use crate::component::{ComponentConfig, ExtensionConfig};
use crate::config::load_str_with_env;
use crate::extensions::Extensions;

fn headers(name: &str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_str(value).unwrap(),
    );
    h
}

fn bearer(token: &str) -> BearerTokenAuthConfig {
    BearerTokenAuthConfig {
        token: Some(token.to_string()),
        ..Default::default()
    }
}

#[test]
fn bearer_server_accepts_only_the_token_with_its_scheme() {
    let b = BearerTokens::new(&bearer("s3cret")).unwrap();
    assert_eq!(b.check(&headers("authorization", "Bearer s3cret")), Ok(()));
    assert_eq!(
        b.check(&headers("authorization", "Bearer s3cre")),
        Err(Refused::Wrong)
    );
    assert_eq!(
        b.check(&headers("authorization", "s3cret")),
        Err(Refused::Wrong)
    );
    assert_eq!(b.check(&HeaderMap::new()), Err(Refused::Missing));
    let huge = format!("Bearer {}", "a".repeat(1024 * 1024));
    assert_eq!(
        b.check(&headers("authorization", &huge)),
        Err(Refused::TooLong)
    );
    assert_eq!(b.challenge().to_str().unwrap(), "Bearer realm=\"oomscope\"");
}

#[test]
fn bearer_tokens_header_and_scheme_keys() {
    let c = BearerTokenAuthConfig {
        header: "X-Api-Key".into(),
        scheme: String::new(),
        tokens: vec!["one".into(), "two".into()],
        ..Default::default()
    };
    let b = BearerTokens::new(&c).unwrap();
    assert_eq!(b.check(&headers("x-api-key", "two")), Ok(()));
    assert_eq!(b.check(&headers("x-api-key", "one")), Ok(()));
    assert_eq!(
        b.check(&headers("authorization", "one")),
        Err(Refused::Missing)
    );
    let mut sent = HeaderMap::new();
    b.apply(&mut sent).unwrap();
    assert_eq!(sent["x-api-key"], "one");
    assert!(sent["x-api-key"].is_sensitive());
}

#[test]
fn bearer_config_errors() {
    let none = BearerTokenAuthConfig::default();
    assert!(none
        .validate()
        .unwrap_err()
        .to_string()
        .contains("no bearer token"));
    let both = BearerTokenAuthConfig {
        token: Some("a".into()),
        tokens: vec!["b".into()],
        ..Default::default()
    };
    assert!(both.validate().is_err());
    assert!(bearer("line\nbreak").validate().is_err());
    // Debug output never shows a token.
    let shown = format!("{:?}", bearer("s3cret"));
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn token_file_is_read_and_bad_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "\n  first  \nsecond\n").unwrap();
    assert_eq!(token_file::read_tokens(&file).unwrap(), ["first", "second"]);

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let e = token_file::read_tokens(&link).unwrap_err();
    assert!(e.contains("symbolic link") && e.contains("link"), "{e}");

    let missing = dir.path().join("missing");
    let e = token_file::read_tokens(&missing).unwrap_err();
    assert!(e.contains(&missing.display().to_string()), "{e}");

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n\n").unwrap();
    assert!(token_file::read_tokens(&empty)
        .unwrap_err()
        .contains("no token"));

    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'a'; 70 * 1024]).unwrap();
    assert!(token_file::read_tokens(&big)
        .unwrap_err()
        .contains("larger"));

    let control = dir.path().join("control");
    std::fs::write(&control, "zq\u{1}zq").unwrap();
    let e = token_file::read_tokens(&control).unwrap_err();
    assert!(e.contains("not allowed") && !e.contains("zq"), "{e}");

    // A FIFO is refused without blocking.
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(token_file::read_tokens(&fifo)
        .unwrap_err()
        .contains("not a regular file"));

    let dir_path = dir.path().to_path_buf();
    assert!(token_file::read_tokens(&dir_path).is_err());
}

#[tokio::test]
async fn token_file_is_read_again_on_change_and_a_symlink_leaves_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "old").unwrap();
    let c = BearerTokenAuthConfig {
        filename: Some(file.clone()),
        token: Some("ignored".into()),
        ..Default::default()
    };
    let mut host = Extensions::default();
    let id: ComponentId = "bearertokenauth".parse().unwrap();
    let shutdown = CancellationToken::new();
    let watcher = c.start(&id, &mut host, shutdown.clone()).await.unwrap();
    let server = host.auth.server(&id, &id, "auth").unwrap();
    let ok = |t: &str| {
        let server = server.clone();
        let h = headers("authorization", &format!("Bearer {t}"));
        async move { server.check(&h).await.is_ok() }
    };
    assert!(ok("old").await);
    assert!(!ok("ignored").await, "filename takes precedence over token");

    // Replaced by rename (as editors and Kubernetes do).
    let staged = dir.path().join("token.new");
    std::fs::write(&staged, "new").unwrap();
    std::fs::rename(&staged, &file).unwrap();
    for _ in 0..200 {
        if ok("new").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok("new").await);
    assert!(!ok("old").await);

    // Replaced by a symbolic link: refused, so no token is valid.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "new").unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    for _ in 0..200 {
        if !ok("new").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = server
        .check(&headers("authorization", "Bearer new"))
        .await
        .unwrap_err();
    assert_eq!(refused, Refused::NoCredentials);
    let client = host.auth.client(&id, &id).unwrap();
    let e = client.apply(&mut HeaderMap::new()).unwrap_err();
    assert!(e.contains("symbolic link"), "{e}");

    // A regular file again: accepted again.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, "third").unwrap();
    for _ in 0..200 {
        if ok("third").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok("third").await);
    shutdown.cancel();
    watcher.expect("a watcher for filename").await.unwrap();
}

#[tokio::test]
async fn an_unreadable_token_file_fails_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("absent.token");
    let c = BearerTokenAuthConfig {
        filename: Some(file.clone()),
        ..Default::default()
    };
    let mut host = Extensions::default();
    let id: ComponentId = "bearertokenauth/in".parse().unwrap();
    let e = c
        .start(&id, &mut host, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bearertokenauth/in") && e.contains(&file.display().to_string()),
        "{e}"
    );
}

fn basic(user: &str, password: &str) -> HeaderMap {
    use base64::Engine as _;
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    headers("authorization", &format!("Basic {v}"))
}

#[tokio::test]
async fn htpasswd_bcrypt_and_plain_entries() {
    let hash = bcrypt::hash("pa55", 4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, format!("# users\nalice:{hash}\nbob:frombob\n")).unwrap();
    let h = Htpasswd::load(&HtpasswdConfig {
        file: Some(file),
        inline: Some("bob:inline-wins\n".into()),
    })
    .unwrap();
    assert_eq!(h.check(&basic("alice", "pa55")).await, Ok(()));
    assert_eq!(h.check(&basic("alice", "nope")).await, Err(Refused::Wrong));
    assert_eq!(h.check(&basic("bob", "inline-wins")).await, Ok(()));
    assert_eq!(h.check(&basic("bob", "frombob")).await, Err(Refused::Wrong));
    assert_eq!(h.check(&basic("carol", "pa55")).await, Err(Refused::Wrong));
    assert_eq!(
        h.check(&headers("authorization", "Bearer x")).await,
        Err(Refused::Malformed)
    );
    assert_eq!(
        h.check(&headers("authorization", "Basic !!!")).await,
        Err(Refused::Malformed)
    );
    assert_eq!(h.check(&HeaderMap::new()).await, Err(Refused::Missing));
}

#[test]
fn malformed_htpasswd_is_refused_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.htpasswd");
    let shown = file.display().to_string();
    let load = |text: &str| {
        std::fs::write(&file, text).unwrap();
        Htpasswd::load(&HtpasswdConfig {
            file: Some(file.clone()),
            inline: None,
        })
        .err()
        .expect("must be refused")
    };
    let e = load("alice:$apr1$abc$defdefdefdefdefdefdef\n");
    assert!(
        e.contains(&shown) && e.contains("line 1") && e.contains("\"apr1\""),
        "{e}"
    );
    assert!(!e.contains("defdef"), "a hash is never shown: {e}");
    let e = load("ok:x\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
    assert!(e.contains("line 2") && e.contains("\"SHA\""), "{e}");
    let e = load("no colon here\n");
    assert!(e.contains("line 1") && e.contains("user:hash"), "{e}");
    let e = load("carol:$2y$10$tooshort\n");
    assert!(e.contains("malformed bcrypt"), "{e}");
    let e = load("# only a comment\n");
    assert!(e.contains("no user"), "{e}");
    let missing = Htpasswd::load(&HtpasswdConfig {
        file: Some(dir.path().join("absent")),
        inline: None,
    })
    .err()
    .unwrap();
    assert!(missing.contains("absent"), "{missing}");
}

#[tokio::test]
async fn basicauth_sides_and_config_errors() {
    let both = BasicAuthConfig {
        htpasswd: Some(HtpasswdConfig {
            inline: Some("a:b".into()),
            file: None,
        }),
        client_auth: Some(ClientAuthConfig {
            username: "a".into(),
            password: "b".into(),
        }),
    };
    assert!(both.validate().is_err());
    assert!(!format!("{both:?}").contains("a:b"), "{both:?}");
    assert!(BasicAuthConfig::default().validate().is_err());

    let client = BasicAuthConfig {
        client_auth: Some(ClientAuthConfig {
            username: "user".into(),
            password: "pw".into(),
        }),
        ..Default::default()
    };
    assert!(!format!("{client:?}").contains("pw"));
    let mut host = Extensions::default();
    let id: ComponentId = "basicauth/client".parse().unwrap();
    client
        .start(&id, &mut host, CancellationToken::new())
        .await
        .unwrap();
    let mut sent = HeaderMap::new();
    host.auth
        .client(&id, &id)
        .unwrap()
        .apply(&mut sent)
        .unwrap();
    assert_eq!(sent["authorization"], "Basic dXNlcjpwdw==");
    let receiver: ComponentId = "otlp".parse().unwrap();
    let e = host
        .auth
        .server(&id, &receiver, "protocols::http::auth")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("otlp") && e.contains("basicauth/client") && e.contains("no htpasswd"),
        "{e}"
    );
}

#[test]
fn headers_setter_actions() {
    let c: HeadersSetterConfig = serde_json::from_value(serde_json::json!({
        "headers": [
            {"key": "X-Scope-OrgID", "value": "tenant"},
            {"key": "X-Only-New", "value": "n", "action": "insert"},
            {"key": "X-Only-Old", "value": "o", "action": "update"},
            {"key": "X-Absent", "value": "a", "action": "update"},
            {"key": "X-Drop", "action": "delete"},
        ]
    }))
    .unwrap();
    let s = HeadersSetter::new(&c).unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-only-new", HeaderValue::from_static("kept"));
    h.insert("x-only-old", HeaderValue::from_static("replaced"));
    h.insert("x-drop", HeaderValue::from_static("gone"));
    s.apply(&mut h);
    assert_eq!(h["x-scope-orgid"], "tenant");
    assert_eq!(h["x-only-new"], "kept");
    assert_eq!(h["x-only-old"], "o");
    assert!(h.get("x-absent").is_none());
    assert!(h.get("x-drop").is_none());

    let from_context: HeadersSetterConfig = serde_json::from_value(serde_json::json!({
        "headers": [{"key": "X-Tenant", "from_context": "tenant_id", "default_value": "d"}]
    }))
    .unwrap();
    let e = from_context.validate().unwrap_err().to_string();
    assert!(
        e.contains("from_context") && e.contains("not supported"),
        "{e}"
    );
    let no_value: HeadersSetterConfig =
        serde_json::from_value(serde_json::json!({"headers": [{"key": "X-A"}]})).unwrap();
    assert!(no_value.validate().is_err());
}

fn config_errors(text: &str) -> Vec<String> {
    load_str_with_env(crate::components::registry(), "c.yaml", text, &|_| None)
        .expect_err("must be invalid")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn auth_references_are_checked_by_the_loader() {
    let text = "\
receivers:
  otlp:
    protocols:
      http:
        auth: {authenticator: headers_setter}
      grpc:
        auth: {authenticator: bearertokenauth/missing}
exporters:
  otlp_http:
    endpoint: http://127.0.0.1:4318
    auth: {authenticator: health_check}
extensions:
  headers_setter: {headers: [{key: X-A, value: b}]}
  health_check:
service:
  extensions: [headers_setter, health_check]
  pipelines:
    logs: {receivers: [otlp], exporters: [otlp_http]}
";
    let errors = config_errors(text);
    let all = errors.join("\n");
    assert!(
        all.contains("'receivers::otlp::protocols::http::auth::authenticator' authenticator \"headers_setter\" is not a bearertokenauth or basicauth extension"),
        "{all}"
    );
    assert!(
        all.contains("'receivers::otlp::protocols::grpc::auth::authenticator' authenticator \"bearertokenauth/missing\" is not configured in extensions"),
        "{all}"
    );
    assert!(
        all.contains("'exporters::otlp_http::auth::authenticator' authenticator \"health_check\" is not a bearertokenauth, basicauth or headers_setter extension"),
        "{all}"
    );
    let unknown_key = config_errors(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        auth: {authenticator: bearertokenauth, extra: 1}\nexporters:\n  debug:\nextensions:\n  bearertokenauth: {token: t}\nservice:\n  extensions: [bearertokenauth]\n  pipelines:\n    logs: {receivers: [otlp], exporters: [debug]}\n",
    );
    assert!(unknown_key.join("\n").contains("extra"), "{unknown_key:?}");
}

#[test]
fn matches_any_compares_whole_values() {
    assert!(matches_any(b"abc", [b"x".as_slice(), b"abc".as_slice()]));
    assert!(!matches_any(b"ab", [b"abc".as_slice()]));
    assert!(!matches_any(b"abcd", [b"abc".as_slice()]));
    assert!(!matches_any(b"abc", []));
}

#[test]
fn print_config_masks_every_credential_of_the_auth_extensions() {
    let text = "\
extensions:
  bearertokenauth:
    token: tok-one
    tokens: [tok-two]
    filename: /run/token
  basicauth/server:
    htpasswd: {inline: \"alice:pw-three\"}
  basicauth/client:
    client_auth: {username: bob, password: pw-four}
  headers_setter:
    headers:
      - {key: X-Scope-OrgID, value: val-five}
";
    let node = crate::config::parse_yaml("c.yaml", text).unwrap();
    let printed = crate::config::to_yaml(&node, true);
    for secret in ["tok-one", "tok-two", "pw-three", "pw-four", "val-five"] {
        assert!(!printed.contains(secret), "{secret} shown in:\n{printed}");
    }
}
