//! Redaction of secret-looking values in command lines (and in text the
//! agent logs), before they leave the host as telemetry.
//!
//! Three layers, each conservative about what it calls a secret:
//! - argument names: `--password=x`, `--api-key x`, `DB_PASSWORD=x` and
//!   environment-style `*_KEY=`/`*_PASS=` assignments, with the configurable
//!   `secret_keys` (substrings of the name);
//! - known tools whose short flags take a password (`mysql -pX`,
//!   `sshpass -p X`, `redis-cli -a X`, `curl -u user:X`, ...), recognised by
//!   the program's base name anywhere in the command line (`sudo mysql ...`);
//! - value shapes found anywhere in any argument, whatever `secret_keys` is:
//!   credentials in URLs, `Authorization:` headers, `password=`/`AccountKey=`
//!   pairs of connection strings and query strings, AWS access key ids, GCP
//!   API keys, GitHub/GitLab/Slack tokens, JWTs and PEM private keys.
//!
//! A shell command string (`sh -c "..."`) is one argument: only the value
//! shapes apply inside it.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

/// Keys whose values are secrets when they appear in an argument name
/// (case-insensitive substring match): `--password=x`, `-api-key x`,
/// `DB_PASSWORD=x`, `--client-secret x`.
pub const DEFAULT_SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "credential",
    "private_key",
    "private-key",
    "access_key",
    "access-key",
    "account_key",
    "account-key",
];

pub const REDACTED: &str = "***";

/// Whether `name` contains one of `keys` (lowercase), ignoring case.
pub(crate) fn is_secret_key<K: AsRef<str>>(name: &str, keys: &[K]) -> bool {
    let lower = name.to_ascii_lowercase();
    keys.iter().any(|k| lower.contains(k.as_ref()))
}

/// An environment-style name (`STRIPE_KEY`, `SMTP_PASS`) whose suffix says
/// it holds a secret; the other secret words are in the keys already.
fn is_secret_env_name(name: &str) -> bool {
    let is_env_name = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !is_env_name {
        return false;
    }
    let upper = name.to_ascii_uppercase();
    ["_KEY", "_PASS", "_PASSPHRASE"]
        .iter()
        .any(|suffix| upper.ends_with(suffix))
}

/// A secret-named flag whose value is not the secret: where it is
/// (`--password-file /run/secrets/db`, `--password-stdin`) or a setting
/// about it (`--authenticationDatabase admin`, `--auth-mechanism PLAIN`).
fn names_a_reference(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "file",
        "stdin",
        "path",
        "env",
        "command",
        "cmd",
        "database",
        "source",
        "mechanism",
        "method",
        "type",
        "mode",
        "url",
        "uri",
        "host",
        "port",
        "user",
        "username",
    ]
    .iter()
    .any(|suffix| lower.ends_with(suffix))
}

/// What a known tool's flag does with the argument it takes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Taken {
    /// The whole value is a password.
    Secret,
    /// `user:password`: the part after the first colon is.
    UserColonSecret,
}

/// A short or long flag of a known tool whose value is a password.
struct ToolFlag {
    flag: &'static str,
    /// The value may be attached (`-pSECRET`); with `separate`, it may also
    /// be the next argument (`-p SECRET`).
    separate: bool,
    taken: Taken,
}

const fn secret(flag: &'static str, separate: bool) -> ToolFlag {
    ToolFlag {
        flag,
        separate,
        taken: Taken::Secret,
    }
}

const fn user_colon(flag: &'static str) -> ToolFlag {
    ToolFlag {
        flag,
        separate: true,
        taken: Taken::UserColonSecret,
    }
}

