//! The OOM pattern library: recognises the out-of-memory messages of the
//! kernel, Go, Java, Python, Node.js, C++, Rust, .NET, PHP and the kubelet in
//! single log lines, plus patterns the user adds in YAML.
//!
//! # Matching
//! A pattern matches anywhere in a line, so syslog, journald export
//! (`MESSAGE=`), kmsg (`6,123,456,-;`) and CRI prefixes need no stripping.
//! A Docker `json-file` line (`{"log":"...\n","stream":...}`) is decoded first,
//! so captures hold the real text rather than JSON escapes.
//!
//! # Speed
//! Every pattern has a *required literal*: text that every match contains,
//! extracted from the regex itself (the longest fixed run; any of an
//! alternation's branches). One Aho-Corasick automaton over all literals
//! (SIMD "Teddy" search for a library of this size) scans each line once; a
//! line that contains no literal is rejected there, without allocating. Only
//! when a literal is found are the patterns owning it run as full regexes, in
//! library order, and the first one that matches gives the [`Match`].
//! Lines that contain a literal but match no pattern do not allocate either,
//! except Docker JSON lines, which are decoded (one allocation) first.
//!
//! Literals never contain `"`, `\`, `<`, `>`, `&` or control characters,
//! which a JSON encoder may escape, so the prefilter works on the raw Docker
//! line too.
//!
//! # User patterns
//! Compiled into the same structure, ahead of the built-in patterns (a user
//! pattern wins over a built-in one for the same line). A user pattern must
//! contain at least [`MIN_LITERAL_LEN`] bytes of literal text that every match
//! contains (written case-sensitively: `(?i)` turns letters into classes);
//! otherwise it is rejected with an error naming it, because it would have to
//! run on every line. Named groups become attributes under their own names
//! (`(?P<oom.requested_bytes>\d+)`; `.` is allowed in group names), as
//! strings unless the pattern's `types` makes one an int.
//!
//! # Attribute types
//! An attribute is an [`AttrValue`]: text, or an integer where the `oom`
//! receiver's record has the same attribute as an integer (`process.pid`,
//! `process.real_user.id`, byte counts, ...; see `builtin::TYPED_ATTRIBUTES`). A capture
//! that should be an integer but is not one (out of the 64-bit range) is
//! left out; the rest of the match is kept. Byte counts saturate at
//! `i64::MAX` instead, as the receivers' own byte counts do.
//!
//! The built-in table, with an example line and the captures of each pattern,
//! is in `docs/patterns.md` (checked against this code by a unit test).

mod builtin;
pub mod match_counts;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use opentelemetry_proto::tonic::common::v1::any_value;
use regex::Regex;
use regex_syntax::hir::{Hir, HirKind};
use serde::Deserialize;

use builtin::{Builtin, Conversion, BUILTINS};

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

impl Runtime {
    /// The `oom.runtime` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Kernel => "kernel",
            Runtime::Go => "go",
            Runtime::Java => "java",
            Runtime::Python => "python",
            Runtime::Node => "node",
            Runtime::Cpp => "cpp",
            Runtime::Rust => "rust",
            Runtime::Dotnet => "dotnet",
            Runtime::Php => "php",
            Runtime::Kubelet => "kubelet",
            Runtime::Other => "other",
        }
    }
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
    /// Named group -> type of its attribute (default `string`).
    #[serde(default)]
    pub types: BTreeMap<String, AttrType>,
}

/// The type of a user pattern's captured attribute (`types:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttrType {
    /// The captured text.
    String,
    /// A decimal integer (i64); a capture that is not one is left out.
    Int,
}

/// The value of a matched attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

impl From<AttrValue> for any_value::Value {
    fn from(value: AttrValue) -> Self {
        match value {
            AttrValue::Str(s) => any_value::Value::StringValue(s),
            AttrValue::Int(i) => any_value::Value::IntValue(i),
        }
    }
}

impl std::fmt::Display for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
        }
    }
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
    pub attributes: Vec<(String, AttrValue)>,
    /// The runtime's stack trace follows this line (multiline grouping hint).
    pub expects_stack_trace: bool,
    /// Byte offset in the line where the match begins (0 for a Docker JSON
    /// line, whose decoded text was matched): where the runtime's own text
    /// starts after a logger's prefix.
    pub start: usize,
}

