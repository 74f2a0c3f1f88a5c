//! Redaction of secret-looking values in command lines, before they leave
//! the host as telemetry.

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
];

pub const REDACTED: &str = "***";

/// Whether `name` contains one of `keys` (lowercase), ignoring case.
pub(crate) fn is_secret_key<K: AsRef<str>>(name: &str, keys: &[K]) -> bool {
    let lower = name.to_ascii_lowercase();
    keys.iter().any(|k| lower.contains(k.as_ref()))
}

/// `user:password@` in a URL-like argument.
fn redact_userinfo(arg: &str) -> Option<String> {
    let scheme_end = arg.find("://")?;
    let rest = &arg[scheme_end + 3..];
    let at = rest.find('@')?;
    let userinfo = &rest[..at];
    // Only the authority part (before any '/').
    if userinfo.contains('/') {
        return None;
    }
    let colon = userinfo.find(':')?;
    Some(format!(
        "{}{}:{}{}",
        &arg[..scheme_end + 3],
        &userinfo[..colon],
        REDACTED,
        &rest[at..]
    ))
}

/// Redacts the values of secret-looking arguments: `--key=value`,
/// `KEY=value`, `--key value` (the next argument), and passwords in URLs.
/// `keys` are lower-case substrings.
pub fn redact_args(args: &[String], keys: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut redact_next = false;
    for arg in args {
        if redact_next {
            out.push(REDACTED.to_string());
            redact_next = false;
            continue;
        }
        if let Some((name, _)) = arg.split_once('=') {
            if is_secret_key(name, keys) {
                out.push(format!("{name}={REDACTED}"));
                continue;
            }
        } else if arg.starts_with('-') && arg.len() > 1 && is_secret_key(arg, keys) {
            out.push(arg.clone());
            redact_next = true;
            continue;
        }
        out.push(redact_userinfo(arg).unwrap_or_else(|| arg.clone()));
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
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_string()).collect()
    }

    #[test]
    fn redacts_every_form_and_keeps_the_rest() {
        let keys = default_keys();
        let got = redact_args(
            &args(&[
                "java",
                "-Xmx512m",
                "--db-password=hunter2",
                "--api-key",
                "abc123",
                "DB_TOKEN=xyz",
                "postgres://app:s3cret@db:5432/x",
                "--verbose",
                "https://example.com/a@b",
            ]),
            &keys,
        );
        assert_eq!(
            got,
            args(&[
                "java",
                "-Xmx512m",
                "--db-password=***",
                "--api-key",
                "***",
                "DB_TOKEN=***",
                "postgres://app:***@db:5432/x",
                "--verbose",
                "https://example.com/a@b",
            ])
        );
    }

    #[test]
    fn a_trailing_secret_flag_is_harmless() {
        assert_eq!(
            redact_args(&args(&["x", "--password"]), &default_keys()),
            args(&["x", "--password"])
        );
    }
}
