//! The `filelog` receiver end to end, on out-of-memory output written by the
//! runtimes themselves: each test runs a tiny program under a memory limit
//! (a JVM/V8 heap cap or `ulimit -v`) so it fails by itself, quickly, with its
//! stderr and stdout in a log file the agent tails. The file exporter's
//! output must hold one record for the failure, with the runtime and pattern
//! of the pattern library, and the runtime's stack trace in the same body,
//! with the semantic conventions' `exception.type`, `exception.message` and
//! `exception.stacktrace` where the runtime prints them.
//! A missing tool skips its test with a printed reason.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use common::oomscope::Oomscope;
use common::otlp::{attr_int, attr_str, FileContents};
use common::skip;

const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a program may run before it is killed and the test fails; each
/// is expected to fail within seconds.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(120);
/// The address space cap (`ulimit -v`, KiB) for the runtimes without a heap
/// cap of their own.
const ULIMIT_V_KIB: u32 = 200_000;

/// Whether `tool` runs (`tool <version_arg>`); prints the skip reason if not.
fn tool_available(test: &str, tool: &str, version_arg: &str) -> bool {
    match Command::new(tool)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => true,
        Ok(status) => {
            skip(test, format!("`{tool} {version_arg}` failed: {status}"));
            false
        }
        Err(err) => {
            skip(test, format!("{tool} is not usable: {err}"));
            false
        }
    }
}

/// An agent tailing `<dir>/logs/*.log` into `<dir>/out.jsonl`.
struct Tailed {
    agent: Oomscope,
    dir: tempfile::TempDir,
}

impl Tailed {
    fn start() -> Tailed {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("logs")).expect("create logs dir");
        let health = free_port();
        let config = format!(
            r#"
receivers:
  filelog:
    include: ["{logs}/*.log"]
    start_at: beginning
    poll_interval: 100ms
    force_flush_period: 200ms
exporters:
  file: {{ path: "{out}", flush_interval: 100ms }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [filelog], exporters: [file] }}
"#,
            logs = dir.path().join("logs").display(),
            out = dir.path().join("out.jsonl").display(),
        );
        let mut agent = Oomscope::start(&config, &[]);
        agent.wait_healthy(health, TIMEOUT);
        Tailed { agent, dir }
    }

    /// A scratch directory for sources and binaries (not tailed).
    fn work_dir(&self) -> PathBuf {
        let work = self.dir.path().join("work");
        std::fs::create_dir_all(&work).expect("create work dir");
        work
    }

    /// Runs `command` with stdout and stderr in a file; it must fail by
    /// itself (non-zero exit or a signal) within [`PROGRAM_TIMEOUT`]. Then
    /// the whole output appears in the tailed `logs/<name>.log` at once (a
    /// rename), so what the agent groups does not depend on how fast the
    /// program wrote its lines (a runtime slowed down mid-stack-trace would
    /// otherwise outlast `force_flush_period`). Returns what it wrote.
    fn run_failing(&self, name: &str, command: &mut Command) -> String {
        let written_path = self.work_dir().join(format!("{name}.out"));
        let out = File::create(&written_path).expect("create program output");
        let err = out.try_clone().expect("clone program output");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let deadline = Instant::now() + PROGRAM_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{command:?} did not fail within {PROGRAM_TIMEOUT:?}:\n{}",
                    std::fs::read_to_string(&written_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let written = std::fs::read_to_string(&written_path).unwrap_or_default();
        assert!(
            !status.success(),
            "{command:?} was expected to run out of memory, but succeeded:\n{written}"
        );
        std::fs::rename(&written_path, self.log(name)).expect("move the output into the logs");
        written
    }

    /// The tailed log of program `name`.
    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{name}.log"))
    }

    /// Waits for a record with `oom.runtime` = `runtime` from the log of the
    /// program run as `runtime` and returns the only one; panics with
    /// everything seen when there is none or several.
    fn one_record(&self, runtime: &str, program_output: &str) -> serde_json::Value {
        let name = runtime;
        let out = self.dir.path().join("out.jsonl");
        let first = FileContents::wait_for(&out, TIMEOUT, |c| {
            c.logs
                .iter()
                .any(|r| attr_str(r, "oom.runtime").as_deref() == Some(runtime))
        });
        // A fence: a line of another runtime appended to the same log. The
        // file is read in order, so once its record is out, any piece the
        // runtime's output was split into is out too.
        let fence = format!(
            "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted \
             (tried to allocate 20480 bytes) in /fence/{name}.php on line 1"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.log(name))
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{fence}\n").as_bytes()))
            .expect("append the fence");
        let contents = FileContents::wait_for(&out, TIMEOUT, |c| {
            c.log_bodies.iter().any(|b| b.contains(&fence))
        });
        assert!(
            contents.log_bodies.iter().any(|b| b.contains(&fence)),
            "the fence line was not read:\n{}",
            self.agent.output()
        );
        let records: Vec<&serde_json::Value> = contents
            .logs
            .iter()
            .filter(|r| attr_str(r, "oom.runtime").as_deref() == Some(runtime))
            .collect();
        assert_eq!(
            records.len(),
            1,
            "expected one {runtime} record (first poll had {}); the program wrote:\n{program_output}\n\
             records: {:#?}\nagent output:\n{}",
            first.logs.len(),
            contents.logs,
            self.agent.output()
        );
        records[0].clone()
    }
}