/// The semantic conventions' exception attributes (registry
/// `model/exceptions/registry.yaml`), which runtime patterns capture.
pub const EXCEPTION_TYPE: &str = "exception.type";
pub const EXCEPTION_MESSAGE: &str = "exception.message";
/// Set on grouped records (see `receivers::filelog::multiline`), not by a pattern.
pub const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";

/// The shortest required literal a pattern may have: shorter ones would
/// make the prefilter fire on too many ordinary lines.
pub const MIN_LITERAL_LEN: usize = 3;

/// How one capture group is written out.
#[derive(Debug, Clone)]
struct GroupOutput {
    /// Capture group index in the regex.
    index: usize,
    /// Attribute name (the group's name).
    attribute: String,
    conversion: Option<Conversion>,
}

/// A compiled pattern (built-in or user).
#[derive(Debug)]
struct Pattern {
    name: String,
    runtime: String,
    severity_number: i32,
    severity_text: String,
    regex: LazyRegex,
    groups: Vec<GroupOutput>,
    constants: Vec<(String, AttrValue)>,
    expects_stack_trace: bool,
}

/// The compiled library: built-in patterns plus user patterns.
#[derive(Debug)]
pub struct Library {
    /// In priority order: user patterns, then built-in ones.
    patterns: Vec<Pattern>,
    /// Leftmost-first automaton over the distinct literals: the fast
    /// "does this line contain any literal" test.
    prefilter: AhoCorasick,
    /// The same literals with standard semantics, for overlapping search
    /// on the (rare) lines the prefilter lets through.
    candidates: AhoCorasick,
    /// Literal id -> indices into `patterns`, ascending.
    literal_patterns: Vec<Vec<usize>>,
    /// The distinct literals, by id.
    literals: Vec<Vec<u8>>,
}

impl Default for Library {
    fn default() -> Self {
        Library::builtin()
    }
}

impl Library {
    /// The built-in patterns only.
    pub fn builtin() -> Library {
        // The table is a constant checked by the unit tests; failing here is
        // a bug in this file, not bad input.
        #[allow(clippy::expect_used)]
        Library::with_user_patterns(&[]).expect("the built-in pattern table compiles")
    }

    /// Built-in plus user patterns; a bad regex is an error naming the pattern.
    ///
    /// User patterns come first: when both a user and a built-in pattern
    /// match a line, the user's wins. Names must be unique across both.
    pub fn with_user_patterns(user: &[UserPattern]) -> Result<Library, String> {
        Library::new(user, &[])
    }

    /// Built-in patterns except those whose name matches one of `disabled`
    /// (names with `*` wildcards, e.g. `kernel.*`), plus user patterns. An
    /// entry of `disabled` that names no built-in pattern is an error (a
    /// typo would otherwise silently disable nothing).
    pub fn new(user: &[UserPattern], disabled: &[String]) -> Result<Library, String> {
        let disabled = disabled
            .iter()
            .map(|d| {
                let pattern =
                    glob::Pattern::new(d).map_err(|e| format!("disabled pattern {d:?}: {e}"))?;
                if BUILTINS.iter().any(|b| pattern.matches(b.name)) {
                    Ok(pattern)
                } else {
                    Err(format!(
                        "disabled pattern {d:?} names no built-in pattern (see docs/patterns.md)"
                    ))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut patterns = Vec::with_capacity(user.len() + BUILTINS.len());
        let mut literals: Vec<Vec<Vec<u8>>> = Vec::with_capacity(patterns.capacity());
        let mut names = HashSet::new();
        for u in user {
            let (pattern, lits) = compile_user(u)?;
            if !names.insert(pattern.name.clone()) {
                return Err(format!(
                    "pattern {:?}: the name is used by another user pattern",
                    u.name
                ));
            }
            patterns.push(pattern);
            literals.push(lits);
        }
        for b in BUILTINS {
            if disabled.iter().any(|d| d.matches(b.name)) {
                continue;
            }
            let (pattern, lits) = compile_builtin(b)?;
            if !names.insert(pattern.name.clone()) {
                return Err(format!(
                    "pattern {:?}: the name is taken by a built-in pattern; choose another",
                    b.name
                ));
            }
            patterns.push(pattern);
            literals.push(lits);
        }

        // Distinct literals, each with the patterns that require it.
        let mut literal_ids: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut distinct: Vec<Vec<u8>> = Vec::new();
        let mut literal_patterns: Vec<Vec<usize>> = Vec::new();
        for (pattern_index, lits) in literals.into_iter().enumerate() {
            for lit in lits {
                let id = *literal_ids.entry(lit.clone()).or_insert_with(|| {
                    distinct.push(lit);
                    literal_patterns.push(Vec::new());
                    distinct.len() - 1
                });
                if literal_patterns[id].last() != Some(&pattern_index) {
                    literal_patterns[id].push(pattern_index);
                }
            }
        }
        let prefilter = literal_finder(&distinct)
            .map_err(|e| format!("building the pattern prefilter: {e}"))?;
        let candidates = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&distinct)
            .map_err(|e| format!("building the pattern prefilter: {e}"))?;
        Ok(Library {
            patterns,
            prefilter,
            candidates,
            literal_patterns,
            literals: distinct,
        })
    }

    /// The fixed texts of which every match contains at least one: a text
    /// without any of them matches no pattern. Readers use them to skip
    /// whole stretches of input without splitting it into lines.
    pub fn literals(&self) -> &[Vec<u8>] {
        &self.literals
    }

    /// The names of all patterns, in priority order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.name.as_str())
    }

    /// One pass over `line`; `None` for the (common) non-matching line,
    /// without allocating.
    pub fn match_line(&self, line: &str) -> Option<Match<'_>> {
        let line = line.trim_end_matches(['\n', '\r']);
        if !self.prefilter.is_match(line) {
            return None;
        }
        self.match_candidates(line)
    }

