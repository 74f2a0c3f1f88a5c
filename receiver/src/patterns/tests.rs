use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use super::builtin::{Conversion, BUILTINS};
use super::*;

// ---------------------------------------------------------------- helpers

/// Counts this thread's allocations, so a test can check that matching a
/// line allocates nothing (other tests run on other threads).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// An expected attribute value (`Copy`, so tables of them can be `static`).
#[derive(Debug, Clone, Copy)]
enum Val {
    S(&'static str),
    I(i64),
}
use Val::{I, S};

fn attrs(pairs: &[(&str, Val)]) -> Vec<(String, AttrValue)> {
    pairs
        .iter()
        .map(|(k, v)| {
            let v = match *v {
                S(s) => AttrValue::Str(s.to_string()),
                I(i) => AttrValue::Int(i),
            };
            (k.to_string(), v)
        })
        .collect()
}

fn str_attr(key: &str, value: &str) -> (String, AttrValue) {
    (key.to_string(), AttrValue::Str(value.to_string()))
}

/// A line as each common shipper writes it.
fn with_prefixes(line: &str) -> Vec<(&'static str, String)> {
    let docker = serde_json::json!({
        "log": format!("{line}\n"),
        "stream": "stderr",
        "time": "2026-11-27T05:01:02.123456789Z",
    })
    .to_string()
    // Docker's Go encoder also escapes HTML characters.
    .replace('<', "\\u003c")
    .replace('>', "\\u003e")
    .replace('&', "\\u0026");
    vec![
        ("plain", line.to_string()),
        ("syslog", format!("Nov 27 05:01:02 host app[123]: {line}")),
        ("journald export", format!("MESSAGE={line}")),
        ("kmsg", format!("6,123,456,-;{line}")),
        (
            "CRI",
            format!("2026-11-27T05:01:02.123456789Z stderr F {line}"),
        ),
        ("docker json", docker),
        ("trailing newline", format!("{line}\r\n")),
    ]
}

/// The exact attributes of every built-in pattern's example line.
fn expected_example_attributes() -> BTreeMap<&'static str, Vec<(String, AttrValue)>> {
    let killed = |pid, comm, vm, anon, file, shmem: Option<i64>, tail: &[(&str, Val)]| {
        let mut v = vec![
            ("process.pid", I(pid)),
            ("oom.victim.comm", S(comm)),
            ("oom.victim.total_vm", I(vm)),
            ("oom.victim.anon_rss", I(anon)),
            ("oom.victim.file_rss", I(file)),
        ];
        if let Some(s) = shmem {
            v.push(("oom.victim.shmem_rss", I(s)));
        }
        v.extend_from_slice(tail);
        attrs(&v)
    };
    BTreeMap::from([
        (
            "kernel.oom_invoked",
            attrs(&[
                ("oom.trigger.comm", S("python3")),
                ("oom.gfp_mask", S("0xcc0(GFP_KERNEL)")),
                ("oom.order", I(0)),
                ("oom.trigger.oom_score_adj", I(0)),
            ]),
        ),
        (
            "kernel.oom_kill_summary",
            attrs(&[
                ("oom.constraint", S("CONSTRAINT_MEMCG")),
                ("oom.nodemask", S("(null)")),
                ("oom.cpuset", S("/")),
                ("oom.mems_allowed", S("0")),
                ("oom.memcg", S("/oomtest")),
                ("oom.trigger_type", S("cgroup")),
                ("oom.victim.cgroup", S("/oomtest")),
                ("oom.victim.comm", S("python3")),
                ("process.pid", I(11976)),
                ("process.real_user.id", I(0)),
            ]),
        ),
        (
            "kernel.memcg_oom_kill",
            killed(
                11976,
                "python3",
                69410816,
                52035584,
                5263360,
                Some(0),
                &[
                    ("process.real_user.id", I(0)),
                    ("oom.victim.pgtables", I(159744)),
                    ("oom.victim.oom_score_adj", I(0)),
                    ("oom.trigger_type", S("cgroup")),
                ],
            ),
        ),
        (
            "kernel.global_oom_kill",
            killed(
                3103923,
                "stress-ng-vm",
                16170409984,
                14714466304,
                4096,
                Some(36864),
                &[
                    ("process.real_user.id", I(0)),
                    ("oom.victim.pgtables", I(28860416)),
                    ("oom.victim.oom_score_adj", I(1000)),
                    ("oom.trigger_type", S("system")),
                ],
            ),
        ),
        (
            "kernel.killed_process",
            killed(
                2592,
                "java",
                4583260160,
                1958924288,
                0,
                Some(0),
                &[],
            ),
        ),
        (
            "kernel.oom_kill_sacrifice",
            attrs(&[
                ("oom.trigger_type", S("cgroup")),
                ("process.pid", I(2592)),
                ("oom.victim.comm", S("java")),
                ("oom.victim.score", I(1001)),
            ]),
        ),
        (
            "kernel.memcg_limit_legacy",
            attrs(&[
                ("oom.victim.cgroup", S("/kubepods/burstable/pod6f1c/8d2e")),
                ("oom.memcg", S("/kubepods/burstable/pod6f1c")),
                ("oom.trigger_type", S("cgroup")),
            ]),
        ),
        ("kernel.no_killable_processes", vec![]),
        (
            "kernel.panic_on_oom",
            attrs(&[("oom.panic_mode", S("system-wide"))]),
        ),
        (
            "kernel.page_allocation_failure",
            attrs(&[
                ("oom.trigger.comm", S("kworker/u16:3")),
                ("oom.order", I(4)),
                ("oom.gfp_mask", S("0x40cc0(GFP_KERNEL|__GFP_COMP)")),
                ("oom.nodemask", S("(null)")),
            ]),
        ),
        (
            "go.cannot_allocate",
            attrs(&[
                ("oom.requested_bytes", I(524288)),
                ("oom.heap_in_use_bytes", I(4234510336)),
            ]),
        ),
        (
            "go.fatal_out_of_memory",
            attrs(&[
                ("exception.message", S("runtime: out of memory")),
                ("oom.go.error", S("runtime: out of memory")),
            ]),
        ),
        (
            "java.heap_space",
            attrs(&[
                ("thread.name", S("main")),
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("Java heap space")),
                ("oom.java.error", S("Java heap space")),
            ]),
        ),
        (
            "java.gc_overhead_limit",
            attrs(&[
                ("thread.name", S("http-nio-8080-exec-3")),
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("GC overhead limit exceeded")),
                ("oom.java.error", S("GC overhead limit exceeded")),
            ]),
        ),
        (
            "java.metaspace",
            attrs(&[
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("Metaspace")),
                ("oom.java.error", S("Metaspace")),
            ]),
        ),
        (
            "java.compressed_class_space",
            attrs(&[
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("Compressed class space")),
                ("oom.java.error", S("Compressed class space")),
            ]),
        ),
        (
            "java.direct_buffer_memory",
            attrs(&[
                ("exception.type", S("java.lang.OutOfMemoryError")),
                (
                    "exception.message",
                    S("Cannot reserve 1048576 bytes of direct buffer memory (allocated: 267386880, limit: 268435456)"),
                ),
                (
                    "oom.java.error",
                    S("Cannot reserve 1048576 bytes of direct buffer memory (allocated: 267386880, limit: 268435456)"),
                ),
                ("oom.requested_bytes", I(1048576)),
                ("oom.in_use_bytes", I(267386880)),
                ("oom.limit_bytes", I(268435456)),
            ]),
        ),
        (
            "java.native_thread",
            attrs(&[
                ("thread.name", S("pool-1-thread-7")),
                ("exception.type", S("java.lang.OutOfMemoryError")),
                (
                    "exception.message",
                    S("unable to create native thread: possibly out of memory or process/resource limits reached"),
                ),
                (
                    "oom.java.error",
                    S("unable to create native thread: possibly out of memory or process/resource limits reached"),
                ),
            ]),
        ),
        (
            "java.array_size_limit",
            attrs(&[
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("Requested array size exceeds VM limit")),
                ("oom.java.error", S("Requested array size exceeds VM limit")),
            ]),
        ),
        (
            "java.out_of_memory_error",
            attrs(&[
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("Map failed")),
                ("oom.java.error", S("Map failed")),
            ]),
        ),
        ("java.insufficient_memory", vec![]),
        (
            "java.native_allocation_failed",
            attrs(&[
                ("oom.java.allocator", S("mmap")),
                ("oom.requested_bytes", I(1073741824)),
                ("oom.java.purpose", S("committing reserved memory")),
            ]),
        ),
        (
            "java.commit_memory_failed",
            attrs(&[
                ("oom.requested_bytes", I(715849728)),
                ("oom.error.message", S("Cannot allocate memory")),
                ("oom.errno", I(12)),
            ]),
        ),
        (
            "python.numpy_array_memory_error",
            attrs(&[
                ("exception.type", S("numpy.core._exceptions._ArrayMemoryError")),
                (
                    "exception.message",
                    S("Unable to allocate 7.45 GiB for an array with shape (1000000000,) and data type float64"),
                ),
                ("oom.requested_bytes", I(7999376589)),
                ("oom.python.array_shape", S("(1000000000,)")),
                ("oom.python.array_dtype", S("float64")),
            ]),
        ),
        (
            "python.memory_error",
            attrs(&[("exception.type", S("MemoryError"))]),
        ),
        (
            "node.heap_out_of_memory",
            attrs(&[
                (
                    "exception.message",
                    S("Reached heap limit Allocation failed - JavaScript heap out of memory"),
                ),
                ("oom.node.reason", S("Reached heap limit")),
                ("oom.node.error", S("JavaScript heap out of memory")),
            ]),
        ),
        (
            "node.v8_fatal_out_of_memory",
            attrs(&[
                ("exception.message", S("Fatal JavaScript out of memory: Reached heap limit")),
                ("oom.node.reason", S("Reached heap limit")),
            ]),
        ),
        (
            "node.worker_out_of_memory",
            attrs(&[
                ("exception.type", S("ERR_WORKER_OUT_OF_MEMORY")),
                (
                    "exception.message",
                    S("Worker terminated due to reaching memory limit: JS heap out of memory"),
                ),
                ("oom.node.error", S("JS heap out of memory")),
            ]),
        ),
        (
            "cpp.bad_alloc",
            attrs(&[("exception.type", S("std::bad_alloc"))]),
        ),
        (
            "cpp.libcxx_bad_alloc",
            attrs(&[
                ("exception.type", S("std::bad_alloc")),
                ("exception.message", S("std::bad_alloc")),
            ]),
        ),
        (
            "rust.alloc_failed",
            attrs(&[
                ("exception.message", S("memory allocation of 1048576 bytes failed")),
                ("oom.requested_bytes", I(1048576)),
            ]),
        ),
        (
            "dotnet.out_of_memory_exception",
            attrs(&[
                ("exception.type", S("System.OutOfMemoryException")),
                (
                    "exception.message",
                    S("Exception of type 'System.OutOfMemoryException' was thrown."),
                ),
            ]),
        ),
        (
            "dotnet.gc_heap_init_failed",
            attrs(&[("oom.dotnet.hresult", S("0x8007000E"))]),
        ),
        (
            "php.memory_limit_exhausted",
            attrs(&[
                (
                    "exception.message",
                    S("Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)"),
                ),
                ("oom.limit_bytes", I(134217728)),
                ("oom.requested_bytes", I(20480)),
                ("code.file.path", S("/var/www/html/index.php")),
                ("code.line.number", I(12)),
            ]),
        ),
        (
            "php.out_of_memory",
            attrs(&[
                (
                    "exception.message",
                    S("Out of memory (allocated 2097152) (tried to allocate 4096 bytes)"),
                ),
                ("oom.in_use_bytes", I(2097152)),
                ("oom.requested_bytes", I(4096)),
            ]),
        ),
        (
            "kubelet.system_oom",
            attrs(&[
                ("oom.victim.comm", S("stress-ng-vm")),
                ("process.pid", I(3103923)),
                ("oom.trigger_type", S("system")),
            ]),
        ),
        (
            "kubelet.oom_killed",
            attrs(&[("k8s.container.termination_reason", S("OOMKilled"))]),
        ),
    ])
}

