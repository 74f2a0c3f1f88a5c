//! `analyze` in process, on bad input; the real samples and the binary are
//! tested in tests/analyze.rs.

use std::ffi::OsString;

use super::*;

fn run_on(files: &[(&str, &[u8])], json: bool) -> (u8, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for (name, data) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        inputs.push(path.into_os_string());
    }
    let options = AnalyzeOptions {
        inputs,
        json,
        ..AnalyzeOptions::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&options, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A report of this machine's kernel (tests/data/kmsg-memcg-oom.txt, as
/// `cat /dev/kmsg` writes it), cut before its "Killed process" line.
fn truncated_report() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/kmsg-memcg-oom.txt"
    ))
    .unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let killed = lines
        .iter()
        .position(|line| line.contains("Killed process"))
        .unwrap();
    lines.truncate(killed);
    lines.join("\n")
}

#[test]
fn a_truncated_report_is_shown_with_its_note() {
    let text = truncated_report();
    let (code, out, err) = run_on(&[("cut.log", text.as_bytes())], false);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.contains("WARN OOM report without a kill"), "{out}");
    assert!(
        out.contains("the report has no \"Killed process\" line: the text ends first"),
        "{out}"
    );
    let (_, out, _) = run_on(&[("cut.log", text.as_bytes())], true);
    let records = json_lines(&out);
    assert_eq!(records.len(), 1, "{out}");
    assert_eq!(records[0]["kind"], "report_without_kill");
    assert_eq!(records[0]["severity"], "WARN");
    assert!(records[0]["note"].as_str().unwrap().contains("text ends"));
}

#[test]
fn binary_garbage_and_very_long_lines_do_not_panic() {
    // Pseudo-random bytes (xorshift), NULs and invalid UTF-8 included, with
    // report words mixed in.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut garbage = Vec::with_capacity(4 << 20);
    while garbage.len() < 4 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        garbage.extend_from_slice(&state.to_le_bytes());
        if state.is_multiple_of(97) {
            garbage.extend_from_slice(b"\n[ 1.000000] Killed process (x) invoked oom-killer: \n");
        }
    }
    // A 10 MiB line (no newline) after a report.
    let mut long = truncated_report().into_bytes();
    long.push(b'\n');
    long.extend(std::iter::repeat_n(b'x', 10 << 20));
    let (code, out, err) = run_on(&[("garbage.bin", &garbage), ("long.log", &long)], false);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.contains("1 line cut at 1.0 MiB"), "{out}");
    assert!(out.contains("read 2 inputs"), "{out}");
}

#[test]
fn a_missing_file_is_named_and_nothing_read_exits_2() {
    let options = AnalyzeOptions {
        inputs: vec![OsString::from("/nonexistent/oomscope-analyze.log")],
        ..AnalyzeOptions::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run(&options, &mut out, &mut err), EXIT_NOTHING_READ);
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.contains("/nonexistent/oomscope-analyze.log: No such file or directory"),
        "{err}"
    );
    // With a readable one: read, exit 1.
    let (code, _, err) = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.log");
        std::fs::write(&path, "").unwrap();
        let options = AnalyzeOptions {
            inputs: vec![
                OsString::from("/nonexistent/oomscope-analyze.log"),
                path.into_os_string(),
            ],
            ..AnalyzeOptions::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&options, &mut out, &mut err);
        (code, out, String::from_utf8(err).unwrap())
    };
    assert_eq!(code, EXIT_PARTIAL, "{err}");
}

/// A reader that hands out one byte per read, as a slow pipe may.
struct Trickle(std::io::Cursor<Vec<u8>>);

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn gzip_from_a_trickling_pipe_is_decompressed() {
    use std::io::{Read as _, Write as _};
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(b"one\ntwo\n").unwrap();
    let gz = encoder.finish().unwrap();
    let (mut reader, compression) =
        input::decode(Box::new(Trickle(std::io::Cursor::new(gz)))).unwrap();
    let mut text = String::new();
    reader.read_to_string(&mut text).unwrap();
    assert_eq!(
        (text.as_str(), compression),
        ("one\ntwo\n", input::Compression::Gzip)
    );
}

/// The real JVM output (tests/data/runtime-oom/) before this machine's real
/// kernel report: `--json` gives the nearby message its exception attributes.
#[test]
fn json_nearby_messages_carry_the_exception_attributes() {
    let data = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/../tests/data/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let java = data("runtime-oom/java-heap-space.txt");
    let text = format!("{java}{}", data("kmsg-memcg-oom.txt"));
    let (code, out, err) = run_on(&[("mixed.log", text.as_bytes())], true);
    assert_eq!(code, EXIT_OK, "{err}");
    let records = json_lines(&out);
    // The sample's kill (and the start of the next report, cut short).
    assert_eq!(records[0]["kind"], "kill", "{out}");
    let nearby = &records[0]["nearby"][0];
    assert_eq!(nearby["pattern"], "java.heap_space", "{out}");
    let attributes = &nearby["attributes"];
    assert_eq!(attributes["exception.type"], "java.lang.OutOfMemoryError");
    assert_eq!(attributes["exception.message"], "Java heap space");
    assert_eq!(attributes["exception.stacktrace"], java.trim_end());
    assert_eq!(attributes["oom.java.error"], "Java heap space");
    // The human block shows the trace as before.
    let (_, human, _) = run_on(&[("mixed.log", text.as_bytes())], false);
    assert!(
        human.contains("| \tat java.base/java.lang.reflect.Method.invoke")
            || human.contains("java.lang.reflect.Method.invoke(Method.java:569)"),
        "{human}"
    );
}