    /// The name of the pattern [`Library::match_line`] must report for
    /// `line`: every pattern's regex tried in priority order, without the
    /// literal prefilter. An oracle for the fuzz targets (it checks that the
    /// prefilter never hides a match); far too slow for anything else.
    #[doc(hidden)]
    pub fn first_match_unfiltered(&self, line: &str) -> Option<&str> {
        let line = line.trim_end_matches(['\n', '\r']);
        let text: Cow<'_, str> = match unwrap_docker_json(line) {
            Some(log) => Cow::Owned(log),
            None => Cow::Borrowed(line),
        };
        self.patterns
            .iter()
            .find(|pattern| pattern.regex.get().is_some_and(|r| r.is_match(&text)))
            .map(|pattern| pattern.name.as_str())
    }

    /// The slow path: run the patterns whose literal occurs in `line`.
    fn match_candidates(&self, line: &str) -> Option<Match<'_>> {
        let text: Cow<'_, str> = match unwrap_docker_json(line) {
            Some(log) => Cow::Owned(log),
            None => Cow::Borrowed(line),
        };
        // Patterns already tried (the first 512; beyond that a pattern may be
        // tried twice when its literal occurs twice: slower, still correct).
        let mut tried = [0u64; 8];
        let mut best: Option<usize> = None;
        for literal in self.candidates.find_overlapping_iter(line) {
            for &index in &self.literal_patterns[literal.pattern().as_usize()] {
                if best.is_some_and(|b| index >= b) {
                    break;
                }
                if let Some(word) = tried.get_mut(index / 64) {
                    let bit = 1u64 << (index % 64);
                    if *word & bit != 0 {
                        continue;
                    }
                    *word |= bit;
                }
                if self.patterns[index]
                    .regex
                    .get()
                    .is_some_and(|r| r.is_match(&text))
                {
                    best = Some(index);
                    break;
                }
            }
        }
        let pattern = &self.patterns[best?];
        let caps = pattern.regex.get()?.captures(&text)?;
        let start = match &text {
            Cow::Borrowed(_) => caps.get(0).map_or(0, |m| m.start()),
            Cow::Owned(_) => 0,
        };
        let mut attributes = Vec::with_capacity(pattern.groups.len() + pattern.constants.len());
        for group in &pattern.groups {
            let Some(value) = caps.get(group.index).map(|m| m.as_str()) else {
                continue;
            };
            if let Some(Conversion::Flag(key, constant)) = group.conversion {
                attributes.push((key.to_string(), AttrValue::Str(constant.to_string())));
                continue;
            }
            if !value.is_empty() {
                if let Some(value) = convert(group.conversion, value) {
                    attributes.push((group.attribute.clone(), value));
                }
            }
            if let Some(Conversion::AlsoSet(key, constant)) = group.conversion {
                attributes.push((key.to_string(), AttrValue::Str(constant.to_string())));
            }
        }
        attributes.extend(pattern.constants.iter().cloned());
        Some(Match {
            pattern: &pattern.name,
            runtime: &pattern.runtime,
            severity_number: pattern.severity_number,
            severity_text: &pattern.severity_text,
            attributes,
            expects_stack_trace: pattern.expects_stack_trace,
            start,
        })
    }
}