// ------------------------------------------------------------------ tests

#[test]
fn every_builtin_example_matches_its_pattern_with_exact_captures_under_every_prefix() {
    let library = Library::builtin();
    let expected = expected_example_attributes();
    assert_eq!(
        expected.len(),
        BUILTINS.len(),
        "every built-in pattern needs expected captures here"
    );
    for b in BUILTINS {
        let want = expected
            .get(b.name)
            .unwrap_or_else(|| panic!("no expected captures for {}", b.name));
        for (prefix, line) in with_prefixes(b.example) {
            let m = library
                .match_line(&line)
                .unwrap_or_else(|| panic!("{} ({prefix}) did not match: {line}", b.name));
            assert_eq!(m.pattern, b.name, "{prefix}: {line}");
            assert_eq!(m.runtime, b.runtime.as_str());
            assert_eq!(m.severity_number, b.severity.number);
            assert_eq!(m.severity_text, b.severity.text);
            assert_eq!(m.expects_stack_trace, b.expects_stack_trace);
            assert_eq!(&m.attributes, want, "{} ({prefix}): {line}", b.name);
        }
    }
}

#[test]
fn builtin_patterns_have_json_safe_required_literals_and_documented_groups() {
    for b in BUILTINS {
        let hir = regex_syntax::Parser::new()
            .parse(b.regex)
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let lits = required_literals(&hir).unwrap_or_else(|| panic!("{}: no literal", b.name));
        for lit in &lits {
            assert!(lit.len() >= MIN_LITERAL_LEN, "{}: {lit:?}", b.name);
            assert!(!lit.iter().any(|c| json_unsafe(*c)), "{}: {lit:?}", b.name);
            // The literal really is in the example.
        }
        assert!(
            lits.iter()
                .any(|l| b.example.as_bytes().windows(l.len()).any(|w| w == &l[..])),
            "{}: example lacks the literal",
            b.name
        );
        let regex = Regex::new(b.regex).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let names: Vec<&str> = regex.capture_names().flatten().collect();
        for (group, _) in b.conversions {
            assert!(names.contains(group), "{}: no group {group}", b.name);
        }
        // A group is an attribute (dotted name) unless it is a marker.
        for name in names {
            let marker = b
                .conversions
                .iter()
                .any(|(g, c)| *g == name && matches!(c, Conversion::Flag(..)));
            assert!(
                marker || name.contains('.'),
                "{}: group {name} is neither an attribute name nor a marker",
                b.name
            );
        }
    }
    let mut names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), BUILTINS.len(), "duplicate built-in names");
}