// MySQL client programs: `--password[=password], -p[password]`; "if you use
// the short option form (-p), you cannot have a space between the option and
// the password": `-p db` prompts and names the database, so only an attached
// value is a password (MySQL 8.0 Reference Manual, 6.2.2.2 / mysql client
// options). MariaDB's clients take the same options.
const MYSQL_FLAGS: &[ToolFlag] = &[secret("-p", false)];
// sshpass(1): `-p password`: "The password is given on the command line".
const SSHPASS_FLAGS: &[ToolFlag] = &[secret("-p", true)];
// redis-cli: `-a <password>`, `--pass <password>` (Redis docs, redis-cli).
const REDIS_FLAGS: &[ToolFlag] = &[secret("-a", true), secret("--pass", true)];
// mongosh / MongoDB Database Tools: `--password <password>, -p <password>`.
const MONGO_FLAGS: &[ToolFlag] = &[secret("-p", true)];
// sqlcmd / bcp: `-P password` (Microsoft docs, sqlcmd utility).
const SQLCMD_FLAGS: &[ToolFlag] = &[secret("-P", true)];
// curl(1): `-u, --user <user:password>`, `-U, --proxy-user <user:password>`;
// without a colon curl prompts, and nothing is secret.
const CURL_FLAGS: &[ToolFlag] = &[
    user_colon("-u"),
    user_colon("--user"),
    user_colon("-U"),
    user_colon("--proxy-user"),
];
// docker/podman/nerdctl login: `-p, --password string`; elsewhere `-p` is
// `--publish`, so these apply only after `login`.
const LOGIN_FLAGS: &[ToolFlag] = &[secret("-p", true)];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tool {
    Mysql,
    Sshpass,
    Redis,
    Mongo,
    Sqlcmd,
    Curl,
    /// A container CLI; `login` seen (or not yet).
    Container {
        login: bool,
    },
    /// `aws configure set NAME VALUE`: words seen so far of that phrase.
    Aws {
        configure: bool,
        set: bool,
    },
}

impl Tool {
    /// The tool a program argument names, by its base name.
    fn of(arg: &str) -> Option<Tool> {
        let base = arg.rsplit('/').next().unwrap_or(arg);
        Some(match base {
            "mysql" | "mysqldump" | "mysqladmin" | "mysqlimport" | "mysqlshow" | "mysqlcheck"
            | "mysqlpump" | "mysqlbinlog" | "mysqlslap" | "mariadb" | "mariadb-dump"
            | "mariadb-admin" | "mariadb-import" | "mariadb-check" => Tool::Mysql,
            "sshpass" => Tool::Sshpass,
            "redis-cli" | "valkey-cli" => Tool::Redis,
            "mongo" | "mongosh" | "mongodump" | "mongorestore" | "mongoexport" | "mongoimport"
            | "mongostat" | "mongotop" => Tool::Mongo,
            "sqlcmd" | "bcp" => Tool::Sqlcmd,
            "curl" => Tool::Curl,
            "docker" | "podman" | "nerdctl" | "buildah" | "skopeo" | "helm" => {
                Tool::Container { login: false }
            }
            "aws" => Tool::Aws {
                configure: false,
                set: false,
            },
            _ => return None,
        })
    }

    fn flags(self) -> &'static [ToolFlag] {
        match self {
            Tool::Mysql => MYSQL_FLAGS,
            Tool::Sshpass => SSHPASS_FLAGS,
            Tool::Redis => REDIS_FLAGS,
            Tool::Mongo => MONGO_FLAGS,
            Tool::Sqlcmd => SQLCMD_FLAGS,
            Tool::Curl => CURL_FLAGS,
            Tool::Container { login: true } => LOGIN_FLAGS,
            Tool::Container { login: false } | Tool::Aws { .. } => &[],
        }
    }

    /// Follows a positional word (`login`, `configure set`); tells whether
    /// the word after it is a secret value (`aws configure set
    /// aws_secret_access_key VALUE`, AWS CLI reference: configure set).
    fn positional(&mut self, arg: &str, keys: &[String]) -> Option<Taken> {
        match self {
            Tool::Container { login } if arg == "login" => *login = true,
            Tool::Aws { configure, set } => {
                if !*configure {
                    *configure = arg == "configure";
                } else if !*set {
                    *set = arg == "set";
                } else if is_secret_key(arg, keys) || is_secret_key(arg, &["secret"]) {
                    return Some(Taken::Secret);
                }
            }
            _ => {}
        }
        None
    }

    /// `arg` redacted when it is one of the tool's password flags, and what
    /// the next argument is when the value is separate.
    fn flag(self, arg: &str) -> Option<(String, Option<Taken>)> {
        for f in self.flags() {
            if arg == f.flag {
                return f.separate.then(|| (arg.to_string(), Some(f.taken)));
            }
            // `-pSECRET`, `--user=alice:x` (long flags take `=`).
            let attached = if f.flag.starts_with("--") {
                arg.strip_prefix(f.flag)
                    .and_then(|rest| rest.strip_prefix('='))
                    .map(|value| (format!("{}=", f.flag), value))
            } else {
                arg.strip_prefix(f.flag)
                    .filter(|value| !value.is_empty())
                    .map(|value| (f.flag.to_string(), value))
            };
            if let Some((prefix, value)) = attached {
                return Some((format!("{prefix}{}", apply(f.taken, value)), None));
            }
        }
        None
    }
}