fn compile_builtin(b: &Builtin) -> Result<(Pattern, Vec<Vec<u8>>), String> {
    let (regex, literals) = compile_regex(b.name, b.regex)?;
    let mut groups = Vec::new();
    for (index, name) in regex.capture_names().enumerate() {
        let Some(name) = name else { continue };
        let conversion = b.conversion(name);
        groups.push(GroupOutput {
            index,
            attribute: name.to_string(),
            conversion,
        });
    }
    let pattern = Pattern {
        name: b.name.to_string(),
        runtime: b.runtime.as_str().to_string(),
        severity_number: b.severity.number,
        severity_text: b.severity.text.to_string(),
        regex: LazyRegex::new(b.name, b.regex),
        groups,
        constants: b
            .constants
            .iter()
            .map(|(k, v)| (k.to_string(), AttrValue::Str(v.to_string())))
            .collect(),
        expects_stack_trace: b.expects_stack_trace,
    };
    Ok((pattern, literals))
}

fn compile_user(u: &UserPattern) -> Result<(Pattern, Vec<Vec<u8>>), String> {
    if u.name.trim().is_empty() {
        return Err(format!(
            "user pattern with regex {:?}: `name` must not be empty",
            u.regex
        ));
    }
    if u.runtime.trim().is_empty() {
        return Err(format!("pattern {:?}: `runtime` must not be empty", u.name));
    }
    let (severity_number, severity_text) = parse_severity(&u.severity)
        .ok_or_else(|| {
            format!(
                "pattern {:?}: unknown severity {:?}; expected TRACE, DEBUG, INFO, WARN, ERROR or FATAL (optionally followed by 2, 3 or 4)",
                u.name, u.severity
            )
        })?;
    let (regex, literals) = compile_regex(&u.name, &u.regex)?;
    if let Some(unknown) = u.types.keys().find(|key| {
        !regex
            .capture_names()
            .flatten()
            .any(|name| name == key.as_str())
    }) {
        return Err(format!(
            "pattern {:?}: `types` names {unknown:?}, which is not a named group of the regex",
            u.name
        ));
    }
    let groups = regex
        .capture_names()
        .enumerate()
        .filter_map(|(index, name)| {
            name.map(|name| GroupOutput {
                index,
                attribute: name.to_string(),
                conversion: match u.types.get(name) {
                    Some(AttrType::Int) => Some(Conversion::Int),
                    Some(AttrType::String) | None => None,
                },
            })
        })
        .collect();
    let pattern = Pattern {
        name: u.name.clone(),
        runtime: u.runtime.clone(),
        severity_number,
        severity_text,
        regex: LazyRegex::new(&u.name, &u.regex),
        groups,
        constants: u
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), AttrValue::Str(v.clone())))
            .collect(),
        expects_stack_trace: false,
    };
    Ok((pattern, literals))
}

/// The automaton that finds where any of `literals` occurs (leftmost-first),
/// for the library's prefilter and the readers' skipping scans: whether a
/// text holds one, and where. A contiguous NFA: the default choice for a
/// few dozen literals is a DFA of about 440 KB, held for the agent's life
/// by each reader; the NFA is a few KB. Searches run in the SIMD prefilter
/// (Teddy) either way; the automaton only confirms the rare literal it
/// finds.
///
/// It is built over [`minimal_literals`]: a text holds one of those exactly
/// when it holds one of `literals`, and the fewer literals keep Teddy in
/// its Slim form, which aho-corasick picks for up to
/// [`SLIM_TEDDY_LITERALS`]; past that it takes Fat Teddy, which scans half
/// as many bytes a step (`bench/filelog_vs_otelcol.sh`: 0.120 CPU-s with
/// the filelog finder's 36 distinct literals, Fat; 0.110 with its 29
/// minimal ones, Slim).
pub fn literal_finder<I, P>(literals: I) -> Result<AhoCorasick, aho_corasick::BuildError>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostFirst)
        .kind(Some(AhoCorasickKind::ContiguousNFA))
        .build(minimal_literals(literals))
}