#[test]
fn required_literal_extraction() {
    let lits = |re: &str| {
        required_literals(
            &regex_syntax::Parser::new()
                .parse(re)
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .map(|set| {
            set.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        lits(r"(?P<a>\w+) out of memory"),
        Some(vec!["out of memory".into()])
    );
    assert_eq!(
        lits(r"foo (?:bar baz|qux quux)"),
        Some(vec!["bar baz".into(), "qux quux".into()])
    );
    // Split at characters a JSON encoder escapes.
    assert_eq!(lits(r#"thread "main" died"#), Some(vec!["thread".into()]));
    assert_eq!(lits(r"(?:abc)+defg"), Some(vec!["defg".into()]));
    assert_eq!(lits(r"(?:abcdef)?x"), Some(vec!["x".into()]));
    assert_eq!(lits(r"\d+|\w+"), None);
    // Only the spaces are fixed: nothing usable, so a user pattern is rejected.
    assert_eq!(lits(r"(?i)out of memory"), None);
}

#[test]
fn real_kmsg_report_matches_its_oom_lines_only() {
    let sample = include_str!("../../../tests/data/kmsg-memcg-oom.txt");
    let library = Library::builtin();
    let matched: Vec<(usize, &str)> = sample
        .lines()
        .enumerate()
        .filter_map(|(i, line)| library.match_line(line).map(|m| (i, m.pattern)))
        .collect();
    assert_eq!(
        matched,
        vec![
            (0, "kernel.oom_invoked"),
            (76, "kernel.oom_kill_summary"),
            (77, "kernel.memcg_oom_kill"),
            (78, "kernel.oom_invoked"),
        ]
    );
    let summary = library
        .match_line(sample.lines().nth(76).unwrap_or_default())
        .map(|m| m.attributes);
    let summary = summary.unwrap_or_default();
    assert!(summary.contains(&str_attr("oom.memcg", "/oomtest")));
    assert!(summary.contains(&("process.pid".to_string(), AttrValue::Int(11976))));
}

#[test]
fn real_java_heap_sample_matches_with_thread_and_error() {
    // A real JVM heap OOM on stderr, byte for byte.
    let sample = "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n\tat Oom.main(Oom.java:2)\n";
    let library = Library::builtin();
    let mut lines = sample.lines();
    let m = library
        .match_line(lines.next().unwrap_or_default())
        .map(|m| (m.pattern, m.attributes, m.expects_stack_trace));
    assert_eq!(
        m,
        Some((
            "java.heap_space",
            attrs(&[
                ("thread.name", S("main")),
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("Java heap space")),
                ("oom.java.error", S("Java heap space"))
            ]),
            true
        ))
    );
    // The stack frame that follows is not a match of its own.
    assert_eq!(library.match_line(lines.next().unwrap_or_default()), None);
}

#[test]
fn kernel_comm_is_found_after_any_prefix() {
    let library = Library::builtin();
    for (line, comm) in [
        ("Nov 27 05:01:02 host kernel: kworker/u8:2 invoked oom-killer: gfp_mask=0x0(), order=0, oom_score_adj=0", "kworker/u8:2"),
        ("Nov 27 05:01:02 host kernel: [ 1234.567890] Web Content invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=167", "Web Content"),
        ("kernel: a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=-1, oom_score_adj=0", "a"),
        ("MESSAGE=Xorg invoked oom-killer: gfp_mask=0x201da, order=0, oom_score_adj=0", "Xorg"),
        ("6,1,2,-;java invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0", "java"),
    ] {
        let m = library.match_line(line).map(|m| m.attributes);
        let comm_attr = m
            .as_ref()
            .and_then(|a| a.iter().find(|(k, _)| k == "oom.trigger.comm"))
            .map(|(_, v)| v);
        assert_eq!(
            comm_attr,
            Some(&AttrValue::Str(comm.to_string())),
            "{line}"
        );
    }
    // An older kernel: nodemask inside the invoked line, no flags.
    let m = library
        .match_line(
            "stress invoked oom-killer: gfp_mask=0x24280ca, nodemask=0, order=0, oom_score_adj=0",
        )
        .map(|m| m.attributes);
    assert!(m
        .unwrap_or_default()
        .contains(&str_attr("oom.nodemask", "0")));
}

#[test]
fn global_summary_line_sets_trigger_type_system() {
    let library = Library::builtin();
    let m = library.match_line(
        "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/firewalld.service,task=firewalld,pid=5096,uid=0",
    );
    assert_eq!(
        m.map(|m| m.attributes),
        Some(attrs(&[
            ("oom.constraint", S("CONSTRAINT_NONE")),
            ("oom.nodemask", S("(null)")),
            ("oom.cpuset", S("/")),
            ("oom.mems_allowed", S("0")),
            ("oom.trigger_type", S("system")),
            ("oom.victim.cgroup", S("/system.slice/firewalld.service")),
            ("oom.victim.comm", S("firewalld")),
            ("process.pid", I(5096)),
            ("process.real_user.id", I(0)),
        ]))
    );
}

#[test]
fn runtime_variants_and_docker_escapes() {
    let library = Library::builtin();
    /// (line, pattern, attributes)
    type Case = (&'static str, &'static str, &'static [(&'static str, Val)]);
    let cases: &[Case] = &[
        (
            r#"Exception in thread "main" java.lang.OutOfMemoryError: unable to create new native thread"#,
            "java.native_thread",
            &[
                ("thread.name", S("main")),
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("unable to create new native thread")),
                ("oom.java.error", S("unable to create new native thread")),
            ],
        ),
        (
            "Terminating due to java.lang.OutOfMemoryError: Java heap space",
            "java.heap_space",
            &[
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("Java heap space")),
                ("oom.java.error", S("Java heap space")),
            ],
        ),
        (
            "java.lang.OutOfMemoryError: Direct buffer memory",
            "java.direct_buffer_memory",
            &[
                ("exception.type", S("java.lang.OutOfMemoryError")),
                ("exception.message", S("Direct buffer memory")),
                ("oom.java.error", S("Direct buffer memory")),
            ],
        ),
        (
            "java.lang.OutOfMemoryError",
            "java.out_of_memory_error",
            &[("exception.type", S("java.lang.OutOfMemoryError"))],
        ),
        (
            "# Native memory allocation (malloc) failed to allocate 32744 bytes for ChunkPool::allocate",
            "java.native_allocation_failed",
            &[
                ("oom.java.allocator", S("malloc")),
                ("oom.requested_bytes", I(32744)),
                ("oom.java.purpose", S("ChunkPool::allocate")),
            ],
        ),
        (
            "runtime: out of memory: cannot allocate 8192-byte block",
            "go.cannot_allocate",
            &[("oom.requested_bytes", I(8192))],
        ),
        (
            "fatal error: out of memory",
            "go.fatal_out_of_memory",
            &[
                ("exception.message", S("out of memory")),
                ("oom.go.error", S("out of memory")),
            ],
        ),
        (
            "fatal error: out of memory allocating heap arena metadata",
            "go.fatal_out_of_memory",
            &[
                ("exception.message", S("out of memory allocating heap arena metadata")),
                ("oom.go.error", S("out of memory allocating heap arena metadata")),
            ],
        ),
        (
            "FATAL ERROR: Ineffective mark-compacts near heap limit Allocation failed - JavaScript heap out of memory",
            "node.heap_out_of_memory",
            &[
                (
                    "exception.message",
                    S("Ineffective mark-compacts near heap limit Allocation failed - JavaScript heap out of memory"),
                ),
                ("oom.node.reason", S("Ineffective mark-compacts near heap limit")),
                ("oom.node.error", S("JavaScript heap out of memory")),
            ],
        ),
        (
            "FATAL ERROR: CALL_AND_RETRY_LAST Allocation failed - process out of memory",
            "node.heap_out_of_memory",
            &[
                ("exception.message", S("CALL_AND_RETRY_LAST Allocation failed - process out of memory")),
                ("oom.node.reason", S("CALL_AND_RETRY_LAST")),
                ("oom.node.error", S("process out of memory")),
            ],
        ),
        (
            "libc++abi.dylib: terminating with uncaught exception of type std::bad_alloc: std::bad_alloc",
            "cpp.libcxx_bad_alloc",
            &[
                ("exception.type", S("std::bad_alloc")),
                ("exception.message", S("std::bad_alloc")),
            ],
        ),
        (
            "MemoryError: Unable to allocate array",
            "python.memory_error",
            &[("exception.type", S("MemoryError")), ("exception.message", S("Unable to allocate array"))],
        ),
        (
            "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 512 bytes for an array with shape (64,) and data type int64",
            "python.numpy_array_memory_error",
            &[
                ("exception.type", S("numpy.core._exceptions._ArrayMemoryError")),
                (
                    "exception.message",
                    S("Unable to allocate 512 bytes for an array with shape (64,) and data type int64"),
                ),
                ("oom.requested_bytes", I(512)),
                ("oom.python.array_shape", S("(64,)")),
                ("oom.python.array_dtype", S("int64")),
            ],
        ),
        (
            "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)",
            "php.memory_limit_exhausted",
            &[
                (
                    "exception.message",
                    S("Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)"),
                ),
                ("oom.limit_bytes", I(134217728)),
                ("oom.requested_bytes", I(20480)),
            ],
        ),
        (
            "Fatal error: Out of memory (allocated 2097152 bytes) (tried to allocate 4096 bytes)",
            "php.out_of_memory",
            &[
                (
                    "exception.message",
                    S("Out of memory (allocated 2097152 bytes) (tried to allocate 4096 bytes)"),
                ),
                ("oom.in_use_bytes", I(2097152)),
                ("oom.requested_bytes", I(4096)),
            ],
        ),
        (
            r#"{"reason":"OOMKilled","exitCode":137}"#,
            "kubelet.oom_killed",
            &[("k8s.container.termination_reason", S("OOMKilled"))],
        ),
        (
            r#"containerName="cart" exitCode=137 reason="OOMKilled""#,
            "kubelet.oom_killed",
            &[("k8s.container.termination_reason", S("OOMKilled"))],
        ),
        (
            "Out of memory (oom_kill_allocating_task): Killed process 77 (a b) total-vm:8kB, anon-rss:4kB, file-rss:0kB",
            "kernel.global_oom_kill",
            &[
                ("process.pid", I(77)),
                ("oom.victim.comm", S("a b")),
                ("oom.victim.total_vm", I(8192)),
                ("oom.victim.anon_rss", I(4096)),
                ("oom.victim.file_rss", I(0)),
                ("oom.trigger_type", S("system")),
            ],
        ),
        (
            "Out of memory: Kill process 3 (x) score 900 or sacrifice child",
            "kernel.oom_kill_sacrifice",
            &[
                ("oom.trigger_type", S("system")),
                ("process.pid", I(3)),
                ("oom.victim.comm", S("x")),
                ("oom.victim.score", I(900)),
            ],
        ),
        (
            "page allocation failure: order:0, mode:0x20",
            "kernel.page_allocation_failure",
            &[("oom.order", I(0)), ("oom.gfp_mask", S("0x20"))],
        ),
    ];
    for (line, pattern, want) in cases {
        for (prefix, wrapped) in with_prefixes(line) {
            let m = library
                .match_line(&wrapped)
                .map(|m| (m.pattern, m.attributes));
            assert_eq!(m, Some((*pattern, attrs(want))), "{prefix}: {wrapped}");
        }
    }
    // JSON escapes inside a Docker line are decoded before capturing.
    let m = library.match_line(
        r#"{"log":"Exception in thread \"worker\t\u003c7\u003e\" java.lang.OutOfMemoryError: Java heap space\n","stream":"stderr","time":"2026-11-27T05:01:02Z"}"#,
    );
    assert_eq!(
        m.map(|m| m.attributes),
        Some(attrs(&[
            ("thread.name", S("worker\t<7>")),
            ("exception.type", S("java.lang.OutOfMemoryError")),
            ("exception.message", S("Java heap space")),
            ("oom.java.error", S("Java heap space"))
        ]))
    );
}

