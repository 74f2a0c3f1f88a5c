//! The OOM pattern library: each line matched with the one-pass literal
//! prefilter must give the pattern that trying every regex in order gives.
//! Input: a mode byte; with its low bit set the first line is a user
//! pattern's regex (compiled alone: its literal extraction is what is
//! checked), else the built-in library is used. The other lines are matched.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use oomscope::patterns::{Library, UserPattern};
use oomscope_fuzz::Input;

static BUILTIN: LazyLock<Library> = LazyLock::new(Library::builtin);

/// Docker json-file lines are matched on their decoded `log` while the
/// prefilter reads the raw line; a `\u` or `\/` escape can hide a literal
/// there. Docker (Go's encoder) never escapes letters, digits or `/`, so
/// such lines are not checked against the oracle.
fn escapes_can_hide_literals(line: &str) -> bool {
    line.starts_with('{') && (line.contains("\\u") || line.contains("\\/"))
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte();
    let text = String::from_utf8_lossy(input.rest());
    let mut lines = text.split('\n');
    let user;
    let library: &Library = if mode & 1 == 1 {
        let pattern = UserPattern {
            name: "fuzz.user".into(),
            regex: lines.next().unwrap_or("").to_owned(),
            runtime: "fuzz".into(),
            severity: "ERROR".into(),
            attributes: Default::default(),
            types: Default::default(),
        };
        // Only the user pattern: every built-in one disabled.
        match Library::new(&[pattern], &["*".to_owned()]) {
            Ok(library) => {
                user = library;
                &user
            }
            Err(message) => {
                assert!(!message.is_empty());
                return;
            }
        }
    } else {
        &BUILTIN
    };
    for line in lines.take(256) {
        let matched = library.match_line(line);
        if !escapes_can_hide_literals(line) {
            assert_eq!(
                matched.as_ref().map(|m| m.pattern),
                library.first_match_unfiltered(line),
                "the prefilter changed the result for {line:?}"
            );
        }
        if let Some(m) = matched {
            assert!(m.severity_number > 0);
            assert!(m.attributes.iter().all(|(key, _)| !key.is_empty()));
            // Where the runtime's text starts: within the line.
            assert!(m.start <= line.len());
        }
    }
});
