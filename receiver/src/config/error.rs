//! Configuration errors: where (file:line:column), what path, and what is wrong,
//! worded like the collector's.

use std::fmt;

use super::node::Mark;

#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub mark: Option<Mark>,
    /// Dotted path of the offending key, collector style: `receivers::otlp::protocols`.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(mark: Option<Mark>, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            mark,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.mark {
            write!(f, "{m}: ")?;
        }
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "'{}' {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one configuration, so a user fixes them in one go.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A component's `validate()` error, naming the offending key when it can
/// (`protocols::grpc::endpoint`, relative to the component), so the loader
/// points at that key's position instead of at the component's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// `::`-separated key path inside the component's config; `None` for an
    /// error about the component as a whole.
    pub key: Option<String>,
    pub message: String,
}

impl ValidationError {
    /// An error about the value of `key`.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

impl ValidationError {
    /// An error about the component as a whole, not one key.
    pub fn whole(message: impl Into<String>) -> Self {
        ValidationError {
            key: None,
            message: message.into(),
        }
    }

    /// This error of a nested section's check, its key placed under `prefix`
    /// (`tls` + `cert_file` is `tls::cert_file`).
    pub fn within(self, prefix: &str) -> Self {
        ValidationError {
            key: Some(match self.key {
                Some(key) => format!("{prefix}::{key}"),
                None => prefix.to_string(),
            }),
            message: self.message,
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ValidationError {}
