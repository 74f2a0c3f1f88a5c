//! The resolved configuration as YAML (`oomscope print-config`), secrets
//! masked.

use super::{Node, NodeValue};

/// What a masked value reads as.
pub const MASKED: &str = "[REDACTED]";

/// Keys whose values are secrets (case-insensitive substring), and `headers`,
/// whose values often carry credentials (the collector's `configopaque`):
/// `password` (basicauth `client_auth`), `token`/`tokens`
/// (bearertokenauth), `*_pem` (configtls's inline `key_pem`, `cert_pem`,
/// `ca_pem`, all opaque in the collector too),
/// `Authorization`/`Cookie` anywhere. Not the command-line list of
/// `crate::redact`: its `auth` and `pwd` would mask config keys such as
/// `authenticator` that name no secret.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "credential",
    "private_key",
    "authorization",
    "_pem",
    "cookie",
];

/// Keys that match [`SECRET_KEYS`] but hold no secret: the list of
/// command-line argument names to redact, paths to files, and basicauth's
/// `htpasswd` section (its `file` is a path; its `inline` is masked).
fn names_no_secret(key: &str) -> bool {
    key == "secret_keys" || key == "htpasswd" || key.ends_with("_file") || key.ends_with("_path")
}

/// Whether the value of `key` is masked: a secret-looking key, or basicauth's
/// `htpasswd::inline` (`user:password` lines).
fn is_secret(key: &str, parent: Option<&str>) -> bool {
    (crate::redact::is_secret_key(key, SECRET_KEYS) && !names_no_secret(key))
        || (key == "inline" && parent == Some("htpasswd"))
}

/// `node` as block YAML that parses back to the same tree. With `redact`,
/// the values of secret-looking keys and of every `headers` entry are
/// replaced by [`MASKED`], and secret shapes in other values (a URL's
/// password, a token) by `***` (`crate::redact::redact_text`).
pub fn to_yaml(node: &Node, redact: bool) -> String {
    let mut out = String::new();
    match &node.value {
        NodeValue::Map(entries) if !entries.is_empty() => {
            map(entries, 0, redact, false, None, &mut out)
        }
        _ => {
            out.push_str(&scalar(node));
            out.push('\n');
        }
    }
    out
}

fn map(
    entries: &[(Node, Node)],
    indent: usize,
    redact: bool,
    mask_all: bool,
    parent: Option<&str>,
    out: &mut String,
) {
    for (key, value) in entries {
        let key_text = key.as_str().unwrap_or_default();
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar(key));
        out.push(':');
        let secret = redact && (mask_all || is_secret(key_text, parent));
        let masks_children = redact && key_text == "headers";
        value_after_key(value, indent, redact, secret, masks_children, key_text, out);
    }
}

/// The value of a map entry, after `key:`.
fn value_after_key(
    value: &Node,
    indent: usize,
    redact: bool,
    secret: bool,
    masks_children: bool,
    key: &str,
    out: &mut String,
) {
    match &value.value {
        NodeValue::Scalar { .. } if secret => {
            out.push(' ');
            out.push_str(MASKED);
            out.push('\n');
        }
        NodeValue::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            map(
                entries,
                indent + 2,
                redact,
                secret || masks_children,
                Some(key),
                out,
            );
        }
        NodeValue::Seq(items) if !items.is_empty() => {
            out.push('\n');
            // `headers_setter::headers` is a list: every entry is masked.
            seq(items, indent + 2, redact, secret || masks_children, out);
        }
        NodeValue::Null => out.push('\n'),
        _ => {
            out.push(' ');
            out.push_str(&value_scalar(value, redact));
            out.push('\n');
        }
    }
}

/// A scalar value, with secret shapes inside it masked under `redact`.
fn value_scalar(node: &Node, redact: bool) -> String {
    if let NodeValue::Scalar { text, .. } = &node.value {
        if redact {
            if let std::borrow::Cow::Owned(masked) = crate::redact::redact_text(text) {
                return serde_json::to_string(&masked).unwrap_or_else(|_| "\"\"".to_string());
            }
        }
    }
    scalar(node)
}

fn seq(items: &[Node], indent: usize, redact: bool, secret: bool, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match &item.value {
            NodeValue::Map(entries) if !entries.is_empty() => {
                out.push('\n');
                map(entries, indent + 2, redact, secret, None, out);
            }
            NodeValue::Seq(inner) if !inner.is_empty() => {
                out.push('\n');
                seq(inner, indent + 2, redact, secret, out);
            }
            NodeValue::Scalar { .. } if secret => {
                out.push(' ');
                out.push_str(MASKED);
                out.push('\n');
            }
            _ => {
                out.push(' ');
                out.push_str(&value_scalar(item, redact));
                out.push('\n');
            }
        }
    }
}