#[test]
fn ordinary_lines_do_not_match() {
    let library = Library::builtin();
    for line in [
        "Nov 27 05:01:02 host sshd[811]: Accepted publickey for root from 10.0.0.1 port 51234 ssh2",
        "Nov 27 05:01:02 host kernel: usb 1-1: new high-speed USB device number 2 using xhci_hcd",
        "Nov 27 05:01:02 host systemd[1]: Started Session 4 of user root.",
        "Nov 27 05:01:02 host systemd[1]: session-4.scope: Killing process 1234 (sleep) with signal SIGKILL.",
        "Nov 27 05:01:02 host systemd[1]: Killed process 1234 (sleep) with signal SIGKILL.",
        "the cache ran out of memory budget, evicting 12 entries",
        "warning: build machine is nearly out of memory",
        "Out of memory? No, the disk is full.",
        "INFO retrying after MemoryError in worker 3",
        "registering MemoryErrorHandler",
        "FATAL ERROR: database connection lost",
        "fatal error: unexpected signal during runtime execution",
        "php: Allowed memory size is configured as 128M",
        "std::bad_alloc is what operator new throws",
        "terminate called after throwing an instance of 'std::runtime_error'",
        "how to read 'invoked oom-killer' messages",
        "System OOM encountered",
        "pod status: reason=Completed exitCode=0",
        "OOMKilled count: 0",
        "GET /api/out-of-memory 200 12ms",
        "memory allocation of many bytes failed",
        "runtime: out of memory: cannot allocate huge block",
        "Task in progress: killed as expected",
        "page allocation failure statistics reset",
        "",
    ] {
        assert_eq!(library.match_line(line), None, "{line:?}");
    }
}

