//! Command-line redaction on any argv (`/proc/PID/cmdline`: arguments
//! separated by NUL, read lossily as UTF-8): never panics and keeps one
//! output argument per input argument.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomscope::redact::{default_keys, redact_args, redact_text};

fuzz_target!(|data: &[u8]| {
    let args: Vec<String> = data
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let keys = default_keys();
    let redacted = redact_args(&args, &keys);
    assert_eq!(redacted.len(), args.len());
    for arg in &args {
        let _ = redact_text(arg);
    }
});