/// A scalar as YAML: plain when that reads back the same, else a
/// double-quoted (JSON-escaped, which YAML reads) string.
fn scalar(node: &Node) -> String {
    match &node.value {
        NodeValue::Null => "null".to_string(),
        NodeValue::Map(_) => "{}".to_string(),
        NodeValue::Seq(_) => "[]".to_string(),
        NodeValue::Scalar { text, quoted } => {
            if !quoted && plain_is_safe(text) {
                text.clone()
            } else {
                serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
            }
        }
    }
}

/// Whether `text` written plain reads back as the same plain scalar.
fn plain_is_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let indicator = "-?:,[]{}#&*!|>'\"%@`".contains(first);
    let starts_ok = !indicator || (first == '-' && text.len() > 1 && !text.starts_with("- "));
    starts_ok
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.ends_with(':')
        && !text.ends_with(' ')
        && !text.starts_with(' ')
        && !matches!(text, "null" | "Null" | "NULL" | "~")
        && text.chars().all(|c| !c.is_control())
}

#[cfg(test)]
mod tests {
    use super::super::node::parse;
    use super::*;

    /// The tree without positions, for comparing.
    fn shape(node: &Node) -> String {
        match &node.value {
            NodeValue::Null => "~".to_string(),
            NodeValue::Scalar { text, quoted } => {
                format!("{text:?}{}", if *quoted { "q" } else { "" })
            }
            NodeValue::Seq(items) => format!(
                "[{}]",
                items.iter().map(shape).collect::<Vec<_>>().join(",")
            ),
            NodeValue::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}:{}", shape(k), shape(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    #[test]
    fn printed_yaml_reads_back_as_the_same_tree() {
        let text = r#"
receivers:
  otlp:
    protocols:
      grpc:
      http: {endpoint: "127.0.0.1:4318"}
  filelog:
    include: [/var/log/*.log, "- odd", "a: b", "", "null", 'x #y']
    multiline: {line_start_pattern: '^\d+ '}
exporters:
  otlp:
    endpoint: collector:4317
    headers: {x-api-key: abc}
    nested: [[1, 2], [], {}]
    number: 5
    quoted_number: "5"
service:
  pipelines:
    logs: {receivers: [otlp], exporters: [otlp]}
"#;
        let node = parse("t.yaml", text).expect("valid");
        let printed = to_yaml(&node, false);
        let again = parse("printed.yaml", &printed).expect("printed YAML parses");
        assert_eq!(shape(&again), shape(&node), "{printed}");
    }

    #[test]
    fn secrets_and_headers_are_masked() {
        let text = "\
exporters:
  otlp:
    endpoint: collector:4317
    headers: {x-api-key: abc, X-Tenant: t1}
  otlphttp:
    endpoint: https://user:pw2@collector:4318
    tls: {key_pem: \"-----BEGIN PRIVATE KEY-----\", ca_pem: \"-----BEGIN CERTIFICATE-----\", cert_file: /etc/c.pem}
extensions:
  basicauth:
    client_auth: {username: u, password: hunter2}
  basicauth/server:
    htpasswd: {inline: \"alice:$apr1$x\", file: /etc/htpasswd}
  bearertokenauth: {token: s3cr3t, tokens: [tok-a]}
receivers:
  oom: {secret_keys: [password, pin]}
  filelog: {include: [/var/log/a.log]}
";
        let node = parse("t.yaml", text).expect("valid");
        let printed = to_yaml(&node, true);
        for secret in [
            "abc",
            "t1",
            "hunter2",
            "s3cr3t",
            "pw2",
            "BEGIN",
            "tok-a",
            "alice:$apr1",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("endpoint: collector:4317"), "{printed}");
        assert!(printed.contains("username: u"), "{printed}");
        assert!(printed.contains("user:***@collector"), "{printed}");
        assert!(printed.contains("cert_file: /etc/c.pem"), "{printed}");
        assert!(printed.contains("file: /etc/htpasswd"), "{printed}");
        assert!(printed.contains("- pin"), "{printed}");
        let again = parse("printed.yaml", &printed).expect("masked YAML parses");
        assert!(matches!(again.value, NodeValue::Map(_)));
        assert!(to_yaml(&node, false).contains("hunter2"));
    }

    #[test]
    /// Every inline PEM is masked, as the collector's configtls makes
    /// `cert_pem`, `key_pem` and `ca_pem` `configopaque` strings.
    fn inline_tls_keys_are_masked() {
        let text = "\
receivers:
  otlp:
    protocols:
      http:
        tls: {cert_pem: CERTTEXT, key_pem: KEYTEXT}
";
        let node = parse("t.yaml", text).expect("valid");
        let printed = to_yaml(&node, true);
        assert!(!printed.contains("KEYTEXT"), "{printed}");
        assert!(!printed.contains("CERTTEXT"), "{printed}");
    }
}