#[test]
fn non_matching_lines_do_not_allocate() {
    let library = Library::builtin();
    let ordinary =
        "Nov 27 05:01:02 host sshd[811]: Accepted publickey for root from 10.0.0.1 port 51234 ssh2";
    // These pass the literal prefilter but fail the full regex.
    let near_misses = [
        "runtime: out of memory: cannot allocate huge block",
        "Nov 27 05:01:02 host systemd[1]: Killed process 1234 (sleep) with signal SIGKILL.",
        "INFO retrying after MemoryError in worker 3",
        "FATAL ERROR: database connection lost; Allocation failed - retry",
    ];
    // Warm up: the regex engines create their per-thread caches once.
    for line in near_misses.iter().chain([&ordinary]) {
        assert_eq!(library.match_line(line), None);
    }
    let before = allocations();
    for _ in 0..100 {
        assert!(library.match_line(ordinary).is_none());
        for line in &near_misses {
            assert!(library.match_line(line).is_none());
        }
    }
    assert_eq!(allocations() - before, 0, "a non-matching line allocated");
    // The counter works: a match allocates its attributes.
    let before = allocations();
    assert!(library
        .match_line("memory allocation of 8 bytes failed")
        .is_some());
    assert!(allocations() > before);
}

#[test]
fn user_patterns_compile_into_the_same_pass_and_win_over_builtins() {
    let user = vec![
        UserPattern {
            name: "myapp.cache_full".into(),
            regex: r"cache full: (?P<myapp.cache.bytes>\d+) bytes".into(),
            runtime: "my app".into(),
            severity: "warn".into(),
            attributes: BTreeMap::from([("team".to_string(), "storage".to_string())]),
            types: BTreeMap::new(),
        },
        UserPattern {
            name: "myapp.rust_oom".into(),
            regex: r"worker (?P<worker>\d+): memory allocation of (?P<oom.requested_bytes>\d+) bytes failed".into(),
            runtime: "rust".into(),
            severity: "FATAL".into(),
            attributes: BTreeMap::new(),
            types: BTreeMap::new(),
        },
    ];
    let library = Library::with_user_patterns(&user).unwrap_or_else(|e| panic!("{e}"));
    let m = library.match_line("Nov 27 05:01:02 host cache[9]: cache full: 4096 bytes");
    assert_eq!(
        m,
        Some(Match {
            pattern: "myapp.cache_full",
            runtime: "my app",
            severity_number: 13,
            severity_text: "WARN",
            attributes: attrs(&[("myapp.cache.bytes", S("4096")), ("team", S("storage"))]),
            expects_stack_trace: false,
            start: "Nov 27 05:01:02 host cache[9]: ".len(),
        })
    );
    let m = library.match_line("worker 3: memory allocation of 64 bytes failed");
    assert_eq!(
        m.map(|m| (m.pattern, m.severity_number, m.attributes)),
        Some((
            "myapp.rust_oom",
            21,
            // A user pattern's captures are strings unless its `types` say otherwise.
            attrs(&[("worker", S("3")), ("oom.requested_bytes", S("64"))])
        ))
    );
    // Built-in patterns still match.
    assert_eq!(
        library
            .match_line("memory allocation of 64 bytes failed")
            .map(|m| m.pattern),
        Some("rust.alloc_failed")
    );
    assert_eq!(library.names().count(), BUILTINS.len() + 2);
}