/// The most literals for which aho-corasick (1.1) builds Slim Teddy on
/// x86-64 (`packed::teddy::builder`: Fat above 32).
pub const SLIM_TEDDY_LITERALS: usize = 32;

/// `literals` without duplicates and without any literal that contains
/// another: a text holding such a literal holds the other too, so the set
/// is found in the same texts. In first-seen order.
pub fn minimal_literals<I, P>(literals: I) -> Vec<Vec<u8>>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let mut all: Vec<Vec<u8>> = Vec::new();
    for literal in literals {
        let literal = literal.as_ref();
        if !all.iter().any(|l| l == literal) {
            all.push(literal.to_vec());
        }
    }
    let contains_another = |l: &[u8]| {
        all.iter()
            .any(|o| o.len() < l.len() && memchr::memmem::find(l, o).is_some())
    };
    all.iter()
        .filter(|l| !contains_another(l))
        .cloned()
        .collect()
}

/// A pattern's regex, compiled at its first use. Most patterns never see
/// a line with their literal on a given host (a PHP pattern on a Go
/// shop's nodes), and compiled regexes are the largest part of a
/// library (about 2 MB for the built-in table): compiling on demand keeps
/// that off an idle agent. The source was compiled once when the library
/// was built (which rejects a bad one), so compiling it again cannot fail
/// short of running out of memory; then the pattern matches nothing and
/// says so once.
#[derive(Debug)]
struct LazyRegex {
    name: Box<str>,
    source: Box<str>,
    compiled: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    fn new(name: &str, source: &str) -> Self {
        LazyRegex {
            name: name.into(),
            source: source.into(),
            compiled: OnceLock::new(),
        }
    }

    fn get(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| match Regex::new(&self.source) {
                Ok(regex) => Some(regex),
                Err(e) => {
                    tracing::error!(pattern = %self.name, error = %e, "cannot compile the pattern's regex; it matches nothing");
                    None
                }
            })
            .as_ref()
    }

    /// Whether the regex has been compiled (tests).
    #[cfg(test)]
    fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}

/// Compiles `regex` and extracts its required literals.
fn compile_regex(name: &str, source: &str) -> Result<(Regex, Vec<Vec<u8>>), String> {
    let regex = Regex::new(source).map_err(|e| format!("pattern {name:?}: invalid regex: {e}"))?;
    let hir = regex_syntax::Parser::new()
        .parse(source)
        .map_err(|e| format!("pattern {name:?}: invalid regex: {e}"))?;
    let literals = required_literals(&hir)
        .filter(|set| set.iter().all(|l| l.len() >= MIN_LITERAL_LEN))
        .ok_or_else(|| {
            format!(
                "pattern {name:?}: the regex must contain at least {MIN_LITERAL_LEN} bytes of fixed, case-sensitive text that every match contains (without `\"`, `\\`, `<`, `>`, `&`), so that it can be found by the one-pass prefilter; for example `out of memory` in `(?P<what>\\w+) out of memory`"
            )
        })?;
    Ok((regex, literals))
}

/// Bytes a JSON encoder may escape (Go's encoder escapes `<`, `>`, `&`):
/// literals never contain them so that they also match raw Docker lines.
fn json_unsafe(b: u8) -> bool {
    matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&' | 0x00..=0x1f | 0x7f)
}