fn body(record: &serde_json::Value) -> &str {
    record["body"]["stringValue"].as_str().unwrap_or_default()
}

/// (`exception.type`, `exception.message`, `exception.stacktrace`) as exported.
fn exception(record: &serde_json::Value) -> [Option<String>; 3] {
    [
        attr_str(record, "exception.type"),
        attr_str(record, "exception.message"),
        attr_str(record, "exception.stacktrace"),
    ]
}

fn write_source(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// `sh -c 'ulimit -v <cap>; exec "$0" "$@"' program args...`
fn under_ulimit(program: &Path, args: &[&str]) -> Command {
    under_ulimit_kib(program, args, ULIMIT_V_KIB)
}

/// Go's runtime reserves about 600 MiB of address space at start (page
/// summaries), so it needs a higher cap than the others to get as far as
/// the allocation that fails; the 1 TiB request still fails at once.
const GO_ULIMIT_V_KIB: u32 = 1_000_000;

fn under_ulimit_kib(program: &Path, args: &[&str], kib: u32) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -v {kib}; exec \"$0\" \"$@\""))
        .arg(program)
        .args(args);
    command
}

fn compile(test: &str, command: &mut Command) -> bool {
    match command.output() {
        Ok(output) if output.status.success() => true,
        Ok(output) => panic!(
            "{test}: compiling failed: {command:?}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(err) => {
            skip(test, format!("cannot run {command:?}: {err}"));
            false
        }
    }
}

#[test]
fn java_heap_space_is_one_record_with_its_frames() {
    let test = "java_heap_space_is_one_record_with_its_frames";
    if !tool_available(test, "java", "-version") {
        return;
    }
    let tailed = Tailed::start();
    let source = write_source(
        &tailed.work_dir(),
        "Grow.java",
        r#"import java.util.ArrayList;
import java.util.List;

public class Grow {
    static final List<long[]> KEPT = new ArrayList<>();

    static void grow() {
        while (true) {
            KEPT.add(new long[1 << 16]);
        }
    }

    public static void main(String[] args) {
        grow();
    }
}
"#,
    );
    // Single-file source launch (Java 11+); a 16 MiB heap fills in moments.
    let written = tailed.run_failing(
        "java",
        Command::new("java")
            .arg("-Xmx16m")
            .arg("-Xss1m")
            .arg(&source),
    );
    let record = tailed.one_record("java", &written);
    assert_eq!(
        attr_str(&record, "oom.pattern").as_deref(),
        Some("java.heap_space"),
        "{record:#}"
    );
    let text = body(&record);
    assert!(
        text.contains("java.lang.OutOfMemoryError: Java heap space"),
        "{text}"
    );
    assert!(text.contains("\n\tat "), "no frame in the record: {text}");
    // Every frame the JVM printed is in the record.
    let frames = written.lines().filter(|l| l.starts_with("\tat ")).count();
    assert_eq!(text.matches("\n\tat ").count(), frames, "{text}");
    // The trace as the JVM printed it (its whole output here).
    assert_eq!(
        exception(&record),
        [
            Some("java.lang.OutOfMemoryError".to_owned()),
            Some("Java heap space".to_owned()),
            Some(written.trim_end().to_owned()),
        ],
        "{record:#}"
    );
    assert_eq!(
        attr_str(&record, "oom.java.error").as_deref(),
        Some("Java heap space")
    );
}