#[test]
fn user_pattern_types_make_captures_ints() {
    let p: UserPattern = serde_json::from_value(serde_json::json!({
        "name": "myapp.cache_full",
        "regex": r"cache (?P<myapp.cache>\w+) full: (?P<myapp.cache.bytes>\w+) bytes after (?P<myapp.tries>\d+)",
        "runtime": "myapp",
        "types": {"myapp.cache.bytes": "int", "myapp.cache": "string"},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let library =
        Library::with_user_patterns(std::slice::from_ref(&p)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        library
            .match_line("cache lru full: 4096 bytes after 3")
            .map(|m| m.attributes),
        Some(attrs(&[
            ("myapp.cache", S("lru")),
            ("myapp.cache.bytes", I(4096)),
            ("myapp.tries", S("3")),
        ]))
    );
    // Not an integer: that attribute is left out, the match stays.
    assert_eq!(
        library
            .match_line("cache lru full: many bytes after 3")
            .map(|m| (m.pattern, m.attributes)),
        Some((
            "myapp.cache_full",
            attrs(&[("myapp.cache", S("lru")), ("myapp.tries", S("3"))])
        ))
    );
    // A type for a group the regex does not have is an error naming both.
    let typo = UserPattern {
        types: BTreeMap::from([("myapp.cache.byte".to_string(), AttrType::Int)]),
        ..p
    };
    let e = Library::with_user_patterns(&[typo])
        .err()
        .unwrap_or_default();
    assert!(
        e.contains("\"myapp.cache_full\"") && e.contains("\"myapp.cache.byte\""),
        "{e}"
    );
    // Only `string` and `int`.
    assert!(serde_json::from_value::<UserPattern>(serde_json::json!({
        "name": "x", "regex": r"boom (?P<n>\d+)", "runtime": "y", "types": {"n": "float"}
    }))
    .is_err());
}

#[test]
fn bad_user_patterns_are_errors_naming_the_pattern() {
    let pattern = |name: &str, regex: &str, severity: &str| UserPattern {
        name: name.into(),
        regex: regex.into(),
        runtime: "x".into(),
        severity: severity.into(),
        attributes: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    let err = |p: UserPattern| Library::with_user_patterns(&[p]).err().unwrap_or_default();
    let e = err(pattern("broken", r"foo (", "ERROR"));
    assert!(
        e.contains("\"broken\"") && e.contains("invalid regex"),
        "{e}"
    );
    let e = err(pattern("no_literal", r"\d+ \w+", "ERROR"));
    assert!(e.contains("\"no_literal\"") && e.contains("fixed"), "{e}");
    let e = err(pattern("short", r"\d+ab\d+", "ERROR"));
    assert!(e.contains("\"short\""), "{e}");
    let e = err(pattern("sev", r"out of memory", "LOUD"));
    assert!(e.contains("\"sev\"") && e.contains("severity"), "{e}");
    let e = err(pattern("rust.alloc_failed", r"out of memory", "ERROR"));
    assert!(e.contains("built-in"), "{e}");
    let twice = [
        pattern("a", "out of memory", "ERROR"),
        pattern("a", "out of memory", "ERROR"),
    ];
    assert!(Library::with_user_patterns(&twice).is_err());
}

#[test]
fn user_pattern_deserializes_with_defaults() {
    let p: UserPattern = serde_json::from_value(serde_json::json!({
        "name": "x", "regex": "boom", "runtime": "erlang"
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.severity, "ERROR");
    assert!(serde_json::from_value::<UserPattern>(serde_json::json!({
        "name": "x", "regex": "boom", "runtime": "erlang", "colour": "red"
    }))
    .is_err());
}

#[test]
fn severities_and_sizes() {
    assert_eq!(parse_severity("error"), Some((17, "ERROR".into())));
    assert_eq!(parse_severity("WARNING"), Some((13, "WARN".into())));
    assert_eq!(parse_severity("FATAL4"), Some((24, "FATAL4".into())));
    assert_eq!(parse_severity("INFO5"), None);
    assert_eq!(parse_severity(""), None);
    let kib = |text| convert(Some(Conversion::KibToBytes), text);
    assert_eq!(kib("12"), Some(AttrValue::Int(12288)));
    // Saturating, as the receivers' byte counts.
    assert_eq!(kib("9007199254740993"), Some(AttrValue::Int(i64::MAX)));
    assert_eq!(kib("99999999999999999999"), Some(AttrValue::Int(i64::MAX)));
    assert_eq!(kib("12x"), None);
    let size = |text| convert(Some(Conversion::SizeToBytes), text);
    assert_eq!(size("1 MiB"), Some(AttrValue::Int(1048576)));
    assert_eq!(size("0.5 KiB"), Some(AttrValue::Int(512)));
    assert_eq!(size("99999 EiB"), Some(AttrValue::Int(i64::MAX)));
    assert_eq!(size("3 parsecs"), None);
    assert_eq!(size("NaN GiB"), None);
    let bytes = |text| convert(Some(Conversion::Bytes), text);
    assert_eq!(bytes("4096"), Some(AttrValue::Int(4096)));
    assert_eq!(
        bytes("18446744073709551615"),
        Some(AttrValue::Int(i64::MAX))
    );
    assert_eq!(bytes("-1"), None);
    let int = |text| convert(Some(Conversion::Int), text);
    assert_eq!(int("-17"), Some(AttrValue::Int(-17)));
    assert_eq!(int("9223372036854775807"), Some(AttrValue::Int(i64::MAX)));
    // A pid out of range is not clamped into a wrong pid.
    assert_eq!(int("9223372036854775808"), None);
    assert_eq!(int("0x1f"), None);
    assert_eq!(convert(None, "12"), Some(AttrValue::Str("12".to_string())));
}

// ------------------------------------------------------------------- docs

const TABLE_BEGIN: &str = "<!-- BEGIN GENERATED: built-in pattern table -->";
const TABLE_END: &str = "<!-- END GENERATED: built-in pattern table -->";

/// The one table of docs/patterns.md, rendered from the built-in table.
fn render_table() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from(
        "| Pattern (`oom.pattern`) | `oom.runtime` | Severity | Stack trace follows | Example line | Attributes |\n\
         |---|---|---|---|---|---|\n",
    );
    for b in BUILTINS {
        let regex = Regex::new(b.regex).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let mut attributes: Vec<String> = Vec::new();
        let mut add = |a: String| {
            if !attributes.contains(&a) {
                attributes.push(a);
            }
        };
        for name in regex.capture_names().flatten() {
            match b.conversion(name) {
                Some(Conversion::Flag(key, _)) => add(format!("`{key}`")),
                Some(Conversion::AlsoSet(key, _)) => {
                    add(format!("`{name}`"));
                    add(format!("`{key}`"));
                }
                Some(Conversion::Int) => add(format!("`{name}` (int)")),
                Some(Conversion::Bytes) => add(format!("`{name}` (int, bytes)")),
                Some(Conversion::KibToBytes) => add(format!("`{name}` (int, bytes from kB)")),
                Some(Conversion::SizeToBytes) => add(format!("`{name}` (int, bytes from a size)")),
                None => add(format!("`{name}`")),
            }
        }
        for (key, value) in b.constants {
            add(format!("`{key}`=`{value}`"));
        }
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | `{}` | {} |\n",
            b.name,
            b.runtime.as_str(),
            b.severity.text,
            if b.expects_stack_trace { "yes" } else { "no" },
            cell(b.example),
            cell(&attributes.join(", ")),
        ));
    }
    out
}

#[test]
fn docs_table_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/patterns.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fresh = render_table();
    let current = doc
        .split_once(TABLE_BEGIN)
        .and_then(|(_, rest)| rest.split_once(TABLE_END))
        .map(|(table, _)| table.trim());
    if current != Some(fresh.trim()) {
        if std::env::var_os("OOMSCOPE_BLESS_DOCS").is_some() {
            let (head, rest) = doc
                .split_once(TABLE_BEGIN)
                .unwrap_or_else(|| panic!("{path}: no {TABLE_BEGIN}"));
            let (_, tail) = rest
                .split_once(TABLE_END)
                .unwrap_or_else(|| panic!("{path}: no {TABLE_END}"));
            let updated = format!("{head}{TABLE_BEGIN}\n{fresh}{TABLE_END}{tail}");
            std::fs::write(path, updated).unwrap_or_else(|e| panic!("{path}: {e}"));
        } else {
            panic!(
                "{path} is out of date; replace the table between the markers with \
                 (or run with OOMSCOPE_BLESS_DOCS=1):\n{fresh}"
            );
        }
    }
}

/// The kind of a value, for comparing types across records.
fn kind_of_otlp(v: &opentelemetry_proto::tonic::common::v1::any_value::Value) -> &'static str {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v {
        Value::StringValue(_) => "string",
        Value::IntValue(_) => "int",
        _ => "other",
    }
}

