//! placeholder: the OOM pattern library (see issue 4). Interface only; the
//! implementation replaces this file.

use serde::Deserialize;

/// `oom.runtime` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Kernel,
    Go,
    Java,
    Python,
    Node,
    Cpp,
    Rust,
    Dotnet,
    Php,
    Kubelet,
    /// A user pattern's own label.
    Other,
}

/// A pattern a user adds in YAML (`patterns:` of the `kmsg`/`filelog` receivers).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPattern {
    pub name: String,
    /// Regex (Rust `regex` syntax) with named captures.
    pub regex: String,
    pub runtime: String,
    /// OTLP severity text: `ERROR`, `FATAL`, ...
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Constant attributes added to every match.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

fn default_severity() -> String {
    "ERROR".to_string()
}

/// One match of a line against the library.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a> {
    /// `oom.pattern`.
    pub pattern: &'a str,
    /// `oom.runtime`.
    pub runtime: &'a str,
    /// OTLP severity number (17 = ERROR, 21 = FATAL).
    pub severity_number: i32,
    pub severity_text: &'a str,
    /// Named captures (attribute name, value) and the pattern's constant attributes.
    pub attributes: Vec<(String, String)>,
    /// The runtime's stack trace follows this line (multiline grouping hint).
    pub expects_stack_trace: bool,
}

/// The compiled library: built-in patterns plus user patterns.
#[derive(Debug, Default)]
pub struct Library {
    _private: (),
}

impl Library {
    /// The built-in patterns only.
    pub fn builtin() -> Library {
        Library::default()
    }

    /// Built-in plus user patterns; a bad regex is an error naming the pattern.
    pub fn with_user_patterns(_user: &[UserPattern]) -> Result<Library, String> {
        Ok(Library::default())
    }

    /// One pass over `line`; `None` for the (common) non-matching line,
    /// without allocating.
    pub fn match_line(&self, _line: &str) -> Option<Match<'_>> {
        None
    }
}
