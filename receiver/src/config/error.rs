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