fn kind_of(v: &AttrValue) -> &'static str {
    match v {
        AttrValue::Str(_) => "string",
        AttrValue::Int(_) => "int",
    }
}

/// The type each built-in capture group's attribute gets.
fn builtin_group_kinds() -> Vec<(&'static str, String, &'static str)> {
    let mut out = Vec::new();
    for b in BUILTINS {
        let regex = Regex::new(b.regex).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        for name in regex.capture_names().flatten() {
            let kind = match b.conversion(name) {
                Some(
                    Conversion::Int
                    | Conversion::Bytes
                    | Conversion::KibToBytes
                    | Conversion::SizeToBytes,
                ) => "int",
                Some(Conversion::Flag(..)) => continue,
                Some(Conversion::AlsoSet(..)) | None => "string",
            };
            out.push((b.name, name.to_string(), kind));
        }
    }
    out
}

#[test]
fn an_attribute_has_one_type_in_every_builtin_pattern() {
    let mut seen: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for (pattern, name, kind) in builtin_group_kinds() {
        if let Some((other, other_kind)) = seen.get(&name) {
            assert_eq!(
                kind, *other_kind,
                "{name} is {kind} in {pattern} but {other_kind} in {other}"
            );
        } else {
            seen.insert(name, (pattern, kind));
        }
    }
    // Every typed name is captured by some pattern (no stale entries).
    for (name, _) in super::builtin::TYPED_ATTRIBUTES {
        assert!(seen.contains_key(*name), "{name} is captured by no pattern");
    }
}

#[test]
fn builtin_attributes_have_the_oom_receivers_types() {
    use crate::receivers::oom::kill::{OomKill, Scope, Source, Trigger, Victim};
    // Every attribute the oom receiver can write, each present.
    let kill = OomKill {
        time_unix_nano: 1,
        kernel_time_ns: Some(1),
        source: Source::Kmsg,
        victim: Victim {
            pid: 1,
            comm: "c".into(),
            executable_name: Some("e".into()),
            executable_path: Some("/e".into()),
            command_line: Some("e".into()),
            command_line_from_exec: false,
            parent_pid: Some(1),
            start_unix_nano: Some(1),
            uid: Some(1),
            total_vm: Some(1),
            anon_rss: Some(1),
            file_rss: Some(1),
            shmem_rss: Some(1),
            pgtables: Some(1),
            oom_score_adj: Some(1),
            cgroup: Some("/c".into()),
            container_id: None,
            pod_uid: None,
            workload: None,
            exiting: false,
        },
        trigger: Trigger {
            pid: Some(1),
            comm: Some("t".into()),
            gfp_mask: Some("0x0".into()),
            order: Some(0),
        },
        scope: Scope {
            constraint: Some("CONSTRAINT_MEMCG".into()),
            memcg: Some("/m".into()),
            memcg_limit: Some(1),
            trigger_type: Some("cgroup"),
            group: Some("/g".into()),
            memcg_usage: Some(1),
            memcg_id: Some(1),
            hook: None,
            tasks: Vec::new(),
            task_count: 0,
        },
    };
    let oom: BTreeMap<String, &str> = kill
        .attributes()
        .iter()
        .filter_map(|kv| {
            let value = kv.value.as_ref()?.value.as_ref()?;
            Some((kv.key.clone(), kind_of_otlp(value)))
        })
        .collect();
    let mut shared = 0;
    for (pattern, name, kind) in builtin_group_kinds() {
        if let Some(oom_kind) = oom.get(&name) {
            shared += 1;
            assert_eq!(
                kind, *oom_kind,
                "{pattern}: {name} is {kind}, the oom receiver's is {oom_kind}"
            );
        }
    }
    assert!(shared > 10, "only {shared} shared attributes: renamed?");
    // And as matched: every example's values, also the constants.
    let library = Library::builtin();
    for b in BUILTINS {
        let m = library
            .match_line(b.example)
            .unwrap_or_else(|| panic!("{}", b.name));
        for (key, value) in &m.attributes {
            if let Some(oom_kind) = oom.get(key) {
                assert_eq!(kind_of(value), *oom_kind, "{}: {key}", b.name);
            }
        }
    }
}

