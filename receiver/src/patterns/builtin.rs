//! The built-in pattern table.
//!
//! Every named capture group is named after the attribute it becomes
//! (`regex` allows `.` in group names), so the regex is the documentation of
//! its output. [`Conversion`]s change how a value is written (an integer, kB
//! to bytes) or turn a marker group into a constant attribute. An attribute
//! listed in [`TYPED_ATTRIBUTES`] has that type in every pattern that
//! captures it, the type the `oom` receiver's record gives it.
//!
//! Patterns match anywhere in a line; the order of this table is the
//! priority when several patterns match one line (specific before generic).
//! Each regex must contain a literal that every match contains (the
//! prefilter's key), which a unit test checks.

use super::Runtime;

/// OTLP severity (number, text) of a built-in pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Severity {
    pub number: i32,
    pub text: &'static str,
}

pub(crate) const INFO: Severity = Severity {
    number: 9,
    text: "INFO",
};
pub(crate) const WARN: Severity = Severity {
    number: 13,
    text: "WARN",
};
pub(crate) const ERROR: Severity = Severity {
    number: 17,
    text: "ERROR",
};
pub(crate) const FATAL: Severity = Severity {
    number: 21,
    text: "FATAL",
};

/// How a capture group's text becomes an attribute value. Without one it
/// is the captured text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conversion {
    /// A decimal integer (a pid, uid, order, score, errno, line number), as
    /// an int; left out of the match when it is not one in the i64 range
    /// (a saturated pid would be a wrong pid).
    Int,
    /// A decimal number of bytes, as an int saturating at `i64::MAX` (as the
    /// `oom` and `kmsg` receivers write byte counts).
    Bytes,
    /// A decimal number of KiB (the kernel's `kB`), as an int of bytes
    /// (saturating).
    KibToBytes,
    /// A size with a binary unit (`7.45 GiB`, `512 bytes`), as an int of
    /// bytes (saturating).
    SizeToBytes,
    /// The group only marks an alternative: emit `(attribute, value)` instead of its text.
    Flag(&'static str, &'static str),
    /// Emit the group's text and also `(attribute, value)`.
    AlsoSet(&'static str, &'static str),
}

/// The attributes that are integers wherever a built-in pattern captures
/// them, unless its own `conversions` say how (kB or a size to bytes, also
/// an int). The same name has the same type in every pattern and in the
/// `oom` receiver's record (a unit test checks both).
pub(crate) const TYPED_ATTRIBUTES: &[(&str, Conversion)] = &[
    ("process.pid", Conversion::Int),
    ("process.real_user.id", Conversion::Int),
    ("oom.order", Conversion::Int),
    ("oom.trigger.oom_score_adj", Conversion::Int),
    ("oom.victim.oom_score_adj", Conversion::Int),
    ("oom.victim.score", Conversion::Int),
    ("oom.errno", Conversion::Int),
    ("code.line.number", Conversion::Int),
    ("oom.requested_bytes", Conversion::Bytes),
    ("oom.heap_in_use_bytes", Conversion::Bytes),
    ("oom.in_use_bytes", Conversion::Bytes),
    ("oom.limit_bytes", Conversion::Bytes),
];

/// One built-in pattern.
#[derive(Debug)]
pub(crate) struct Builtin {
    /// `oom.pattern`: stable, `runtime.what`.
    pub name: &'static str,
    pub runtime: Runtime,
    pub severity: Severity,
    pub regex: &'static str,
    /// Group name -> conversion; groups not listed here follow
    /// [`TYPED_ATTRIBUTES`], or else are copied as text.
    pub conversions: &'static [(&'static str, Conversion)],
    /// Attributes added to every match.
    pub constants: &'static [(&'static str, &'static str)],
    /// The runtime prints a stack trace (or its continuation) after this line.
    pub expects_stack_trace: bool,
    /// A real-looking line, shown in docs/patterns.md and tested.
    #[cfg_attr(not(test), allow(dead_code))]
    pub example: &'static str,
}

impl Builtin {
    /// How capture group `group` is written out.
    pub fn conversion(&self, group: &str) -> Option<Conversion> {
        self.conversions
            .iter()
            .chain(TYPED_ATTRIBUTES)
            .find(|(name, _)| *name == group)
            .map(|(_, c)| *c)
    }
}