/// A set of literals at least one of which occurs in every match of `hir`,
/// or `None` when there is no such set. Chooses the set whose shortest
/// literal is longest (the most selective).
fn required_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
        fn score(s: &[Vec<u8>]) -> (usize, std::cmp::Reverse<usize>) {
            let shortest = s.iter().map(Vec::len).min().unwrap_or(0);
            (shortest, std::cmp::Reverse(s.len()))
        }
        match (a, b) {
            (Some(a), Some(b)) => Some(if score(&b) > score(&a) { b } else { a }),
            (a, None) => a,
            (None, b) => b,
        }
    }
    /// The longest JSON-safe piece of a literal run, without surrounding
    /// spaces: the prefilter keys on a literal's first bytes, and ones
    /// starting with a space (` in...`) would be found in every line.
    fn from_run(run: &[u8]) -> Option<Vec<Vec<u8>>> {
        run.split(|b| json_unsafe(*b))
            .map(<[u8]>::trim_ascii)
            .max_by_key(|piece| piece.len())
            .filter(|piece| !piece.is_empty())
            .map(|piece| vec![piece.to_vec()])
    }
    match hir.kind() {
        HirKind::Literal(lit) => from_run(&lit.0),
        HirKind::Capture(cap) => required_literals(&cap.sub),
        HirKind::Repetition(rep) if rep.min >= 1 => required_literals(&rep.sub),
        HirKind::Concat(children) => {
            let mut best = None;
            let mut run: Vec<u8> = Vec::new();
            for child in children {
                if let HirKind::Literal(lit) = child.kind() {
                    run.extend_from_slice(&lit.0);
                    continue;
                }
                best = better(best, from_run(&run));
                run.clear();
                best = better(best, required_literals(child));
            }
            better(best, from_run(&run))
        }
        HirKind::Alternation(branches) => {
            let mut all = Vec::new();
            for branch in branches {
                for lit in required_literals(branch)? {
                    if !all.contains(&lit) {
                        all.push(lit);
                    }
                }
            }
            Some(all)
        }
        _ => None,
    }
}

/// OTLP severity number for a severity text (`ERROR`, `warn`, `FATAL2`, ...).
fn parse_severity(text: &str) -> Option<(i32, String)> {
    let upper = text.trim().to_ascii_uppercase();
    let (base, offset) = match upper.as_bytes().last() {
        Some(d @ b'2'..=b'4') => (&upper[..upper.len() - 1], i32::from(d - b'1')),
        _ => (upper.as_str(), 0),
    };
    let number = match base {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" | "WARNING" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => return None,
    };
    let base = if base == "WARNING" { "WARN" } else { base };
    let text = if offset == 0 {
        base.to_string()
    } else {
        format!("{base}{}", offset + 1)
    };
    Some((number + offset, text))
}

/// The attribute value of a capture's `text`; `None` when the conversion
/// expects a number and `text` is not one (the attribute is then left out).
fn convert(conversion: Option<Conversion>, text: &str) -> Option<AttrValue> {
    match conversion {
        None | Some(Conversion::AlsoSet(..)) => Some(AttrValue::Str(text.to_string())),
        Some(Conversion::Int) => text.parse().ok().map(AttrValue::Int),
        Some(Conversion::Bytes) => decimal_saturating(text).map(saturating_i64),
        Some(Conversion::KibToBytes) => {
            decimal_saturating(text).map(|kib| saturating_i64(kib.saturating_mul(1024)))
        }
        Some(Conversion::SizeToBytes) => size_to_bytes(text),
        // Handled by the caller: the group's text is not used.
        Some(Conversion::Flag(..)) => None,
    }
}

/// ASCII digits as a number, saturating at `u64::MAX`; `None` for anything else.
fn decimal_saturating(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: parsing fails only on overflow.
    Some(text.parse().unwrap_or(u64::MAX))
}

fn saturating_i64(value: u64) -> AttrValue {
    AttrValue::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

/// `7.45 GiB` -> 7999376589, `512 bytes` -> 512 (saturating at
/// `i64::MAX`); `None` for an unknown unit or a bad number.
fn size_to_bytes(size: &str) -> Option<AttrValue> {
    let (number, unit) = size.split_once(' ')?;
    let exponent = match unit {
        "bytes" | "B" => 0,
        "KiB" => 1,
        "MiB" => 2,
        "GiB" => 3,
        "TiB" => 4,
        "PiB" => 5,
        "EiB" => 6,
        _ => return None,
    };
    let number = number.parse::<f64>().ok().filter(|n| *n >= 0.0)?;
    // `as` saturates (infinity too) at i64::MAX.
    Some(AttrValue::Int(
        (number * 1024f64.powi(exponent)).round() as i64
    ))
}

/// The `log` field of a Docker `json-file` line, without its trailing
/// newline; `None` for any other line.
fn unwrap_docker_json(line: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct DockerLine {
        log: String,
    }
    if !line.starts_with('{') || !line.contains("\"log\":") {
        return None;
    }
    let mut log = serde_json::from_str::<DockerLine>(line).ok()?.log;
    let kept = log.trim_end_matches(['\n', '\r']).len();
    log.truncate(kept);
    Some(log)
}