#[test]
fn the_killed_process_example_gives_int_pid_and_bytes() {
    let library = Library::builtin();
    let killed = BUILTINS
        .iter()
        .find(|b| b.name == "kernel.killed_process")
        .map(|b| b.example)
        .unwrap_or_default();
    let m = library.match_line(killed).expect("matches");
    let get = |key: &str| {
        m.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("process.pid"), Some(AttrValue::Int(2592)));
    assert_eq!(
        get("oom.victim.anon_rss"),
        Some(AttrValue::Int(1913012 * 1024))
    );
    assert_eq!(get("oom.victim.comm"), Some(AttrValue::Str("java".into())));
}

#[test]
fn a_number_out_of_range_leaves_the_rest_of_the_match() {
    let library = Library::builtin();
    let m = library.match_line(
        "Out of memory: Killed process 99999999999999999999 (x) total-vm:99999999999999999999kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:8kB oom_score_adj:-99999999999999999999",
    );
    assert_eq!(
        m.map(|m| (m.pattern, m.attributes)),
        Some((
            "kernel.global_oom_kill",
            attrs(&[
                // process.pid and oom_score_adj left out: no clamped pid.
                ("oom.victim.comm", S("x")),
                // Byte counts saturate, as the receivers' do.
                ("oom.victim.total_vm", I(i64::MAX)),
                ("oom.victim.anon_rss", I(4096)),
                ("oom.victim.file_rss", I(0)),
                ("oom.victim.shmem_rss", I(0)),
                ("process.real_user.id", I(0)),
                ("oom.victim.pgtables", I(8192)),
                ("oom.trigger_type", S("system")),
            ])
        ))
    );
}

#[test]
fn built_in_patterns_can_be_disabled_by_name() {
    let line = "Out of memory: Killed process 3 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB";
    let go = "fatal error: runtime: out of memory";
    let all = Library::builtin();
    assert!(all.match_line(line).is_some() && all.match_line(go).is_some());
    let no_kernel = Library::new(&[], &["kernel.*".to_string()]).expect("library");
    assert_eq!(no_kernel.match_line(line).map(|m| m.pattern), None);
    assert_eq!(
        no_kernel.match_line(go).map(|m| m.pattern),
        Some("go.fatal_out_of_memory")
    );
    assert!(no_kernel.names().all(|n| !n.starts_with("kernel.")));
    assert!(no_kernel.literals().len() < all.literals().len());
    let err = Library::new(&[], &["kernel.killed_proces".to_string()]).expect_err("typo");
    assert!(err.contains("names no built-in pattern"), "{err}");
}

#[test]
fn regexes_are_compiled_only_for_lines_that_carry_their_literal() {
    let lib = Library::builtin();
    assert!(
        lib.patterns.iter().all(|p| !p.regex.is_compiled()),
        "a new library holds no compiled regex"
    );
    assert!(lib.match_line("an ordinary line about nothing").is_none());
    assert!(lib.patterns.iter().all(|p| !p.regex.is_compiled()));

    let m = lib
        .match_line("fatal error: runtime: out of memory")
        .expect("the Go pattern matches");
    let compiled: Vec<&str> = lib
        .patterns
        .iter()
        .filter(|p| p.regex.is_compiled())
        .map(|p| p.name.as_str())
        .collect();
    assert!(compiled.contains(&m.pattern), "{compiled:?}");
    assert!(
        compiled.len() < lib.patterns.len() / 2,
        "only the candidates of that line were compiled: {compiled:?}"
    );
    // The same match again, from the compiled regex.
    let again = lib.match_line("fatal error: runtime: out of memory");
    assert_eq!(again.map(|m| m.pattern), Some(m.pattern));
}

#[test]
fn a_bad_regex_is_still_refused_when_the_library_is_built() {
    let user = UserPattern {
        name: "mine".into(),
        runtime: "custom".into(),
        severity: "ERROR".into(),
        regex: "out of memory (".into(),
        types: Default::default(),
        attributes: Default::default(),
    };
    let err = Library::with_user_patterns(&[user]).expect_err("unbalanced group");
    assert!(err.contains("invalid regex"), "{err}");
}

// ---------------------------------------------------------------- literal finder

#[test]
fn minimal_literals_drop_duplicates_and_literals_containing_another() {
    let got = minimal_literals([
        "out of memory:",
        "Killed",
        "out of memory",
        "Killed",
        "xKilledx",
        "abc",
    ]);
    let got: Vec<&str> = got
        .iter()
        .map(|l| std::str::from_utf8(l).expect("utf-8"))
        .collect();
    assert_eq!(got, ["Killed", "out of memory", "abc"]);
}

/// The finder over the minimal set says "holds a literal" of exactly the
/// texts that hold one of all the literals, and finds each on its line.
#[test]
fn the_literal_finder_answers_as_the_whole_set() {
    let library = Library::builtin();
    let all = library.literals();
    assert!(
        minimal_literals(all).len() < all.len(),
        "the built-in set has literals inside others (else this test proves nothing)"
    );
    let finder = literal_finder(all).expect("builds");
    let mut texts: Vec<Vec<u8>> = vec![b"nothing here".to_vec(), Vec::new()];
    for literal in all {
        texts.push(literal.clone());
        let mut framed = b"prefix ".to_vec();
        framed.extend_from_slice(literal);
        framed.extend_from_slice(b" suffix");
        texts.push(framed);
        // Every literal with one byte cut off: mostly no match.
        texts.push(literal[1..].to_vec());
        texts.push(literal[..literal.len() - 1].to_vec());
    }
    for text in &texts {
        let expected = all.iter().any(|l| memchr::memmem::find(text, l).is_some());
        assert_eq!(
            finder.is_match(text.as_slice()),
            expected,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
}