/// The start of a task name (`comm`) printed at the start of a kernel
/// message: the start of the line or the end of a kmsg (`;`), journald
/// (`=`), dmesg timestamp (`]`), syslog (`: `) or CRI (` F `) prefix.
macro_rules! comm_start {
    () => {
        r"(?:^|[;=]|\] ?|: |\s[FP] )"
    };
}

/// A kernel task name (TASK_COMM_LEN - 1 = 15 bytes; one more for slack).
/// It may contain spaces and `:` (`kworker/0:1`) but not `: `, so a syslog
/// prefix is never taken for part of it.
macro_rules! comm {
    () => {
        r"(?:[^;=\]:\n]|:\S){1,16}?"
    };
}

/// `Killed process ...` with the memory fields of every kernel since 4.x
/// (shmem-rss ~4.9, UID ~5.2, pgtables and oom_score_adj ~5.5 are optional).
macro_rules! killed_tail {
    () => {
        r"Killed process (?P<process.pid>\d+) \((?P<oom.victim.comm>.*)\) total-vm:(?P<oom.victim.total_vm>\d+)kB, anon-rss:(?P<oom.victim.anon_rss>\d+)kB, file-rss:(?P<oom.victim.file_rss>\d+)kB(?:, shmem-rss:(?P<oom.victim.shmem_rss>\d+)kB)?(?:,? UID:(?P<process.real_user.id>\d+))?(?: pgtables:(?P<oom.victim.pgtables>\d+)kB)?(?: oom_score_adj:(?P<oom.victim.oom_score_adj>-?\d+))?"
    };
}

const KILLED_KIB: &[(&str, Conversion)] = &[
    ("oom.victim.total_vm", Conversion::KibToBytes),
    ("oom.victim.anon_rss", Conversion::KibToBytes),
    ("oom.victim.file_rss", Conversion::KibToBytes),
    ("oom.victim.shmem_rss", Conversion::KibToBytes),
    ("oom.victim.pgtables", Conversion::KibToBytes),
];

/// `java.lang.OutOfMemoryError: <detail>`, optionally after the JVM's
/// `Exception in thread "<name>" `; the detail is the exception's message
/// (as `Throwable.toString` prints `<class>: <message>`).
macro_rules! java_oome {
    ($detail:literal) => {
        concat!(
            r#"(?:Exception in thread "(?P<thread.name>[^"]*)" )?(?P<exception.type>java\.lang\.OutOfMemoryError): (?P<exception.message>"#,
            $detail,
            ")"
        )
    };
}