#[test]
fn node_heap_out_of_memory_is_one_record_with_its_native_stack() {
    let test = "node_heap_out_of_memory_is_one_record_with_its_native_stack";
    if !tool_available(test, "node", "--version") {
        return;
    }
    let tailed = Tailed::start();
    let source = write_source(
        &tailed.work_dir(),
        "grow.js",
        "const kept = [];\nwhile (true) {\n  kept.push(new Array(1000).fill(Math.random()));\n}\n",
    );
    let written = tailed.run_failing(
        "node",
        Command::new("node")
            .arg("--max-old-space-size=16")
            .arg(&source),
    );
    let record = tailed.one_record("node", &written);
    assert_eq!(
        attr_str(&record, "oom.pattern").as_deref(),
        Some("node.heap_out_of_memory"),
        "{record:#}"
    );
    let text = body(&record);
    assert!(
        text.starts_with("FATAL ERROR: ") && text.contains("JavaScript heap out of memory"),
        "{text}"
    );
    // The native stack V8 printed after the error, to its last frame.
    assert!(text.contains("Native stack trace"), "{text}");
    let last_frame = written
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .expect("node printed numbered native frames");
    assert!(
        text.contains(last_frame.trim()),
        "last frame {last_frame:?} missing: {text}"
    );
    // V8 prints no type; the message follows `FATAL ERROR: `.
    let [kind, message, trace] = exception(&record);
    assert_eq!(kind, None, "{record:#}");
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.ends_with("Allocation failed - JavaScript heap out of memory")),
        "{record:#}"
    );
    assert_eq!(trace.as_deref(), Some(text), "{record:#}");
}

#[test]
fn python_memory_error_is_one_record_with_its_traceback() {
    let test = "python_memory_error_is_one_record_with_its_traceback";
    if !tool_available(test, "python3", "--version") {
        return;
    }
    let tailed = Tailed::start();
    let script = write_source(
        &tailed.work_dir(),
        "grow.py",
        "def grow():\n    return bytearray(1 << 30)\n\n\ngrow()\n",
    );
    let python = Path::new("python3");
    let written = tailed.run_failing(
        "python",
        &mut under_ulimit(python, &[&script.to_string_lossy()]),
    );
    let record = tailed.one_record("python", &written);
    assert_eq!(
        attr_str(&record, "oom.pattern").as_deref(),
        Some("python.memory_error"),
        "{record:#}"
    );
    let text = body(&record);
    assert!(
        text.starts_with("Traceback (most recent call last):"),
        "{text}"
    );
    assert!(text.contains("in grow\n"), "frames missing: {text}");
    assert!(text.ends_with("\nMemoryError"), "{text}");
    // A bare `MemoryError` has a type and no message; the traceback as
    // `traceback.format_exc()` gives it.
    assert_eq!(
        exception(&record),
        [Some("MemoryError".to_owned()), None, Some(text.to_owned())],
        "{record:#}"
    );
}

#[test]
fn cpp_uncaught_bad_alloc_is_one_record() {
    let test = "cpp_uncaught_bad_alloc_is_one_record";
    if !tool_available(test, "g++", "--version") {
        return;
    }
    let tailed = Tailed::start();
    let work = tailed.work_dir();
    let source = write_source(
        &work,
        "grow.cpp",
        r#"#include <cstddef>
#include <cstdio>

int main() {
    // 1 TiB: more than the address space cap allows.
    std::size_t huge = std::size_t(1) << 40;
    char* p = new char[huge];
    std::printf("%p\n", static_cast<void*>(p));
    return 0;
}
"#,
    );
    let binary = work.join("grow");
    if !compile(
        test,
        Command::new("g++")
            .arg("-O0")
            .arg("-o")
            .arg(&binary)
            .arg(&source),
    ) {
        return;
    }
    let written = tailed.run_failing("cpp", &mut under_ulimit(&binary, &[]));
    let record = tailed.one_record("cpp", &written);
    assert_eq!(
        attr_str(&record, "oom.pattern").as_deref(),
        Some("cpp.bad_alloc"),
        "{record:#}"
    );
    let text = body(&record);
    assert!(
        text.starts_with("terminate called after throwing an instance of 'std::bad_alloc'"),
        "{text}"
    );
    // libstdc++'s `what()` line follows, indented: the same record.
    assert!(text.contains("\n  what():  std::bad_alloc"), "{text}");
    // The type from the first line, the message from `what()`; libstdc++
    // prints no frames.
    assert_eq!(
        exception(&record),
        [
            Some("std::bad_alloc".to_owned()),
            Some("std::bad_alloc".to_owned()),
            None
        ],
        "{record:#}"
    );
}