fn apply(taken: Taken, value: &str) -> String {
    match taken {
        Taken::Secret => REDACTED.to_string(),
        Taken::UserColonSecret => match value.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}"),
            None => value.to_string(),
        },
    }
}

/// Value shapes that are secrets wherever they appear.
/// The shapes, and all of them in one set: one pass over an argument tells
/// which (usually none) need a replacement pass.
struct Shapes {
    each: Vec<(Regex, &'static str)>,
    any: RegexSet,
}

// Word boundaries are ASCII (`(?-u:\b)`): the shapes are ASCII, and
// Unicode boundaries made the set several times slower to build.
static SHAPES: LazyLock<Shapes> = LazyLock::new(|| {
    let shapes: &[(&str, &str)] = &[
        // PEM private keys (`-----BEGIN RSA PRIVATE KEY-----`), to their END
        // line or to the end of a cut command line.
        (
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            REDACTED,
        ),
        // Credentials in a URL: scheme://user:password@host (RFC 3986 userinfo).
        (
            r"(?P<keep>(?-u:\b)[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@",
            "${keep}***@",
        ),
        // HTTP credentials: `Authorization: Bearer x`, `Proxy-Authorization: Basic x`.
        (
            r"(?i)(?P<keep>(?-u:\b)(?:proxy-)?authorization\s*:\s*(?:(?:bearer|basic|digest|negotiate|token|apikey|ntlm|aws4-hmac-sha256)\s+)?)[^\s'\x22]+",
            "${keep}***",
        ),
        // `key=value` pairs of connection strings (libpq keyword/value,
        // ADO.NET, Azure Storage `AccountKey=`/`SharedAccessSignature=`),
        // query strings (`?access_token=`, `&key=`, SAS `sig=`).
        (
            r"(?i)(?P<keep>(?:(?:^|[\s;&?,])(?:[a-z0-9_.-]*(?:password|passwd|pwd|secret|token|apikey|api_key|api-key)|accountkey|sharedaccesskey|sharedaccesssignature)|[?&](?:sig|key))\s*=\s*)(?:'[^']*'|[^\s;&'\x22]+)",
            "${keep}***",
        ),
        // The same names as JSON members (`curl -d '{"password":"x"}'`).
        (
            r#"(?i)(?P<keep>"[a-z0-9_.-]*(?:password|passwd|secret|token|apikey|api_key|api-key)"\s*:\s*)"[^"]*""#,
            r#"${keep}"***""#,
        ),
        // AWS access key ids (AKIA: long-term, ASIA: temporary).
        (
            r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?-u:\b)",
            REDACTED,
        ),
        // Google API keys.
        (r"(?-u:\b)AIza[0-9A-Za-z_-]{35}", REDACTED),
        // GitHub tokens (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_), GitLab
        // personal access tokens, Slack tokens.
        (r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,}", REDACTED),
        (r"(?-u:\b)github_pat_[A-Za-z0-9_]{22,}", REDACTED),
        (r"(?-u:\b)glpat-[A-Za-z0-9_-]{20,}", REDACTED),
        (r"(?-u:\b)xox[abposr]-[A-Za-z0-9-]{10,}", REDACTED),
        // JWTs: base64url JSON header and payload (`eyJ` is `{"`), signature.
        (
            r"(?-u:\b)eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
            REDACTED,
        ),
    ];
    let each: Vec<(Regex, &'static str)> = shapes
        .iter()
        .filter_map(|(pattern, replacement)| match Regex::new(pattern) {
            Ok(re) => Some((re, *replacement)),
            Err(e) => {
                // A bug caught by the tests; never a reason to stop the agent.
                tracing::error!(%pattern, error = %e, "redaction pattern does not compile");
                None
            }
        })
        .collect();
    // The same patterns compiled once already; a set of them compiles too.
    let any = RegexSet::new(each.iter().map(|(re, _)| re.as_str())).unwrap_or_else(|e| {
        tracing::error!(error = %e, "redaction patterns do not compile as a set");
        RegexSet::empty()
    });
    Shapes { each, any }
});

/// Compiles the redaction patterns now rather than at the first command
/// line: a process read 5 ms after its exec must not wait for them (in a
/// debug build under emulation that took longer than a victim lived).
pub fn prepare() {
    LazyLock::force(&SHAPES);
}

/// `text` with every secret value shape replaced (see the module doc). For
/// command-line arguments and for messages the agent logs (export errors
/// may name an endpoint with credentials).
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let shapes = &*SHAPES;
    let mut out = Cow::Borrowed(text);
    for (re, replacement) in shapes
        .any
        .matches(text)
        .iter()
        .filter_map(|i| shapes.each.get(i))
    {
        let replaced = match re.replace_all(&out, *replacement) {
            Cow::Owned(replaced) => Some(replaced),
            Cow::Borrowed(_) => None,
        };
        if let Some(replaced) = replaced {
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// One argument with its value redacted when its name says it is a secret:
/// `--key=value`, `KEY=value`, `--env=KEY=value`, `X-Api-Key: value`.
fn redact_named(arg: &str, keys: &[String]) -> Option<String> {
    // A header other than Authorization (that one is a value shape):
    // `X-Api-Key: abc`, `Cookie: session=...`.
    if let Some((name, value)) = arg.split_once(':') {
        let is_header_name =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // Authorization is a value shape, which keeps its scheme word.
        let is_authorization = name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("proxy-authorization");
        if is_header_name
            && !is_authorization
            && value.starts_with(char::is_whitespace)
            && !value.trim().is_empty()
            && (is_secret_key(name, keys) || name.eq_ignore_ascii_case("cookie"))
        {
            return Some(format!("{name}: {REDACTED}"));
        }
    }
    let (name, value) = arg.split_once('=')?;
    if (is_secret_key(name, keys) || is_secret_env_name(name)) && !names_a_reference(name) {
        return Some(format!("{name}={REDACTED}"));
    }
    // `--env=API_KEY=x`, `-e=TOKEN=x`.
    if name.starts_with('-') {
        if let Some(inner) = redact_named(value, keys) {
            return Some(format!("{name}={inner}"));
        }
    }
    None
}

/// Redacts the values of secret-looking arguments: `--key=value`,
/// `KEY=value`, `--key value` (the next argument), known tools' password
/// flags, and the value shapes of [`redact_text`]. `keys` are lower-case
/// substrings.
pub fn redact_args(args: &[String], keys: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut next: Option<Taken> = None;
    let mut tool: Option<Tool> = None;
    for arg in args {
        if let Some(taken) = next.take() {
            // `mongosh -p --host x`: a flag where the value would be means the
            // tool prompts.
            if !arg.starts_with("--") {
                out.push(apply(taken, arg));
                continue;
            }
        }
        let is_flag = arg.starts_with('-') && arg.len() > 1;
        if !is_flag {
            if let Some(t) = Tool::of(arg) {
                tool = Some(t);
                out.push(arg.clone());
                continue;
            }
        }
        if let Some(t) = tool.as_mut() {
            if is_flag {
                if let Some((redacted, taken)) = t.flag(arg) {
                    out.push(redacted);
                    next = taken;
                    continue;
                }
            } else if let Some(taken) = t.positional(arg, keys) {
                out.push(arg.clone());
                next = Some(taken);
                continue;
            }
        }
        if let Some(redacted) = redact_named(arg, keys) {
            out.push(redact_text(&redacted).into_owned());
            continue;
        }
        if is_flag && !arg.contains('=') && is_secret_key(arg, keys) && !names_a_reference(arg) {
            out.push(arg.clone());
            next = Some(Taken::Secret);
            continue;
        }
        out.push(redact_text(arg).into_owned());
    }
    out
}

/// The default keys as owned strings (config defaults).
pub fn default_keys() -> Vec<String> {
    DEFAULT_SECRET_KEYS
        .iter()
        .map(|k| (*k).to_string())
        .collect()
}

#[cfg(test)]
mod tests;