pub(crate) static BUILTINS: &[Builtin] = &[
    // ---------------------------------------------------------------- kernel
    Builtin {
        name: "kernel.oom_invoked",
        runtime: Runtime::Kernel,
        severity: WARN,
        regex: concat!(
            comm_start!(),
            "(?P<oom.trigger.comm>",
            comm!(),
            r") invoked oom-killer: gfp_mask=(?P<oom.gfp_mask>0x[0-9a-f]+(?:\([^)]*\))?), (?:nodemask=(?P<oom.nodemask>[^,]*), )?order=(?P<oom.order>-?\d+), (?:oom_score_adj|oomkilladj)=(?P<oom.trigger.oom_score_adj>-?\d+)"
        ),
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    },
    Builtin {
        name: "kernel.oom_kill_summary",
        runtime: Runtime::Kernel,
        severity: INFO,
        regex: r"oom-kill:constraint=(?P<oom.constraint>[^,]+),nodemask=(?P<oom.nodemask>.*?)(?:,cpuset=(?P<oom.cpuset>.*?),mems_allowed=(?P<oom.mems_allowed>.*?))?(?:,oom_memcg=(?P<oom.memcg>.*?)|,(?P<global_oom>global_oom))(?:,task_memcg=(?P<oom.victim.cgroup>.*?))?,task=(?P<oom.victim.comm>.*),pid=(?P<process.pid>\d+),uid=(?P<process.real_user.id>\d+)",
        conversions: &[
            ("oom.memcg", Conversion::AlsoSet("oom.trigger_type", "cgroup")),
            ("global_oom", Conversion::Flag("oom.trigger_type", "system")),
        ],
        constants: &[],
        expects_stack_trace: false,
        example: "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/oomtest,task_memcg=/oomtest,task=python3,pid=11976,uid=0",
    },
    Builtin {
        name: "kernel.memcg_oom_kill",
        runtime: Runtime::Kernel,
        severity: ERROR,
        regex: concat!("Memory cgroup out of memory: ", killed_tail!()),
        conversions: KILLED_KIB,
        constants: &[("oom.trigger_type", "cgroup")],
        expects_stack_trace: false,
        example: "Memory cgroup out of memory: Killed process 11976 (python3) total-vm:67784kB, anon-rss:50816kB, file-rss:5140kB, shmem-rss:0kB, UID:0 pgtables:156kB oom_score_adj:0",
    },
    Builtin {
        name: "kernel.global_oom_kill",
        runtime: Runtime::Kernel,
        severity: ERROR,
        regex: concat!(
            r"Out of memory(?: \(oom_kill_allocating_task\))?: ",
            killed_tail!()
        ),
        conversions: KILLED_KIB,
        constants: &[("oom.trigger_type", "system")],
        expects_stack_trace: false,
        example: "Out of memory: Killed process 3103923 (stress-ng-vm) total-vm:15791416kB, anon-rss:14369596kB, file-rss:4kB, shmem-rss:36kB, UID:0 pgtables:28184kB oom_score_adj:1000",
    },
    Builtin {
        // Kernels before 4.19 print the kill without the reason prefix.
        name: "kernel.killed_process",
        runtime: Runtime::Kernel,
        severity: ERROR,
        regex: killed_tail!(),
        conversions: KILLED_KIB,
        constants: &[],
        expects_stack_trace: false,
        example: "Killed process 2592 (java) total-vm:4475840kB, anon-rss:1913012kB, file-rss:0kB, shmem-rss:0kB",
    },
    Builtin {
        name: "kernel.oom_kill_sacrifice",
        runtime: Runtime::Kernel,
        severity: ERROR,
        regex: r"(?:(?P<memcg_reason>Memory cgroup out of memory)|(?P<global_reason>Out of memory(?: \(oom_kill_allocating_task\))?)): Kill process (?P<process.pid>\d+) \((?P<oom.victim.comm>.*)\) score (?P<oom.victim.score>\d+) or sacrifice child",
        conversions: &[
            ("memcg_reason", Conversion::Flag("oom.trigger_type", "cgroup")),
            ("global_reason", Conversion::Flag("oom.trigger_type", "system")),
        ],
        constants: &[],
        expects_stack_trace: false,
        example: "Memory cgroup out of memory: Kill process 2592 (java) score 1001 or sacrifice child",
    },
    Builtin {
        name: "kernel.memcg_limit_legacy",
        runtime: Runtime::Kernel,
        severity: INFO,
        regex: r"Task in (?P<oom.victim.cgroup>\S+) killed as a result of limit of (?P<oom.memcg>\S+)",
        conversions: &[],
        constants: &[("oom.trigger_type", "cgroup")],
        expects_stack_trace: false,
        example: "Task in /kubepods/burstable/pod6f1c/8d2e killed as a result of limit of /kubepods/burstable/pod6f1c",
    },
    Builtin {
        name: "kernel.no_killable_processes",
        runtime: Runtime::Kernel,
        severity: FATAL,
        regex: r"Out of memory and no killable processes",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "Out of memory and no killable processes...",
    },
    Builtin {
        name: "kernel.panic_on_oom",
        runtime: Runtime::Kernel,
        severity: FATAL,
        regex: r"Out of memory: (?P<oom.panic_mode>compulsory|system-wide) panic_on_oom is enabled",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "Out of memory: system-wide panic_on_oom is enabled",
    },
    Builtin {
        name: "kernel.page_allocation_failure",
        runtime: Runtime::Kernel,
        severity: WARN,
        regex: concat!(
            "(?:",
            comm_start!(),
            "(?P<oom.trigger.comm>",
            comm!(),
            r"): )?page allocation failure: order:(?P<oom.order>\d+), mode:(?P<oom.gfp_mask>0x[0-9a-f]+(?:\([^)]*\))?)(?:, ?nodemask=(?P<oom.nodemask>[^,]*))?"
        ),
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "kworker/u16:3: page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null),cpuset=/,mems_allowed=0",
    },
    // -------------------------------------------------------------------- Go
    Builtin {
        name: "go.cannot_allocate",
        runtime: Runtime::Go,
        severity: FATAL,
        regex: r"runtime: out of memory: cannot allocate (?P<oom.requested_bytes>\d+)-byte block(?: \((?P<oom.heap_in_use_bytes>\d+) in use\))?",
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "runtime: out of memory: cannot allocate 524288-byte block (4234510336 in use)",
    },
    Builtin {
        name: "go.fatal_out_of_memory",
        runtime: Runtime::Go,
        severity: FATAL,
        // Go prints no type: the throw's text is the message.
        regex: r"fatal error: (?P<exception.message>(?P<oom.go.error>(?:runtime: |pageAlloc: )?out of memory(?: allocating (?:heap arena metadata|heap arena map|allArenas))?))",
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "fatal error: runtime: out of memory",
    },
    // ------------------------------------------------------------------ Java
    Builtin {
        name: "java.heap_space",
        runtime: Runtime::Java,
        severity: ERROR,
        regex: java_oome!("(?P<oom.java.error>Java heap space)"),
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: r#"Exception in thread "main" java.lang.OutOfMemoryError: Java heap space"#,
    },
    Builtin {
        name: "java.gc_overhead_limit",
        runtime: Runtime::Java,
        severity: ERROR,
        regex: java_oome!("(?P<oom.java.error>GC overhead limit exceeded)"),
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: r#"Exception in thread "http-nio-8080-exec-3" java.lang.OutOfMemoryError: GC overhead limit exceeded"#,
    },
    Builtin {
        name: "java.metaspace",
        runtime: Runtime::Java,
        severity: ERROR,
        regex: java_oome!("(?P<oom.java.error>Metaspace)"),
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "java.lang.OutOfMemoryError: Metaspace",
    },
    Builtin {
        name: "java.compressed_class_space",
        runtime: Runtime::Java,
        severity: ERROR,
        regex: java_oome!("(?P<oom.java.error>Compressed class space)"),
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "java.lang.OutOfMemoryError: Compressed class space",
    },
    Builtin {
        name: "java.direct_buffer_memory",
        runtime: Runtime::Java,
        severity: ERROR,
        regex: java_oome!(
            r"(?P<oom.java.error>Direct buffer memory|Cannot reserve (?P<oom.requested_bytes>\d+) bytes of direct buffer memory \(allocated: (?P<oom.in_use_bytes>\d+), limit: (?P<oom.limit_bytes>\d+)\))"
        ),
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "java.lang.OutOfMemoryError: Cannot reserve 1048576 bytes of direct buffer memory (allocated: 267386880, limit: 268435456)",
    },
    Builtin {
        name: "java.native_thread",
        runtime: Runtime::Java,
        severity: ERROR,
        regex: java_oome!(r"(?P<oom.java.error>unable to create (?:new )?native thread(?:: .*)?)"),
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: r#"Exception in thread "pool-1-thread-7" java.lang.OutOfMemoryError: unable to create native thread: possibly out of memory or process/resource limits reached"#,
    },
    Builtin {
        name: "java.array_size_limit",
        runtime: Runtime::Java,
        severity: ERROR,
        regex: java_oome!("(?P<oom.java.error>Requested array size exceeds VM limit)"),
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "java.lang.OutOfMemoryError: Requested array size exceeds VM limit",
    },
    Builtin {
        // Any other detail ("Map failed", "Out of swap space?", none).
        name: "java.out_of_memory_error",
        runtime: Runtime::Java,
        severity: ERROR,
        regex: r#"(?:Exception in thread "(?P<thread.name>[^"]*)" )?(?P<exception.type>java\.lang\.OutOfMemoryError)\b(?:: (?P<exception.message>(?P<oom.java.error>.+)))?"#,
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "Caused by: java.lang.OutOfMemoryError: Map failed",
    },
    Builtin {
        name: "java.insufficient_memory",
        runtime: Runtime::Java,
        severity: FATAL,
        regex: r"There is insufficient memory for the Java Runtime Environment to continue",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "# There is insufficient memory for the Java Runtime Environment to continue.",
    },
    Builtin {
        name: "java.native_allocation_failed",
        runtime: Runtime::Java,
        severity: FATAL,
        regex: r"Native memory allocation \((?P<oom.java.allocator>mmap|malloc)\) failed to (?:allocate|map) (?P<oom.requested_bytes>\d+) bytes(?: for (?P<oom.java.purpose>[^.]+))?",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "# Native memory allocation (mmap) failed to map 1073741824 bytes for committing reserved memory.",
    },
    Builtin {
        name: "java.commit_memory_failed",
        runtime: Runtime::Java,
        severity: ERROR,
        regex: r"os::commit_memory\(0x[0-9a-fA-F]+, (?P<oom.requested_bytes>\d+), \d+\) failed; error='(?P<oom.error.message>[^']*)' \(errno=(?P<oom.errno>\d+)\)",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "OpenJDK 64-Bit Server VM warning: INFO: os::commit_memory(0x00000000d5550000, 715849728, 0) failed; error='Cannot allocate memory' (errno=12)",
    },
    // ---------------------------------------------------------------- Python
    Builtin {
        name: "python.numpy_array_memory_error",
        runtime: Runtime::Python,
        severity: ERROR,
        regex: r"(?P<exception.type>(?:[A-Za-z_]\w*\.)*_ArrayMemoryError): (?P<exception.message>Unable to allocate (?P<oom.requested_bytes>\d+(?:\.\d+)? (?:bytes|[KMGTPE]iB)) for an array with shape (?P<oom.python.array_shape>\([^)]*\)) and data type (?P<oom.python.array_dtype>\S+))",
        conversions: &[("oom.requested_bytes", Conversion::SizeToBytes)],
        constants: &[],
        expects_stack_trace: false,
        example: "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 7.45 GiB for an array with shape (1000000000,) and data type float64",
    },
    Builtin {
        // The last line of a traceback (the traceback comes before it), so
        // it must start the message: not "caught MemoryError" in prose.
        name: "python.memory_error",
        runtime: Runtime::Python,
        severity: ERROR,
        regex: r"(?:^|[:;=] ?|\s[FP] )(?P<exception.type>(?:[A-Za-z_]\w*\.)*_?(?:Array)?MemoryError)(?:: (?P<exception.message>.*))?$",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "MemoryError",
    },
    // ------------------------------------------------------------------ Node
    Builtin {
        name: "node.heap_out_of_memory",
        runtime: Runtime::Node,
        severity: FATAL,
        // Node prints no type: what follows `FATAL ERROR: ` is the message.
        regex: r"FATAL ERROR: (?P<exception.message>(?:(?P<oom.node.reason>.*?) )?Allocation failed - (?P<oom.node.error>JavaScript heap out of memory|process out of memory))",
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    },
    Builtin {
        // V8's own handler (Node >= 22 in some builds, Deno, d8).
        name: "node.v8_fatal_out_of_memory",
        runtime: Runtime::Node,
        severity: FATAL,
        regex: r"(?P<exception.message>Fatal (?:JavaScript|javascript|process) out of memory: (?P<oom.node.reason>.+))",
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "# Fatal JavaScript out of memory: Reached heap limit",
    },
    Builtin {
        name: "node.worker_out_of_memory",
        runtime: Runtime::Node,
        severity: ERROR,
        // Node prints `Error [<code>]: <message>`; the type is the code, as
        // OpenTelemetry JS's `recordException` takes `code` before `name`.
        regex: r"(?:Error \[(?P<exception.type>ERR_WORKER_OUT_OF_MEMORY)\]: )?(?P<exception.message>Worker terminated due to reaching memory limit: (?P<oom.node.error>JS heap out of memory))",
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "Error [ERR_WORKER_OUT_OF_MEMORY]: Worker terminated due to reaching memory limit: JS heap out of memory",
    },
    // ------------------------------------------------------------------- C++
    Builtin {
        name: "cpp.bad_alloc",
        runtime: Runtime::Cpp,
        severity: FATAL,
        // The message (`what()`) is on the next line: see multiline.rs.
        regex: r"terminate called after throwing an instance of '(?P<exception.type>std::bad_alloc)'",
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "terminate called after throwing an instance of 'std::bad_alloc'",
    },
    Builtin {
        name: "cpp.libcxx_bad_alloc",
        runtime: Runtime::Cpp,
        severity: FATAL,
        regex: r"libc\+\+abi(?:\.dylib)?: terminating (?:with|due to)(?: an)? uncaught exception of type (?P<exception.type>std::bad_alloc)(?:: (?P<exception.message>.+))?",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "libc++abi: terminating due to uncaught exception of type std::bad_alloc: std::bad_alloc",
    },
    // ------------------------------------------------------------------ Rust
    Builtin {
        name: "rust.alloc_failed",
        runtime: Runtime::Rust,
        severity: FATAL,
        // Rust prints no type: the line is the message.
        regex: r"(?P<exception.message>memory allocation of (?P<oom.requested_bytes>\d+) bytes failed)",
        conversions: &[],
        constants: &[],
        // `stack backtrace:` and its frames, when RUST_BACKTRACE is set.
        expects_stack_trace: true,
        example: "memory allocation of 1048576 bytes failed",
    },
    // ------------------------------------------------------------------ .NET
    Builtin {
        name: "dotnet.out_of_memory_exception",
        runtime: Runtime::Dotnet,
        severity: ERROR,
        regex: r"(?P<exception.type>System\.OutOfMemoryException)(?:: (?P<exception.message>.+))?",
        conversions: &[],
        constants: &[],
        expects_stack_trace: true,
        example: "Unhandled exception. System.OutOfMemoryException: Exception of type 'System.OutOfMemoryException' was thrown.",
    },
    Builtin {
        name: "dotnet.gc_heap_init_failed",
        runtime: Runtime::Dotnet,
        severity: FATAL,
        regex: r"GC heap initialization failed with error (?P<oom.dotnet.hresult>0x[0-9A-Fa-f]+)",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "GC heap initialization failed with error 0x8007000E",
    },
    // ------------------------------------------------------------------- PHP
    Builtin {
        name: "php.memory_limit_exhausted",
        runtime: Runtime::Php,
        severity: FATAL,
        // PHP prints an error level (`Fatal error`), not a type; the message
        // is what `error_get_last()` gives, without ` in <file> on line <n>`.
        regex: r"(?P<exception.message>Allowed memory size of (?P<oom.limit_bytes>\d+) bytes exhausted(?: at \S+)? \(tried to allocate (?P<oom.requested_bytes>\d+) bytes\))(?: in (?P<code.file.path>.+?) on line (?P<code.line.number>\d+))?",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in /var/www/html/index.php on line 12",
    },
    Builtin {
        name: "php.out_of_memory",
        runtime: Runtime::Php,
        severity: FATAL,
        regex: r"(?P<exception.message>Out of memory \(allocated (?P<oom.in_use_bytes>\d+)(?: bytes)?\)(?: at \S+)? \(tried to allocate (?P<oom.requested_bytes>\d+) bytes\))",
        conversions: &[],
        constants: &[],
        expects_stack_trace: false,
        example: "PHP Fatal error:  Out of memory (allocated 2097152) (tried to allocate 4096 bytes)",
    },
    // --------------------------------------------------------------- kubelet
    Builtin {
        name: "kubelet.system_oom",
        runtime: Runtime::Kubelet,
        severity: ERROR,
        regex: r"System OOM encountered, victim process: (?P<oom.victim.comm>.+?), pid: (?P<process.pid>\d+)",
        conversions: &[],
        constants: &[("oom.trigger_type", "system")],
        expects_stack_trace: false,
        example: "System OOM encountered, victim process: stress-ng-vm, pid: 3103923",
    },
    Builtin {
        // `Reason: OOMKilled` (kubectl describe), `reason="OOMKilled"` (klog),
        // `"reason":"OOMKilled"` (JSON).
        name: "kubelet.oom_killed",
        runtime: Runtime::Kubelet,
        severity: ERROR,
        regex: r#"[Rr]eason"?\s*[:=]\s*"?OOMKilled\b"#,
        conversions: &[],
        constants: &[("k8s.container.termination_reason", "OOMKilled")],
        expects_stack_trace: false,
        example: "Reason:       OOMKilled",
    },
];