#[test]
fn rust_allocation_failure_is_one_record() {
    let test = "rust_allocation_failure_is_one_record";
    if !tool_available(test, "rustc", "--version") {
        return;
    }
    let tailed = Tailed::start();
    let work = tailed.work_dir();
    let source = write_source(
        &work,
        "grow.rs",
        r#"fn main() {
    // 1 TiB: more than the address space cap allows.
    let huge: usize = std::hint::black_box(1 << 40);
    let kept: Vec<u8> = Vec::with_capacity(huge);
    println!("{}", kept.capacity());
}
"#,
    );
    let binary = work.join("grow");
    if !compile(
        test,
        Command::new("rustc").arg("-o").arg(&binary).arg(&source),
    ) {
        return;
    }
    let mut command = under_ulimit(&binary, &[]);
    command.env_remove("RUST_BACKTRACE");
    let written = tailed.run_failing("rust", &mut command);
    let record = tailed.one_record("rust", &written);
    assert_eq!(
        attr_str(&record, "oom.pattern").as_deref(),
        Some("rust.alloc_failed"),
        "{record:#}"
    );
    assert_eq!(
        body(&record),
        "memory allocation of 1099511627776 bytes failed"
    );
    assert_eq!(
        attr_int(&record, "oom.requested_bytes"),
        Some(1099511627776),
        "{record:#}"
    );
    // No type printed; no backtrace without RUST_BACKTRACE.
    assert_eq!(
        exception(&record),
        [
            None,
            Some("memory allocation of 1099511627776 bytes failed".to_owned()),
            None
        ],
        "{record:#}"
    );
}

#[test]
fn go_out_of_memory_is_recognised() {
    let test = "go_out_of_memory_is_recognised";
    if !tool_available(test, "go", "version") {
        return;
    }
    let tailed = Tailed::start();
    let work = tailed.work_dir();
    let source = write_source(
        &work,
        "grow.go",
        r#"package main

import "fmt"

func main() {
	// 1 TiB: more than the address space cap allows.
	kept := make([]byte, 1<<40)
	fmt.Println(len(kept))
}
"#,
    );
    let binary = work.join("grow");
    if !compile(
        test,
        Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .env("GOCACHE", work.join("gocache"))
            .env("GO111MODULE", "off"),
    ) {
        return;
    }
    let written = tailed.run_failing("go", &mut under_ulimit_kib(&binary, &[], GO_ULIMIT_V_KIB));
    let out = tailed.dir.path().join("out.jsonl");
    let contents = FileContents::wait_for(&out, TIMEOUT, |c| {
        c.logs
            .iter()
            .any(|r| attr_str(r, "oom.runtime").as_deref() == Some("go"))
    });
    let patterns: Vec<String> = contents
        .logs
        .iter()
        .filter(|r| attr_str(r, "oom.runtime").as_deref() == Some("go"))
        .filter_map(|r| attr_str(r, "oom.pattern"))
        .collect();
    assert!(
        patterns.iter().any(|p| p.starts_with("go.")),
        "no go record; the program wrote:\n{written}\nrecords: {:#?}",
        contents.logs
    );
    // The throw: Go prints no type; its message and the goroutine dump.
    let contents = FileContents::wait_for(&out, TIMEOUT, |c| {
        c.logs
            .iter()
            .any(|r| attr_str(r, "oom.pattern").as_deref() == Some("go.fatal_out_of_memory"))
    });
    let fatal = contents
        .logs
        .iter()
        .find(|r| attr_str(r, "oom.pattern").as_deref() == Some("go.fatal_out_of_memory"))
        .unwrap_or_else(|| {
            panic!(
                "no go.fatal_out_of_memory record; the program wrote:\n{written}\nrecords: {:#?}",
                contents.logs
            )
        });
    let [kind, message, trace] = exception(fatal);
    assert_eq!(kind, None, "{fatal:#}");
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.ends_with("out of memory")),
        "{fatal:#}"
    );
    let trace = trace.unwrap_or_default();
    assert!(trace.starts_with("fatal error: "), "{fatal:#}");
    assert!(trace.contains("\ngoroutine 1 [running]:\n"), "{fatal:#}");
    assert_eq!(trace, body(fatal), "{fatal:#}");
}
