//! Configuration loading: YAML text to a validated `Config`, with
//! `${env:...}` expansion. Input: `NAME=value` lines (the environment), a NUL
//! byte, then the YAML text (no NUL: all of it is YAML, empty environment).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use oomscope::config::load_str_with_env;

fuzz_target!(|data: &[u8]| {
    let (env_block, yaml) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    // The loader reads files as UTF-8 and refuses anything else first.
    let Ok(yaml) = std::str::from_utf8(yaml) else {
        return;
    };
    let env: HashMap<String, String> = String::from_utf8_lossy(env_block)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let lookup = |name: &str| env.get(name).cloned();
    match load_str_with_env(oomscope::components::registry(), "fuzz.yaml", yaml, &lookup) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a message");
            for error in &errors.0 {
                assert!(!error.to_string().is_empty(), "an empty error message");
            }
        }
    }
});
